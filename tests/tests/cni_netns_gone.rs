//! A pod network namespace that disappears without a DEL (a crashed runtime, issue 14): the
//! daemon notices within 10 s, closes that session (no server session held for a dead pod),
//! shows the attachment as "gone" in `status`, and a later DEL removes the record as usual.
//!
//! Needs `cargo build --workspace --bins` first, and root.

mod common;

use std::time::{Duration, Instant};

use common::cni_lab::{network_list, ping_lan, pod_attachment, CniDirs, Sidecar};
use common::connect::extra_netns;
use softether_lab::{Lab, LabOptions};

/// The bound on noticing a vanished namespace.
const NOTICE_BOUND: Duration = Duration::from_secs(10);

#[test]
fn a_vanished_pod_netns_closes_its_session_and_del_still_cleans_up() {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let dirs = CniDirs::create(&lab);
    let sidecar = Sidecar::start(&lab, &dirs.socket, &dirs.state, 0);
    let rt = dirs.runtime(&lab);
    let list = network_list("vpnnet", "1.0.0", &dirs.plugin_conf(&lab), false);
    let pod = extra_netns();
    let att = pod_attachment("gone", pod.name());
    rt.add(&list, &att)
        .unwrap_or_else(|inv| panic!("ADD: {inv}\n{}", sidecar.log_text()));
    let (ok, out) = ping_lan(&lab, pod.name(), 5);
    assert!(ok, "no traffic before: {out}");
    assert_eq!(lab.user_sessions().expect("SessionList").len(), 1);

    // The runtime "crashes": the namespace is deleted, no DEL comes.
    drop(pod);
    let deleted = Instant::now();
    let state = || {
        dirs.status_attachments(&lab)
            .first()
            .map(|a| a["state"].as_str().unwrap_or_default().to_owned())
    };
    let until = deleted + NOTICE_BOUND + Duration::from_secs(5);
    while state().as_deref() != Some("gone") && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(250));
    }
    let noticed = deleted.elapsed();
    println!("netns gone: noticed after {} ms", noticed.as_millis());
    assert_eq!(state().as_deref(), Some("gone"), "{}", sidecar.log_text());
    assert!(noticed <= NOTICE_BOUND, "noticed only after {noticed:?}");

    // The session is closed: the server drops it (at the latest after its own timeout).
    let until = Instant::now() + Duration::from_secs(60);
    let mut sessions = lab.user_sessions().expect("SessionList");
    while !sessions.is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(500));
        sessions = lab.user_sessions().expect("SessionList");
    }
    assert_eq!(
        sessions,
        Vec::<String>::new(),
        "server session kept for a dead pod"
    );

    rt.del(&list, &att)
        .unwrap_or_else(|inv| panic!("DEL: {inv}\n{}", sidecar.log_text()));
    assert!(dirs.status_attachments(&lab).is_empty());
    assert_eq!(dirs.leftover_state(), Vec::<String>::new(), "record left");
}
