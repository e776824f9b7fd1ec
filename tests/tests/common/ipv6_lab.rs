//! The lab's IPv6 LAN, shared by the `connect` and CNI IPv6 tests: a ULA address on the lan
//! host (which sits on the hub through the local bridge) and dnsmasq there sending router
//! advertisements for the ULA prefix (and answering DHCPv6 per its range); SecureNAT keeps
//! serving DHCPv4.
#![allow(dead_code)] // each test binary uses a different subset

use std::time::{Duration, Instant};

use softether_lab::{Lab, LabOptions};

use super::connect::must;

/// ULA prefix of the lab's IPv6 LAN and the lan host's address in it.
pub const PREFIX: &str = "fd5e:7e4e:1::";
pub const LAN_HOST6: &str = "fd5e:7e4e:1::1";
/// The DNS server and search domain the router advertises (RDNSS/DNSSL, DHCPv6 options).
pub const DNS6: &str = "fd5e:7e4e:1::53";
pub const DOMAIN6: &str = "lab6.test";

/// A lab whose lan host has [`LAN_HOST6`]/64.
pub fn lab() -> Lab {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let f = &lab.facts;
    let addr = format!("{LAN_HOST6}/64");
    must(
        &f.lan_ns,
        &["ip", "-6", "addr", "add", &addr, "dev", &f.lan_if, "nodad"],
    );
    lab
}

/// dnsmasq on the lan host: router advertisements (and DHCPv6 per `range`, e.g.
/// `fd5e:7e4e:1::,ra-only,64,600` for SLAAC only) with [`DNS6`] and [`DOMAIN6`].
pub fn router(lab: &Lab, range: &str) -> softether_lab::netns::KillOnDrop {
    let f = &lab.facts;
    let leases = f.dir.join("dnsmasq6.leases");
    let argv = [
        "dnsmasq".to_string(),
        "--no-daemon".into(),
        "--conf-file=/dev/null".into(),
        "--port=0".into(),
        "--bind-interfaces".into(),
        format!("--interface={}", f.lan_if),
        "--enable-ra".into(),
        format!("--dhcp-range={range}"),
        format!("--dhcp-option=option6:dns-server,[{DNS6}]"),
        format!("--dhcp-option=option6:domain-search,{DOMAIN6}"),
        format!("--dhcp-leasefile={}", leases.display()),
    ];
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    lab.spawn_in(&f.lan_ns, &argv).expect("dnsmasq")
}

/// Global IPv6 addresses (`ADDR/LEN`) on `dev` in `ns`.
pub fn global_addresses(ns: &str, dev: &str) -> Vec<String> {
    let (_, out) = super::connect::exec(
        ns,
        &[
            "ip", "-6", "-o", "addr", "show", "dev", dev, "scope", "global",
        ],
    );
    out.lines()
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_owned))
        .collect()
}

/// `ping -6` from `ns` to `dst`, up to ten tries.
pub fn ping6(ns: &str, dst: &str) -> bool {
    (0..10).any(|_| super::connect::exec(ns, &["ping", "-6", "-n", "-c", "1", "-W", "2", dst]).0)
}

/// Polls `check` every 100 ms until it returns `Some`, at most `limit`.
pub fn wait_for<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// radvd on the lan host advertising [`PREFIX`]/64 with `options` inside its interface block
/// (e.g. `AdvLinkMTU 1400;` or `route …/48 { … };`) and `prefix_options` inside the prefix
/// block. radvd, unlike dnsmasq, sends Route Information options and zero preferred lifetimes,
/// and withdraws its default route and routes when it stops (SIGTERM).
pub fn radvd(lab: &Lab, options: &str, prefix_options: &str) -> softether_lab::netns::KillOnDrop {
    let f = &lab.facts;
    // radvd refuses to advertise a default route from a host that does not forward.
    must(
        &f.lan_ns,
        &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"],
    );
    let conf = radvd_conf(lab, options, prefix_options);
    let pid = f.dir.join("radvd.pid");
    let argv = [
        "radvd".to_string(),
        "--nodaemon".into(),
        format!("--config={}", conf.display()),
        format!("--pidfile={}", pid.display()),
        "--logmethod=stderr".into(),
    ];
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    lab.spawn_in(&f.lan_ns, &argv).expect("radvd")
}

/// Writes radvd's configuration (see [`radvd`]); a running radvd rereads it on SIGHUP.
pub fn radvd_conf(lab: &Lab, options: &str, prefix_options: &str) -> std::path::PathBuf {
    let f = &lab.facts;
    let conf = f.dir.join("radvd.conf");
    let body = format!(
        "interface {} {{\n AdvSendAdvert on;\n MinRtrAdvInterval 3;\n MaxRtrAdvInterval 10;\n {options}\n prefix {PREFIX}/64 {{ AdvOnLink on; AdvAutonomous on; {prefix_options} }};\n RDNSS {DNS6} {{ }};\n}};\n",
        f.lan_if
    );
    std::fs::write(&conf, body).expect("radvd.conf");
    conf
}
