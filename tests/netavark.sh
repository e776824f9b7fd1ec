#!/bin/bash
# Builds the netavark that tests/tests/netavark_e2e.rs drives, once, and reuses it across runs.
#
# Debian 12 ships netavark 1.4, which has no plugin API (netavark >= 1.6 has it). The suite builds
# NETAVARK_VERSION (default 1.17.2, < 2.0) from the crate registry with `cargo install --locked`
# (needs Debian's protobuf-compiler, see tests/packages.sh) into NETAVARK_CACHE
# (default /var/cache/softether-cni-tests/netavark-VERSION, outside every worktree's target/ so a
# `cargo clean` does not cost another build). About 8 minutes on 2 cores the first time, nothing after.
# Concurrent callers (several worktrees) wait on one lock instead of building twice.
#
# Usage: bash tests/netavark.sh          build if missing, print the binary's path
# tests/run calls it in the background before clippy and waits for it before `cargo test`; the e2e
# tests find the binary at the same default path, or at SOFTETHER_TEST_NETAVARK.
set -euo pipefail

version=${NETAVARK_VERSION:-1.17.2}
root=${NETAVARK_CACHE:-/var/cache/softether-cni-tests/netavark-$version}
bin=$root/bin/netavark

have_it() { [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -qF "$version"; }

if have_it; then
  echo "$bin"
  exit 0
fi

for d in "$HOME/.cargo/bin" /root/.cargo/bin; do
  [ -d "$d" ] && PATH="$d:$PATH"
done
export PATH
command -v cargo >/dev/null || { echo "tests/netavark.sh: cargo not found" >&2; exit 1; }
command -v protoc >/dev/null || {
  echo "tests/netavark.sh: protoc not found (apt-get install protobuf-compiler)" >&2
  exit 1
}

mkdir -p "$(dirname "$root")"
exec 9>"$root.lock"
flock 9
# Another caller may have finished the build while this one waited for the lock.
if have_it; then
  echo "$bin"
  exit 0
fi

staging="$root.partial"
rm -rf "$staging"
start=$(date +%s)
echo "tests/netavark.sh: building netavark $version into $root (once; about 8 minutes on 2 cores)" >&2
# Its own target dir (cargo install's default temp dir) so no worktree's target/ is touched.
cargo install netavark --version "=$version" --locked --root "$staging" --no-track >&2
rm -rf "$root"
mv "$staging" "$root"
echo "tests/netavark.sh: built netavark $version in $(($(date +%s) - start)) s" >&2
have_it || { echo "tests/netavark.sh: $bin does not report version $version" >&2; exit 1; }
echo "$bin"
