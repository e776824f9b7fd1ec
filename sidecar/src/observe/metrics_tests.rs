//! The exposition content: names, labels, types, deletion, and the 0.0.4 text downgrade.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::metrics::{openmetrics_to_text, AttachmentLabels, AttachmentSample, Metrics};
use crate::engine::login_failures;
use crate::engine::status::{self, status_channel, LeaseEvent};
use crate::engine::test_lease::bound_lease;

fn labels(id: &str) -> AttachmentLabels {
    AttachmentLabels {
        container_id: Some(id.into()),
        ifname: "vpn0".into(),
        server: "198.18.0.1:443".into(),
        hub: "HUB".into(),
    }
}

const C1: &str = r#"{container_id="c1",ifname="vpn0",server="198.18.0.1:443",hub="HUB"}"#;

fn sample_lines(text: &str, name: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.starts_with(name))
        .map(str::to_owned)
        .collect()
}

#[test]
fn attachment_series_carry_the_issue_names_and_disappear_with_the_attachment() {
    let (tx, rx) = status_channel();
    status::set_logged_in(&tx);
    status::set_lease(
        &tx,
        LeaseEvent::Bound,
        Some(bound_lease(Instant::now(), Duration::from_secs(3600))),
    );
    status::count_resume(&tx);
    {
        let s = rx.borrow();
        s.traffic.count_in(100);
        s.traffic.count_out(60);
        s.traffic.count_dropped_in();
        s.traffic.sample_session((2, 5), 3, (10, 20));
    }
    let present = Arc::new(Mutex::new(true));
    let source = {
        let (present, rx) = (present.clone(), rx.clone());
        Arc::new(move || {
            if !*present.lock().unwrap() {
                return Vec::new();
            }
            vec![AttachmentSample {
                labels: labels("c1"),
                status: rx.borrow().clone(),
            }]
        })
    };
    let metrics = Metrics::new(source, true);
    metrics.count_request("attach", true);
    metrics.count_request("bogus op", false);
    metrics.observe_add(Duration::from_millis(700));
    let om = metrics.render_openmetrics();
    for expected in [
        format!("softether_attachment_up{C1} 1"),
        format!("softether_attachment_received_bytes_total{C1} 100"),
        format!("softether_attachment_sent_bytes_total{C1} 60"),
        format!("softether_attachment_received_frames_total{C1} 1"),
        format!("softether_attachment_sent_frames_total{C1} 1"),
        format!("softether_attachment_reconnects_total{C1} 0"),
        format!("softether_attachment_session_resumes_total{C1} 1"),
        format!("softether_attachment_tcp_connections{C1} 3"),
        r#"softether_attachment_dropped_frames_total{container_id="c1",ifname="vpn0",server="198.18.0.1:443",hub="HUB",direction="in"} 3"#.into(),
        r#"softether_attachment_dropped_frames_total{container_id="c1",ifname="vpn0",server="198.18.0.1:443",hub="HUB",direction="out"} 5"#.into(),
        "softether_attachments 1".into(),
        r#"softether_cni_requests_total{op="attach",result="ok"} 1"#.into(),
        r#"softether_cni_requests_total{op="unknown",result="error"} 1"#.into(),
        "softether_cni_add_duration_seconds_count 1".into(),
        r#"softether_cni_add_duration_seconds_bucket{le="1.0"} 1"#.into(),
        format!(
            r#"softether_build_info{{version="{}"}} 1"#,
            env!("CARGO_PKG_VERSION")
        ),
        "# EOF".into(),
    ] {
        assert!(om.lines().any(|l| l == expected), "missing {expected:?} in\n{om}");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for (name, lo, hi) in [
        (
            "softether_attachment_lease_expiry_timestamp_seconds",
            now + 3500.0,
            now + 3700.0,
        ),
        (
            "softether_attachment_session_start_timestamp_seconds",
            now - 60.0,
            now + 1.0,
        ),
    ] {
        let line = &sample_lines(&om, name)[0];
        let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((lo..hi).contains(&v), "{line}");
    }
    assert!(!om.contains("alice") && !om.contains("password"));
    // The attachment goes away: so do its series, while the daemon's counters stay.
    *present.lock().unwrap() = false;
    let om = metrics.render_openmetrics();
    assert!(
        sample_lines(&om, "softether_attachment_").is_empty(),
        "{om}"
    );
    assert!(om.contains("softether_attachments 0"));
    assert!(om.contains(r#"softether_cni_requests_total{op="attach",result="ok"} 1"#));
}

#[test]
fn connect_has_no_daemon_series_and_no_container_label() {
    let (_tx, rx) = status_channel();
    let mut l = labels("x");
    l.container_id = None;
    let source = Arc::new(move || {
        vec![AttachmentSample {
            labels: l.clone(),
            status: rx.borrow().clone(),
        }]
    });
    let om = Metrics::new(source, false).render_openmetrics();
    assert!(
        om.contains(
            r#"softether_attachment_up{ifname="vpn0",server="198.18.0.1:443",hub="HUB"} 0"#
        ),
        "{om}"
    );
    assert!(!om.contains("softether_cni_") && !om.contains("softether_attachments "));
    assert!(!om.contains("container_id"));
    // No lease, no session yet: those timestamps are absent rather than 0.
    assert!(sample_lines(&om, "softether_attachment_lease_expiry").is_empty());
    assert!(sample_lines(&om, "softether_attachment_session_start").is_empty());
}

#[test]
fn classic_text_names_counter_families_with_total_and_drops_eof() {
    let om = "# HELP a_b Help.\n# TYPE a_b counter\na_b_total{x=\"1\"} 3\n# HELP g Gauge.\n# TYPE g gauge\ng 1\n# UNIT g seconds\n# EOF\n";
    assert_eq!(
        openmetrics_to_text(om),
        "# HELP a_b_total Help.\n# TYPE a_b_total counter\na_b_total{x=\"1\"} 3\n# HELP g Gauge.\n# TYPE g gauge\ng 1\n"
    );
}

#[test]
fn login_failure_reasons_are_a_small_fixed_set() {
    use crate::transport::connection::SessionError;
    let addr = "198.18.0.1:443".parse().unwrap();
    let refused = SessionError::Server {
        addr,
        code: softether_proto::error::ErrorCode(9),
    };
    assert!(login_failures::reason(&refused).starts_with("ERR_"));
    let io = SessionError::Connect {
        addr,
        source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
    };
    assert_eq!(login_failures::reason(&io), "connect");
    let timeout = SessionError::Timeout {
        stage: "login",
        addr,
        after: Duration::from_secs(1),
    };
    assert_eq!(login_failures::reason(&timeout), "timeout");
}
