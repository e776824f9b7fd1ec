//! A broken TCP connection while the server keeps the session: `connect` rejoins the same
//! session with additional_connect at once — no new login, no new DHCP exchange, same address —
//! instead of backing off and logging in again.

mod common;

use std::time::Duration;

use common::connect::{connect, reset_our_tcp_connection};
use softether_lab::{Lab, LabOptions};

#[test]
fn broken_connection_resumes_the_same_session_without_dhcp() {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let f = &lab.facts;
    let mut client = connect(&lab, &[]);
    client.wait_log("lease acquired", Duration::from_secs(30));
    let address = client.leased_address();
    let sessions_before = lab.user_sessions().expect("sessions");
    assert_eq!(sessions_before.len(), 1, "{sessions_before:?}");

    reset_our_tcp_connection(&lab);
    // Traffic makes us write on the doomed socket (keepalives would too, a few seconds later).
    let _ = lab.ping_from(&f.client_ns, f.lan_host, 1);
    client.wait_log("session resumed", Duration::from_secs(20));

    assert!(
        lab.ping_from(&f.client_ns, f.lan_host, 3).expect("ping"),
        "traffic after resume"
    );
    let log = client.log_text();
    assert_eq!(
        log.matches("lease acquired").count(),
        1,
        "no new DHCP exchange:\n{log}"
    );
    assert_eq!(
        log.matches("logged in").count(),
        1,
        "no second login:\n{log}"
    );
    assert_eq!(client.leased_address(), address);
    let sessions_after = lab.user_sessions().expect("sessions");
    assert_eq!(
        sessions_after, sessions_before,
        "the server kept the same session"
    );
    let status = client.stop();
    assert!(status.success(), "{status:?}");
}
