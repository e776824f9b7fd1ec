//! `--accept-dns`: resolv.conf written from the lease and restored, also after a crash.

mod connect_lab;

use std::fs;
use std::time::Duration;

use connect_lab::Lab;

#[test]
fn dns_written_and_restored() {
    let lab = Lab::start();
    let resolv = lab.dir.join("resolv.conf");
    fs::write(&resolv, "nameserver 198.18.99.99\n").unwrap();
    let path = resolv.display().to_string();
    let mut client = lab.connect(&["--accept-dns", "--resolv-conf", &path]);
    client.wait_log("lease acquired", Duration::from_secs(30));
    let written = fs::read_to_string(&resolv).unwrap();
    assert!(written.contains("nameserver 192.168.30.1"), "{written}");
    assert!(written.contains("search vpn.test"), "{written}");
    assert!(client.stop().success(), "{}", client.log_text());
    assert_eq!(
        fs::read_to_string(&resolv).unwrap(),
        "nameserver 198.18.99.99\n"
    );
    assert!(!lab.dir.join("resolv.conf.softether-backup").exists());
}

#[test]
fn stale_backup_from_a_crashed_run_is_restored_at_start() {
    let lab = Lab::start();
    let resolv = lab.dir.join("resolv.conf");
    fs::write(&resolv, "nameserver 198.18.99.99\n").unwrap();
    let path = resolv.display().to_string();
    let mut client = lab.connect(&["--accept-dns", "--resolv-conf", &path]);
    client.wait_log("lease acquired", Duration::from_secs(30));
    // Simulate a crash: SIGKILL leaves our resolv.conf and the backup behind.
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &client.pid().to_string()])
        .status();
    client.wait_exit(Duration::from_secs(5));
    assert!(fs::read_to_string(&resolv)
        .unwrap()
        .contains("192.168.30.1"));
    // The next run restores the original before doing anything else, and again on exit.
    let (_, _) = lab.in_cli("ip link del vpn0");
    let mut client = lab.connect(&["--accept-dns", "--resolv-conf", &path]);
    client.wait_log("lease acquired", Duration::from_secs(30));
    assert!(client
        .log_text()
        .contains("restored resolv.conf from a previous run's backup"));
    assert!(client.stop().success(), "{}", client.log_text());
    assert_eq!(
        fs::read_to_string(&resolv).unwrap(),
        "nameserver 198.18.99.99\n"
    );
}
