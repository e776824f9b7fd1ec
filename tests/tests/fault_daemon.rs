//! Fault matrix, node side (issue 14), against the real server: what happens to pods when the
//! daemon or the node misbehaves.
//!
//! - the daemon SIGKILLed with 20 pods passing traffic: restarted, all re-adopt the same
//!   addresses and pass traffic again;
//! - pod namespaces deleted without DEL (a crashed runtime): the daemon notices within
//!   seconds, closes those sessions on the server, shows the attachments `gone`, and a later
//!   DEL or GC removes the records; the other pod is untouched;
//! - the state directory on a full filesystem: ADD fails with a clear error, the pod is left
//!   clean and the existing record is intact;
//! - 200 ADD/DEL cycles in 4 parallel lanes while two pods pass traffic: no leaked fds, TAPs,
//!   rules, nft tables or records; RSS within 20 % of its value after warm-up.
//!
//! DEL with the daemon down is `cni_del_offline`; the server side is `fault_server`.
//!
//! Needs `cargo build --workspace --bins` first, and root.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::cni::{Attachment, NetworkList, Runtime};
use common::cni_lab::{
    network_list, ping_lan, pod_address, pod_attachment, pod_leftovers, steady_ping, CniDirs,
    Sidecar,
};
use common::connect::extra_netns;
use common::wait_until;
use serde_json::Value;
use softether_lab::netns::{KillOnDrop, Netns};
use softether_lab::{Lab, LabOptions};

/// A lab whose server drops a session 5 s after its last connection closed, so closed
/// sessions leave `SessionList` quickly.
fn lab() -> Lab {
    Lab::start(LabOptions {
        session_timeout_secs: Some(5),
        ..Default::default()
    })
    .expect("lab")
}

/// The attachments `status` lists, by container id → state.
fn states(dirs: &CniDirs, lab: &Lab) -> Vec<(String, String)> {
    dirs.status_attachments(lab)
        .iter()
        .map(|a| {
            (
                a["containerID"].as_str().unwrap_or_default().to_owned(),
                a["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn add_ok(rt: &Runtime, list: &NetworkList, att: &Attachment, sidecar: &Sidecar) -> Value {
    rt.add(list, att)
        .unwrap_or_else(|inv| panic!("ADD {}: {inv}\n{}", att.container_id, sidecar.log_text()))
}

#[test]
fn daemon_kill9_with_20_pods_passing_traffic_readopts_the_same_addresses() {
    const PODS: usize = 20;
    let lab = lab();
    let dirs = CniDirs::create(&lab);
    let mut sidecar = Sidecar::start(&lab, &dirs.socket, &dirs.state, 0);
    let rt = dirs.runtime(&lab);
    let list = network_list("vpnnet", "1.0.0", &dirs.plugin_conf(&lab), false);
    let pods: Vec<Netns> = (0..PODS).map(|_| extra_netns()).collect();
    let atts: Vec<Attachment> = pods
        .iter()
        .enumerate()
        .map(|(i, p)| pod_attachment(&format!("kill{i:02}"), p.name()))
        .collect();
    std::thread::scope(|s| {
        for chunk in atts.chunks(10) {
            let handles: Vec<_> = chunk
                .iter()
                .map(|att| s.spawn(|| add_ok(&rt, &list, att, &sidecar)))
                .collect();
            handles.into_iter().for_each(|h| {
                h.join().unwrap();
            });
        }
    });
    let before: Vec<String> = pods
        .iter()
        .map(|p| pod_address(p.name()).expect("address after ADD"))
        .collect();
    let _pings: Vec<KillOnDrop> = pods
        .iter()
        .map(|p| steady_ping(&lab, p.name(), "0.5"))
        .collect();

    sidecar.kill9();
    let killed = Instant::now();
    let sidecar = Sidecar::start(&lab, &dirs.socket, &dirs.state, 1);
    let all_up = wait_until(Duration::from_secs(90), || {
        let s = states(&dirs, &lab);
        s.len() == PODS && s.iter().all(|(_, st)| st == "up")
    });
    assert!(
        all_up,
        "not all re-adopted: {:?}\n{}",
        states(&dirs, &lab),
        sidecar.log_text()
    );
    let recovered = killed.elapsed();
    let after: Vec<String> = pods
        .iter()
        .map(|p| pod_address(p.name()).unwrap_or_default())
        .collect();
    assert_eq!(after, before, "addresses changed across the daemon restart");
    for pod in &pods {
        let (ok, out) = ping_lan(&lab, pod.name(), 10);
        assert!(ok, "{} cannot reach the lan host: {out}", pod.name());
    }
    println!(
        "fault: daemon kill -9 with {PODS} pods: all up again {:.1} s after the kill",
        recovered.as_secs_f64()
    );
    for att in &atts {
        rt.del(&list, att).expect("DEL");
    }
    assert!(wait_until(Duration::from_secs(30), || dirs
        .leftover_state()
        .is_empty()));
}

#[test]
fn pod_netns_deleted_without_del_closes_its_session() {
    let lab = lab();
    let dirs = CniDirs::create(&lab);
    let sidecar = Sidecar::start(&lab, &dirs.socket, &dirs.state, 0);
    let rt = dirs.runtime(&lab);
    // 1.1.0: GC exists from this version on.
    let list = network_list("vpnnet", "1.1.0", &dirs.plugin_conf(&lab), false);
    let doomed = extra_netns();
    let orphan = extra_netns();
    let kept = extra_netns();
    let doomed_att = pod_attachment("doomed", doomed.name());
    let orphan_att = pod_attachment("orphan", orphan.name());
    let kept_att = pod_attachment("kept", kept.name());
    for att in [&doomed_att, &orphan_att, &kept_att] {
        add_ok(&rt, &list, att, &sidecar);
    }
    assert!(wait_until(Duration::from_secs(30), || lab
        .user_sessions()
        .is_ok_and(|s| s.len() == 3)));

    // The runtime crashed: the namespaces go, no DEL comes.
    drop(doomed);
    drop(orphan);
    let deleted = Instant::now();
    let noticed = wait_until(Duration::from_secs(30), || {
        let s = states(&dirs, &lab);
        s.contains(&("doomed".to_owned(), "gone".to_owned()))
            && s.contains(&("orphan".to_owned(), "gone".to_owned()))
    });
    let took = deleted.elapsed();
    assert!(
        noticed,
        "status never showed the attachment gone: {:?}\n{}",
        states(&dirs, &lab),
        sidecar.log_text()
    );
    println!(
        "fault: pod netns deleted without DEL noticed after {:.1} s",
        took.as_secs_f64()
    );
    assert!(
        states(&dirs, &lab).contains(&("kept".to_owned(), "up".to_owned())),
        "{:?}",
        states(&dirs, &lab)
    );
    // The server drops the closed sessions (after its 5 s timeout): one session is left.
    let one_left = wait_until(Duration::from_secs(30), || {
        lab.user_sessions().is_ok_and(|s| s.len() == 1)
    });
    assert!(one_left, "{:?}", lab.user_sessions());
    assert!(
        dirs.record(&doomed_att).exists() && dirs.record(&orphan_att).exists(),
        "the records wait for DEL or GC"
    );

    // The runtime comes back and DELs one (its namespace path no longer exists); GC, which
    // only knows the live pod, removes the other.
    rt.del(&list, &doomed_att).expect("DEL of the gone pod");
    assert!(!dirs.record(&doomed_att).exists());
    rt.gc(&list, &[("kept", "vpn0")]).expect("GC");
    assert!(!dirs.record(&orphan_att).exists());
    assert_eq!(
        states(&dirs, &lab),
        vec![("kept".to_owned(), "up".to_owned())]
    );
    let (ok, out) = ping_lan(&lab, kept.name(), 5);
    assert!(ok, "the other pod lost its VPN: {out}");
    rt.del(&list, &kept_att).expect("DEL");
}

/// A small tmpfs mounted at `dir`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .expect("mount");
        assert!(st.success(), "mount tmpfs on {}", dir.display());
        Tmpfs(dir.to_owned())
    }

    /// Writes a file until the filesystem is full.
    fn fill(&self) {
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=4k", "status=none"])
            .arg(format!("of={}", self.0.join("filler").display()))
            .status();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn state_dir_on_a_full_filesystem_fails_add_clearly_and_corrupts_nothing() {
    let lab = lab();
    let dirs = CniDirs::create(&lab);
    // Mounted before the daemon starts (its namespace gets a copy of the mount table).
    let tmpfs = Tmpfs::mount(&dirs.state, "256k");
    let sidecar = Sidecar::start(&lab, &dirs.socket, &dirs.state, 0);
    let rt = dirs.runtime(&lab);
    let list = network_list("vpnnet", "1.0.0", &dirs.plugin_conf(&lab), false);
    let first_pod = extra_netns();
    let first = pod_attachment("first", first_pod.name());
    add_ok(&rt, &list, &first, &sidecar);
    let record_before = std::fs::read(dirs.record(&first)).expect("record");

    tmpfs.fill();
    let pod = extra_netns();
    let att = pod_attachment("second", pod.name());
    let inv = rt
        .add(&list, &att)
        .expect_err("ADD must fail with the state dir full");
    let text = inv.to_string();
    assert!(
        text.contains("No space left on device"),
        "the error names the cause: {text}"
    );
    assert!(inv.msg().contains("persist"), "{text}");
    assert_eq!(pod_leftovers(pod.name()), Vec::<String>::new());
    assert!(!dirs.record(&att).exists());
    let stray: Vec<String> = std::fs::read_dir(dirs.state.join("attachments"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(stray.is_empty(), "temporary files left: {stray:?}");
    assert_eq!(
        std::fs::read(dirs.record(&first)).unwrap(),
        record_before,
        "the existing record changed"
    );
    let (ok, out) = ping_lan(&lab, first_pod.name(), 5);
    assert!(ok, "the existing pod lost its VPN: {out}");

    // Space again: the next ADD works, and the earlier pod is still DEL-able.
    std::fs::remove_file(dirs.state.join("filler")).unwrap();
    add_ok(&rt, &list, &att, &sidecar);
    rt.del(&list, &att).expect("DEL");
    rt.del(&list, &first).expect("DEL");
    assert!(
        dirs.leftover_state().is_empty(),
        "{:?}",
        dirs.leftover_state()
    );
    drop(sidecar);
}

#[test]
fn churn_200_add_del_cycles_in_4_lanes_leaks_nothing() {
    const LANES: usize = 4;
    const CYCLES: usize = 50;
    let lab = lab();
    let dirs = CniDirs::create(&lab);
    let sidecar = Sidecar::start(&lab, &dirs.socket, &dirs.state, 0);
    let rt = dirs.runtime(&lab);
    let mut plugin = dirs.plugin_conf(&lab);
    plugin["policyRouteTable"] = serde_json::json!(100);
    plugin["connmark"] = serde_json::json!(true);
    let list = network_list("vpnnet", "1.0.0", &plugin, false);

    // Two pods passing traffic all along.
    let busy: Vec<Netns> = (0..2).map(|_| extra_netns()).collect();
    let busy_atts: Vec<Attachment> = busy
        .iter()
        .enumerate()
        .map(|(i, p)| pod_attachment(&format!("busy{i}"), p.name()))
        .collect();
    for att in &busy_atts {
        add_ok(&rt, &list, att, &sidecar);
    }
    let pings: Vec<KillOnDrop> = busy
        .iter()
        .map(|p| steady_ping(&lab, p.name(), "0.5"))
        .collect();

    // Each lane reuses one container id (so one MAC, one SecureNAT lease: it ignores
    // DHCPRELEASE) and one pod namespace.
    let lanes: Vec<Netns> = (0..LANES).map(|_| extra_netns()).collect();
    let lane_atts: Vec<Attachment> = lanes
        .iter()
        .enumerate()
        .map(|(i, p)| pod_attachment(&format!("lane{i}"), p.name()))
        .collect();
    let cycle = |att: &Attachment| -> Result<(), String> {
        rt.add(&list, att).map_err(|inv| format!("ADD: {inv}"))?;
        rt.del(&list, att).map_err(|inv| format!("DEL: {inv}"))
    };
    // Warm-up: lazily opened fds and allocator high-water marks settle.
    std::thread::scope(|s| {
        for att in &lane_atts {
            s.spawn(|| {
                for _ in 0..3 {
                    cycle(att).unwrap_or_else(|e| panic!("warm-up: {e}"));
                }
            });
        }
    });
    assert!(wait_until(Duration::from_secs(30), || dirs
        .status_attachments(&lab)
        .len()
        == 2));
    let fds_base = sidecar.fd_count();
    let rss_base = sidecar.status_kb("VmRSS");

    let started = Instant::now();
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = lane_atts
            .iter()
            .map(|att| {
                s.spawn(|| {
                    (0..CYCLES)
                        .filter_map(|n| {
                            cycle(att)
                                .err()
                                .map(|e| format!("{} #{n}: {e}", att.container_id))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let churn = started.elapsed();
    assert!(
        failures.is_empty(),
        "{} failed cycles; first: {}",
        failures.len(),
        failures[0]
    );

    let fds_settled = wait_until(Duration::from_secs(30), || sidecar.fd_count() <= fds_base);
    let fds_after = sidecar.fd_count();
    let rss_after = sidecar.status_kb("VmRSS");
    println!(
        "fault: {} ADD/DEL cycles in {LANES} lanes in {:.1} s; fds {fds_base} -> {fds_after}; VmRSS {rss_base} kB -> {rss_after} kB",
        LANES * CYCLES,
        churn.as_secs_f64()
    );
    assert!(fds_settled, "fds leaked: {fds_base} -> {fds_after}");
    for pod in &lanes {
        assert_eq!(
            pod_leftovers(pod.name()),
            Vec::<String>::new(),
            "{}",
            pod.name()
        );
    }
    let records: Vec<String> = dirs.leftover_state();
    assert_eq!(records.len(), 2, "only the busy pods' records: {records:?}");
    assert!(
        rss_after * 100 <= rss_base * 120,
        "RSS grew more than 20 %: {rss_base} kB -> {rss_after} kB"
    );
    for pod in &busy {
        let (ok, out) = ping_lan(&lab, pod.name(), 5);
        assert!(ok, "{} lost its VPN during the churn: {out}", pod.name());
    }
    drop(pings);
    for att in &busy_atts {
        rt.del(&list, att).expect("DEL");
    }
}
