//! Whether what a [`LeasePlan`] implies is still installed in a namespace: the routes, the
//! policy rules and the CONNMARK nft table. Someone (a pod's own tooling, an operator, a
//! network daemon) may have removed them after the engine installed them; CNI CHECK reports
//! that instead of answering "all fine".
//!
//! The comparison is semantic (the fields the kernel reports back, with its defaults filled
//! in), so it does not depend on how iproute2 would print either side. [`missing_routes`] and
//! [`missing_rules`] are pure; [`missing_objects`] reads the kernel through `netcfg`.

use netcfg::{Firewall, NetcfgError, Netlink, PolicyRule, RouteSpec, TABLE_MAIN};

use crate::engine::lease_apply::LeasePlan;

/// Whether the installed route `have` is the planned route `want`. Fields the plan leaves
/// open (interface, preferred source) match anything; a missing metric is metric 0, which is
/// how the kernel reports an IPv4 route added without one.
fn route_matches(want: &RouteSpec, have: &RouteSpec) -> bool {
    want.destination.trunc() == have.destination.trunc()
        && want.table == have.table
        && want.gateway == have.gateway
        && want.metric.unwrap_or(0) == have.metric.unwrap_or(0)
        && want.oif.is_none_or(|oif| have.oif == Some(oif))
        && want
            .pref_source
            .is_none_or(|src| have.pref_source == Some(src))
}

/// Whether the installed rule `have` is the planned rule `want`: same source prefix, fwmark
/// selector (compared under its mask), table and priority.
fn rule_matches(want: &PolicyRule, have: &PolicyRule) -> bool {
    let source = |r: &PolicyRule| r.source.map(|s| s.trunc());
    let mark = |r: &PolicyRule| r.fwmark.map(|m| (m.mark & m.mask, m.mask));
    source(want) == source(have)
        && mark(want) == mark(have)
        && want.table == have.table
        && want.priority == have.priority
}

fn table_name(table: u32) -> String {
    if table == TABLE_MAIN {
        "main".into()
    } else {
        table.to_string()
    }
}

/// `route 10.98.0.0/24 via 10.99.0.1 dev vpn0 metric 50 table main`, like `ip route` prints
/// it; `ifname` names the planned interface.
fn describe_route(route: &RouteSpec, ifname: &str) -> String {
    let mut s = format!("route {}", route.destination);
    if let Some(gw) = route.gateway {
        s += &format!(" via {gw}");
    }
    if route.oif.is_some() {
        s += &format!(" dev {ifname}");
    }
    if let Some(src) = route.pref_source {
        s += &format!(" src {src}");
    }
    if let Some(metric) = route.metric {
        s += &format!(" metric {metric}");
    }
    s + &format!(" table {}", table_name(route.table))
}

/// `rule from 192.168.30.10 lookup 100 priority 1000`, like `ip rule` prints it.
fn describe_rule(rule: &PolicyRule) -> String {
    let mut s = String::from("rule from ");
    match rule.source {
        Some(src) if src.prefix_len() == 32 => {
            s += &src.addr().to_string();
        }
        Some(src) => s += &src.to_string(),
        None => s += "all",
    }
    if let Some(m) = rule.fwmark {
        s += &format!(" fwmark {:#x}", m.mark);
        if m.mask != u32::MAX {
            s += &format!("/{:#x}", m.mask);
        }
    }
    s + &format!(
        " lookup {} priority {}",
        table_name(rule.table),
        rule.priority
    )
}

/// The planned routes that no installed route matches, described for an error message.
/// `installed` holds the routes of every table the plan uses.
pub fn missing_routes(plan: &LeasePlan, installed: &[RouteSpec], ifname: &str) -> Vec<String> {
    plan.routes
        .iter()
        .filter(|want| !installed.iter().any(|have| route_matches(want, have)))
        .map(|want| format!("{} is missing", describe_route(want, ifname)))
        .collect()
}

/// The planned policy rules that no installed rule matches, described for an error message.
pub fn missing_rules(plan: &LeasePlan, installed: &[PolicyRule]) -> Vec<String> {
    plan.rules
        .iter()
        .filter(|want| !installed.iter().any(|have| rule_matches(want, have)))
        .map(|want| format!("{} is missing", describe_rule(want)))
        .collect()
}

/// Everything `plan` installs on the interface `ifname` (whose index the plan was made for)
/// that is absent from the namespace `nl` talks to, routes first, then rules, then the nft
/// table (checked only when the plan has CONNMARK; `firewall` is the attachment's table).
/// Addresses and DNS are the caller's to check. Empty when all is in place.
pub async fn missing_objects(
    nl: &Netlink,
    firewall: &Firewall,
    plan: &LeasePlan,
    ifname: &str,
) -> Result<Vec<String>, NetcfgError> {
    let mut tables: Vec<u32> = plan.routes.iter().map(|r| r.table).collect();
    tables.sort_unstable();
    tables.dedup();
    let mut routes = Vec::new();
    for table in tables {
        routes.extend(nl.routes(table).await?);
    }
    let mut missing = missing_routes(plan, &routes, ifname);
    if !plan.rules.is_empty() {
        missing.extend(missing_rules(plan, &nl.rules().await?));
    }
    if plan.connmark.is_some() && !firewall.exists().await? {
        missing.push(format!(
            "nft table inet {} is missing",
            firewall.table_name()
        ));
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::lease_apply::{plan, NetOptions};
    use std::net::Ipv4Addr;
    use std::time::{Duration, Instant};

    const TAP: u32 = 9;

    fn full_plan() -> LeasePlan {
        let mut lease =
            crate::engine::test_lease::bound_lease(Instant::now(), Duration::from_secs(3600));
        lease.classless_routes = vec![(
            "10.98.0.0/24".parse().unwrap(),
            Ipv4Addr::new(192, 168, 30, 254),
        )];
        let opts = NetOptions {
            accept_default_gateway: true,
            accept_static_routes: true,
            policy_table: Some(100),
            connmark: true,
            ..NetOptions::default()
        };
        plan(&lease, &opts, TAP)
    }

    /// What the kernel reports for a route we added: metric 0 made explicit (or left out),
    /// the protocol's other attributes irrelevant here.
    fn as_kernel_reports(route: &RouteSpec) -> RouteSpec {
        let mut r = route.clone();
        r.metric = Some(route.metric.unwrap_or(0));
        r
    }

    #[test]
    fn everything_installed_means_nothing_missing() {
        let p = full_plan();
        let routes: Vec<RouteSpec> = p.routes.iter().map(as_kernel_reports).collect();
        assert_eq!(missing_routes(&p, &routes, "vpn0"), Vec::<String>::new());
        assert_eq!(missing_rules(&p, &p.rules), Vec::<String>::new());
    }

    #[test]
    fn a_deleted_route_is_named() {
        let p = full_plan();
        let routes: Vec<RouteSpec> = p
            .routes
            .iter()
            .filter(|r| r.destination.to_string() != "10.98.0.0/24")
            .cloned()
            .collect();
        assert_eq!(
            missing_routes(&p, &routes, "vpn0"),
            ["route 10.98.0.0/24 via 192.168.30.254 dev vpn0 table main is missing"]
        );
    }

    #[test]
    fn routes_differing_in_gateway_table_metric_or_interface_do_not_count() {
        let p = full_plan();
        let static_route = p.routes[0].clone();
        let variants = [
            static_route.clone().via(Ipv4Addr::new(192, 168, 30, 1)),
            static_route.clone().table(100),
            static_route.clone().metric(50),
            static_route.clone().dev(TAP + 1),
            RouteSpec::to("10.98.0.0/25".parse().unwrap())
                .via(Ipv4Addr::new(192, 168, 30, 254))
                .dev(TAP),
        ];
        let mut installed: Vec<RouteSpec> = p.routes[1..].to_vec();
        installed.extend(variants);
        let missing = missing_routes(&p, &installed, "vpn0");
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(missing[0].starts_with("route 10.98.0.0/24 "));
    }

    #[test]
    fn unplanned_fields_match_anything() {
        let want = RouteSpec::to("10.98.0.0/24".parse().unwrap()).via(Ipv4Addr::new(10, 0, 0, 1));
        let have = want
            .clone()
            .dev(3)
            .src(Ipv4Addr::new(10, 0, 0, 2))
            .metric(0);
        assert!(route_matches(&want, &have));
        assert!(!route_matches(&have, &want), "a planned src must be there");
    }

    #[test]
    fn default_routes_are_told_apart_by_table_and_metric() {
        let p = full_plan();
        let mut installed: Vec<RouteSpec> = p.routes.iter().map(as_kernel_reports).collect();
        // Drop the main table's default route (metric 50), keep table 100's (metric 0).
        installed.retain(|r| !(r.destination.prefix_len() == 0 && r.table == TABLE_MAIN));
        assert_eq!(
            missing_routes(&p, &installed, "vpn0"),
            ["route 0.0.0.0/0 via 192.168.30.1 dev vpn0 metric 50 table main is missing"]
        );
    }

    #[test]
    fn a_deleted_rule_is_named_and_others_do_not_stand_in() {
        let p = full_plan();
        let from = p.rules[0];
        let mut installed = vec![
            p.rules[1],
            PolicyRule {
                priority: 999,
                ..from
            },
            PolicyRule { table: 101, ..from },
            PolicyRule::from_address(Ipv4Addr::new(192, 168, 30, 11), 100, from.priority),
        ];
        assert_eq!(
            missing_rules(&p, &installed),
            ["rule from 192.168.30.10 lookup 100 priority 1000 is missing"]
        );
        installed.push(from);
        installed.remove(0);
        assert_eq!(
            missing_rules(&p, &installed),
            ["rule from all fwmark 0x64 lookup 100 priority 1001 is missing"]
        );
    }

    #[test]
    fn fwmark_compares_under_its_mask() {
        let want = PolicyRule::fwmark(0x64, 0xff, 100, 1001);
        let have = PolicyRule::fwmark(0x164, 0xff, 100, 1001);
        assert!(rule_matches(&want, &have));
        assert!(!rule_matches(
            &want,
            &PolicyRule::fwmark(0x64, u32::MAX, 100, 1001)
        ));
    }
}
