//! `connect` refusing to run, or giving up, with clear messages and distinct exit codes.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::connect::{connect_as, exec, TAP};
use common::workspace_bin;
use softether_lab::{Lab, LabOptions};

#[test]
fn wrong_password_exits_3_without_a_retry_storm() {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let started = Instant::now();
    let mut client = connect_as(&lab, "not-the-password", &["--reconnect-delay", "100ms"]);
    let status = client.wait_exit(Duration::from_secs(20));
    let took = started.elapsed();
    let log = client.log_text();
    assert_eq!(status.code(), Some(3), "{log}");
    assert!(log.contains("ERR_AUTH_FAILED"), "{log}");
    assert_eq!(
        log.matches("connecting").count(),
        1,
        "retried a refused login:\n{log}"
    );
    assert!(
        !log.contains("not-the-password"),
        "password leaked into the log"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // Nothing left behind: the TAP is gone.
    let (_, links) = exec(&lab.facts.client_ns, &["ip", "link", "show"]);
    assert!(!links.contains(TAP), "{links}");
}

#[test]
fn connmark_without_a_policy_table_is_refused() {
    // Refused while parsing flags: nothing is sent to the (nonexistent) host.
    let out = Command::new(workspace_bin("softether-sidecar"))
        .args([
            "connect",
            "--host",
            "198.18.7.1",
            "--user",
            "alice",
            "--connmark",
        ])
        .env("SOFTETHER_PASSWORD", "x")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--connmark requires --policy-route-table"),
        "{err}"
    );
}

#[test]
fn help_documents_every_flag_and_the_exit_codes() {
    let out = Command::new(workspace_bin("softether-sidecar"))
        .args(["connect", "--help"])
        .output()
        .expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--tap",
        "--mac",
        "--no-dhcp",
        "--accept-default-gateway",
        "--accept-static-routes",
        "--accept-dns",
        "--resolv-conf",
        "--policy-route-table",
        "--connmark",
        "--reconnect-delay",
        "--max-connections",
        "--mtu",
        "--password-file",
        "--plain-password",
        "--insecure",
        "--pin-sha256",
        "--ca-file",
        "--udp-acceleration",
        "--compress",
        "--half-connection",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    assert!(help.contains("Exit codes"), "{help}");
}
