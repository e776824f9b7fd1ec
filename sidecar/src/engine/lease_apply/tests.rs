//! Unit tests of the pure lease translation ([`plan`]) and item ordering.

use super::*;
use std::time::{Duration, Instant};

fn lease() -> Lease {
    let mut l = crate::engine::test_lease::bound_lease(Instant::now(), Duration::from_secs(3600));
    l.dns_servers = vec![Ipv4Addr::new(192, 168, 30, 1)];
    l.domain_name = Some("vpn.test".into());
    l
}

const TAP: u32 = 9;

#[test]
fn nothing_accepted_means_address_only() {
    let p = plan(&lease(), &NetOptions::default(), TAP);
    assert_eq!(p.address.to_string(), "192.168.30.10/24");
    assert!(p.routes.is_empty() && p.rules.is_empty());
    assert_eq!((p.connmark, p.dns), (None, None));
}

#[test]
fn default_gateway_at_metric_50() {
    let opts = NetOptions {
        accept_default_gateway: true,
        ..NetOptions::default()
    };
    let p = plan(&lease(), &opts, TAP);
    assert_eq!(
        p.routes,
        vec![RouteSpec::default_route()
            .via(Ipv4Addr::new(192, 168, 30, 1))
            .dev(TAP)
            .metric(50)]
    );
}

#[test]
fn lease_mtu_applies_only_when_asked_and_sane() {
    let mut l = lease();
    l.mtu = Some(1400);
    let on = NetOptions {
        lease_mtu: true,
        ..NetOptions::default()
    };
    assert_eq!(plan(&l, &on, TAP).mtu, Some(1400));
    assert_eq!(
        plan(&l, &NetOptions::default(), TAP).mtu,
        None,
        "--mtu given"
    );
    for odd in [68, 575, 1501, 9000] {
        l.mtu = Some(odd);
        assert_eq!(plan(&l, &on, TAP).mtu, None, "{odd} is ignored");
    }
    l.mtu = None;
    assert_eq!(plan(&l, &on, TAP).mtu, None);
}

#[test]
fn static_routes_skip_default_entry_unless_gateway_accepted() {
    let mut l = lease();
    l.classless_routes = vec![
        (
            "10.99.0.0/16".parse().unwrap(),
            Ipv4Addr::new(192, 168, 30, 254),
        ),
        ("10.98.0.0/16".parse().unwrap(), Ipv4Addr::UNSPECIFIED),
        ("0.0.0.0/0".parse().unwrap(), Ipv4Addr::new(192, 168, 30, 2)),
    ];
    let mut opts = NetOptions {
        accept_static_routes: true,
        ..NetOptions::default()
    };
    let p = plan(&l, &opts, TAP);
    let dests: Vec<String> = p.routes.iter().map(|r| r.destination.to_string()).collect();
    assert_eq!(dests, ["10.99.0.0/16", "10.98.0.0/16"]);
    assert_eq!(p.routes[1].gateway, None);
    opts.accept_default_gateway = true;
    let p = plan(&l, &opts, TAP);
    let default = p.routes.last().unwrap();
    assert_eq!(default.destination.prefix_len(), 0);
    assert_eq!(
        default.gateway,
        Some(Ipv4Addr::new(192, 168, 30, 2)),
        "RFC 3442 entry wins"
    );
    assert_eq!(p.routes.len(), 3);
}

#[test]
fn policy_table_and_connmark() {
    let opts = NetOptions {
        policy_table: Some(200),
        connmark: true,
        ..NetOptions::default()
    };
    let p = plan(&lease(), &opts, TAP);
    assert_eq!(
        p.rules,
        vec![
            PolicyRule::from_address(Ipv4Addr::new(192, 168, 30, 10), 200, RULE_PRIORITY_FROM),
            PolicyRule::fwmark(200, u32::MAX, 200, RULE_PRIORITY_FWMARK),
        ]
    );
    assert_eq!(p.connmark, Some(200));
    assert!(p.routes.iter().all(|r| r.table == 200));
    assert_eq!(p.routes.len(), 2);
    assert_eq!(p.routes[0].destination.to_string(), "192.168.30.0/24");
}

#[test]
fn items_install_the_firewall_before_the_fwmark_rule_and_dns_last() {
    let path = PathBuf::from("/tmp/x/resolv.conf");
    let opts = NetOptions {
        policy_table: Some(200),
        connmark: true,
        resolv_conf: Some(path.clone()),
        ..NetOptions::default()
    };
    let items = plan(&lease(), &opts, TAP).items(TAP, Some(&path));
    let kinds: Vec<&str> = items
        .iter()
        .map(|i| match i {
            Added::Address { .. } => "address",
            Added::Route(_) => "route",
            Added::Firewall => "firewall",
            Added::Rule(_) => "rule",
            Added::Dns { .. } => "dns",
        })
        .collect();
    assert_eq!(
        kinds,
        ["address", "route", "route", "firewall", "rule", "rule", "dns"]
    );
    // A lease with other DNS servers is a different item: it gets re-applied.
    let mut other = lease();
    other.dns_servers = vec![Ipv4Addr::new(192, 168, 30, 2)];
    let changed = plan(&other, &opts, TAP).items(TAP, Some(&path));
    assert_ne!(items.last(), changed.last());
    assert_eq!(items[..6], changed[..6]);
}

#[test]
fn dns_only_when_asked_and_present() {
    let mut opts = NetOptions {
        resolv_conf: Some("/tmp/x/resolv.conf".into()),
        ..NetOptions::default()
    };
    let p = plan(&lease(), &opts, TAP);
    let dns = p.dns.unwrap();
    assert_eq!(dns.search, ["vpn.test"]);
    assert_eq!(dns.nameservers.len(), 1);
    let mut l = lease();
    l.dns_servers.clear();
    assert_eq!(plan(&l, &opts, TAP).dns, None);
    opts.resolv_conf = None;
    assert_eq!(plan(&lease(), &opts, TAP).dns, None);
}
