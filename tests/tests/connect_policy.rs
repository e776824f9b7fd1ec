//! Policy routing and CONNMARK: replies to traffic that came in through the tunnel leave
//! through it, although the client's main default route points at the underlay.
//!
//! The lab's DHCP announces the lan host (192.168.30.250) as the router, and the lan host
//! talks from an off-subnet address (10.88.0.5), so only a route through the VPN gateway can
//! carry replies back.

mod connect_lab;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use connect_lab::{must, Lab, LabOptions, LAN_HOST_IP, SERVER_IP};

const LAN_FAR_IP: &str = "10.88.0.5";

fn policy_lab() -> Lab {
    let lab = Lab::start_with(LabOptions {
        gateway: LAN_HOST_IP,
        ..LabOptions::default()
    });
    let (c, l) = (&lab.cli, &lab.lan);
    must(&format!(
        "ip -n {l} addr add {LAN_FAR_IP}/32 dev lo && \
         ip netns exec {l} sysctl -qw net.ipv4.conf.all.arp_announce=2 net.ipv4.conf.eth0.arp_announce=2 && \
         ip -n {c} route add default via {SERVER_IP} dev to-srv && \
         ip netns exec {c} sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0"
    ));
    lab
}

fn lan_ping(lab: &Lab, address: &str) -> bool {
    lab.in_lan(&format!("ping -c 2 -i 0.3 -W 2 -I {LAN_FAR_IP} {address}"))
        .0
}

#[test]
fn policy_routing_answers_traffic_from_the_vpn_side() {
    let lab = policy_lab();
    // Control: without policy routing the replies follow the main default route and are lost.
    let mut client = lab.connect(&[]);
    client.wait_log("lease acquired", Duration::from_secs(30));
    let address = client.leased_address();
    assert!(
        !lan_ping(&lab, &address),
        "control: answered without policy routing?"
    );
    assert!(client.stop().success());

    let mut client = lab.connect(&["--policy-route-table", "200"]);
    client.wait_log("lease acquired", Duration::from_secs(30));
    let address = client.leased_address();
    let (_, rules) = lab.in_cli("ip rule show");
    assert!(
        rules.contains(&format!("from {address} lookup 200")),
        "{rules}"
    );
    let (_, table) = lab.in_cli("ip route show table 200");
    assert!(
        table.contains(&format!("default via {LAN_HOST_IP} dev vpn0")),
        "{table}"
    );
    assert!(
        lan_ping(&lab, &address),
        "no answer with policy routing\n{}",
        client.log_text()
    );
    assert!(client.stop().success());
    let (_, rules) = lab.in_cli("ip rule show");
    assert!(!rules.contains("lookup 200"), "{rules}");
}

/// An HTTP server in a namespace nested behind the client; the client DNATs port 8080
/// arriving on the TAP to it.
fn nested_service(lab: &mut Lab) -> Child {
    let inner = lab.add_netns("in");
    let c = lab.cli.clone();
    must(&format!(
        "ip -n {c} link add to-in type veth peer name eth0 netns {inner} && \
         ip -n {c} addr add 10.200.0.1/30 dev to-in && ip -n {c} link set to-in up && \
         ip -n {inner} addr add 10.200.0.2/30 dev eth0 && ip -n {inner} link set eth0 up && \
         ip -n {inner} route add default via 10.200.0.1 && \
         ip netns exec {c} sysctl -qw net.ipv4.ip_forward=1 && \
         ip netns exec {c} nft 'add table ip lab_nat; \
           add chain ip lab_nat pre {{ type nat hook prerouting priority -100; }}; \
           add rule ip lab_nat pre iifname \"vpn0\" tcp dport 8080 dnat to 10.200.0.2'"
    ));
    let server = Command::new("ip")
        .args([
            "netns",
            "exec",
            &inner,
            "/usr/bin/python3",
            "-m",
            "http.server",
            "8080",
        ])
        .args(["--bind", "10.200.0.2", "--directory", "/"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(lab.dir.join("http.log")).expect("log"))
        .spawn()
        .expect("python3 http.server");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lab
        .in_cli("curl -s -o /dev/null -m 1 http://10.200.0.2:8080/")
        .0
    {
        assert!(
            Instant::now() < deadline,
            "nested HTTP server did not start: {}",
            std::fs::read_to_string(lab.dir.join("http.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

fn lan_fetch(lab: &Lab, address: &str) -> bool {
    lab.in_lan(&format!(
        "curl -s -o /dev/null -w '%{{http_code}}' -m 4 --interface {LAN_FAR_IP} http://{address}:8080/"
    ))
    .1
    .contains("200")
}

#[test]
fn connmark_returns_dnat_replies_from_a_nested_namespace_through_the_tunnel() {
    let mut lab = policy_lab();
    let mut server = nested_service(&mut lab);

    // Control: policy routing alone does not catch replies sourced from the nested namespace.
    let mut client = lab.connect(&["--policy-route-table", "200"]);
    client.wait_log("lease acquired", Duration::from_secs(30));
    let address = client.leased_address();
    assert!(
        !lan_fetch(&lab, &address),
        "control: DNAT reply came back without CONNMARK?"
    );
    assert!(client.stop().success());

    let mut client = lab.connect(&["--policy-route-table", "200", "--connmark"]);
    client.wait_log("lease acquired", Duration::from_secs(30));
    let address = client.leased_address();
    let (_, rules) = lab.in_cli("ip rule show");
    assert!(rules.contains("fwmark 0xc8 lookup 200"), "{rules}");
    assert!(
        lan_fetch(&lab, &address),
        "DNAT'd service not reachable with --connmark\n{}",
        client.log_text()
    );
    assert!(client.stop().success(), "{}", client.log_text());
    let (_, ruleset) = lab.in_cli("nft list tables");
    assert!(!ruleset.contains("softether_"), "{ruleset}");
    let _ = server.kill();
    let _ = server.wait();
}
