//! `connect` refusing to run, or giving up, with clear messages and distinct exit codes.

mod connect_lab;

use std::process::Command;
use std::time::{Duration, Instant};

use connect_lab::{sidecar_bin, Lab};

#[test]
fn wrong_password_exits_3_without_a_retry_storm() {
    let lab = Lab::start();
    let started = Instant::now();
    let mut client = lab.connect_as("not-the-password", &["--reconnect-delay", "100ms"]);
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
    let (_, links) = lab.in_cli("ip link show");
    assert!(!links.contains("vpn0"), "{links}");
}

#[test]
fn connmark_without_a_policy_table_is_refused() {
    let out = Command::new(sidecar_bin())
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
    let out = Command::new(sidecar_bin())
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
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    assert!(help.contains("Exit codes"), "{help}");
}
