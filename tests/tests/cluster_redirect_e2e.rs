//! Cluster (server farm) redirect against the real SoftEther VPN Server: a login to a controller-only
//! farm controller is redirected to the member; the client reconnects there with the one-time ticket,
//! accepting only the certificate the controller announced, and the session lives on the member.

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use softether_lab::Farm;

/// Runs `softether-sidecar probe --json` in the farm's client namespace against `host`, as the farm user.
fn probe(farm: &Farm, host: &str, pin_sha256: &str) -> Output {
    let f = &farm.facts;
    let pw = f.dir.join("user.pw");
    std::fs::write(&pw, format!("{}\n", f.user.password)).expect("write password file");
    std::process::Command::new("ip")
        .args(["netns", "exec", &f.client_ns])
        .arg(common::workspace_bin("softether-sidecar"))
        .args(["probe", "--host", host, "--port", &f.port.to_string()])
        .args(["--hub", &f.hub, "--user", &f.user.name])
        .arg("--password-file")
        .arg(&pw)
        .args(["--pin-sha256", pin_sha256, "--json", "--frame-wait", "2s"])
        .env_remove("SOFTETHER_PASSWORD")
        .output()
        .expect("run probe")
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "probe stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Waits (bounded) until the member's hub packet log mentions every needle; returns the log.
fn member_log_with(farm: &Farm, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = farm.member_packet_log();
        if needles.iter().all(|n| log.contains(n)) || Instant::now() >= deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn probe_follows_the_controller_redirect_to_the_member() {
    let farm = Farm::start().expect("farm");
    let f = &farm.facts;
    let member = format!("{}:{}", f.member_ip, f.port);

    // Pinned to the controller's certificate only: the member's (different) certificate is accepted
    // because the controller announced it in the redirect.
    let out = probe(
        &farm,
        &f.controller_ip.to_string(),
        &f.controller_cert_sha256,
    );
    let r = json_of(&out);
    assert!(
        out.status.success(),
        "probe failed: {r}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(
        r["server"],
        format!("{}:{}", f.controller_ip, f.port),
        "{r}"
    );
    assert_eq!(r["redirected_to"], member.as_str(), "{r}");
    assert_eq!(r["server_address"], member.as_str(), "{r}");
    assert_eq!(
        r["server_cert_sha256"],
        f.member_cert_sha256.as_str(),
        "{r}"
    );
    assert_ne!(f.member_cert_sha256, f.controller_cert_sha256);
    assert_eq!(r["server_version"], 501, "Debian 12 ships 5.01: {r}");
    assert_eq!(r["hub"], f.hub.as_str());
    let session = r["session_name"].as_str().expect("session_name");
    assert!(
        session.starts_with(&format!("SID-{}-", f.user.name.to_uppercase())),
        "session named after the ticket's user: {r}"
    );
    assert_eq!(r["use_encrypt"], true, "{r}");
    assert_eq!(r["policy"]["Access"], 1, "{r}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(&f.user.password) && !r.to_string().contains(&f.user.password));

    // Cluster hubs have no SecureNAT, so nobody answers DHCP; but the probe's DHCP requests went through
    // the redirected session into the member's hub (its packet log names the session and the probe MAC).
    let frames = &r["frames"];
    assert!(frames["frames_sent"].as_u64().unwrap_or(0) >= 1, "{r}");
    let mac: String = frames["mac"]
        .as_str()
        .expect("probe mac")
        .replace(':', "")
        .to_uppercase();
    let log = member_log_with(&farm, &[session, &mac]);
    let dhcp_from_probe = log
        .lines()
        .filter(|l| l.contains(session) && l.contains(&mac) && l.contains("DHCPv4"))
        .count();
    assert!(
        dhcp_from_probe >= 1,
        "member hub saw no DHCP frame from {session} / {mac}:\n{log}"
    );
    assert!(
        !farm.controller_packet_log().contains(session),
        "the controller must not host the session"
    );

    // A direct password login to the member is refused: members accept only tickets (and admins).
    let out = probe(&farm, &f.member_ip.to_string(), &f.member_cert_sha256);
    let r = json_of(&out);
    assert_eq!(out.status.code(), Some(3), "{r}");
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["softether_error"]["name"], "ERR_ACCESS_DENIED", "{r}");
    assert!(r["redirected_to"].is_null(), "{r}");
}
