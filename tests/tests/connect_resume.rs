//! A broken TCP connection while the server keeps the session: `connect` rejoins the same
//! session with additional_connect at once — no new login, no new DHCP exchange, same address —
//! instead of backing off and logging in again.

mod common;

use std::time::Duration;

use common::connect::{connect, reset_our_tcp_connection};
use common::observe::{http_get, sample};
use softether_lab::{Lab, LabOptions};

#[test]
fn broken_connection_resumes_the_same_session_without_dhcp() {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let f = &lab.facts;
    let mut client = connect(&lab, &["--metrics-addr", METRICS]);
    client.wait_log("lease acquired", Duration::from_secs(30));
    let started_before = wait_metric(
        &lab,
        "softether_attachment_session_start_timestamp_seconds",
        |_| true,
    );
    let address = client.leased_address();
    let sessions_before = lab.user_sessions().expect("sessions");
    assert_eq!(sessions_before.len(), 1, "{sessions_before:?}");

    reset_our_tcp_connection(&lab);
    // Traffic makes us write on the doomed socket (keepalives would too, a few seconds later).
    let _ = lab.ping_from(&f.client_ns, f.lan_host, 1);
    client.wait_log("session resumed", Duration::from_secs(20));

    assert!(
        lab.ping_from(&f.client_ns, f.lan_host, 3).expect("ping"),
        "traffic after resume"
    );
    let log = client.log_text();
    assert_eq!(
        log.matches("lease acquired").count(),
        1,
        "no new DHCP exchange:\n{log}"
    );
    assert_eq!(
        log.matches("logged in").count(),
        1,
        "no second login:\n{log}"
    );
    assert_eq!(client.leased_address(), address);
    let sessions_after = lab.user_sessions().expect("sessions");
    assert_eq!(
        sessions_after, sessions_before,
        "the server kept the same session"
    );
    // The metrics count the resume, not a reconnect, and keep the session's start time.
    wait_metric(&lab, "softether_attachment_session_resumes_total", |v| {
        v == 1.0
    });
    wait_metric(&lab, "softether_attachment_tcp_connections", |v| v == 1.0);
    let (_, text) = http_get(&f.client_ns, &format!("http://{METRICS}/metrics"));
    assert_eq!(
        sample(&text, "softether_attachment_reconnects_total", &[]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "softether_attachment_session_start_timestamp_seconds",
            &[]
        ),
        Some(started_before),
        "{text}"
    );
    let status = client.stop();
    assert!(status.success(), "{status:?}");
}

const METRICS: &str = "127.0.0.1:9562";

/// Polls `connect`'s /metrics until `name` satisfies `ok` (bounded); returns its value.
fn wait_metric(lab: &Lab, name: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let until = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, text) = http_get(&lab.facts.client_ns, &format!("http://{METRICS}/metrics"));
        if let Some(v) = sample(&text, name, &[]).filter(|v| ok(*v)) {
            return v;
        }
        assert!(std::time::Instant::now() < until, "{name}:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
