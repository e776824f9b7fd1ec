//! `softether-sidecar connect` against the real server: lease, routes, teardown, RELEASE.

mod connect_lab;

use std::time::Duration;

use connect_lab::{Lab, LAN_HOST_IP, PUSHED_ROUTE, SERVER_IP};

const LEASE_WAIT: Duration = Duration::from_secs(30);

#[test]
fn lease_acquired_and_lan_host_answers_pings() {
    let lab = Lab::start();
    let mut client = lab.connect(&[]);
    let took = client.wait_log("lease acquired", LEASE_WAIT);
    println!("time from start to a usable lease: {} ms", took.as_millis());
    let address = client.leased_address();
    assert!(address.starts_with("192.168.30."), "{address}");
    let (ok, out) = lab.in_cli(&format!("ping -c 3 -i 0.2 -W 2 {LAN_HOST_IP}"));
    assert!(
        ok,
        "ping through the tunnel failed:\n{out}\n{}",
        client.log_text()
    );
    let (ok, out) = lab.in_lan(&format!("ping -c 1 -W 2 {address}"));
    assert!(ok, "lan host cannot reach the client:\n{out}");
    assert!(client.stop().success(), "{}", client.log_text());
}

#[test]
fn pushed_classless_route_installed_with_accept_static_routes() {
    let lab = Lab::start();
    let mut client = lab.connect(&["--accept-static-routes"]);
    client.wait_log("lease acquired", LEASE_WAIT);
    let (_, routes) = lab.in_cli("ip route show");
    assert!(
        routes.contains(&format!("{PUSHED_ROUTE} via 192.168.30.1 dev vpn0")),
        "{routes}"
    );
    assert!(
        !routes.contains("default"),
        "no default route without --accept-default-gateway: {routes}"
    );
    assert!(client.stop().success());
    let (_, routes) = lab.in_cli("ip route show");
    assert!(!routes.contains(PUSHED_ROUTE), "{routes}");
}

#[test]
fn default_route_metric_50_and_pinned_server_route() {
    let lab = Lab::start();
    let mut client = lab.connect(&["--accept-default-gateway"]);
    client.wait_log("lease acquired", LEASE_WAIT);
    let (_, routes) = lab.in_cli("ip route show");
    assert!(
        routes.contains("default via 192.168.30.1 dev vpn0 proto static metric 50"),
        "{routes}"
    );
    assert!(
        routes.contains(&format!("{SERVER_IP} dev to-srv")),
        "{routes}"
    );
    // The tunnel itself keeps working with the default route in it.
    let (ok, out) = lab.in_cli(&format!("ping -c 2 -i 0.2 -W 2 {LAN_HOST_IP}"));
    assert!(ok, "{out}");
    assert!(client.stop().success());
    let (_, routes) = lab.in_cli("ip route show");
    assert!(
        !routes.contains("default") && !routes.contains(&format!("{SERVER_IP} ")),
        "{routes}"
    );
}

#[test]
fn clean_teardown_leaves_no_trace_and_release_reaches_the_server() {
    let lab = Lab::start();
    let before = lab.client_snapshot();
    let mut client = lab.connect(&[
        "--accept-default-gateway",
        "--accept-static-routes",
        "--policy-route-table",
        "200",
        "--connmark",
    ]);
    client.wait_log("lease acquired", LEASE_WAIT);
    let address = client.leased_address();
    let during = lab.client_snapshot();
    assert_ne!(before, during, "connect changed nothing?");
    let status = client.stop();
    assert!(status.success(), "exit {status}: {}", client.log_text());
    assert!(client.log_text().contains("lease released"));
    let after = lab.client_snapshot();
    assert_eq!(before, after, "state left behind in the client namespace");
    // SecureNAT's DHCP server ignores DHCPRELEASE (it only serves DISCOVER/REQUEST/INFORM),
    // so DhcpTable keeps the entry; the hub's packet log proves the RELEASE arrived: a
    // BOOTREQUEST from our address, unicast to the server, after the lease.
    let log = lab.packet_log();
    let release = log.lines().any(|l| {
        l.contains("DHCPv4,Request")
            && l.contains(&format!("ClientIP={address} "))
            && l.contains(&format!("Request,{address},"))
    });
    assert!(
        release,
        "no RELEASE from {address} in the hub packet log:\n{log}"
    );
}
