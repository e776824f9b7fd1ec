//! `softether-sidecar probe` against the real SoftEther VPN Server (issue 2): every auth type
//! logs in and exchanges frames; every refusal fails fast with the right error and exit code.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use softether_lab::{Lab, LabOptions};

fn probe(lab: &Lab, args: &[&str]) -> (Output, Duration) {
    probe_hub(lab, &lab.facts.hub, args)
}

fn probe_hub(lab: &Lab, hub: &str, args: &[&str]) -> (Output, Duration) {
    let bin = common::workspace_bin("softether-sidecar");
    let f = &lab.facts;
    let started = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", &f.client_ns])
        .arg(&bin)
        .args([
            "probe",
            "--host",
            &f.server_ip.to_string(),
            "--port",
            &f.port.to_string(),
        ])
        .args(["--hub", hub])
        .args(args)
        .env_remove("SOFTETHER_PASSWORD")
        .output()
        .expect("run probe");
    (out, started.elapsed())
}

fn password_file(lab: &Lab, name: &str, password: &str) -> String {
    let path = lab.facts.dir.join(format!("{name}.pw"));
    std::fs::write(&path, format!("{password}\n")).expect("write password file");
    path.display().to_string()
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

fn assert_successful_probe(lab: &Lab, out: &Output, auth: &str) {
    assert!(
        out.status.success(),
        "probe ({auth}) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = json_of(out);
    let f = &lab.facts;
    assert_eq!(r["ok"], true);
    assert_eq!(r["auth"], auth);
    assert_eq!(r["server_cert_sha256"], f.server_cert_sha256.as_str());
    assert_eq!(r["server_version"], 501, "Debian 12 ships 5.01: {r}");
    assert!(
        r["session_name"].as_str().unwrap().starts_with("SID-"),
        "{r}"
    );
    assert_eq!(r["use_encrypt"], true);
    assert_eq!(r["policy"]["Access"], 1, "{r}");
    // Frames crossed the session both ways: DHCP from SecureNAT, ARP and ping of its gateway.
    let frames = &r["frames"];
    assert_eq!(frames["gateway"], f.gateway.to_string(), "{r}");
    assert!(frames["gateway_mac"].is_string(), "no ARP reply: {r}");
    assert!(frames["ping_rtt_ms"].is_number(), "no echo reply: {r}");
    assert!(frames["frames_received"].as_u64().unwrap() >= 3, "{r}");
    assert_eq!(frames["released"], true, "{r}");
}

#[test]
fn probe_logs_in_with_every_auth_type_and_exchanges_frames() {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let f = &lab.facts;
    let pin = f.server_cert_sha256.clone();
    let alice_pw = password_file(&lab, "alice", &f.alice.password);

    let (out, _) = probe(
        &lab,
        &[
            "--user",
            &f.alice.name,
            "--password-file",
            &alice_pw,
            "--pin-sha256",
            &pin,
            "--json",
        ],
    );
    assert_successful_probe(&lab, &out, "password");

    let (out, _) = probe(
        &lab,
        &[
            "--user",
            &f.alice.name,
            "--password-file",
            &alice_pw,
            "--plain-password",
            "--pin-sha256",
            &pin,
            "--json",
        ],
    );
    assert_successful_probe(&lab, &out, "plain-password");

    let cert = f.carol_cert.cert_pem.display().to_string();
    let key = f.carol_cert.key_pkcs8_pem.display().to_string();
    let (out, _) = probe(
        &lab,
        &[
            "--user",
            &f.carol,
            "--cert-file",
            &cert,
            "--key-file",
            &key,
            "--pin-sha256",
            &pin,
            "--json",
        ],
    );
    assert_successful_probe(&lab, &out, "certificate");

    let (out, _) = probe(
        &lab,
        &[
            "--user",
            &f.anonymous,
            "--anonymous",
            "--pin-sha256",
            &pin,
            "--json",
        ],
    );
    assert_successful_probe(&lab, &out, "anonymous");

    // The password may also come from the environment; the text report names the essentials.
    let bin = common::workspace_bin("softether-sidecar");
    let out = Command::new("ip")
        .args(["netns", "exec", &f.client_ns])
        .arg(&bin)
        .args([
            "probe",
            "--host",
            &f.server_ip.to_string(),
            "--hub",
            &f.hub,
            "--user",
            &f.bob.name,
        ])
        .args(["--insecure"])
        .env("SOFTETHER_PASSWORD", &f.bob.password)
        .output()
        .expect("run probe");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "server cert sha256",
        &pin,
        "SoftEther VPN Server",
        "session",
        "policy",
        "ping gateway",
    ] {
        assert!(text.contains(needle), "report lacks {needle:?}:\n{text}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("NOT verified"),
        "--insecure must be logged: {stderr}"
    );
    assert!(!text.contains(&f.bob.password) && !stderr.contains(&f.bob.password));
}

fn assert_refused(out: &Output, took: Duration, code: i32, needles: &[&str], secret: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    for n in needles {
        assert!(
            stderr.contains(n) || stdout.contains(n),
            "{n:?} missing:\n{stdout}\n{stderr}"
        );
    }
    assert!(took < Duration::from_secs(5), "refusal took {took:?}");
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains("probe failed"))
            .count(),
        1,
        "{stderr}"
    );
    assert!(
        !stderr.contains(secret) && !stdout.contains(secret),
        "secret leaked"
    );
}

#[test]
fn probe_refusals_fail_fast_with_the_softether_error_named() {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let f = &lab.facts;
    let pin = f.server_cert_sha256.clone();
    let wrong = password_file(&lab, "wrong", "not-the-password");
    let right = password_file(&lab, "alice", &f.alice.password);

    let (out, took) = probe(
        &lab,
        &[
            "--user",
            &f.alice.name,
            "--password-file",
            &wrong,
            "--pin-sha256",
            &pin,
        ],
    );
    assert_refused(&out, took, 3, &["ERR_AUTH_FAILED, 9"], "not-the-password");

    let (out, took) = probe(
        &lab,
        &[
            "--user",
            "nobody",
            "--password-file",
            &wrong,
            "--pin-sha256",
            &pin,
            "--json",
        ],
    );
    assert_refused(&out, took, 3, &["ERR_AUTH_FAILED"], "not-the-password");
    assert_eq!(json_of(&out)["softether_error"]["code"], 9);

    let args = [
        "--user",
        &f.alice.name,
        "--password-file",
        &right,
        "--pin-sha256",
        &pin,
        "--json",
    ];
    let (out, took) = probe_hub(&lab, "NO_SUCH_HUB", &args);
    assert_refused(&out, took, 3, &["ERR_HUB_NOT_FOUND, 8"], &f.alice.password);
    assert_eq!(json_of(&out)["retryable"], false);

    let other_pin = "ab".repeat(32);
    let (out, took) = probe(
        &lab,
        &[
            "--user",
            &f.alice.name,
            "--password-file",
            &right,
            "--pin-sha256",
            &other_pin,
        ],
    );
    assert_refused(
        &out,
        took,
        4,
        &["does not match --pin-sha256", &pin],
        &f.alice.password,
    );

    // Default verification (system roots) and a CA file holding the self-signed server cert both
    // reject SoftEther's default certificate, and say how to pin it.
    let (out, took) = probe(&lab, &["--user", &f.alice.name, "--password-file", &right]);
    assert_refused(&out, took, 4, &["--pin-sha256", &pin], &f.alice.password);
    let ca = f.server_cert_pem.display().to_string();
    let (out, took) = probe(
        &lab,
        &[
            "--user",
            &f.alice.name,
            "--password-file",
            &right,
            "--ca-file",
            &ca,
        ],
    );
    assert_refused(&out, took, 4, &["not trusted"], &f.alice.password);

    let (out, _) = probe(
        &lab,
        &[
            "--user",
            &f.alice.name,
            "--password-file",
            "/nonexistent/pw",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/pw"));
    assert!(Path::new(&right).exists());
}
