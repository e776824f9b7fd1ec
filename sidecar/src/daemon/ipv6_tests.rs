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
            solicited_at: s.ipv6.solicited_at,
        }
    });
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

/// A status whose first router solicitation went out `ago`.
fn solicited(ago: Duration) -> (watch::Sender<EngineStatus>, watch::Receiver<EngineStatus>) {
    let (tx, rx) = status_channel();
    let at = (Instant::now() - ago).into_std();
    tx.send_modify(|s| s.ipv6.solicited_at = Some(at));
    (tx, rx)
}

#[tokio::test(start_paused = true)]
async fn a_new_hub_waits_for_the_answer_to_the_first_solicitation_only() {
    // The lease took 150 ms after the solicitation; the advertisement comes 40 ms later.
    let (tx, mut rx) = solicited(Duration::from_millis(150));
    let hubs = HubMemory::default();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(40)).await;
        publish(&tx, true, false, slaac());
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
    let s = settle(&mut rx, &hubs, HUB, far()).await;
    assert_eq!((s.waited, s.settings), (Duration::from_millis(40), slaac()));
    assert_eq!(hubs.ipv6(HUB), Some(true));

    // A hub without IPv6: the window from the solicitation, once; then never again.
    let other = "198.18.0.1:443/NOV6";
    let (_tx, mut rx) = solicited(Duration::from_millis(150));
    let s = settle(&mut rx, &hubs, other, far()).await;
    assert_eq!(s.waited, FIRST_RA_WINDOW - Duration::from_millis(150));
    assert!(s.settings.is_empty());
    assert_eq!(hubs.ipv6(other), Some(false));
    let (_tx, mut rx) = solicited(Duration::from_millis(5));
    let s = settle(&mut rx, &hubs, other, far()).await;
    assert_eq!(s.waited, Duration::ZERO);
    assert_eq!(s.why, "hub known to have no IPv6 router");
    // A lease slower than the window costs nothing either.
    let (_tx, mut rx) = solicited(FIRST_RA_WINDOW * 2);
    let s = settle(&mut rx, &hubs, "198.18.0.1:443/SLOW", far()).await;
    assert_eq!(s.waited, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_router_already_heard_answers_at_once_and_is_remembered() {
    let (tx, mut rx) = status_channel();
    publish(&tx, true, false, slaac());
    let hubs = HubMemory::default();
    hubs.remember(HUB, false);
    let s = settle(&mut rx, &hubs, HUB, far()).await;
    assert_eq!((s.waited, s.settings), (Duration::ZERO, slaac()));
    assert_eq!(hubs.ipv6(HUB), Some(true));
}

#[tokio::test(start_paused = true)]
async fn a_known_hub_waits_briefly_for_the_advertisement() {
    let (tx, mut rx) = solicited(Duration::ZERO);
    let hubs = HubMemory::default();
    hubs.remember(HUB, true);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1400)).await;
        publish(&tx, true, false, slaac());
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
    let s = settle(&mut rx, &hubs, HUB, far()).await;
    assert_eq!(
        s.waited,
        Duration::from_millis(1400),
        "past the first window"
    );
    assert_eq!(s.settings, slaac());

    // No advertisement within the grace: answered without IPv6, and the hub has none now.
    let (_tx, mut rx) = solicited(Duration::ZERO);
    let s = settle(&mut rx, &hubs, HUB, far()).await;
    assert_eq!(s.waited, RA_GRACE);
    assert!(s.settings.is_empty());
    assert_eq!(hubs.ipv6(HUB), Some(false));
}

#[test]
fn hub_facts_survive_a_restart_in_the_state_directory() {
    let dir = std::env::temp_dir().join(format!("se-hubs-{}", std::process::id()));
    let state = StateDir::open(&dir).unwrap();
    let first = HubMemory::default();
    first.load(&state);
    first.remember(HUB, true);
    first.remember("198.18.0.1:443/NOV6", false);
    let restarted = HubMemory::default();
    restarted.load(&state);
    assert_eq!(restarted.ipv6(HUB), Some(true));
    assert_eq!(restarted.ipv6("198.18.0.1:443/NOV6"), Some(false));
    assert_eq!(restarted.ipv6("198.18.0.1:443/NEW"), None);
    // A damaged file is ignored (and replaced on the next change), never fatal.
    std::fs::write(state.hubs_path(), b"[").unwrap();
    let damaged = HubMemory::default();
    damaged.load(&state);
    assert_eq!(damaged.ipv6(HUB), None);
    damaged.remember(HUB, true);
    assert_eq!(state.hubs().unwrap().ipv6(HUB), Some(true));
    std::fs::remove_dir_all(&dir).unwrap();
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
