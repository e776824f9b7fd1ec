//! DEL while the sidecar is down (issue requirement): the plugin removes the TAP, the policy
//! rules and the CONNMARK nft table in the pod itself, exits 0, and leaves a tombstone; the
//! restarted sidecar processes it, forgets the attachment, and the server's session ends.
//!
//! Needs `cargo build --workspace --bins` first, and root.

mod common;

use std::time::Duration;

use serde_json::{json, Value};

use common::cni_lab::{network_list, pod_attachment, pod_leftovers, pod_link, CniDirs, Sidecar};
use common::connect::{extra_netns, must};
use common::wait_until;
use softether_lab::{Lab, LabOptions};

/// `ip -j rule` entries of the pod that look up table `table`.
fn rules_with_table(pod: &str, table: u32) -> Vec<Value> {
    let out = must(pod, &["ip", "-j", "rule"]);
    let rules: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    rules
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["table"] == json!(table.to_string()) || r["table"] == json!(table))
        .cloned()
        .collect()
}

/// Names of the pod's nft tables starting with `softether_` (`nft -j list ruleset`).
fn softether_tables(pod: &str) -> Vec<String> {
    let out = must(pod, &["nft", "-j", "list", "ruleset"]);
    let ruleset: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    ruleset["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["table"]["name"].as_str())
        .filter(|n| n.starts_with("softether_"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn del_with_the_sidecar_killed_removes_tap_rules_and_nft_table_in_the_pod() {
    let lab = Lab::start(LabOptions {
        session_timeout_secs: Some(5),
        ..Default::default()
    })
    .expect("lab");
    let dirs = CniDirs::create(&lab);
    let mut sidecar = Sidecar::start(&lab, &dirs.socket, &dirs.state, 0);
    let rt = dirs.runtime(&lab);
    let pod = extra_netns();
    let mut plugin = dirs.plugin_conf(&lab);
    plugin["policyRouteTable"] = json!(100);
    plugin["connmark"] = json!(true);
    plugin["acceptDefaultGateway"] = json!(true);
    let list = network_list("vpnnet", "1.0.0", &plugin, false);
    let att = pod_attachment("deloffline", pod.name());
    let result = rt
        .add(&list, &att)
        .unwrap_or_else(|inv| panic!("ADD: {inv}\n{}", sidecar.log_text()));
    let address = result["ips"][0]["address"].as_str().expect("address");
    let ip = address.split('/').next().expect("ip");

    let rules = rules_with_table(pod.name(), 100);
    assert!(
        rules
            .iter()
            .any(|r| r["src"] == ip && r["priority"] == 1000),
        "from-rule installed: {rules:?}"
    );
    assert!(
        rules
            .iter()
            .any(|r| r.get("fwmark").is_some() && r["priority"] == 1001),
        "fwmark rule installed: {rules:?}"
    );
    assert_eq!(
        softether_tables(pod.name()).len(),
        1,
        "one CONNMARK table installed"
    );
    assert!(
        !lab.user_sessions().expect("SessionList").is_empty(),
        "a session on the server"
    );

    sidecar.kill9();
    // DEL exactly as the runtime sends it (prevResult from its cache), keeping stderr.
    let env = rt.env_for("DEL", Some(&att));
    let stdin = rt.plugin_stdin(&list, 0, Some(&att), rt.cached_result(&list, &att).as_ref());
    let inv = rt.exec_raw("softether", &env, stdin.to_string().as_bytes());
    assert_eq!((inv.code, &inv.json), (0, &Value::Null), "DEL: {inv}");
    assert!(
        !inv.stderr.contains("cannot"),
        "a cleanup step failed: {}",
        inv.stderr
    );
    assert!(pod_link(pod.name(), "vpn0").is_none(), "the TAP is gone");
    assert_eq!(rules_with_table(pod.name(), 100), Vec::<Value>::new());
    assert_eq!(softether_tables(pod.name()), Vec::<String>::new());
    assert_eq!(pod_leftovers(pod.name()), Vec::<String>::new());
    let tombstone = dirs.state.join("tombstones/deloffline:vpn0.json");
    assert!(tombstone.exists(), "tombstone written: {inv}");

    let sidecar = Sidecar::start(&lab, &dirs.socket, &dirs.state, 1);
    assert!(
        wait_until(Duration::from_secs(30), || dirs.leftover_state().is_empty()),
        "tombstone and record left: {:?}\n{}",
        dirs.leftover_state(),
        sidecar.log_text()
    );
    assert_eq!(dirs.status_attachments(&lab), Vec::<Value>::new());
    assert!(
        wait_until(Duration::from_secs(60), || lab
            .user_sessions()
            .expect("SessionList")
            .is_empty()),
        "the server kept the session: {:?}",
        lab.user_sessions()
    );
    assert_eq!(pod_leftovers(pod.name()), Vec::<String>::new());
    // The runtime may repeat DEL: still fine.
    let inv = rt.exec_raw("softether", &env, stdin.to_string().as_bytes());
    assert_eq!(inv.code, 0, "repeated DEL: {inv}");
}
