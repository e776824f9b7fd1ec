//! `--accept-dns`: resolv.conf written from the lease and restored, also after a crash.

mod common;

use std::fs;
use std::time::Duration;

use common::connect::{connect, exec, TAP};
use softether_lab::{Lab, LabOptions};

const ORIGINAL: &str = "nameserver 198.18.99.99\n";

/// Waits (bounded) until `path` names the lab's DNS server: the file is written after the
/// "lease acquired" log line, so the line alone says nothing about it.
fn wait_written(lab: &Lab, path: &str) -> String {
    let nameserver = format!("nameserver {}", lab.facts.dns);
    let written = common::wait_until(Duration::from_secs(30), || {
        fs::read_to_string(path).is_ok_and(|t| t.contains(&nameserver))
    });
    let text = fs::read_to_string(path).unwrap_or_default();
    assert!(written, "{path} never named {nameserver}: {text}");
    text
}

fn lab_with_resolv_conf() -> (Lab, String) {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let resolv = lab.facts.dir.join("resolv.conf");
    fs::write(&resolv, ORIGINAL).unwrap();
    let path = resolv.display().to_string();
    (lab, path)
}

#[test]
fn dns_written_and_restored() {
    let (lab, path) = lab_with_resolv_conf();
    let f = &lab.facts;
    let mut client = connect(&lab, &["--accept-dns", "--resolv-conf", &path]);
    client.wait_log("lease acquired", Duration::from_secs(30));
    let written = wait_written(&lab, &path);
    assert!(
        written.contains(&format!("search {}", f.domain)),
        "{written}"
    );
    assert!(client.stop().success(), "{}", client.log_text());
    assert_eq!(fs::read_to_string(&path).unwrap(), ORIGINAL);
    assert!(!f.dir.join("resolv.conf.softether-backup").exists());
}

#[test]
fn stale_backup_from_a_crashed_run_is_restored_at_start() {
    let (lab, path) = lab_with_resolv_conf();
    let f = &lab.facts;
    let mut client = connect(&lab, &["--accept-dns", "--resolv-conf", &path]);
    wait_written(&lab, &path);
    // Simulate a crash: SIGKILL leaves our resolv.conf and the backup behind.
    client.crash();
    assert!(fs::read_to_string(&path)
        .unwrap()
        .contains(&f.dns.to_string()));
    // The next run restores the original before doing anything else, and again on exit.
    let _ = exec(&f.client_ns, &["ip", "link", "del", TAP]);
    let mut client = connect(&lab, &["--accept-dns", "--resolv-conf", &path]);
    // The restore is logged before the lease; the file then names the DNS again either way.
    client.wait_log("lease acquired", Duration::from_secs(30));
    assert!(client
        .log_text()
        .contains("restored resolv.conf from a previous run's backup"));
    assert!(client.stop().success(), "{}", client.log_text());
    assert_eq!(fs::read_to_string(&path).unwrap(), ORIGINAL);
}
