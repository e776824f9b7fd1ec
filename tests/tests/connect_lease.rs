//! `softether-sidecar connect` against the real server: lease, routes, teardown, RELEASE.

mod common;

use std::time::Duration;

use common::connect::{client_snapshot, connect, exec, hub_packet_log, in_dhcp_pool, TAP};
use softether_lab::{Lab, LabOptions};

const LEASE_WAIT: Duration = Duration::from_secs(30);

fn lab() -> Lab {
    Lab::start(LabOptions::default()).expect("lab")
}

fn client_routes(lab: &Lab) -> String {
    exec(&lab.facts.client_ns, &["ip", "route", "show"]).1
}

#[test]
fn lease_acquired_and_lan_host_answers_pings() {
    let lab = lab();
    let f = &lab.facts;
    let mut client = connect(&lab, &[]);
    let took = client.wait_log("lease acquired", LEASE_WAIT);
    println!("time from start to a usable lease: {} ms", took.as_millis());
    let address = client.leased_address();
    assert!(in_dhcp_pool(&lab, address), "{address}");
    let lan_host = f.lan_host.to_string();
    let (ok, out) = exec(
        &f.client_ns,
        &["ping", "-c", "3", "-i", "0.2", "-W", "2", &lan_host],
    );
    assert!(
        ok,
        "ping through the tunnel failed:\n{out}\n{}",
        client.log_text()
    );
    let (ok, out) = exec(
        &f.lan_ns,
        &["ping", "-c", "1", "-W", "2", &address.to_string()],
    );
    assert!(ok, "lan host cannot reach the client:\n{out}");
    assert!(client.stop().success(), "{}", client.log_text());
}

#[test]
fn pushed_classless_route_installed_with_accept_static_routes() {
    let lab = lab();
    let f = &lab.facts;
    let pushed = format!("{}/{}", f.pushed_route, f.pushed_route_prefix_len);
    let mut client = connect(&lab, &["--accept-static-routes"]);
    client.wait_log("lease acquired", LEASE_WAIT);
    let routes = client_routes(&lab);
    assert!(
        routes.contains(&format!(
            "{pushed} via {} dev {TAP}",
            f.pushed_route_gateway
        )),
        "{routes}"
    );
    assert!(
        !routes.contains("default"),
        "no default route without --accept-default-gateway: {routes}"
    );
    assert!(client.stop().success());
    let routes = client_routes(&lab);
    assert!(!routes.contains(&pushed), "{routes}");
}

#[test]
fn default_route_metric_50_and_pinned_server_route() {
    let lab = lab();
    let f = &lab.facts;
    let mut client = connect(&lab, &["--accept-default-gateway"]);
    client.wait_log("lease acquired", LEASE_WAIT);
    let routes = client_routes(&lab);
    assert!(
        routes.contains(&format!(
            "default via {} dev {TAP} proto static metric 50",
            f.gateway
        )),
        "{routes}"
    );
    assert!(
        routes.contains(&format!("{} dev {}", f.server_ip, f.client_if)),
        "{routes}"
    );
    // The tunnel itself keeps working with the default route in it.
    let (ok, out) = exec(
        &f.client_ns,
        &[
            "ping",
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "2",
            &f.lan_host.to_string(),
        ],
    );
    assert!(ok, "{out}");
    assert!(client.stop().success());
    let routes = client_routes(&lab);
    assert!(
        !routes.contains("default") && !routes.contains(&format!("{} ", f.server_ip)),
        "{routes}"
    );
}

#[test]
fn clean_teardown_leaves_no_trace_and_release_reaches_the_server() {
    let lab = lab();
    let before = client_snapshot(&lab);
    let mut client = connect(
        &lab,
        &[
            "--accept-default-gateway",
            "--accept-static-routes",
            "--policy-route-table",
            "200",
            "--connmark",
        ],
    );
    client.wait_log("lease acquired", LEASE_WAIT);
    let address = client.leased_address();
    let during = client_snapshot(&lab);
    assert_ne!(before, during, "connect changed nothing?");
    let status = client.stop();
    assert!(status.success(), "exit {status}: {}", client.log_text());
    assert!(client.log_text().contains("lease released"));
    let after = client_snapshot(&lab);
    assert_eq!(before, after, "state left behind in the client namespace");
    // SecureNAT's DHCP server ignores DHCPRELEASE (it only serves DISCOVER/REQUEST/INFORM),
    // so DhcpTable keeps the entry; the hub's packet log proves the RELEASE arrived: a
    // BOOTREQUEST from our address, unicast to the server, after the lease.
    let log = hub_packet_log(&lab);
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
