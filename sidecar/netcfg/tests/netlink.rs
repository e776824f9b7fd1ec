//! Root tests: rtnetlink operations inside a throwaway namespace, idempotency, listing.

mod common;

use std::net::Ipv4Addr;

use common::TestNetns;
use netcfg::{DefaultRoute, Netlink, Netns, PolicyRule, RouteSpec, Tap, TapConfig, TABLE_MAIN};

/// A namespace with a link `d0` that is up with carrier, so routes via it are usable. It is
/// a TAP (the test kernel may lack the dummy driver); the fd keeps its carrier on.
async fn setup() -> (TestNetns, Netlink, u32, Tap) {
    let ns = TestNetns::new();
    let config = TapConfig {
        name: Some("d0".into()),
        persistent: false,
        vnet_hdr: false,
    };
    let tap = Tap::create(&ns.netns(), &config).await.unwrap();
    let nl = Netlink::open(ns.netns()).await.unwrap();
    let idx = nl.link_index("d0").await.unwrap();
    nl.set_link_up(idx).await.unwrap();
    (ns, nl, idx, tap)
}

#[tokio::test]
async fn handle_sees_only_its_namespace() {
    let (ns, nl, idx, _tap) = setup().await;
    assert!(idx > 0);
    assert!(nl.link_index("lo").await.is_ok());
    let missing = nl.link_index("nonexistent0").await.unwrap_err();
    assert!(
        matches!(missing, netcfg::NetcfgError::LinkNotFound { .. }),
        "{missing}"
    );
    assert!(missing.to_string().contains(&ns.name));

    let host = Netlink::open(Netns::Current).await.unwrap();
    assert_eq!(
        host.link_index_opt("d0").await.unwrap(),
        None,
        "link leaked into host netns"
    );
}

#[tokio::test]
async fn link_up_mtu_mac_and_delete() {
    let (ns, nl, idx, _tap) = setup().await;
    let mac = [0x02, 0x00, 0x5e, 0x00, 0x53, 0x01];
    nl.set_link_mtu(idx, 1400).await.unwrap();
    nl.set_link_mac(idx, mac).await.unwrap();
    let info = nl.link_by_index(idx).await.unwrap().unwrap();
    assert_eq!(info.name, "d0");
    assert_eq!(info.mtu, Some(1400));
    assert_eq!(info.mac.as_deref(), Some(&mac[..]));
    assert!(info.up);
    nl.set_link_down(idx).await.unwrap();
    assert!(!nl.link_by_name("d0").await.unwrap().unwrap().up);

    nl.delete_link("d0").await.unwrap();
    assert!(!ns.ip_ok(&["link", "show", "dev", "d0"]));
    nl.delete_link("d0").await.unwrap();
    assert_eq!(nl.link_by_index(idx).await.unwrap(), None);
}

#[tokio::test]
async fn addresses_are_idempotent_and_listed() {
    let (ns, nl, idx, _tap) = setup().await;
    let a = "198.18.1.5/24".parse().unwrap();
    let b = "198.18.2.5/30".parse().unwrap();
    nl.add_address(idx, a).await.unwrap();
    nl.add_address(idx, a).await.unwrap();
    nl.add_address(idx, b).await.unwrap();
    let mut listed = nl.addresses(idx).await.unwrap();
    listed.sort();
    assert_eq!(listed, vec![a, b]);
    assert!(ns
        .ip(&["-4", "addr", "show", "dev", "d0"])
        .contains("198.18.1.5/24"));

    nl.del_address(idx, a).await.unwrap();
    nl.del_address(idx, a).await.unwrap();
    assert_eq!(nl.addresses(idx).await.unwrap(), vec![b]);
    nl.flush_addresses(idx).await.unwrap();
    assert!(nl.addresses(idx).await.unwrap().is_empty());
}

#[tokio::test]
async fn routes_add_replace_delete_in_big_table() {
    let (ns, nl, idx, _tap) = setup().await;
    nl.add_address(idx, "198.18.1.5/24".parse().unwrap())
        .await
        .unwrap();
    let gw1 = Ipv4Addr::new(198, 18, 1, 254);
    let gw2 = Ipv4Addr::new(198, 18, 1, 253);
    let route = RouteSpec::to("198.18.50.0/24".parse().unwrap())
        .via(gw1)
        .dev(idx)
        .table(1000)
        .metric(100);
    nl.add_route(&route).await.unwrap();
    nl.add_route(&route).await.unwrap();
    assert_eq!(nl.routes(1000).await.unwrap(), vec![route.clone()]);
    let shown = ns.ip(&["route", "show", "table", "1000"]);
    assert!(
        shown.contains("198.18.50.0/24 via 198.18.1.254 dev d0"),
        "{shown}"
    );

    let replaced = route.clone().via(gw2);
    nl.replace_route(&replaced).await.unwrap();
    assert_eq!(nl.routes(1000).await.unwrap(), vec![replaced.clone()]);

    // On-link route: scope link, no gateway.
    let onlink = RouteSpec::to("198.18.60.0/24".parse().unwrap())
        .dev(idx)
        .table(1000);
    nl.add_route(&onlink).await.unwrap();
    let shown = ns.ip(&["route", "show", "table", "1000"]);
    assert!(
        shown.contains("198.18.60.0/24 dev d0 proto static scope link"),
        "{shown}"
    );

    // Delete matches without restating gateway or metric, and twice is fine.
    let selector = RouteSpec::to("198.18.50.0/24".parse().unwrap()).table(1000);
    nl.del_route(&selector).await.unwrap();
    nl.del_route(&selector).await.unwrap();
    nl.del_route(&onlink).await.unwrap();
    assert!(nl.routes(1000).await.unwrap().is_empty());
}

#[tokio::test]
async fn default_route_and_route_get() {
    let (_ns, nl, idx, _tap) = setup().await;
    assert_eq!(nl.default_route().await.unwrap(), None);
    nl.add_address(idx, "198.18.1.5/24".parse().unwrap())
        .await
        .unwrap();
    let gw = Ipv4Addr::new(198, 18, 1, 1);
    nl.add_route(&RouteSpec::default_route().via(gw).dev(idx).metric(200))
        .await
        .unwrap();
    nl.add_route(
        &RouteSpec::default_route()
            .via(Ipv4Addr::new(198, 18, 1, 2))
            .dev(idx)
            .metric(300),
    )
    .await
    .unwrap();
    // A default in another table must not be mistaken for the main one.
    nl.add_route(
        &RouteSpec::default_route()
            .via(Ipv4Addr::new(198, 18, 1, 9))
            .dev(idx)
            .table(300)
            .metric(1),
    )
    .await
    .unwrap();
    assert_eq!(
        nl.default_route().await.unwrap(),
        Some(DefaultRoute {
            gateway: Some(gw),
            oif: Some(idx),
            metric: 200
        })
    );

    let lookup = nl
        .route_get(Ipv4Addr::new(198, 18, 99, 9))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lookup.gateway, Some(gw));
    assert_eq!(lookup.oif, Some(idx));
    assert_eq!(lookup.pref_source, Some(Ipv4Addr::new(198, 18, 1, 5)));
    assert_eq!(lookup.table, TABLE_MAIN);

    // The host route to a "VPN server" through the pre-existing default gateway.
    let server = Ipv4Addr::new(198, 19, 0, 10);
    let host_route = RouteSpec::to(server.into()).via(gw).dev(idx);
    nl.add_route(&host_route).await.unwrap();
    assert!(nl.routes(TABLE_MAIN).await.unwrap().contains(&host_route));

    nl.del_route(&RouteSpec::default_route()).await.unwrap();
    nl.del_route(&RouteSpec::default_route()).await.unwrap();
    nl.del_route(&RouteSpec::default_route()).await.unwrap();
    assert_eq!(nl.default_route().await.unwrap(), None);
    assert_eq!(
        nl.route_get(Ipv4Addr::new(198, 18, 200, 1)).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn policy_rules_are_idempotent_and_look_up_the_table() {
    let (ns, nl, _idx, _tap) = setup().await;
    let from = PolicyRule::from_address(Ipv4Addr::new(198, 18, 1, 5), 1000, 1000);
    let mark = PolicyRule::fwmark(0x100, 0xff00, 1000, 1001);
    for rule in [from, mark, from, mark] {
        nl.add_rule(&rule).await.unwrap();
    }
    let rules = nl.rules().await.unwrap();
    assert_eq!(rules.iter().filter(|r| **r == from).count(), 1, "{rules:?}");
    assert_eq!(rules.iter().filter(|r| **r == mark).count(), 1, "{rules:?}");
    // The kernel's own rules are listed too (local/main/default).
    assert!(rules
        .iter()
        .any(|r| r.table == TABLE_MAIN && r.priority == 32766));

    let shown = ns.ip(&["rule", "show"]);
    assert!(
        shown.contains("1000:\tfrom 198.18.1.5 lookup 1000"),
        "{shown}"
    );
    assert!(
        shown.contains("1001:\tfrom all fwmark 0x100/0xff00 lookup 1000"),
        "{shown}"
    );
    assert!(!shown.contains("none"), "rule without action: {shown}");

    for rule in [from, mark, from, mark] {
        nl.del_rule(&rule).await.unwrap();
    }
    let rules = nl.rules().await.unwrap();
    assert!(
        !rules.contains(&from) && !rules.contains(&mark),
        "{rules:?}"
    );
}
