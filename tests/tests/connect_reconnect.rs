//! Session loss and lease timers: server restart → reconnect with a fresh lease; RENEW.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::connect::{connect, exec};
use softether_lab::{netns, Lab, LabOptions};

#[test]
fn server_restart_mid_transfer_reconnects_with_a_fresh_lease() {
    let mut lab = Lab::start(LabOptions::default()).expect("lab");
    let (client_ns, lan_host) = (lab.facts.client_ns.clone(), lab.facts.lan_host.to_string());
    let mut client = connect(&lab, &["--reconnect-delay", "500ms"]);
    client.wait_log("lease acquired", Duration::from_secs(30));
    // Traffic in flight while the server goes away.
    let mut ping = netns::command_in(
        &client_ns,
        &["ping", "-i", "0.2", "-c", "50", "-W", "1", &lan_host],
    );
    ping.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let pinger = netns::spawn_command(ping).expect("ping");
    std::thread::sleep(Duration::from_secs(1));
    lab.restart_server().expect("restart the server");
    client.wait_log("session lost, reconnecting", Duration::from_secs(20));
    client.wait_log_count("lease acquired", 2, Duration::from_secs(60));
    let log = client.log_text();
    assert!(log.matches("logged in").count() >= 2, "{log}");
    let (ok, out) = exec(
        &client_ns,
        &["ping", "-c", "3", "-i", "0.2", "-W", "2", &lan_host],
    );
    assert!(ok, "no traffic after the reconnect:\n{out}\n{log}");
    drop(pinger);
    assert!(client.stop().success(), "{}", client.log_text());
}

#[test]
fn short_lease_is_renewed() {
    let lab = Lab::start(LabOptions {
        dhcp_lease_secs: 20,
        ..LabOptions::default()
    })
    .expect("lab");
    let mut client = connect(&lab, &[]);
    client.wait_log("lease acquired", Duration::from_secs(30));
    // T1 is half the lease: 10 s.
    client.wait_log("lease renewed", Duration::from_secs(25));
    let (ok, out) = exec(
        &lab.facts.client_ns,
        &[
            "ping",
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "2",
            &lab.facts.lan_host.to_string(),
        ],
    );
    assert!(ok, "{out}");
    assert!(client.stop().success(), "{}", client.log_text());
}
