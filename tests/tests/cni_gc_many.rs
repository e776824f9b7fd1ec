//! GC on a busy node (issue 14): the runtime lists 10,000 valid attachments (a few real ones,
//! the rest other pods on the node) in both spellings of the key. GC used to fail above ~750
//! ids (the request outgrew the 64 KiB control line) and deduplicate in quadratic time.
//!
//! Needs `cargo build --workspace --bins` first, and root.

mod common;

use std::time::Instant;

use common::cni::Attachment;
use common::cni_lab::{network_list, pod_attachment, pod_leftovers, pod_link, CniDirs, Sidecar};
use common::connect::extra_netns;
use softether_lab::{Lab, LabOptions};

const VALID: usize = 10_000;

#[test]
fn gc_with_ten_thousand_valid_attachments_removes_only_the_stale_one() {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let dirs = CniDirs::create(&lab);
    let sidecar = Sidecar::start(&lab, &dirs.socket, &dirs.state, 0);
    let rt = dirs.runtime(&lab);
    let vpnnet = network_list("vpnnet", "1.1.0", &dirs.plugin_conf(&lab), false);

    let pods: Vec<_> = (0..3).map(|_| extra_netns()).collect();
    let atts: Vec<Attachment> = pods
        .iter()
        .enumerate()
        .map(|(n, p)| pod_attachment(&format!("many{n}"), p.name()))
        .collect();
    for (n, att) in atts.iter().enumerate() {
        rt.add(&vpnnet, att)
            .unwrap_or_else(|inv| panic!("ADD {n}: {inv}\n{}", sidecar.log_text()));
    }
    // many0 and many1 stay valid among 9,998 other pods' ids; many2 is stale.
    let others: Vec<String> = (0..VALID - 2).map(|i| format!("{i:064x}")).collect();
    let mut valid: Vec<(&str, &str)> = others.iter().map(|id| (id.as_str(), "vpn0")).collect();
    valid.insert(VALID / 2, ("many1", "vpn0"));
    valid.insert(0, ("many0", "vpn0"));
    assert_eq!(valid.len(), VALID);

    let started = Instant::now();
    rt.gc(&vpnnet, &valid)
        .unwrap_or_else(|inv| panic!("GC: {inv}\n{}", sidecar.log_text()));
    println!(
        "GC with {VALID} valid attachments (both keys): {:?}",
        started.elapsed()
    );

    let listed: Vec<String> = dirs
        .status_attachments(&lab)
        .iter()
        .map(|a| a["containerID"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(listed, ["many0", "many1"]);
    assert!(
        pod_link(pods[2].name(), "vpn0").is_none(),
        "many2's TAP removed"
    );
    assert!(!dirs.record(&atts[2]).exists());
    assert!(pod_link(pods[0].name(), "vpn0").is_some());
    assert!(pod_link(pods[1].name(), "vpn0").is_some());

    for (n, att) in atts.iter().enumerate() {
        rt.del(&vpnnet, att)
            .unwrap_or_else(|inv| panic!("DEL {n}: {inv}"));
    }
    for (n, p) in pods.iter().enumerate() {
        assert_eq!(pod_leftovers(p.name()), Vec::<String>::new(), "pod {n}");
    }
    assert_eq!(dirs.leftover_state(), Vec::<String>::new());
}
