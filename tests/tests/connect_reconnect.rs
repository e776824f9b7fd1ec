//! Session loss and lease timers: server restart → reconnect with a fresh lease; RENEW.

mod connect_lab;

use std::process::{Command, Stdio};
use std::time::Duration;

use connect_lab::{Lab, LabOptions, LAN_HOST_IP};

#[test]
fn server_restart_mid_transfer_reconnects_with_a_fresh_lease() {
    let mut lab = Lab::start();
    let mut client = lab.connect(&["--reconnect-delay", "500ms"]);
    client.wait_log("lease acquired", Duration::from_secs(30));
    // Traffic in flight while the server goes away.
    let mut pinger = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.cli,
            "ping",
            "-i",
            "0.2",
            "-c",
            "50",
            "-W",
            "1",
            LAN_HOST_IP,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ping");
    std::thread::sleep(Duration::from_secs(1));
    lab.restart_server();
    client.wait_log("session lost, reconnecting", Duration::from_secs(20));
    client.wait_log_count("lease acquired", 2, Duration::from_secs(60));
    let log = client.log_text();
    assert!(log.matches("logged in").count() >= 2, "{log}");
    let (ok, out) = lab.in_cli(&format!("ping -c 3 -i 0.2 -W 2 {LAN_HOST_IP}"));
    assert!(ok, "no traffic after the reconnect:\n{out}\n{log}");
    let _ = pinger.kill();
    let _ = pinger.wait();
    assert!(client.stop().success(), "{}", client.log_text());
}

#[test]
fn short_lease_is_renewed() {
    let lab = Lab::start_with(LabOptions {
        lease_secs: 20,
        ..LabOptions::default()
    });
    let mut client = lab.connect(&[]);
    client.wait_log("lease acquired", Duration::from_secs(30));
    // T1 is half the lease: 10 s.
    client.wait_log("lease renewed", Duration::from_secs(25));
    let (ok, out) = lab.in_cli(&format!("ping -c 2 -i 0.2 -W 2 {LAN_HOST_IP}"));
    assert!(ok, "{out}");
    assert!(client.stop().success(), "{}", client.log_text());
}
