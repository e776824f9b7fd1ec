//! Fast recovery (issue 14): while the server is down, `connect` probes it with cheap TCP
//! connects instead of sleeping out its backoff, and logs in as soon as it listens again —
//! traffic is back within about a second whatever the outage length (the backoff alone would
//! reach 40 s and more after a 40 s outage). The bound asserted is generous for a busy
//! machine; the measured figure is printed.

mod common;

use std::time::{Duration, Instant};

use common::connect::{connect, exec};
use softether_lab::{netns, Lab, LabOptions};

/// Generous bound on "server listening again → ping answered"; the target is ≤ 1 s.
const RECOVERY_BOUND: Duration = Duration::from_secs(3);

/// Kills the server for `outage`, starts it again, and returns the time from its listener
/// accepting to the first ping answered through the tunnel.
fn recovery_after(outage: Duration) -> Duration {
    let mut lab = Lab::start(LabOptions::default()).expect("lab");
    let (client_ns, lan_host) = (lab.facts.client_ns.clone(), lab.facts.lan_host.to_string());
    // The default --reconnect-delay (5 s): the backoff grows to tens of seconds in an outage.
    let mut client = connect(&lab, &[]);
    client.wait_log("lease acquired", Duration::from_secs(30));
    let (ok, out) = exec(&client_ns, &["ping", "-c", "1", "-W", "2", &lan_host]);
    assert!(ok, "no traffic before the outage: {out}");

    lab.kill_server();
    client.wait_log("session lost, reconnecting", Duration::from_secs(20));
    // The outage itself is the experiment's input, not a wait for an effect.
    std::thread::sleep(outage);
    // One ping every 100 ms until the first reply (at most 60 s): it exits on that reply.
    let pinger = {
        let (ns, host) = (client_ns.clone(), lan_host.clone());
        std::thread::spawn(move || {
            let out = netns::exec_in(
                &ns,
                &["ping", "-n", "-c", "1", "-i", "0.1", "-w", "60", &host],
            )
            .expect("ping");
            (out.status.success(), Instant::now())
        })
    };
    let listening = lab.start_server().expect("start the server");
    let (ok, answered) = pinger.join().expect("ping thread");
    let log = client.log_text();
    assert!(
        ok,
        "no traffic within 60 s after the server came back:\n{log}"
    );
    let recovery = answered.saturating_duration_since(listening);
    eprintln!(
        "recovery after a {outage:?} outage: traffic {} ms after the server listened again",
        recovery.as_millis()
    );
    assert!(
        log.contains("server accepts connections again"),
        "the login was not started by a probe:\n{log}"
    );
    assert!(
        recovery <= RECOVERY_BOUND,
        "traffic back {recovery:?} after the server listened again (bound {RECOVERY_BOUND:?}):\n{log}"
    );
    assert!(client.stop().success(), "{}", client.log_text());
    recovery
}

#[test]
fn traffic_is_back_within_seconds_after_a_10s_outage() {
    recovery_after(Duration::from_secs(10));
}

#[test]
fn traffic_is_back_within_seconds_after_a_40s_outage() {
    recovery_after(Duration::from_secs(40));
}
