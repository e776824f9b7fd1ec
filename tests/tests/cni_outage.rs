//! A pod attached through the plugin while the VPN server goes away and comes back (issue 4):
//! the pod keeps its interface and address, gets no other route (nothing leaks around the
//! tunnel), CHECK reports the session down, and after the server returns the same attachment
//! comes back with the same address and traffic flows again.
//!
//! Needs `cargo build --workspace --bins` first, and root.

mod common;

use std::time::{Duration, Instant};

use common::cni_lab::{network_list, ping_lan, pod_attachment, CniDirs, Sidecar};
use common::connect::extra_netns;
use softether_lab::{Lab, LabOptions};

/// The pod's IPv4 addresses, routes (all tables) and rules, for before/after comparisons.
fn pod_network(pod: &str) -> String {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("ip")
            .args(["-n", pod])
            .args(args)
            .output()
            .expect("ip");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    [
        run(&["-4", "-o", "addr", "show"]),
        run(&["-4", "route", "show", "table", "all"]),
        run(&["-4", "rule", "show"]),
    ]
    .join("\n")
}

#[test]
fn pod_keeps_its_interface_and_leaks_nothing_while_the_server_is_down() {
    let mut lab = Lab::start(LabOptions {
        session_timeout_secs: Some(5),
        ..Default::default()
    })
    .expect("lab");
    let dirs = CniDirs::create(&lab);
    let sidecar = Sidecar::start(&lab, &dirs.socket, &dirs.state, 0);
    let rt = dirs.runtime(&lab);
    let pod = extra_netns();
    let mut plugin = dirs.plugin_conf(&lab);
    plugin["acceptDefaultGateway"] = serde_json::json!(true);
    plugin["acceptStaticRoutes"] = serde_json::json!(true);
    let list = network_list("vpnnet", "1.0.0", &plugin, false);
    let att = pod_attachment("outage", pod.name());
    let result = rt
        .add(&list, &att)
        .unwrap_or_else(|inv| panic!("ADD: {inv}\n{}", sidecar.log_text()));
    let address = result["ips"][0]["address"].as_str().unwrap().to_owned();
    let (ok, out) = ping_lan(&lab, pod.name(), 5);
    assert!(ok, "lan host unreachable before the outage: {out}");
    let before = pod_network(pod.name());
    assert!(
        before.contains("default via"),
        "default route through the tunnel: {before}"
    );

    lab.kill_server();
    // Until the sidecar has noticed (CHECK fails) and is reconnecting.
    assert!(
        common::wait_until(Duration::from_secs(30), || rt.check(&list, &att).is_err()),
        "CHECK still passes after the server died:\n{}",
        sidecar.log_text()
    );
    let during = pod_network(pod.name());
    assert_eq!(
        during, before,
        "the pod's addresses/routes/rules changed during the outage"
    );
    assert!(
        during
            .lines()
            .all(|l| !l.starts_with("default") || l.contains("dev vpn0")),
        "a default route outside the tunnel appeared: {during}"
    );

    lab.restart_server().expect("restart server");
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if rt.check(&list, &att).is_ok() {
            break;
        }
        assert!(
            Instant::now() < until,
            "session did not come back within 60 s:\n{}",
            sidecar.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let after = pod_network(pod.name());
    assert!(
        after.contains(&address),
        "same address after the outage: {after}"
    );
    assert_eq!(after, before, "the pod's configuration after recovery");
    let (ok, out) = ping_lan(&lab, pod.name(), 10);
    assert!(ok, "lan host unreachable after the outage: {out}");

    rt.del(&list, &att).expect("DEL");
    assert!(
        dirs.leftover_state().is_empty(),
        "{:?}",
        dirs.leftover_state()
    );
}
