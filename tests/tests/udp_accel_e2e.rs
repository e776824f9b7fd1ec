//! UDP acceleration against the real server (issue 12): with the default the server reports
//! "UDP Acceleration is Active: Yes" and big frames travel in UDP datagrams to its acceleration
//! port; UDP dropped by nftables mid-transfer → traffic goes on over TCP in the same session;
//! allowed again → active again; `--udp-acceleration off` → never active, no datagram.

mod common;

use std::time::{Duration, Instant};

use common::connect::{connect, reset_our_tcp_connection, Connect};
use softether_lab::vpncmd::parse_table;
use softether_lab::Lab;
use softether_lab::LabOptions;

/// The server binds its acceleration sockets in this range (`UDP_SERVER_PORT_LOWER/HIGHER`).
const SERVER_UDP_PORTS: &str = "40000-44999";
/// ICMP payload that makes every echo a > 1000-byte frame: keep-alives are far smaller.
const BIG_PING: &str = "1200";

/// The server's view of our session (`SessionGet`): item → value.
fn session_get(lab: &Lab) -> Vec<(String, String)> {
    let sessions = lab.user_sessions().expect("SessionList");
    assert_eq!(sessions.len(), 1, "one session: {sessions:?}");
    let out = lab
        .vpncmd(&["SessionGet", &sessions[0]])
        .expect("SessionGet");
    parse_table(&out)
}

fn udp_active(lab: &Lab) -> Option<String> {
    session_get(lab)
        .into_iter()
        .find(|(k, _)| k == "UDP Acceleration is Active")
        .map(|(_, v)| v)
}

/// Polls `SessionGet` until "UDP Acceleration is Active" reads `want` (bounded).
fn wait_udp_active(lab: &Lab, want: &str, timeout: Duration) {
    let start = Instant::now();
    loop {
        let now = udp_active(lab);
        if now.as_deref() == Some(want) {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "UDP Acceleration is Active stayed {now:?}, wanted {want} within {timeout:?}: {:?}",
            session_get(lab)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Counts, in the server namespace, UDP datagrams to the acceleration ports: all of them and the
/// big ones (frames, not keep-alives); and can drop them.
fn install_udp_counters(lab: &Lab) {
    let rules = format!(
        "add table inet udpaccel\n\
         add chain inet udpaccel in {{ type filter hook input priority 0; }}\n\
         add chain inet udpaccel out {{ type filter hook output priority 0; }}\n\
         add counter inet udpaccel any\n\
         add counter inet udpaccel big\n\
         add rule inet udpaccel in udp dport {SERVER_UDP_PORTS} counter name any\n\
         add rule inet udpaccel in udp dport {SERVER_UDP_PORTS} meta length > 1000 counter name big\n"
    );
    nft(lab, &rules);
}

fn nft(lab: &Lab, rules: &str) {
    nft_in(lab, &lab.facts.server_ns, rules);
}

fn nft_in(lab: &Lab, ns: &str, rules: &str) {
    common::nft::apply(lab, ns, rules);
}

fn counter(lab: &Lab, name: &str) -> u64 {
    common::nft::counter(lab, &lab.facts.server_ns, "udpaccel", name, "packets")
}

/// Drops the acceleration datagrams on their way in, at both ends, as a firewall on the path
/// would. (Dropping the server's own output instead makes its sendto fail, which upstream treats
/// as fatal for the whole session.)
fn block_udp(lab: &Lab) {
    nft(
        lab,
        &format!(
            "add chain inet udpaccel block {{ type filter hook input priority -10; }}\n\
             add rule inet udpaccel block udp dport {SERVER_UDP_PORTS} drop\n"
        ),
    );
    nft_in(
        lab,
        &lab.facts.client_ns,
        &format!(
            "add table inet udpblock\n\
             add chain inet udpblock block {{ type filter hook input priority -10; }}\n\
             add rule inet udpblock block udp sport {SERVER_UDP_PORTS} drop\n"
        ),
    );
}

fn allow_udp(lab: &Lab) {
    nft(lab, "delete chain inet udpaccel block\n");
    nft_in(lab, &lab.facts.client_ns, "delete table inet udpblock\n");
}

fn big_pings(lab: &Lab, count: u32) -> String {
    let f = &lab.facts;
    let (_, out) = common::connect::exec(
        &f.client_ns,
        &[
            "ping",
            "-n",
            "-q",
            "-c",
            &count.to_string(),
            "-i",
            "0.2",
            "-W",
            "1",
            "-s",
            BIG_PING,
            &f.lan_host.to_string(),
        ],
    );
    out
}

/// "N received" from ping's summary.
fn received(ping_output: &str) -> u32 {
    ping_output
        .split(',')
        .find_map(|part| part.trim().strip_suffix(" received"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn start(lab: &Lab, extra: &[&str]) -> Connect {
    let mut client = connect(lab, extra);
    client.wait_log("lease acquired", Duration::from_secs(30));
    client
}

#[test]
fn udp_acceleration_carries_frames_falls_back_to_tcp_and_returns() {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    install_udp_counters(&lab);
    let mut client = start(&lab, &[]);
    let session = lab.user_sessions().expect("sessions");

    // The server needs 10 s of working UDP before it uses it (so do we).
    wait_udp_active(&lab, "Yes", Duration::from_secs(40));
    client.wait_log("UDP acceleration active", Duration::from_secs(20));
    let big_before = counter(&lab, "big");
    let pings = big_pings(&lab, 10);
    assert!(received(&pings) >= 9, "pings over UDP: {pings}");
    let big = counter(&lab, "big") - big_before;
    assert!(big >= 9, "echo requests travelled as UDP datagrams: {big}");

    // Drop UDP mid-transfer: pings go on (a short gap until the link is declared dead).
    block_udp(&lab);
    let pings = big_pings(&lab, 40);
    assert!(
        received(&pings) >= 25,
        "traffic continued over TCP: {pings}\n{}\n{:?}",
        client.log_text(),
        session_get(&lab)
    );
    wait_udp_active(&lab, "No", Duration::from_secs(20));
    client.wait_log("UDP acceleration lost", Duration::from_secs(20));
    let big_blocked = counter(&lab, "big");
    let pings = big_pings(&lab, 5);
    assert!(received(&pings) >= 4, "pings over TCP: {pings}");
    assert_eq!(
        lab.user_sessions().expect("sessions"),
        session,
        "same session"
    );

    // Allowed again: active again, and frames back in UDP.
    allow_udp(&lab);
    wait_udp_active(&lab, "Yes", Duration::from_secs(40));
    client.wait_log_count("UDP acceleration active", 2, Duration::from_secs(20));
    let pings = big_pings(&lab, 10);
    assert!(received(&pings) >= 9, "pings over UDP again: {pings}");
    assert!(
        counter(&lab, "big") - big_blocked >= 9,
        "frames in UDP again"
    );

    let log = client.log_text();
    assert_eq!(
        log.matches("logged in").count(),
        1,
        "no second login:\n{log}"
    );
    assert!(!log.contains("session lost"), "{log}");
    assert_eq!(
        lab.user_sessions().expect("sessions"),
        session,
        "same session"
    );
    let status = client.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_resumed_session_keeps_its_udp_channel() {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    install_udp_counters(&lab);
    let mut client = start(&lab, &[]);
    client.wait_log("UDP acceleration active", Duration::from_secs(40));
    // Reset our TCP connection only (the server keeps the session and its UDP side).
    reset_our_tcp_connection(&lab);
    // TCP keep-alives hit the reset within seconds; a ping may speed that up.
    let _ = big_pings(&lab, 1);
    client.wait_log("session resumed", Duration::from_secs(30));
    client.wait_log_count("UDP acceleration active", 2, Duration::from_secs(30));
    let big_before = counter(&lab, "big");
    let pings = big_pings(&lab, 10);
    assert!(received(&pings) >= 9, "pings after resume: {pings}");
    let big = counter(&lab, "big") - big_before;
    assert!(big >= 9, "frames still in UDP after the resume: {big}");
    let log = client.log_text();
    assert_eq!(
        log.matches("logged in").count(),
        1,
        "no second login:\n{log}"
    );
    assert_eq!(
        log.matches("UDP acceleration negotiated").count(),
        2,
        "the same channel ran on after the resume:\n{log}"
    );
    let status = client.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
fn udp_acceleration_off_is_never_active() {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    install_udp_counters(&lab);
    let mut client = start(&lab, &["--udp-acceleration", "off"]);
    let pings = big_pings(&lab, 5);
    assert!(received(&pings) >= 4, "{pings}");
    // Watched for longer than acceleration needs to become active had it been negotiated.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(12) {
        assert_eq!(udp_active(&lab).as_deref(), Some("No"));
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(counter(&lab, "any"), 0, "no datagram to the UDP ports");
    let log = client.log_text();
    assert!(!log.contains("UDP acceleration"), "{log}");
    let status = client.stop();
    assert!(status.success(), "{status:?}");
}

/// `probe --udp-wait` as JSON: what was negotiated and whether the link became active.
fn probe_udp(lab: &Lab, extra: &[&str]) -> serde_json::Value {
    let f = &lab.facts;
    let bin = common::workspace_bin("softether-sidecar");
    let mut argv = vec!["--json", "--frame-wait", "1s", "--udp-wait", "30s"];
    argv.extend_from_slice(extra);
    let out = softether_lab::sidecar::as_alice(lab, &bin, "probe", &f.alice.password, &argv)
        .output()
        .expect("run probe");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "probe output ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    report["udp_acceleration"].clone()
}

#[test]
fn probe_reports_udp_acceleration_v2_v1_and_off() {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let udp = probe_udp(&lab, &[]);
    assert_eq!(udp["offered"], true, "{udp}");
    assert_eq!(udp["granted"], true, "{udp}");
    assert_eq!(udp["version"], 2, "{udp}");
    assert_eq!(udp["cipher"], "ChaCha20-Poly1305", "{udp}");
    assert_eq!(udp["state"], "active", "{udp}");
    // RC4 + SHA-1 when only version 1 is offered (a hidden test value of the flag).
    let udp = probe_udp(&lab, &["--udp-acceleration", "v1"]);
    assert_eq!(udp["version"], 1, "{udp}");
    assert_eq!(udp["cipher"], "RC4", "{udp}");
    assert_eq!(udp["state"], "active", "{udp}");
    let udp = probe_udp(&lab, &["--udp-acceleration", "off"]);
    assert_eq!(udp["offered"], false, "{udp}");
    assert_eq!(udp["granted"], false, "{udp}");
    assert_eq!(udp["state"], "off", "{udp}");
}
