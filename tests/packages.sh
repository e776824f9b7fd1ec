# shellcheck shell=bash
# The Debian packages the demo and the test suite need, and a function installing the missing ones.
# Sourced by tests/run and examples/demo. Each entry is "package:a file it installs" (checked with
# test -e, which works on minimal images without dpkg-query quirks).
SOFTETHER_CNI_PACKAGES=(
  "softether-vpnserver:/usr/libexec/softether/vpnserver/vpnserver"
  "softether-vpncmd:/usr/libexec/softether/vpncmd/vpncmd"
  "softether-vpnclient:/usr/libexec/softether/vpnclient/vpnclient"
  "iproute2:/usr/sbin/ip"
  "nftables:/usr/sbin/nft"
  "iperf3:/usr/bin/iperf3"
  "openssl:/usr/bin/openssl"
  "ethtool:/usr/sbin/ethtool"
  "iputils-ping:/usr/bin/ping"
  "tcpdump:/usr/bin/tcpdump"
  "jq:/usr/bin/jq"
  "ca-certificates:/etc/ssl/certs/ca-certificates.crt"
  "build-essential:/usr/share/build-essential/list"
  "pkg-config:/usr/bin/pkg-config"
  "curl:/usr/bin/curl"
  "util-linux:/usr/bin/unshare"
  "procps:/usr/bin/pgrep"
  "python3:/usr/bin/python3"
  "dnsmasq-base:/usr/sbin/dnsmasq"
  # tests/tests/connect_ipv6_ra.rs: Route Information options, MTU and zero preferred lifetimes.
  "radvd:/usr/sbin/radvd"
  "python3-venv:/usr/share/doc/python3-venv"
  # tests/tests/podman_e2e.rs: Debian's Podman 4.3 (CNI backend) with runc, and a static busybox
  # for the imported test image (the dynamic `busybox` package also has /bin/busybox, hence the doc dir).
  "podman:/usr/bin/podman"
  "runc:/usr/sbin/runc"
  "busybox-static:/usr/share/doc/busybox-static"
  # tests/netavark.sh: `cargo install netavark` (>= 1.6, for tests/tests/netavark_e2e.rs) needs protoc.
  "protobuf-compiler:/usr/bin/protoc"
  # tests/tests/metrics_e2e.rs: the real Prometheus scrapes the sidecar; promtool lints /metrics.
  "prometheus:/usr/bin/promtool"
  # tests/tests/connect_proxy.rs: real HTTP CONNECT and SOCKS4/5 proxies.
  "tinyproxy-bin:/usr/bin/tinyproxy"
  "dante-server:/usr/sbin/danted"
  # tests/tests/cri_e2e.rs: containerd 1.6 with its CRI plugin, and the reference CNI plugins
  # (loopback, which containerd runs for every pod, bridge and host-local for the default network).
  "containerd:/usr/bin/containerd"
  "containernetworking-plugins:/usr/lib/cni/bridge"
)

# Installs every missing package (apt-get update first). SKIP_APT=1 skips the check.
install_missing_packages() {
  if [ "${SKIP_APT:-0}" = 1 ]; then
    echo "SKIP_APT=1: not checking packages"
    return 0
  fi
  local missing=() entry pkg file
  for entry in "${SOFTETHER_CNI_PACKAGES[@]}"; do
    pkg=${entry%%:*}; file=${entry#*:}
    [ -e "$file" ] || missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "all present"
    return 0
  fi
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
}
