//! Root tests: IPv6 addresses, routes and rules, and the per-interface sysctls, inside a
//! throwaway namespace.

mod common;

use common::TestNetns;
use netcfg::sysctl::{self, Ipv6Conf};
use netcfg::{Netlink, PolicyRule6, Route6Spec, Tap, TapConfig, TABLE_MAIN};

async fn setup() -> (TestNetns, Netlink, u32, Tap) {
    let ns = TestNetns::new();
    let config = TapConfig {
        name: Some("v6t0".into()),
        persistent: false,
        vnet_hdr: false,
    };
    let tap = Tap::create(&ns.netns(), &config).await.unwrap();
    let nl = Netlink::open(ns.netns()).await.unwrap();
    let idx = nl.link_index("v6t0").await.unwrap();
    nl.set_link_up(idx).await.unwrap();
    (ns, nl, idx, tap)
}

fn read_conf(ns: &TestNetns, key: &str) -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.name, "cat"])
        .arg(format!("/proc/sys/net/ipv6/conf/v6t0/{key}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test]
async fn sysctls_are_written_in_the_target_namespace_only() {
    let (ns, _nl, _idx, _tap) = setup().await;
    assert!(sysctl::disable_kernel_autoconf(&ns.netns(), "v6t0")
        .await
        .unwrap());
    assert_eq!(read_conf(&ns, "accept_ra"), "0");
    assert_eq!(read_conf(&ns, "autoconf"), "0");
    assert!(sysctl::eui64_link_local(&ns.netns(), "v6t0").await.unwrap());
    assert_eq!(read_conf(&ns, "addr_gen_mode"), "0");
    assert!(
        sysctl::set_ipv6_conf(&ns.netns(), "v6t0", Ipv6Conf::DisableIpv6, 1)
            .await
            .unwrap()
    );
    assert_eq!(read_conf(&ns, "disable_ipv6"), "1");
    // The link does not exist in this process's namespace: a sysctl error naming the path.
    let err = sysctl::set_ipv6_conf(&netcfg::Netns::Current, "v6t0", Ipv6Conf::AcceptRa, 0)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("/proc/sys/net/ipv6/conf/v6t0/accept_ra"),
        "{err}"
    );
}

#[tokio::test]
async fn addresses_routes_and_rules_are_idempotent_both_ways() {
    let (ns, nl, idx, _tap) = setup().await;
    let addr = "fd00:6::1234/64".parse().unwrap();
    nl.add_address6(idx, addr).await.unwrap();
    nl.add_address6(idx, addr).await.unwrap();
    assert_eq!(nl.addresses6(idx).await.unwrap(), [addr]);
    let shown = ns.ip(&["-6", "addr", "show", "dev", "v6t0"]);
    let line = shown
        .lines()
        .find(|l| l.contains("fd00:6::1234/64"))
        .unwrap_or_else(|| panic!("{shown}"));
    // No DAD (never tentative) and no automatic prefix route.
    assert!(
        line.contains("nodad") && !line.contains("tentative"),
        "{line}"
    );
    assert!(line.contains("noprefixroute"), "{line}");
    assert!(!ns.ip(&["-6", "route", "show"]).contains("fd00:6::/64"));

    let onlink = Route6Spec::to("fd00:6::/64".parse().unwrap()).dev(idx);
    nl.add_route6(&onlink).await.unwrap();
    nl.add_route6(&onlink).await.unwrap();
    let gw = "fe80::1".parse().unwrap();
    let default = Route6Spec::default_route().via(gw).dev(idx).table(1234);
    nl.replace_route6(&default).await.unwrap();
    let main = nl.routes6(TABLE_MAIN).await.unwrap();
    assert!(main
        .iter()
        .any(|r| r.destination == onlink.destination && r.oif == Some(idx)));
    let table = nl.routes6(1234).await.unwrap();
    assert_eq!(table.len(), 1);
    assert_eq!((table[0].gateway, table[0].oif), (Some(gw), Some(idx)));

    let from = PolicyRule6::from_address(addr.addr(), 1234, 1000);
    let mark = PolicyRule6::fwmark(0x100, 0xffff_ffff, 1234, 1001);
    for rule in [&from, &mark, &from] {
        nl.add_rule6(rule).await.unwrap();
    }
    let rules = nl.rules6().await.unwrap();
    assert_eq!(rules.iter().filter(|r| **r == from).count(), 1);
    assert_eq!(rules.iter().filter(|r| **r == mark).count(), 1);
    assert!(
        nl.rules().await.unwrap().iter().all(|r| r.table != 1234),
        "v4 rules untouched"
    );

    for _ in 0..2 {
        nl.del_rule6(&from).await.unwrap();
        nl.del_rule6(&mark).await.unwrap();
        nl.del_route6(&default).await.unwrap();
        nl.del_route6(&onlink).await.unwrap();
        nl.del_address6(idx, addr).await.unwrap();
    }
    assert!(nl.addresses6(idx).await.unwrap().is_empty());
    assert!(nl.routes6(1234).await.unwrap().is_empty());
    assert!(nl.rules6().await.unwrap().iter().all(|r| r.table != 1234));
}

#[tokio::test]
async fn set_address6_deprecates_and_revives_in_place_and_the_ipv6_mtu_is_written() {
    let (ns, nl, idx, _tap) = setup().await;
    let addr = "fd00:6::77/64".parse().unwrap();
    let line = |ns: &TestNetns| {
        let shown = ns.ip(&["-6", "-o", "addr", "show", "dev", "v6t0", "scope", "global"]);
        shown
            .lines()
            .find(|l| l.contains("fd00:6::77/64"))
            .unwrap_or_else(|| panic!("{shown}"))
            .to_owned()
    };
    nl.set_address6(idx, addr, false).await.unwrap();
    let fresh = line(&ns);
    assert!(
        fresh.contains("nodad") && fresh.contains("noprefixroute") && !fresh.contains("deprecated"),
        "{fresh}"
    );
    nl.set_address6(idx, addr, true).await.unwrap();
    let deprecated = line(&ns);
    assert!(
        deprecated.contains("deprecated") && deprecated.contains("preferred_lft 0sec"),
        "{deprecated}"
    );
    nl.set_address6(idx, addr, false).await.unwrap();
    assert!(!line(&ns).contains("deprecated"), "{}", line(&ns));
    assert_eq!(nl.addresses6(idx).await.unwrap(), [addr], "one address");

    // The IPv6 MTU: at most the link's (the kernel refuses more).
    assert!(
        sysctl::set_ipv6_conf(&ns.netns(), "v6t0", Ipv6Conf::Mtu, 1400)
            .await
            .unwrap()
    );
    assert_eq!(read_conf(&ns, "mtu"), "1400");
    assert!(
        sysctl::set_ipv6_conf(&ns.netns(), "v6t0", Ipv6Conf::Mtu, 9000)
            .await
            .is_err()
    );
}
