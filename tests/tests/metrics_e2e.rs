//! Issue 10 against real components: `softether-sidecar run --metrics-addr` in the lab's node
//! namespace, pods attached through the CNI plugin, Debian's Prometheus scraping the sidecar
//! and answering queries, promtool linting the exposition, the `onChange` hook recording
//! lease events, `/readyz` during re-adoption after a restart, `/healthz` without the control
//! socket.
//!
//! Needs `cargo build --workspace --bins` first, and root.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::cni_lab::{network_list, ping_lan, pod_attachment, CniDirs, Sidecar};
use common::connect::{exec, extra_netns};
use common::observe::{http_get, promtool_check, sample, series_value, wait_http, Prometheus};
use common::workspace_bin;
use serde_json::json;
use softether_lab::{Lab, LabOptions};

const METRICS: &str = "127.0.0.1:9560";
const PROMETHEUS: &str = "127.0.0.1:9590";
/// Re-adoption is held this long after a restart (the test-only knob), so /readyz = 503 is
/// observable.
const READOPT_DELAY_MS: &str = "6000";

fn url(path: &str) -> String {
    format!("http://{METRICS}{path}")
}

/// A hook appending `EVENT CONTAINER ADDRESS` lines to `log`.
fn write_hook(dir: &Path, log: &Path) -> String {
    let hook = dir.join("on-change");
    fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho \"$SOFTETHER_EVENT $SOFTETHER_CONTAINER_ID $SOFTETHER_ADDRESS/$SOFTETHER_PREFIX $SOFTETHER_INTERFACE\" >> '{}'\n",
            log.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();
    hook.display().to_string()
}

fn wait_lines(path: &Path, want: impl Fn(&[&str]) -> bool, timeout: Duration) -> String {
    let until = Instant::now() + timeout;
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        if want(&text.lines().collect::<Vec<_>>()) {
            return text;
        }
        assert!(Instant::now() < until, "hook log never matched:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn prometheus_scrapes_attachments_hooks_record_events_and_probes_follow_the_daemon() {
    let mut lab = Lab::start(LabOptions::default()).expect("lab");
    let node = lab.facts.client_ns.clone();
    let dirs = CniDirs::create(&lab);
    let hook_log = lab.facts.dir.join("hook-events.log");
    let hooks_dir = lab.facts.dir.join("hooks");
    fs::create_dir_all(&hooks_dir).unwrap();
    let hook = write_hook(&hooks_dir, &hook_log);
    let hooks_flag = [
        "--metrics-addr",
        METRICS,
        "--hooks-dir",
        hooks_dir.to_str().unwrap(),
    ];
    let mut sidecar = Sidecar::spawn(&lab, &dirs.socket, &dirs.state, 0, &hooks_flag, &[], None);
    sidecar.wait_listening(&dirs.socket);
    let rt = dirs.runtime(&lab);
    let mut plugin = dirs.plugin_conf(&lab);
    plugin["onChange"] = json!([hook]);
    let list = network_list("vpnnet", "1.0.0", &plugin, false);
    // A hook outside --hooks-dir is refused (it would run as the sidecar's root).
    let mut foreign = plugin.clone();
    foreign["onChange"] = json!(["/bin/true"]);
    let refused_pod = extra_netns();
    let refused = rt
        .add(
            &network_list("vpnnet", "1.0.0", &foreign, false),
            &pod_attachment("metrics-refused", refused_pod.name()),
        )
        .expect_err("onChange outside --hooks-dir");
    assert_eq!(refused.error_code(), Some(7), "{refused}");
    assert!(refused.msg().contains("onChange"), "{refused}");
    let prometheus = Prometheus::start(&lab, &node, METRICS, PROMETHEUS);

    let pods = [extra_netns(), extra_netns()];
    let atts = [
        pod_attachment("metrics-a", pods[0].name()),
        pod_attachment("metrics-b", pods[1].name()),
    ];
    for att in &atts {
        rt.add(&list, att)
            .unwrap_or_else(|inv| panic!("ADD: {inv}\n{}", sidecar.log_text()));
    }

    // Prometheus sees both pods up, with their labels and nothing secret.
    let up = prometheus.wait_query(
        "softether_attachment_up == 1",
        Duration::from_secs(30),
        |r| r.len() == 2,
    );
    let mut ids: Vec<&str> = up
        .iter()
        .map(|s| s["metric"]["container_id"].as_str().unwrap_or(""))
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["metrics-a", "metrics-b"], "{up:?}");
    let labels = &up[0]["metric"];
    assert_eq!(labels["ifname"], "vpn0");
    assert_eq!(labels["hub"], lab.facts.hub.as_str());
    assert_eq!(
        labels["server"],
        format!("{}:{}", lab.facts.server_ip, lab.facts.port).as_str()
    );
    let (_, text) = http_get(&node, &url("/metrics"));
    assert!(
        !text.contains(&lab.facts.alice.password) && !text.contains("alice"),
        "{text}"
    );
    prometheus.wait_query(
        r#"softether_cni_requests_total{op="attach",result="ok"}"#,
        Duration::from_secs(15),
        |r| r.first().is_some_and(|s| series_value(s) >= 2.0),
    );
    prometheus.wait_query(
        "softether_cni_add_duration_seconds_count",
        Duration::from_secs(15),
        |r| r.first().is_some_and(|s| series_value(s) >= 2.0),
    );
    prometheus.wait_query("softether_attachments", Duration::from_secs(15), |r| {
        r.first().is_some_and(|s| series_value(s) == 2.0)
    });
    prometheus.wait_query("softether_build_info", Duration::from_secs(15), |r| {
        r.len() == 1
    });

    // Byte counters grow with traffic.
    let sent = r#"softether_attachment_sent_bytes_total{container_id="metrics-a"}"#;
    let before =
        series_value(&prometheus.wait_query(sent, Duration::from_secs(15), |r| r.len() == 1)[0]);
    let received = series_value(
        &prometheus.wait_query(
            r#"softether_attachment_received_bytes_total{container_id="metrics-a"}"#,
            Duration::from_secs(15),
            |r| r.len() == 1,
        )[0],
    );
    let (ok, out) = ping_lan(&lab, pods[0].name(), 3);
    assert!(ok, "{out}");
    for _ in 0..5 {
        ping_lan(&lab, pods[0].name(), 1);
    }
    prometheus.wait_query(sent, Duration::from_secs(15), |r| {
        r.first().is_some_and(|s| series_value(s) > before)
    });
    prometheus.wait_query(
        r#"softether_attachment_received_bytes_total{container_id="metrics-a"}"#,
        Duration::from_secs(15),
        |r| r.first().is_some_and(|s| series_value(s) > received),
    );

    // The exposition passes promtool; the lease hook saw both acquisitions.
    let (ok, out) = promtool_check(&node, &url("/metrics"));
    assert!(ok, "promtool check metrics: {out}");
    wait_lines(
        &hook_log,
        |l| {
            ["metrics-a", "metrics-b"].iter().all(|id| {
                l.iter()
                    .any(|x| x.starts_with(&format!("acquired {id} ")) && x.ends_with(" vpn0"))
            })
        },
        Duration::from_secs(15),
    );
    let status = dirs.status_attachments(&lab);
    assert!(
        status.iter().all(|a| a["leaseExpires"].as_u64().is_some()
            && a["rateIn"].as_u64().is_some()
            && a["rateOut"].as_u64().is_some()),
        "{status:?}"
    );

    // DEL: the series is gone, the hook records the release.
    rt.del(&list, &atts[0]).expect("DEL");
    prometheus.wait_query(
        r#"softether_attachment_up{container_id="metrics-a"}"#,
        Duration::from_secs(30),
        |r| r.is_empty(),
    );
    let (_, text) = http_get(&node, &url("/metrics"));
    assert!(!text.contains("metrics-a"), "{text}");
    wait_lines(
        &hook_log,
        |l| l.iter().any(|x| x.starts_with("released metrics-a ")),
        Duration::from_secs(15),
    );
    prometheus.wait_query(
        r#"softether_cni_requests_total{op="detach",result="ok"}"#,
        Duration::from_secs(15),
        |r| r.first().is_some_and(|s| series_value(s) >= 1.0),
    );

    // The server goes away: `status` says why metrics-b is down and when it retries, the
    // series drop to 0, failed logins are counted by reason, the hook records the loss; when
    // the server is back, so is the lease.
    lab.kill_server();
    let until = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let (_, text) = exec(
            &node,
            &[
                workspace_bin("softether-sidecar").to_str().unwrap(),
                "status",
                "--socket",
                dirs.socket.to_str().unwrap(),
            ],
        );
        if text.contains("not up: last error:") && text.contains("next retry in") {
            break text;
        }
        assert!(Instant::now() < until, "status never said why:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(text.contains("reconnecting"), "{text}");
    let down = dirs.status_attachments(&lab);
    assert!(down.iter().any(|a| a["lastError"].is_string()), "{down:?}");
    prometheus.wait_query(
        r#"softether_attachment_up{container_id="metrics-b"} == 0"#,
        Duration::from_secs(30),
        |r| r.len() == 1,
    );
    prometheus.wait_query(
        r#"sum(softether_login_failures_total)"#,
        Duration::from_secs(30),
        |r| r.first().is_some_and(|s| series_value(s) >= 1.0),
    );
    wait_lines(
        &hook_log,
        |l| l.iter().any(|x| x.starts_with("lost metrics-b ")),
        Duration::from_secs(15),
    );
    lab.restart_server().expect("restart the server");
    prometheus.wait_query(
        r#"softether_attachment_up{container_id="metrics-b"} == 1"#,
        Duration::from_secs(60),
        |r| r.len() == 1,
    );
    wait_lines(
        &hook_log,
        |l| {
            l.iter()
                .filter(|x| x.starts_with("acquired metrics-b "))
                .count()
                == 2
        },
        Duration::from_secs(15),
    );
    prometheus.wait_query(
        r#"softether_attachment_reconnects_total{container_id="metrics-b"}"#,
        Duration::from_secs(15),
        |r| r.first().is_some_and(|s| series_value(s) >= 1.0),
    );

    // Restart with re-adoption held back: /readyz says why it is not ready, then 200.
    assert_eq!(http_get(&node, &url("/readyz")).0, 200);
    sidecar.kill9();
    let mut sidecar = Sidecar::spawn(
        &lab,
        &dirs.socket,
        &dirs.state,
        1,
        &hooks_flag,
        &[("SOFTETHER_SIDECAR_TEST_READOPT_DELAY_MS", READOPT_DELAY_MS)],
        None,
    );
    let (code, body) = wait_http(&node, &url("/readyz"), Duration::from_secs(20), |c| c != 0);
    assert_eq!(
        code,
        503,
        "during re-adoption: {body}\n{}",
        sidecar.log_text()
    );
    assert!(body.contains("re-adopting"), "{body}");
    assert_eq!(body.trim().lines().count(), 1, "{body}");
    let (code, body) = wait_http(&node, &url("/readyz"), Duration::from_secs(30), |c| {
        c == 200
    });
    assert_eq!(code, 200, "{body}\n{}", sidecar.log_text());
    sidecar.wait_listening(&dirs.socket);
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, text) = http_get(&node, &url("/metrics"));
        let up = sample(&text, "softether_attachment_up", &["metrics-b"]);
        if up == Some(1.0) {
            break;
        }
        assert!(Instant::now() < until, "metrics-b not up again:\n{text}");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(http_get(&node, &url("/healthz")).0, 200);

    // The control socket is gone: /healthz fails (the process still answers HTTP).
    fs::remove_file(&dirs.socket).expect("remove the control socket");
    let (code, body) = wait_http(&node, &url("/healthz"), Duration::from_secs(10), |c| {
        c == 503
    });
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("control socket"), "{body}");
    assert_eq!(http_get(&node, &url("/readyz")).0, 200);
    sidecar.kill9();
    drop(pods);
}
