//! Issue 10 for `softether-sidecar connect`: the `--on-change` hook records lease acquired,
//! server restart (lost → acquired) and SIGTERM (released); a hook that never returns delays
//! nothing; `--metrics-addr` serves metrics promtool accepts and /readyz follows the session;
//! `--log-format json` writes one JSON object per line.
//!
//! Needs `cargo build --workspace --bins` first, and root.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cni_lab::ping_lan;
use common::connect::connect;
use common::observe::{http_get, promtool_check, sample, wait_http};
use serde_json::Value;
use softether_lab::{Lab, LabOptions};

const METRICS: &str = "127.0.0.1:9561";

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn wait_events(log: &Path, want: &[&str], timeout: Duration) -> Vec<String> {
    let until = Instant::now() + timeout;
    loop {
        let events: Vec<String> = fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .map(|l| l.split(' ').next().unwrap_or("").to_owned())
            .collect();
        if events == want {
            return events;
        }
        assert!(
            Instant::now() < until && events.len() <= want.len(),
            "hook events {events:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn hook_records_acquired_restart_and_release_and_metrics_follow_the_session() {
    let mut lab = Lab::start(LabOptions::default()).expect("lab");
    let ns = lab.facts.client_ns.clone();
    let log = lab.facts.dir.join("events.log");
    let hook = script(
        &lab.facts.dir,
        "hook",
        &format!(
            "echo \"$SOFTETHER_EVENT $1 $SOFTETHER_INTERFACE $SOFTETHER_ADDRESS/$SOFTETHER_PREFIX gw=$SOFTETHER_GATEWAY\" >> '{}'",
            log.display()
        ),
    );
    let hook = hook.to_str().unwrap();
    let mut client = connect(
        &lab,
        &[
            "--reconnect-delay",
            "500ms",
            "--on-change",
            hook,
            "--on-change-arg",
            "tag",
            "--metrics-addr",
            METRICS,
        ],
    );
    client.wait_log("lease acquired", Duration::from_secs(30));
    wait_events(&log, &["acquired"], Duration::from_secs(15));
    let first = fs::read_to_string(&log).unwrap();
    let address = client.leased_address().to_string();
    assert!(
        first.starts_with(&format!("acquired tag vpn0 {address}/")),
        "{first}"
    );
    assert!(!first.contains("gw= "), "no gateway: {first}");

    let metrics = format!("http://{METRICS}/metrics");
    let (code, body) = wait_http(
        &ns,
        &format!("http://{METRICS}/readyz"),
        Duration::from_secs(10),
        |c| c == 200,
    );
    assert_eq!(code, 200, "{body}");
    let (code, text) = http_get(&ns, &metrics);
    assert_eq!(code, 200);
    let labels = format!(
        r#"ifname="vpn0",server="{}:{}",hub="{}""#,
        lab.facts.server_ip, lab.facts.port, lab.facts.hub
    );
    assert_eq!(
        sample(&text, "softether_attachment_up", &[&labels]),
        Some(1.0),
        "{text}"
    );
    assert!(
        !text.contains("container_id") && !text.contains("softether_cni_"),
        "{text}"
    );
    let (ok, out) = promtool_check(&ns, &metrics);
    assert!(ok, "promtool check metrics: {out}");
    assert_eq!(http_get(&ns, &format!("http://{METRICS}/healthz")).0, 200);

    // Server down, then back: the session is lost (/readyz 503 meanwhile), then a lease is
    // acquired again.
    lab.kill_server();
    let (code, body) = wait_http(
        &ns,
        &format!("http://{METRICS}/readyz"),
        Duration::from_secs(20),
        |c| c == 503,
    );
    assert_eq!(code, 503, "{body}");
    assert!(body.starts_with("session "), "{body}");
    lab.restart_server().expect("restart the server");
    client.wait_log_count("lease acquired", 2, Duration::from_secs(60));
    wait_events(
        &log,
        &["acquired", "lost", "acquired"],
        Duration::from_secs(15),
    );
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, text) = http_get(&ns, &metrics);
        let reconnects = sample(&text, "softether_attachment_reconnects_total", &[&labels]);
        if reconnects >= Some(1.0)
            && sample(&text, "softether_attachment_up", &[&labels]) == Some(1.0)
        {
            break;
        }
        assert!(Instant::now() < until, "{text}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // SIGTERM: released, and the hook ran before the process exited.
    assert!(client.stop().success(), "{}", client.log_text());
    wait_events(
        &log,
        &["acquired", "lost", "acquired", "released"],
        Duration::from_secs(5),
    );
}

#[test]
fn a_hook_that_never_returns_delays_nothing_and_logs_are_json() {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let pids = lab.facts.dir.join("hook.pids");
    let hook = script(
        &lab.facts.dir,
        "hang",
        &format!("echo $$ >> '{}'; exec sleep 100000", pids.display()),
    );
    let mut client = connect(
        &lab,
        &[
            "--on-change",
            hook.to_str().unwrap(),
            "--on-change-timeout",
            "1h",
            "--log-format",
            "json",
        ],
    );
    let took = client.wait_log("lease acquired", Duration::from_secs(30));
    let (ok, out) = ping_lan(&lab, &lab.facts.client_ns, 3);
    assert!(ok, "traffic while the hook hangs: {out}");
    let until = Instant::now() + Duration::from_secs(10);
    while fs::read_to_string(&pids).unwrap_or_default().is_empty() {
        assert!(Instant::now() < until, "the hook never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let hook_pid: i32 = fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let stopping = Instant::now();
    let status = client.stop();
    let stop_took = stopping.elapsed();
    assert!(status.success(), "{}", client.log_text());
    // Bounded by the exit grace for hooks (2 s) plus the teardown, not by the hook.
    assert!(
        stop_took < Duration::from_secs(10),
        "stop took {stop_took:?}"
    );
    let gone = Instant::now() + Duration::from_secs(5);
    while nix::sys::signal::kill(nix::unistd::Pid::from_raw(hook_pid), None).is_ok() {
        let zombie =
            fs::read_to_string(format!("/proc/{hook_pid}/stat")).is_ok_and(|s| s.contains(") Z "));
        if zombie {
            break;
        }
        assert!(
            Instant::now() < gone,
            "the hanging hook {hook_pid} outlived connect"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = client.log_text();
    let mut lines = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}\n{log}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
        lines += 1;
    }
    let acquired = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "lease acquired")
        .expect("a lease acquired record");
    assert!(acquired["address"].is_string(), "{acquired}");
    assert!(lines >= 3, "{log}");
    println!("lease after {took:?}; stop with a hanging hook took {stop_took:?}");
}
