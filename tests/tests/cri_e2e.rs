//! The Kubernetes path: Debian 12's containerd 1.6 (CRI plugin) runs the `softether` plugin for
//! pod sandboxes, driven over the CRI API exactly like kubelet drives it (RunPodSandbox,
//! CreateContainer/StartContainer, ExecSync, StopContainer/RemoveContainer, StopPodSandbox,
//! RemovePodSandbox), next to `softether-sidecar run` in the lab's client ("node") namespace.
//!
//! - alone: our network is the pod's only one (`eth0`, a TAP with the lease and the pushed
//!   route); a container in the pod pings the lan host through the VPN; removing the pod
//!   releases everything;
//! - behind a default network: the reference `bridge` plugin as `eth0` and ours as `eth1`
//!   (containerd `max_conf_num = 2`, as Multus adds a secondary network); both carry traffic and
//!   both are released; and when the default network fails for a pod, containerd's cleanup
//!   leaves nothing of ours.
//!
//! containerd's setup is private (see `common/containerd.rs`). Needs `cargo build --workspace
//! --bins` first and root; fails (never skips) when containerd, the CNI plugins package or
//! Python's venv is missing.

mod common;

use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use common::cni_lab::{netns_path, sidecar_status, CniDirs, Sidecar};
use common::connect::{exec, in_dhcp_pool, must};
use common::containerd::{Containerd, Sandbox};
use serde_json::{json, Value};
use softether_lab::facts::subnet;
use softether_lab::topology::side_pair;
use softether_lab::{Lab, LabOptions};

/// The reference plugins (Debian package containernetworking-plugins).
const REFERENCE_PLUGINS: &str = "/usr/lib/cni";
/// The default network's bridge, in the client ("node") namespace.
const BRIDGE: &str = "cni-default0";
const POLL: Duration = Duration::from_millis(200);

struct Setup {
    // Fields drop in order: pods go (DEL through the still running sidecar) before the sidecar,
    // the sidecar before the lab.
    containerd: Containerd,
    sidecar: Sidecar,
    dirs: CniDirs,
    lab: Lab,
}

impl Setup {
    /// Lab, sidecar and a containerd whose CNI bin dir holds ours, `loopback`, `bridge` and
    /// `host-local`; `default_network` puts the bridge network before ours.
    fn new(default_network: bool) -> Setup {
        let lab = Lab::start(LabOptions::default()).expect("lab");
        let dirs = CniDirs::create(&lab);
        for plugin in ["loopback", "bridge", "host-local"] {
            let reference = Path::new(REFERENCE_PLUGINS).join(plugin);
            assert!(
                reference.is_file(),
                "{} is missing: apt-get install containernetworking-plugins",
                reference.display()
            );
            symlink(&reference, dirs.bin.join(plugin)).expect("plugin symlink");
        }
        let sidecar = Sidecar::start(&lab, &dirs.socket, &dirs.state, 0);
        let mut containerd = Containerd::new(&dirs.bin);
        if default_network {
            let (gateway, _) = bridge_pair(&lab);
            let network = Ipv4Addr::from(u32::from(gateway) - 1);
            let conflist = json!({
                "cniVersion": "1.0.0",
                "name": "default",
                "plugins": [{
                    "type": "bridge", "bridge": BRIDGE, "isGateway": true,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": containerd.dir().join("ipam"),
                        "ranges": [[{"subnet": format!("{network}/30"), "gateway": gateway.to_string()}]]
                    }
                }]
            });
            write_conflist(&containerd, "10-default", &conflist);
        }
        // As the shipped NetworkAttachmentDefinition: the DHCP classless routes are installed.
        let mut ours = dirs.plugin_conf(&lab);
        ours["acceptStaticRoutes"] = json!(true);
        let conflist = json!({"cniVersion": "1.0.0", "name": "softether-vpn", "plugins": [ours]});
        write_conflist(&containerd, "20-softether-vpn", &conflist);
        containerd.start(&lab.facts.client_ns);
        Setup {
            containerd,
            sidecar,
            dirs,
            lab,
        }
    }

    /// RunPodSandbox, timed.
    fn run_pod(&self, name: &str) -> Sandbox {
        let started = Instant::now();
        let pod = self.containerd.run_pod(name);
        println!("RunPodSandbox {name}: {} ms", started.elapsed().as_millis());
        pod
    }

    /// `softether-sidecar status --json` attachments.
    fn attachments(&self) -> Vec<Value> {
        sidecar_status(&self.lab.facts.client_ns, &self.dirs.socket)["attachments"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Checks our interface `ifname` in the pod: a TAP with a leased address, the pushed route
    /// through it, containerd's CNI result naming it, the sidecar's attachment and record.
    fn assert_vpn_interface(&self, pod: &Sandbox, netns: &str, ifname: &str) -> Ipv4Addr {
        let link = must(netns, &["ip", "-d", "-j", "link", "show", ifname]);
        let link: Value = serde_json::from_str(&link).expect("ip -j link");
        assert_eq!(link[0]["linkinfo"]["info_kind"], "tun", "{link}");
        assert_eq!(link[0]["linkinfo"]["info_data"]["type"], "tap", "{link}");
        let addrs = must(netns, &["ip", "-4", "-o", "addr", "show", "dev", ifname]);
        let ip: Ipv4Addr = addrs
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .and_then(|a| a.split('/').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no IPv4 address on {ifname}: {addrs}"));
        assert!(in_dhcp_pool(&self.lab, ip), "{ip} outside the pool");
        assert!(addrs.contains(&format!("{ip}/24")), "{addrs}");
        let pushed = format!(
            "{}/{}",
            subnet::PUSHED_ROUTE,
            subnet::PUSHED_ROUTE_PREFIX_LEN
        );
        let route = must(netns, &["ip", "-4", "route", "show", &pushed]);
        assert!(
            route.contains(&format!("via {}", subnet::GATEWAY))
                && route.contains(&format!("dev {ifname}")),
            "pushed route: {route:?}"
        );
        let (_, info) = self.containerd.pod_status(pod);
        let result = info["cniResult"]["Interfaces"][ifname].to_string();
        assert!(
            result.contains(&ip.to_string()),
            "containerd's CNI result lacks {ifname} {ip}: {}",
            info["cniResult"]
        );
        let attachments = self.attachments();
        assert!(
            attachments
                .iter()
                .any(|a| a.to_string().contains(&pod.id) && a.to_string().contains(ifname)),
            "sidecar status lacks {} {ifname}: {attachments:?}",
            pod.id
        );
        let records = fs::read_dir(self.dirs.state.join("attachments"))
            .expect("attachment records")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect::<Vec<_>>();
        assert_eq!(records, [format!("{}:{ifname}.json", pod.id)]);
        ip
    }

    /// ping from inside the container (ExecSync), up to `attempts` times.
    fn ping_from_container(&self, container: &str, dst: Ipv4Addr, attempts: u32) {
        let dst = dst.to_string();
        let mut last = String::new();
        for _ in 0..attempts {
            let (code, out) = self
                .containerd
                .exec(container, &["ping", "-c", "1", "-W", "2", &dst]);
            if code == 0 {
                return;
            }
            last = out;
        }
        panic!(
            "the container cannot ping {dst}: {last}\nsidecar log:\n{}",
            self.sidecar.log_text()
        );
    }

    /// Removes the pod like kubelet and waits (bounded) until nothing of our attachment is left:
    /// no pod namespace, no attachment in `status`, no record or tombstone, no TAP fd held by the
    /// sidecar, no sandbox in containerd.
    fn remove_and_assert_released(&self, pod: &Sandbox, netns: &str, containers: &[String]) {
        let started = Instant::now();
        self.containerd.remove_pod(pod, containers);
        println!(
            "Stop+RemovePodSandbox: {} ms",
            started.elapsed().as_millis()
        );
        assert!(
            !Path::new(&netns_path(netns)).exists(),
            "pod namespace {netns} left behind"
        );
        let until = Instant::now() + Duration::from_secs(30);
        while !(self.attachments().is_empty() && tap_fds(self.sidecar.pid()) == 0) {
            assert!(
                Instant::now() < until,
                "not released: {:?}, {} TAP fds\n{}",
                self.attachments(),
                tap_fds(self.sidecar.pid()),
                self.sidecar.log_text()
            );
            std::thread::sleep(POLL);
        }
        assert_eq!(self.dirs.leftover_state(), Vec::<String>::new());
        assert_eq!(self.containerd.sandboxes(), Vec::<String>::new());
    }
}

/// Writes `<containerd net.d>/<name>.conflist`.
fn write_conflist(containerd: &Containerd, name: &str, conflist: &Value) {
    fs::write(
        containerd.net_d().join(format!("{name}.conflist")),
        serde_json::to_string_pretty(conflist).expect("json"),
    )
    .expect("conflist");
}

/// The default network's /30 (gateway on the bridge, the pod's address), derived from the lab's
/// underlay so that parallel labs never share it.
fn bridge_pair(lab: &Lab) -> (Ipv4Addr, Ipv4Addr) {
    side_pair(lab.facts.client_ip, 7)
}

/// File descriptors of `pid` open on /dev/net/tun (one per attached TAP).
fn tap_fds(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/<pid>/fd")
        .flatten()
        .filter(|e| fs::read_link(e.path()).is_ok_and(|t| t == Path::new("/dev/net/tun")))
        .count()
}

#[test]
fn containerd_pod_gets_the_vpn_as_eth0_pings_the_lan_and_removal_releases_everything() {
    let s = Setup::new(false);
    let pod = s.run_pod("vpn-only");
    let netns = s.containerd.pod_netns(&pod);
    let ip = s.assert_vpn_interface(&pod, &netns, "eth0");
    // containerd reports the pod IP from eth0: here our lease.
    let (status, _) = s.containerd.pod_status(&pod);
    assert_eq!(status["network"]["ip"], ip.to_string(), "{status}");
    assert_eq!(tap_fds(s.sidecar.pid()), 1);

    let container = s.containerd.start_container(&pod, "pinger");
    let (code, shown) = s
        .containerd
        .exec(&container, &["ip", "-4", "addr", "show", "eth0"]);
    assert_eq!(code, 0, "{shown}");
    assert!(
        shown.contains(&format!("{ip}/24")),
        "container's eth0: {shown}"
    );
    s.ping_from_container(&container, s.lab.facts.lan_host, 5);

    s.remove_and_assert_released(&pod, &netns, &[container]);
}

#[test]
fn containerd_pod_with_a_default_bridge_network_gets_ours_as_eth1_and_both_are_released() {
    let s = Setup::new(true);
    let (gateway, bridge_ip) = bridge_pair(&s.lab);
    let client = s.lab.facts.client_ns.clone();
    let pod = s.run_pod("multi");
    let netns = s.containerd.pod_netns(&pod);

    // eth0: the bridge plugin's veth with host-local's address; it is the pod IP.
    let eth0 = must(&netns, &["ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
    assert!(eth0.contains(&format!("{bridge_ip}/30")), "eth0: {eth0}");
    let (status, _) = s.containerd.pod_status(&pod);
    assert_eq!(status["network"]["ip"], bridge_ip.to_string(), "{status}");
    // eth1: ours.
    let ip = s.assert_vpn_interface(&pod, &netns, "eth1");
    let default_route = must(&netns, &["ip", "-4", "route", "show", "default"]);
    assert!(
        !default_route.contains("eth1"),
        "acceptDefaultGateway is off: {default_route}"
    );

    let container = s.containerd.start_container(&pod, "pinger");
    s.ping_from_container(&container, gateway, 5);
    s.ping_from_container(&container, s.lab.facts.lan_host, 5);
    let (code, shown) = s.containerd.exec(&container, &["ip", "-4", "-o", "addr"]);
    assert_eq!(code, 0, "{shown}");
    assert!(
        shown.contains(&format!("{bridge_ip}/30")) && shown.contains(&format!("{ip}/24")),
        "{shown}"
    );
    let ports = |ns: &str| must(ns, &["ip", "-o", "link", "show", "master", BRIDGE]);
    assert!(!ports(&client).trim().is_empty(), "no veth on {BRIDGE}");

    s.remove_and_assert_released(&pod, &netns, &[container]);
    // The bridge plugin's side: veth gone, host-local's address released.
    assert_eq!(ports(&client).trim(), "", "veth left on {BRIDGE}");
    let leases: Vec<String> = fs::read_dir(s.containerd.dir().join("ipam/default"))
        .expect("host-local data dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.parse::<Ipv4Addr>().is_ok())
        .collect();
    assert_eq!(leases, Vec::<String>::new(), "host-local still holds");
    let (ok, out) = exec(
        &client,
        &["ping", "-c", "1", "-W", "1", &bridge_ip.to_string()],
    );
    assert!(!ok, "the pod's bridge address still answers: {out}");
}

#[test]
fn containerd_pod_whose_default_network_fails_leaves_nothing_of_ours() {
    // The default network's /30 has one pod address: the first pod takes it, the second pod's
    // bridge ADD fails ("no IP addresses available"). containerd 1.6 attaches the networks in
    // parallel, so ours may have attached meanwhile; its cleanup (DEL of every network, sandbox
    // removed) must leave nothing of ours behind either way.
    let s = Setup::new(true);
    let first = s.run_pod("first");
    let first_netns = s.containerd.pod_netns(&first);
    s.assert_vpn_interface(&first, &first_netns, "eth1");

    let Err(err) = s.containerd.try_run_pod("second") else {
        panic!("the second pod cannot have an address on the default network");
    };
    assert!(err.contains("bridge"), "{err}");
    let until = Instant::now() + Duration::from_secs(30);
    while !(s.attachments().len() == 1 && tap_fds(s.sidecar.pid()) == 1) {
        assert!(
            Instant::now() < until,
            "the failed pod's attachment is not released: {:?}\n{}",
            s.attachments(),
            s.sidecar.log_text()
        );
        std::thread::sleep(POLL);
    }
    assert_eq!(s.containerd.sandboxes(), std::slice::from_ref(&first.id));
    assert_eq!(
        s.dirs.leftover_state().len(),
        1,
        "{:?}",
        s.dirs.leftover_state()
    );

    s.remove_and_assert_released(&first, &first_netns, &[]);
}
