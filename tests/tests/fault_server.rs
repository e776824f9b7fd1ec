//! Fault matrix, server and network side (issue 14): one pod attached through the daemon
//! passes steady traffic while, in turn,
//! - the server is SIGKILLed mid-transfer and started again,
//! - the node's underlay link goes down for 10 s and comes back,
//! - an nftables blackhole drops everything to and from the server for longer than the
//!   session timeout (5 s here), then is lifted.
//!
//! After each fault the pod has the same address and reaches the lan host again; the time
//! from the end of the fault to the first answered ping is printed (recovery speed is the
//! subject of the fast-recovery tests, here it is only bounded).
//!
//! Server kill + restart without traffic, checking that nothing leaks around the tunnel
//! meanwhile, is `cni_outage`; `connect`'s reconnect is `connect_reconnect`.
//!
//! Needs `cargo build --workspace --bins` first, and root.

mod common;

use std::time::{Duration, Instant};

use common::cni_lab::{network_list, pod_address, pod_attachment, steady_ping, CniDirs, Sidecar};
use common::connect::{exec, extra_netns, must};
use common::wait_until;
use softether_lab::{Lab, LabOptions};

/// Bound on coming back after a fault ended (backoff included).
const RECOVERY: Duration = Duration::from_secs(90);

/// Time until one ping from `pod` to the lan host is answered (bounded by [`RECOVERY`]).
fn time_to_traffic(lab: &Lab, pod: &str, sidecar: &Sidecar, fault: &str) -> Duration {
    let started = Instant::now();
    let dst = lab.facts.lan_host.to_string();
    let back = wait_until(RECOVERY, || {
        exec(pod, &["ping", "-c", "1", "-W", "1", &dst]).0
    });
    assert!(
        back,
        "no traffic {RECOVERY:?} after {fault}:\n{}",
        sidecar.log_text()
    );
    started.elapsed()
}

#[test]
fn pod_recovers_from_server_crash_link_down_and_blackhole() {
    let mut lab = Lab::start(LabOptions {
        session_timeout_secs: Some(5),
        ..Default::default()
    })
    .expect("lab");
    let dirs = CniDirs::create(&lab);
    let sidecar = Sidecar::start(&lab, &dirs.socket, &dirs.state, 0);
    let rt = dirs.runtime(&lab);
    let list = network_list("vpnnet", "1.0.0", &dirs.plugin_conf(&lab), false);
    let pod = extra_netns();
    let att = pod_attachment("faults", pod.name());
    rt.add(&list, &att)
        .unwrap_or_else(|inv| panic!("ADD: {inv}\n{}", sidecar.log_text()));
    let address = pod_address(pod.name()).expect("address");
    let _transfer = steady_ping(&lab, pod.name(), "0.05");
    let client_ns = lab.facts.client_ns.clone();
    let mut report = Vec::new();

    // 1. The server crashes mid-transfer and comes back.
    lab.kill_server();
    assert!(
        wait_until(Duration::from_secs(30), || rt.check(&list, &att).is_err()),
        "CHECK passes with the server dead"
    );
    lab.restart_server().expect("restart the server");
    let took = time_to_traffic(&lab, pod.name(), &sidecar, "the server restart");
    report.push(format!(
        "server kill -9 + restart: {:.1} s",
        took.as_secs_f64()
    ));
    assert_eq!(pod_address(pod.name()).expect("address"), address);

    // 2. The underlay link goes down for 10 s (the fault's length, not a wait).
    let link = lab.facts.client_if.clone();
    must(&client_ns, &["ip", "link", "set", &link, "down"]);
    std::thread::sleep(Duration::from_secs(10));
    must(&client_ns, &["ip", "link", "set", &link, "up"]);
    let took = time_to_traffic(&lab, pod.name(), &sidecar, "the link came back");
    report.push(format!("underlay down 10 s: {:.1} s", took.as_secs_f64()));
    assert_eq!(pod_address(pod.name()).expect("address"), address);

    // 3. Everything to and from the server is dropped for 12 s, beyond its 5 s timeout.
    let server = lab.facts.server_ip.to_string();
    let rules = format!(
        "table inet se_fault_blackhole {{\n\
           chain out {{ type filter hook output priority 0; ip daddr {server} drop; }}\n\
           chain in {{ type filter hook input priority 0; ip saddr {server} drop; }}\n\
         }}\n"
    );
    let rules_file = lab.facts.dir.join("blackhole.nft");
    std::fs::write(&rules_file, rules).unwrap();
    must(&client_ns, &["nft", "-f", rules_file.to_str().unwrap()]);
    std::thread::sleep(Duration::from_secs(12));
    must(
        &client_ns,
        &["nft", "delete", "table", "inet", "se_fault_blackhole"],
    );
    let took = time_to_traffic(&lab, pod.name(), &sidecar, "the blackhole was lifted");
    report.push(format!("blackhole 12 s: {:.1} s", took.as_secs_f64()));
    assert_eq!(pod_address(pod.name()).expect("address"), address);

    println!("fault: traffic back after: {}", report.join("; "));
    assert!(
        wait_until(Duration::from_secs(30), || rt.check(&list, &att).is_ok()),
        "CHECK after the faults"
    );
    rt.del(&list, &att).expect("DEL");
    assert!(dirs.leftover_state().is_empty());
}
