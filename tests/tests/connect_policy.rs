//! Policy routing and CONNMARK: replies to traffic that came in through the tunnel leave
//! through it, although the client's main default route points at the underlay.
//!
//! The lab's DHCP announces the lan host as the router, and the lan host talks from an
//! off-subnet address (beyond the hub, see [`lan_far_ip`]), so only a route through the VPN
//! gateway can carry replies back.
//!
//! Addresses: besides the lab's own (the underlay /30 and the hub's 10.99.0.0/24) these tests
//! use only `topology::side_pair` /30s of the lab: k = 0 for the lan host's far address, k = 1
//! for the veth link to the nested namespace. They lie in 198.18.0.0/15, in the other half from
//! the lab's underlay, so they never meet it, and they differ per lab.

mod common;

use std::fs;
use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::connect::{connect, exec, extra_netns, must, TAP};
use softether_lab::netns::{self, KillOnDrop, Netns};
use softether_lab::topology::side_pair;
use softether_lab::{subnet, Lab, LabOptions};

/// An address of the lan host outside the hub subnet: the client's main default route (the
/// underlay) cannot reach it, only the lan host as router through the VPN can.
fn lan_far_ip(lab: &Lab) -> Ipv4Addr {
    side_pair(lab.facts.client_ip, 0).0
}

/// The veth link between the client namespace and the nested one: (client end, nested end).
fn nested_link(lab: &Lab) -> (Ipv4Addr, Ipv4Addr) {
    side_pair(lab.facts.client_ip, 1)
}

fn policy_lab() -> Lab {
    let lab = Lab::start(LabOptions {
        dhcp_router: Some(subnet::LAN_HOST),
        ..LabOptions::default()
    })
    .expect("lab");
    let f = &lab.facts;
    let (c, l) = (&f.client_ns, &f.lan_ns);
    must(
        l,
        &[
            "ip",
            "addr",
            "add",
            &format!("{}/32", lan_far_ip(&lab)),
            "dev",
            "lo",
        ],
    );
    must(
        l,
        &[
            "sysctl",
            "-qw",
            "net.ipv4.conf.all.arp_announce=2",
            &format!("net.ipv4.conf.{}.arp_announce=2", f.lan_if),
        ],
    );
    must(
        c,
        &[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &f.server_ip.to_string(),
            "dev",
            &f.client_if,
        ],
    );
    must(
        c,
        &[
            "sysctl",
            "-qw",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
        ],
    );
    lab
}

fn lan_ping(lab: &Lab, address: Ipv4Addr) -> bool {
    exec(
        &lab.facts.lan_ns,
        &[
            "ping",
            "-c",
            "2",
            "-i",
            "0.3",
            "-W",
            "2",
            "-I",
            &lan_far_ip(lab).to_string(),
            &address.to_string(),
        ],
    )
    .0
}

fn client_out(lab: &Lab, argv: &[&str]) -> String {
    exec(&lab.facts.client_ns, argv).1
}

#[test]
fn policy_routing_answers_traffic_from_the_vpn_side() {
    let lab = policy_lab();
    // Control: without policy routing the replies follow the main default route and are lost.
    let mut client = connect(&lab, &[]);
    client.wait_log("lease acquired", Duration::from_secs(30));
    let address = client.leased_address();
    assert!(
        !lan_ping(&lab, address),
        "control: answered without policy routing?"
    );
    assert!(client.stop().success());

    let mut client = connect(&lab, &["--policy-route-table", "200"]);
    client.wait_log("lease acquired", Duration::from_secs(30));
    let address = client.leased_address();
    let rules = client_out(&lab, &["ip", "rule", "show"]);
    assert!(
        rules.contains(&format!("from {address} lookup 200")),
        "{rules}"
    );
    let table = client_out(&lab, &["ip", "route", "show", "table", "200"]);
    assert!(
        table.contains(&format!("default via {} dev {TAP}", lab.facts.dhcp_router)),
        "{table}"
    );
    assert!(
        lan_ping(&lab, address),
        "no answer with policy routing\n{}",
        client.log_text()
    );
    assert!(client.stop().success());
    let rules = client_out(&lab, &["ip", "rule", "show"]);
    assert!(!rules.contains("lookup 200"), "{rules}");
}

/// An HTTP server in a namespace nested behind the client; the client DNATs port 8080
/// arriving on the TAP to it.
fn nested_service(lab: &Lab) -> (Netns, KillOnDrop) {
    let inner = extra_netns();
    let (c, i) = (lab.facts.client_ns.as_str(), inner.name());
    let (outer_ip, inner_ip) = nested_link(lab);
    must(
        c,
        &[
            "ip", "link", "add", "to-in", "type", "veth", "peer", "name", "eth0", "netns", i,
        ],
    );
    must(
        c,
        &[
            "ip",
            "addr",
            "add",
            &format!("{outer_ip}/30"),
            "dev",
            "to-in",
        ],
    );
    must(c, &["ip", "link", "set", "to-in", "up"]);
    must(
        i,
        &[
            "ip",
            "addr",
            "add",
            &format!("{inner_ip}/30"),
            "dev",
            "eth0",
        ],
    );
    must(i, &["ip", "link", "set", "eth0", "up"]);
    must(
        i,
        &[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &outer_ip.to_string(),
        ],
    );
    must(c, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    must(
        c,
        &[
            "nft",
            &format!(
                "add table ip lab_nat; \
                 add chain ip lab_nat pre {{ type nat hook prerouting priority -100; }}; \
                 add rule ip lab_nat pre iifname \"{TAP}\" tcp dport 8080 dnat to {inner_ip}"
            ),
        ],
    );
    let http_log = lab.facts.dir.join("http.log");
    let mut cmd = netns::command_in(
        i,
        &[
            "/usr/bin/python3",
            "-m",
            "http.server",
            "8080",
            "--bind",
            &inner_ip.to_string(),
            "--directory",
            "/",
        ],
    );
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&http_log).expect("log"));
    let server = netns::spawn_command(cmd).expect("python3 http.server");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !exec(
        c,
        &[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-m",
            "1",
            &format!("http://{inner_ip}:8080/"),
        ],
    )
    .0
    {
        assert!(
            Instant::now() < deadline,
            "nested HTTP server did not start: {}",
            fs::read_to_string(&http_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (inner, server)
}

fn lan_fetch(lab: &Lab, address: Ipv4Addr) -> bool {
    exec(
        &lab.facts.lan_ns,
        &[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-m",
            "4",
            "--interface",
            &lan_far_ip(lab).to_string(),
            &format!("http://{address}:8080/"),
        ],
    )
    .1
    .contains("200")
}

#[test]
fn connmark_returns_dnat_replies_from_a_nested_namespace_through_the_tunnel() {
    let lab = policy_lab();
    let (_inner, _server) = nested_service(&lab);

    // Control: policy routing alone does not catch replies sourced from the nested namespace.
    let mut client = connect(&lab, &["--policy-route-table", "200"]);
    client.wait_log("lease acquired", Duration::from_secs(30));
    let address = client.leased_address();
    assert!(
        !lan_fetch(&lab, address),
        "control: DNAT reply came back without CONNMARK?"
    );
    assert!(client.stop().success());

    let mut client = connect(&lab, &["--policy-route-table", "200", "--connmark"]);
    client.wait_log("lease acquired", Duration::from_secs(30));
    let address = client.leased_address();
    let rules = client_out(&lab, &["ip", "rule", "show"]);
    assert!(rules.contains("fwmark 0xc8 lookup 200"), "{rules}");
    assert!(
        lan_fetch(&lab, address),
        "DNAT'd service not reachable with --connmark\n{}",
        client.log_text()
    );
    assert!(client.stop().success(), "{}", client.log_text());
    let tables = client_out(&lab, &["nft", "list", "tables"]);
    assert!(!tables.contains("softether_"), "{tables}");
}
