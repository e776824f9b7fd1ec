//! Whether what a [`LeasePlan`] implies is still installed in a namespace: the routes, the
//! policy rules and the CONNMARK nft table. Someone (a pod's own tooling, an operator, a
//! network daemon) may have removed them after the engine installed them; CNI CHECK reports
//! that instead of answering "all fine".
//!
//! The comparison is semantic (the fields the kernel reports back, with its defaults filled
//! in), so it does not depend on how iproute2 would print either side. [`missing_routes`] and
//! [`missing_rules`] are pure; [`missing_objects`] reads the kernel through `netcfg`.

use netcfg::{
    Firewall, FwMark, NetcfgError, Netlink, PolicyRule, PolicyRule6, Route6Spec, RouteSpec,
    TABLE_MAIN,
};

use crate::engine::lease_apply::{Ipv6Plan, LeasePlan};

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
    source(want) == source(have) && same_lookup(want.fwmark, have.fwmark, want, have)
}

/// The family-neutral part of a rule comparison: fwmark under its mask, table, priority.
fn same_lookup<R: RuleLookup>(
    want_mark: Option<FwMark>,
    have_mark: Option<FwMark>,
    want: &R,
    have: &R,
) -> bool {
    let mark = |m: Option<FwMark>| m.map(|m| (m.mark & m.mask, m.mask));
    mark(want_mark) == mark(have_mark) && want.lookup() == have.lookup()
}

/// (table, priority) of a rule of either family.
trait RuleLookup {
    fn lookup(&self) -> (u32, u32);
}

impl RuleLookup for PolicyRule {
    fn lookup(&self) -> (u32, u32) {
        (self.table, self.priority)
    }
}

impl RuleLookup for PolicyRule6 {
    fn lookup(&self) -> (u32, u32) {
        (self.table, self.priority)
    }
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
    let src = route.pref_source.map(|s| s.to_string());
    describe_route_parts(
        &route.destination.to_string(),
        route.gateway.map(|g| g.to_string()),
        route.oif.map(|_| ifname),
        src.as_deref(),
        route.metric,
        route.table,
    )
}

/// A route of either family as `ip route` prints it.
fn describe_route_parts(
    destination: &str,
    gateway: Option<String>,
    dev: Option<&str>,
    src: Option<&str>,
    metric: Option<u32>,
    table: u32,
) -> String {
    let mut s = format!("route {destination}");
    if let Some(gw) = gateway {
        s += &format!(" via {gw}");
    }
    if let Some(dev) = dev {
        s += &format!(" dev {dev}");
    }
    if let Some(src) = src {
        s += &format!(" src {src}");
    }
    if let Some(metric) = metric {
        s += &format!(" metric {metric}");
    }
    s + &format!(" table {}", table_name(table))
}

/// `rule from 192.168.30.10 lookup 100 priority 1000`, like `ip rule` prints it.
fn describe_rule(rule: &PolicyRule) -> String {
    let from = match rule.source {
        Some(src) if src.prefix_len() == 32 => src.addr().to_string(),
        Some(src) => src.to_string(),
        None => "all".into(),
    };
    describe_rule_parts(&from, rule.fwmark, rule.table, rule.priority)
}

/// A rule of either family as `ip rule` prints it; `from` is the source as printed.
fn describe_rule_parts(from: &str, fwmark: Option<FwMark>, table: u32, priority: u32) -> String {
    let mut s = format!("rule from {from}");
    if let Some(m) = fwmark {
        s += &format!(" fwmark {:#x}", m.mark);
        if m.mask != u32::MAX {
            s += &format!("/{:#x}", m.mask);
        }
    }
    s + &format!(" lookup {} priority {priority}", table_name(table))
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

/// Whether the installed IPv6 route `have` is the planned `want`: fields the plan leaves open
/// match anything (the kernel reports a route added without a metric with metric 1024).
fn route6_matches(want: &Route6Spec, have: &Route6Spec) -> bool {
    want.destination == have.destination
        && want.table == have.table
        && want.gateway == have.gateway
        && want.oif.is_none_or(|oif| have.oif == Some(oif))
        && want.metric.is_none_or(|m| have.metric == Some(m))
}

fn rule6_matches(want: &PolicyRule6, have: &PolicyRule6) -> bool {
    want.source.map(|s| s.trunc()) == have.source.map(|s| s.trunc())
        && same_lookup(want.fwmark, have.fwmark, want, have)
}

/// The planned IPv6 routes no installed route matches, described for an error message.
pub fn missing_routes6(plan: &Ipv6Plan, installed: &[Route6Spec], ifname: &str) -> Vec<String> {
    plan.routes
        .iter()
        .filter(|want| !installed.iter().any(|have| route6_matches(want, have)))
        .map(|r| {
            let gw = r.gateway.map(|g| g.to_string());
            let dev = r.oif.map(|_| ifname);
            let dst = r.destination.to_string();
            let route = describe_route_parts(&dst, gw, dev, None, r.metric, r.table);
            format!("{route} is missing")
        })
        .collect()
}

/// The planned IPv6 rules no installed rule matches, described for an error message.
pub fn missing_rules6(plan: &Ipv6Plan, installed: &[PolicyRule6]) -> Vec<String> {
    plan.rules
        .iter()
        .filter(|want| !installed.iter().any(|have| rule6_matches(want, have)))
        .map(|r| {
            let from = match r.source {
                Some(src) if src.prefix_len() == 128 => src.addr().to_string(),
                Some(src) => src.to_string(),
                None => "all".into(),
            };
            let rule = describe_rule_parts(&from, r.fwmark, r.table, r.priority);
            format!("{rule} is missing")
        })
        .collect()
}

/// What of the IPv6 `plan` is missing from the TAP with index `tap` (named `ifname`) in the
/// namespace `nl` talks to: addresses, routes (every table the plan uses), policy rules.
pub async fn missing_objects6(
    nl: &Netlink,
    plan: &Ipv6Plan,
    tap: u32,
    ifname: &str,
) -> Result<Vec<String>, NetcfgError> {
    let mut missing = Vec::new();
    if !plan.addresses.is_empty() {
        let have = nl.addresses6(tap).await?;
        for a in plan.addresses.iter().filter(|a| !have.contains(a)) {
            missing.push(format!("{ifname} lacks address {a}"));
        }
    }
    let mut tables: Vec<u32> = plan.routes.iter().map(|r| r.table).collect();
    tables.sort_unstable();
    tables.dedup();
    let mut routes = Vec::new();
    for table in tables {
        routes.extend(nl.routes6(table).await?);
    }
    missing.extend(missing_routes6(plan, &routes, ifname));
    if !plan.rules.is_empty() {
        missing.extend(missing_rules6(plan, &nl.rules6().await?));
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
