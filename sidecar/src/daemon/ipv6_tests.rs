//! The ADD wait rule on paused time, the IPv6 part of the result, and CHECK's comparisons.

use super::*;
use crate::daemon::verify::{missing_routes6 as missing_routes, missing_rules6 as missing_rules};
use crate::engine::status::{status_channel, Ipv6Status};
use netcfg::Route6Spec;
use softether_control::{Dns, Mac};

const HUB: &str = "198.18.0.1:443/VPN";

fn slaac() -> Ipv6Settings {
    let mut s = crate::engine::test_lease::slaac_settings();
    s.search_domains = vec!["lab6.test".into()];
    s
}

fn publish(tx: &watch::Sender<EngineStatus>, heard: bool, pending: bool, settings: Ipv6Settings) {
    tx.send_modify(|s| {
        s.ipv6 = Ipv6Status {
            settings,
            router_heard: heard,
            dhcpv6_pending: pending,
        }
    });
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

#[tokio::test(start_paused = true)]
async fn a_hub_without_ipv6_costs_nothing() {
    let (_tx, mut rx) = status_channel();
    let hubs = HubMemory::default();
    let s = settle(&mut rx, &hubs, HUB, far()).await;
    assert_eq!(s.waited, Duration::ZERO);
    assert!(s.settings.is_empty());
    assert!(!hubs.knows(HUB));
}

#[tokio::test(start_paused = true)]
async fn a_router_already_heard_answers_at_once_and_is_remembered() {
    let (tx, mut rx) = status_channel();
    publish(&tx, true, false, slaac());
    let hubs = HubMemory::default();
    let s = settle(&mut rx, &hubs, HUB, far()).await;
    assert_eq!((s.waited, s.settings), (Duration::ZERO, slaac()));
    assert!(hubs.knows(HUB));
}

#[tokio::test(start_paused = true)]
async fn a_known_hub_waits_briefly_for_the_advertisement() {
    let (tx, mut rx) = status_channel();
    let hubs = HubMemory::default();
    hubs.remember(HUB);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(40)).await;
        publish(&tx, true, false, slaac());
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
    let s = settle(&mut rx, &hubs, HUB, far()).await;
    assert_eq!(s.waited, Duration::from_millis(40));
    assert_eq!(s.settings, slaac());

    // No advertisement within the grace: answered without IPv6, and the hub is forgotten.
    let (_tx, mut rx) = status_channel();
    let s = settle(&mut rx, &hubs, HUB, far()).await;
    assert_eq!(s.waited, RA_GRACE);
    assert!(s.settings.is_empty());
    assert!(!hubs.knows(HUB));
}

#[tokio::test(start_paused = true)]
async fn dhcpv6_is_waited_for_within_its_bound_and_the_deadline() {
    let (tx, mut rx) = status_channel();
    publish(&tx, true, true, Ipv6Settings::default());
    let hubs = HubMemory::default();
    let leased = {
        let mut s = slaac();
        s.addresses[0].address = "fd00:6::123".parse().unwrap();
        s
    };
    let answer = leased.clone();
    let tx = std::sync::Arc::new(tx);
    let keep = tx.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        publish(&keep, true, false, answer);
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
    let s = settle(&mut rx, &hubs, HUB, far()).await;
    assert_eq!(
        (s.waited, s.settings, s.why),
        (Duration::from_millis(700), leased, "DHCPv6 answered")
    );

    // A DHCPv6 server that never answers holds ADD for DHCPV6_WAIT at most...
    publish(&tx, true, true, Ipv6Settings::default());
    let s = settle(&mut rx, &hubs, HUB, far()).await;
    assert_eq!((s.waited, s.why), (DHCPV6_WAIT, "DHCPv6 unanswered"));
    // ... and never past the ADD deadline.
    let soon = Instant::now() + Duration::from_millis(500);
    let s = settle(&mut rx, &hubs, HUB, soon).await;
    assert_eq!(s.waited, Duration::from_millis(500));
}

fn lease_result() -> AttachResult {
    AttachResult {
        mac: Mac([0x5e, 0, 0, 0, 0, 1]),
        mtu: None,
        ips: vec![AttachedIp {
            address: "192.168.30.10/24".parse().unwrap(),
            gateway: Some("192.168.30.1".parse().unwrap()),
        }],
        routes: Vec::new(),
        dns: Dns {
            nameservers: vec!["192.168.30.1".into()],
            domain: Some("vpn.test".into()),
            ..Dns::default()
        },
    }
}

#[test]
fn the_result_lists_addresses_with_the_router_as_gateway_routes_and_dns() {
    let mut result = lease_result();
    let opts = NetOptions {
        accept_default_gateway: true,
        policy_table: Some(300),
        ..NetOptions::default()
    };
    add_to_result(&mut result, &slaac(), &opts);
    let wire = serde_json::to_value(&result).unwrap();
    assert_eq!(
        wire["ips"][1],
        serde_json::json!({"address": "fd00:6::11:22ff:fe33:4455/64", "gateway": "fe80::1"})
    );
    assert_eq!(
        wire["routes"],
        serde_json::json!([
            {"dst": "fd00:6::/64"},
            {"dst": "::/0", "gw": "fe80::1"},
            {"dst": "fd00:6::/64", "table": 300},
            {"dst": "::/0", "gw": "fe80::1", "table": 300}
        ])
    );
    assert_eq!(
        wire["dns"],
        serde_json::json!({"nameservers": ["192.168.30.1", "fd00:6::53"], "domain": "vpn.test",
                           "search": ["vpn.test", "lab6.test"]})
    );
    // Nothing learned: the result stays the lease's.
    let mut plain = lease_result();
    add_to_result(&mut plain, &Ipv6Settings::default(), &opts);
    assert_eq!(plain, lease_result());
}

#[test]
fn check_names_missing_routes_and_rules() {
    let opts = NetOptions {
        accept_default_gateway: true,
        policy_table: Some(300),
        connmark: true,
        ..NetOptions::default()
    };
    let plan = pod_plan(&slaac(), &opts, 7);
    // As the kernel reports them: metric 1024 where none was asked for.
    let installed: Vec<Route6Spec> = plan
        .routes
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.metric = r.metric.or(Some(1024));
            r
        })
        .collect();
    assert!(missing_routes(&plan, &installed, "vpn0").is_empty());
    assert!(missing_rules(&plan, &plan.rules).is_empty());
    let without_default: Vec<Route6Spec> = installed
        .iter()
        .filter(|r| !(r.destination.prefix_len() == 0 && r.table == TABLE_MAIN))
        .cloned()
        .collect();
    assert_eq!(
        missing_routes(&plan, &without_default, "vpn0"),
        ["route ::/0 via fe80::1 dev vpn0 metric 50 table main is missing"]
    );
    assert_eq!(
        missing_rules(&plan, &plan.rules[1..]),
        ["rule from fd00:6::11:22ff:fe33:4455 lookup 300 priority 1000 is missing"]
    );
    assert_eq!(
        missing_rules(&plan, &plan.rules[..1]),
        ["rule from all fwmark 0x12c lookup 300 priority 1001 is missing"]
    );
}
