//! IPv6 through the tunnel against the real server: dnsmasq on the lan host (which sits on the
//! hub through the local bridge) sends router advertisements for a ULA prefix and answers
//! DHCPv6. `connect` configures the TAP from them, `ping -6` reaches the lan host through the
//! VPN, and stopping removes every IPv6 object. A hub without IPv6 leaves `connect` IPv4-only.

mod common;

use std::time::Duration;

use common::connect::{client_snapshot, connect, exec, must, Connect, TAP};
use common::ipv6_lab::{self, lab, router, wait_for, DNS6, LAN_HOST6, PREFIX};
use softether_lab::{Lab, LabOptions};

/// Global IPv6 addresses on the TAP.
fn global_addresses(lab: &Lab) -> Vec<String> {
    ipv6_lab::global_addresses(&lab.facts.client_ns, TAP)
}

fn wait_global_address(lab: &Lab, client: &Connect) -> String {
    let address = wait_for(Duration::from_secs(40), || {
        global_addresses(lab)
            .into_iter()
            .find(|a| a.starts_with(PREFIX.trim_end_matches(':')))
    })
    .unwrap_or_else(|| panic!("no IPv6 address on {TAP}:\n{}", client.log_text()));
    // Measured, not asserted: how long IPv6 takes next to the IPv4 lease.
    let lease_ms = client.log_field("lease acquired", "since_start_ms");
    let v6_ms = client.log_field("IPv6 configuration", "since_start_ms");
    eprintln!("IPv4 lease after {lease_ms} ms, IPv6 address {address} after {v6_ms} ms");
    address
}

fn ping6(lab: &Lab, dst: &str) -> bool {
    ipv6_lab::ping6(&lab.facts.client_ns, dst)
}

fn conf(lab: &Lab, key: &str) -> String {
    must(
        &lab.facts.client_ns,
        &["cat", &format!("/proc/sys/net/ipv6/conf/{TAP}/{key}")],
    )
    .trim()
    .to_owned()
}

fn v6_rules(lab: &Lab) -> String {
    must(&lab.facts.client_ns, &["ip", "-6", "rule"])
}

/// The client namespace before `connect`, IPv6 rules included (the shared snapshot lists
/// IPv4 rules only).
struct Before {
    snapshot: String,
    rules6: String,
}

impl Before {
    fn take(lab: &Lab) -> Self {
        Before {
            snapshot: client_snapshot(lab),
            rules6: v6_rules(lab),
        }
    }

    /// Stops `client` (SIGTERM) and checks it left the namespace as it found it.
    fn assert_restored_after_stop(&self, lab: &Lab, client: &mut Connect) {
        assert!(client.stop().success(), "{}", client.log_text());
        assert_eq!(self.snapshot, client_snapshot(lab), "state left behind");
        assert_eq!(self.rules6, v6_rules(lab), "IPv6 rules left behind");
    }
}

#[test]
fn slaac_with_rdnss_configures_the_tap_and_teardown_removes_it() {
    let lab = lab();
    let _dnsmasq = router(&lab, &format!("{PREFIX},ra-only,64,600"));
    let f = &lab.facts;
    let resolv = f.dir.join("resolv6.conf");
    std::fs::write(&resolv, "nameserver 198.18.0.1\n").unwrap();
    let before = Before::take(&lab);

    let resolv_arg = resolv.to_str().unwrap();
    let mut client = connect(
        &lab,
        &[
            "--accept-dns",
            "--resolv-conf",
            resolv_arg,
            "--accept-default-gateway",
        ],
    );
    let address = wait_global_address(&lab, &client);
    // SLAAC: the prefix plus the EUI-64 identifier of the TAP's MAC, with the on-link /64.
    assert!(address.ends_with("/64"), "{address}");
    let mac = must(
        &f.client_ns,
        &["cat", &format!("/sys/class/net/{TAP}/address")],
    );
    let m: Vec<u8> = mac
        .trim()
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    let iid = format!(
        "{:x}:{:x}:{:x}:{:x}",
        u16::from_be_bytes([m[0] ^ 2, m[1]]),
        u16::from_be_bytes([m[2], 0xff]),
        u16::from_be_bytes([0xfe, m[3]]),
        u16::from_be_bytes([m[4], m[5]])
    );
    assert!(address.contains(&iid), "{address} is not EUI-64 of {mac}");
    let routes = must(&f.client_ns, &["ip", "-6", "route", "show", "dev", TAP]);
    assert!(routes.contains("fd5e:7e4e:1::/64"), "{routes}");
    // The default route via the router's link-local address (--accept-default-gateway).
    let default = wait_for(Duration::from_secs(20), || {
        let r = must(&f.client_ns, &["ip", "-6", "route", "show", "default"]);
        r.contains("via fe80::").then_some(r)
    })
    .expect("IPv6 default route");
    assert!(
        default.contains(TAP) && default.contains("metric 50"),
        "{default}"
    );
    // RDNSS: the v6 server joins the lease's in resolv.conf.
    wait_for(Duration::from_secs(20), || {
        std::fs::read_to_string(&resolv)
            .ok()
            .filter(|r| r.contains(DNS6))
    })
    .unwrap_or_else(|| panic!("{DNS6} not in resolv.conf:\n{}", client.log_text()));
    // The kernel does not autoconfigure behind our back.
    assert_eq!(
        (conf(&lab, "accept_ra"), conf(&lab, "autoconf")),
        ("0".into(), "0".into())
    );
    assert!(
        ping6(&lab, LAN_HOST6),
        "ping -6 the lan host through the VPN"
    );

    before.assert_restored_after_stop(&lab, &mut client);
    assert_eq!(
        std::fs::read_to_string(&resolv).unwrap(),
        "nameserver 198.18.0.1\n"
    );
}

#[test]
fn stateful_dhcpv6_address_policy_rules_and_teardown() {
    let lab = lab();
    let _dnsmasq = router(&lab, "fd5e:7e4e:1::100,fd5e:7e4e:1::1ff,64,600");
    let f = &lab.facts;
    // Whatever the namespace's default link-local mode (random here), the TAP gets the EUI-64
    // one the client sends from: DHCPv6 replies need the kernel to answer ND for it.
    must(
        &f.client_ns,
        &["sysctl", "-qw", "net.ipv6.conf.default.addr_gen_mode=3"],
    );
    let before = Before::take(&lab);

    let mut client = connect(&lab, &["--policy-route-table", "300", "--connmark"]);
    let address = wait_global_address(&lab, &client);
    assert_eq!(conf(&lab, "addr_gen_mode"), "0");
    // A DHCPv6 address from the range (a /64 because the prefix is on-link), no SLAAC one.
    let host: std::net::Ipv6Addr = address.split('/').next().unwrap().parse().unwrap();
    let last = host.segments()[7];
    assert!(
        (0x100..=0x1ff).contains(&last),
        "{address} must come from DHCPv6"
    );
    assert_eq!(
        global_addresses(&lab).len(),
        1,
        "{:?}",
        global_addresses(&lab)
    );
    // Policy routing for inet6: from <v6> and fwmark rules to table 300, routes in it.
    let rules = wait_for(Duration::from_secs(10), || {
        let r = v6_rules(&lab);
        (r.contains(&format!("from {host}")) && r.contains("fwmark 0x12c")).then_some(r)
    })
    .unwrap_or_else(|| panic!("no inet6 policy rules:\n{}", v6_rules(&lab)));
    assert!(rules.contains("lookup 300"), "{rules}");
    let table = must(&f.client_ns, &["ip", "-6", "route", "show", "table", "300"]);
    assert!(
        table.contains("default via fe80::") && table.contains("fd5e:7e4e:1::/64"),
        "{table}"
    );
    // No default route in main without --accept-default-gateway.
    let main_default = must(&f.client_ns, &["ip", "-6", "route", "show", "default"]);
    assert!(!main_default.contains(TAP), "{main_default}");
    assert!(
        ping6(&lab, LAN_HOST6),
        "ping -6 the lan host through the VPN"
    );

    before.assert_restored_after_stop(&lab, &mut client);
    // The Release reached the server: dnsmasq forgets the lease (bounded wait).
    let leases = f.dir.join("dnsmasq6.leases");
    let released = wait_for(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&leases).unwrap_or_default();
        (!text.contains(&host.to_string())).then_some(())
    });
    assert!(
        released.is_some(),
        "lease for {host} still in {}",
        leases.display()
    );
}

#[test]
fn hub_without_ipv6_stays_ipv4_only_and_no_ipv6_turns_it_off() {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let before = client_snapshot(&lab);
    let mut client = connect(&lab, &[]);
    client.wait_log("lease acquired", Duration::from_secs(30));
    let since_start = client.log_field("lease acquired", "since_start_ms");
    assert!(global_addresses(&lab).is_empty());
    assert_eq!(
        (conf(&lab, "accept_ra"), conf(&lab, "autoconf")),
        ("0".into(), "0".into())
    );
    assert!(!client.log_text().contains("IPv6 configuration"));
    assert!(client.stop().success());
    assert_eq!(before, client_snapshot(&lab), "state left behind");
    // IPv6 does not hold up the IPv4 lease: no timer waits for router advertisements.
    let ms: u64 = since_start.trim().parse().expect("since_start_ms");
    assert!(ms < 30_000, "lease after {ms} ms");

    let mut client = connect(&lab, &["--no-ipv6"]);
    client.wait_log("lease acquired", Duration::from_secs(30));
    assert_eq!(conf(&lab, "disable_ipv6"), "1");
    let (_, addrs) = exec(
        &lab.facts.client_ns,
        &["ip", "-6", "addr", "show", "dev", TAP],
    );
    assert!(!addrs.contains("inet6"), "{addrs}");
    assert!(client.stop().success());
    assert_eq!(before, client_snapshot(&lab), "state left behind");
}
