//! 50 pods attached to one `softether-sidecar run` at once (parallel ADDs through the
//! libcni-like runtime, policy routing + CONNMARK on): every pod gets its own lease and reaches
//! the lan host; then all DEL in parallel and nothing is left: no fds in the sidecar beyond its
//! baseline, no TAPs, rules, routes or nft tables in the pods, no records in the state dir,
//! and the sidecar's anonymous memory back near where it was after one pod came and went.
//! Prints ADD latency (p50/p99) and the sidecar's memory with 50 attachments.
//!
//! Needs `cargo build --workspace --bins` first, and root.

mod common;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use common::cni::{Attachment, Runtime};
use common::cni_lab::{
    in_parallel, network_list, ping_lan, pod_attachment, pod_leftovers, CniDirs, Sidecar,
};
use common::connect::{extra_netns, must};
use serde_json::{json, Value};
use softether_lab::{Lab, LabOptions};
use softether_sidecar::memory::DAEMON_TUNABLES;

const PODS: usize = 50;
/// Pings run this many pods at a time (2 cores, other tests running).
const PING_PARALLEL: usize = 10;
/// What the sidecar's anonymous memory may grow by from the warm-up to after all DELs, kB.
/// Debug builds' deeper stacks and the arenas' top pads account for 1.2–1.7 MiB here; buffers
/// left behind by 50 sessions would be several times more.
const ANON_SLACK_KB: u64 = 3 * 1024;

fn attachment(n: usize, pod: &str) -> Attachment {
    Attachment {
        args: vec![("K8S_POD_NAME".into(), format!("pod-{n}"))],
        ..pod_attachment(&format!("scale{n:02}"), pod)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Polls the sidecar's fd count until it is at most `baseline` (sessions close asynchronously).
fn settled_fd_count(sidecar: &Sidecar, baseline: usize) -> usize {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let n = sidecar.fd_count();
        if n <= baseline || Instant::now() > until {
            return n;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn fifty_pods_on_one_sidecar() {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let dirs = CniDirs::create(&lab);
    let sidecar = Sidecar::start(&lab, &dirs.socket, &dirs.state, 0);
    let rt: Runtime = dirs.runtime(&lab);
    let f = &lab.facts;
    let mut plugin = dirs.plugin_conf(&lab);
    plugin["timeout"] = json!(115);
    plugin["policyRouteTable"] = json!(100);
    plugin["connmark"] = json!(true);
    let list = network_list("vpnnet", "1.0.0", &plugin, false);

    // One attach/detach first, so lazily opened fds (runtime internals) are in the baseline.
    let warm_pod = extra_netns();
    let warm = attachment(99, warm_pod.name());
    rt.add(&list, &warm)
        .unwrap_or_else(|inv| panic!("warm-up ADD: {inv}\n{}", sidecar.log_text()));
    rt.del(&list, &warm)
        .unwrap_or_else(|inv| panic!("warm-up DEL: {inv}"));
    assert!(common::wait_until(Duration::from_secs(10), || dirs
        .leftover_state()
        .is_empty()));
    let fds_before = sidecar.fd_count();
    let rss_before = sidecar.status_kb("VmRSS");
    let anon_before = sidecar.status_kb("RssAnon");

    let pods: Vec<_> = (0..PODS).map(|_| extra_netns()).collect();
    let atts: Vec<Attachment> = pods
        .iter()
        .enumerate()
        .map(|(n, p)| attachment(n, p.name()))
        .collect();

    // All ADDs at once.
    let barrier = Barrier::new(PODS);
    let started = Instant::now();
    let outcomes: Vec<(Result<Value, String>, Duration)> = in_parallel(&atts, PODS, |att| {
        barrier.wait();
        let t = Instant::now();
        let r = rt.add(&list, att).map_err(|inv| inv.to_string());
        (r, t.elapsed())
    });
    let add_wall = started.elapsed();
    let failures: Vec<&String> = outcomes
        .iter()
        .filter_map(|(r, _)| r.as_ref().err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {PODS} ADDs failed; first: {}\n{}",
        failures.len(),
        failures[0],
        sidecar.log_text()
    );
    let mut addresses = HashSet::new();
    for (r, _) in &outcomes {
        let result = r.as_ref().unwrap();
        let ip: Ipv4Addr = result["ips"][0]["address"]
            .as_str()
            .and_then(|a| a.split('/').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no address: {result}"));
        assert!((f.dhcp_start..=f.dhcp_end).contains(&ip), "{result}");
        assert!(addresses.insert(ip), "address {ip} leased twice");
    }
    let mut latencies: Vec<Duration> = outcomes.iter().map(|(_, d)| *d).collect();
    latencies.sort();

    let status = dirs.status_attachments(&lab);
    assert_eq!(status.len(), PODS, "{status:?}");
    assert!(status.iter().all(|a| a["state"] == "up"), "{status:?}");
    // One SoftEther session per pod on the server (alice has no MultiLogins limit in the lab);
    // the warm-up's session may still linger: the server keeps a session for its `timeout`
    // (20 s) after the last TCP connection closed (SoftEther has no in-band logout).
    let sessions = lab.user_sessions().expect("SessionList");
    assert!(
        (PODS..=PODS + 1).contains(&sessions.len()),
        "{} sessions: {sessions:?}",
        sessions.len()
    );
    let fds_attached = sidecar.fd_count();
    let (rss, hwm) = (sidecar.status_kb("VmRSS"), sidecar.status_kb("VmHWM"));

    // Policy routing and CONNMARK are in place in every pod.
    for pod in &pods {
        let rules = must(pod.name(), &["ip", "rule"]);
        assert!(rules.contains("lookup 100"), "{}: {rules}", pod.name());
        let nft = must(pod.name(), &["nft", "list", "tables"]);
        assert!(nft.contains("softether_"), "{}: {nft}", pod.name());
    }

    let ping_started = Instant::now();
    let pings = in_parallel(&pods, PING_PARALLEL, |pod| {
        (pod.name().to_owned(), ping_lan(&lab, pod.name(), 5))
    });
    let ping_wall = ping_started.elapsed();
    let unreachable: Vec<String> = pings
        .iter()
        .filter(|(_, (ok, _))| !ok)
        .map(|(name, (_, out))| format!("{name}: {out}"))
        .collect();
    assert!(
        unreachable.is_empty(),
        "{} pods cannot reach the lan host:\n{}",
        unreachable.len(),
        unreachable.join("\n")
    );

    // All DELs at once.
    let barrier = Barrier::new(PODS);
    let del_started = Instant::now();
    let dels = in_parallel(&atts, PODS, |att| {
        barrier.wait();
        rt.del(&list, att).map_err(|inv| inv.to_string())
    });
    let del_wall = del_started.elapsed();
    let failed: Vec<&String> = dels.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "DEL failed: {failed:?}");

    let fds_after = settled_fd_count(&sidecar, fds_before);
    let leftovers: Vec<String> = pods
        .iter()
        .flat_map(|p| {
            pod_leftovers(p.name())
                .into_iter()
                .map(move |l| format!("{}: {l}", p.name()))
        })
        .collect();
    let status_after = dirs.status_attachments(&lab);
    // Every session ends on the server within its linger time: no session task kept running.
    let until = Instant::now() + Duration::from_secs(60);
    let mut sessions_after = lab.user_sessions().expect("SessionList");
    while !sessions_after.is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(500));
        sessions_after = lab.user_sessions().expect("SessionList");
    }
    let state_after = dirs.leftover_state();
    let anon_after = sidecar.status_kb("RssAnon");

    println!(
        "scale: {PODS} parallel ADDs in {:.1} s; ADD latency p50 {} ms, p99 {} ms, max {} ms, min {} ms",
        add_wall.as_secs_f64(),
        percentile(&latencies, 50.0).as_millis(),
        percentile(&latencies, 99.0).as_millis(),
        latencies.last().unwrap().as_millis(),
        latencies[0].as_millis()
    );
    println!(
        "scale: sidecar with {PODS} attachments: VmRSS {rss} kB (before: {rss_before} kB), VmHWM {hwm} kB, fds {fds_attached} (baseline {fds_before}, after DEL {fds_after})"
    );
    println!(
        "scale: pings from {PODS} pods in {:.1} s; {PODS} parallel DELs in {:.1} s",
        ping_wall.as_secs_f64(),
        del_wall.as_secs_f64()
    );
    println!("scale: sidecar anonymous memory (RssAnon) after the warm-up {anon_before} kB, after all DELs {anon_after} kB");

    assert_eq!(fds_after, fds_before, "sidecar fds leaked");
    // The daemon gives its memory back: freed buffers are trimmed, and no per-thread malloc
    // cache pins the pages around them (`memory::DAEMON_TUNABLES`; with glibc's cache the
    // runtime workers kept MiBs of free pages resident after every pod was gone). The daemon
    // restarts itself with it unless its environment already sets tunables.
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_else(|_| DAEMON_TUNABLES.into());
    let environ = std::fs::read(format!("/proc/{}/environ", sidecar.pid())).expect("environ");
    assert!(
        environ
            .split(|b| *b == 0)
            .any(|v| v == format!("GLIBC_TUNABLES={tunables}").as_bytes()),
        "the daemon does not run with GLIBC_TUNABLES={tunables}"
    );
    assert!(
        anon_after <= anon_before + ANON_SLACK_KB,
        "sidecar kept {anon_after} kB of anonymous memory after all DELs ({anon_before} kB after the warm-up)"
    );
    assert_eq!(leftovers, Vec::<String>::new(), "left in the pods");
    assert_eq!(
        status_after,
        Vec::<Value>::new(),
        "sidecar still lists attachments"
    );
    assert_eq!(state_after, Vec::<String>::new(), "state dir not empty");
    assert_eq!(
        sessions_after,
        Vec::<String>::new(),
        "server-side sessions left"
    );
}
