//! The IPv6 half of a [`NetConfigurator`]: what router advertisements and DHCPv6 taught the
//! [`dhcp_client::v6::Ipv6Client`] becomes addresses, on-link routes, a default route via the
//! router's link-local address, Route Information routes (with `accept_static_routes`, like
//! the DHCPv4 classless routes), policy rules (inet6), the IPv6 MTU of the TAP and extra
//! resolv.conf servers. Like the IPv4 lease it records exactly what it added, reconciles on
//! every change and removes everything on teardown.

use std::net::{IpAddr, Ipv6Addr};

use dhcp_client::v6::Ipv6Settings;
use ipnet::Ipv6Net;
use netcfg::sysctl::{self, Ipv6Conf};
use netcfg::{pod_netns, DnsConfig, NetcfgError, PolicyRule6, Route6Spec};

use super::{NetConfigurator, NetOptions, DEFAULT_ROUTE_METRIC};

/// What the engine does with IPv6 on the TAP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Ipv6Mode {
    /// The kernel keeps its link-local address but ignores router advertisements; nothing is
    /// configured from the VPN (`connect --no-dhcp`).
    #[default]
    LinkLocalOnly,
    /// Router discovery, SLAAC and DHCPv6 through the tunnel, applied like the DHCPv4 lease
    /// (`connect`, and CNI pods unless their network says `ipv6: false`).
    Managed,
    /// `disable_ipv6` on the TAP: no IPv6 at all (`connect --no-ipv6`, CNI `ipv6: false`).
    Off,
}

/// What one [`Ipv6Settings`] installs, by kind: the CNI result reports it and CHECK verifies
/// it (the same plan the engine applies, so neither can drift from the pod).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ipv6Plan {
    pub addresses: Vec<Ipv6Net>,
    pub routes: Vec<Route6Spec>,
    pub rules: Vec<PolicyRule6>,
}

/// The pure translation of `settings` for the TAP with index `tap`, as the engine installs it.
pub fn plan_ipv6(
    settings: &Ipv6Settings,
    opts: &NetOptions,
    tap: u32,
    server_over_ipv6: bool,
) -> Ipv6Plan {
    let mut plan = Ipv6Plan::default();
    for item in plan6(settings, opts, tap, server_over_ipv6) {
        match item {
            Added6::Address(a, _) => plan.addresses.push(a),
            Added6::Route(r) => plan.routes.push(r),
            Added6::Rule(r) => plan.rules.push(r),
        }
    }
    plan
}

/// One IPv6 object this configurator added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Added6 {
    /// With whether it is deprecated (preferred lifetime 0).
    Address(Ipv6Net, bool),
    Route(Route6Spec),
    Rule(PolicyRule6),
}

/// What one [`Ipv6Settings`] becomes for the TAP with index `tap`, in installation order.
pub(super) fn plan6(
    settings: &Ipv6Settings,
    opts: &NetOptions,
    tap: u32,
    server_over_ipv6: bool,
) -> Vec<Added6> {
    let mut items: Vec<Added6> = settings
        .addresses
        .iter()
        .map(|a| Added6::Address(a.interface_address(), a.deprecated))
        .collect();
    for prefix in &settings.on_link {
        items.push(Added6::Route(Route6Spec::to(*prefix).dev(tap)));
    }
    // Route Information options are the routers' static routes: the same switch as the
    // DHCPv4 classless routes, main table only.
    if opts.accept_static_routes {
        for r in &settings.routes {
            let route = Route6Spec::to(r.destination).via(r.gateway).dev(tap);
            items.push(Added6::Route(route));
        }
    }
    let router = settings.router.map(|r| r.address);
    // With the server reached over IPv6, a default route into the tunnel would capture the
    // tunnel's own packets (the IPv4 server route is pinned; IPv6 has no pin yet).
    if opts.accept_default_gateway && !server_over_ipv6 {
        if let Some(gw) = router {
            let route = Route6Spec::default_route()
                .via(gw)
                .dev(tap)
                .metric(DEFAULT_ROUTE_METRIC);
            items.push(Added6::Route(route));
        }
    }
    if let Some(table) = opts.policy_table {
        for prefix in &settings.on_link {
            items.push(Added6::Route(Route6Spec::to(*prefix).dev(tap).table(table)));
        }
        if let Some(gw) = router {
            let route = Route6Spec::default_route().via(gw).dev(tap).table(table);
            items.push(Added6::Route(route));
        }
        let addresses: Vec<Ipv6Addr> = settings.addresses.iter().map(|a| a.address).collect();
        // The nft CONNMARK table is family inet: the IPv4 lease's table marks IPv6 too; only
        // the fwmark rule is per family, and only worth having with an IPv6 address (a hub
        // without IPv6 must leave, and CHECK must expect, no IPv6 objects at all).
        let connmark = opts.connmark && !addresses.is_empty();
        let rules = pod_netns::policy_rules::<Ipv6Net>(table, &addresses, connmark);
        items.extend(rules.into_iter().map(Added6::Rule));
    }
    items
}

/// The TAP's IPv6 MTU for an `advertised` one and the `link` MTU: the smaller (RFC 4861
/// §6.3.4: an advertised MTU above the link's is ignored, so the link MTU it is); no
/// advertisement puts the link MTU back. `None` when the link MTU is unknown.
pub(super) fn ipv6_mtu(advertised: Option<u32>, link: Option<u32>) -> Option<u32> {
    let link = link?;
    Some(advertised.map_or(link, |a| a.min(link)))
}

/// The resolv.conf servers and domains IPv6 adds after the DHCPv4 lease's.
pub(super) fn dns6(settings: &Ipv6Settings) -> DnsConfig {
    DnsConfig {
        nameservers: settings
            .dns_servers
            .iter()
            .copied()
            .map(IpAddr::V6)
            .collect(),
        search: settings.search_domains.clone(),
    }
}

/// The lease's DNS configuration with `extra` appended (duplicates dropped). `None` stays
/// `None` only when both are empty.
pub(super) fn merge_dns(lease: Option<DnsConfig>, extra: &DnsConfig) -> Option<DnsConfig> {
    if extra.nameservers.is_empty() && extra.search.is_empty() {
        return lease;
    }
    let mut merged = lease.unwrap_or_default();
    for server in &extra.nameservers {
        if !merged.nameservers.contains(server) {
            merged.nameservers.push(*server);
        }
    }
    for domain in &extra.search {
        if !merged.search.contains(domain) {
            merged.search.push(domain.clone());
        }
    }
    (!merged.nameservers.is_empty()).then_some(merged)
}

impl NetConfigurator {
    /// Takes IPv6 on the TAP away from the kernel (`accept_ra=0`, `autoconf=0`: the state is
    /// ours and leaves with us; for [`Ipv6Mode::Managed`] also `addr_gen_mode=0`, before the
    /// link comes up), or turns it off entirely for [`Ipv6Mode::Off`]. A kernel
    /// without IPv6 is fine; a sysctl that cannot be written (read-only /proc/sys) is logged,
    /// not fatal.
    pub(super) async fn prepare_ipv6(&self) {
        let netns = self.nl.netns();
        let tap = &self.tap_name;
        let result = match self.opts.ipv6 {
            Ipv6Mode::Off => sysctl::set_ipv6_conf(netns, tap, Ipv6Conf::DisableIpv6, 1).await,
            Ipv6Mode::LinkLocalOnly => sysctl::disable_kernel_autoconf(netns, tap).await,
            // The client sends from fe80::EUI-64: make that the kernel's link-local address.
            Ipv6Mode::Managed => match sysctl::eui64_link_local(netns, tap).await {
                Ok(true) => sysctl::disable_kernel_autoconf(netns, tap).await,
                other => other,
            },
        };
        match result {
            Ok(true) => {}
            Ok(false) => tracing::debug!("the kernel has no IPv6"),
            Err(e) => tracing::warn!("cannot take IPv6 autoconfiguration from the kernel: {e}"),
        }
    }

    /// The server is reached over IPv6: no IPv6 default route into the tunnel.
    pub fn set_server_over_ipv6(&mut self, server: Ipv6Addr) {
        if !self.server_over_ipv6 {
            tracing::warn!(%server, "the VPN server is reached over IPv6: no IPv6 default route will be installed through the tunnel");
        }
        self.server_over_ipv6 = true;
    }

    /// Installs `settings`: objects it shares with what is installed stay, stale ones go,
    /// missing ones are added; the IPv6 DNS servers join the lease's in resolv.conf.
    pub async fn apply_ipv6(&mut self, settings: &Ipv6Settings) -> Result<(), NetcfgError> {
        let result = self.apply_ipv6_inner(settings).await;
        self.nl.close();
        result
    }

    async fn apply_ipv6_inner(&mut self, settings: &Ipv6Settings) -> Result<(), NetcfgError> {
        let wanted = plan6(settings, &self.opts, self.tap_index, self.server_over_ipv6);
        let previous = std::mem::take(&mut self.ipv6);
        // An address only (un)deprecated is updated in place below, never removed first.
        let flipped = |item: &Added6| match item {
            Added6::Address(net, d) => wanted.contains(&Added6::Address(*net, !d)),
            _ => false,
        };
        let (kept, stale): (Vec<Added6>, Vec<Added6>) = previous
            .into_iter()
            .filter(|item| !flipped(item))
            .partition(|item| wanted.contains(item));
        self.ipv6 = kept;
        if let Some(first) = self.undo6(stale).await.into_iter().next() {
            tracing::warn!("removing stale IPv6 configuration: {first}");
        }
        for item in wanted {
            if self.ipv6.contains(&item) {
                continue;
            }
            self.install6(&item).await?;
            self.ipv6.push(item);
        }
        self.set_ipv6_mtu(settings.mtu).await;
        if self.opts.resolv_conf.is_some() {
            self.set_extra_dns(dns6(settings)).await?;
        }
        Ok(())
    }

    /// The advertised MTU as the TAP's IPv6 MTU, never above the link MTU (the lease's or
    /// `--mtu`); `None` puts the link MTU back. Failures are logged: the link MTU still works.
    async fn set_ipv6_mtu(&mut self, advertised: Option<u32>) {
        if advertised == self.ipv6_mtu {
            return;
        }
        let link = match async { self.nl.get().await?.link_by_index(self.tap_index).await }.await {
            Ok(Some(info)) => info.mtu,
            Ok(None) => None,
            Err(e) => {
                tracing::warn!("cannot read the TAP's MTU: {e}");
                None
            }
        };
        let Some(value) = ipv6_mtu(advertised, link) else {
            return;
        };
        let netns = self.nl.netns();
        match sysctl::set_ipv6_conf(netns, &self.tap_name, Ipv6Conf::Mtu, value).await {
            Ok(_) => {
                tracing::info!(mtu = value, ?advertised, "IPv6 MTU of the TAP");
                self.ipv6_mtu = advertised;
            }
            Err(e) => tracing::warn!("cannot set the IPv6 MTU: {e}"),
        }
    }

    async fn install6(&self, item: &Added6) -> Result<(), NetcfgError> {
        match item {
            Added6::Address(net, deprecated) => {
                let (tap, net, deprecated) = (self.tap_index, *net, *deprecated);
                self.nl
                    .get()
                    .await?
                    .set_address6(tap, net, deprecated)
                    .await
            }
            Added6::Route(spec) => self.nl.get().await?.replace_route6(spec).await,
            Added6::Rule(rule) => self.nl.get().await?.add_rule6(rule).await,
        }
    }

    /// Removes every IPv6 object added (newest first, continuing past errors) and forgets the
    /// extra DNS without rewriting resolv.conf: teardown restores resolv.conf right after.
    pub(super) async fn remove_ipv6(&mut self) -> Vec<NetcfgError> {
        self.extra_dns = DnsConfig::default();
        let items = std::mem::take(&mut self.ipv6);
        let errors = self.undo6(items).await;
        self.set_ipv6_mtu(None).await;
        errors
    }

    async fn undo6(&self, items: Vec<Added6>) -> Vec<NetcfgError> {
        let mut errors = Vec::new();
        for item in items.into_iter().rev() {
            let nl = || self.nl.get();
            let result = match &item {
                Added6::Address(net, _) => {
                    async { nl().await?.del_address6(self.tap_index, *net).await }.await
                }
                Added6::Route(spec) => async { nl().await?.del_route6(spec).await }.await,
                Added6::Rule(rule) => async { nl().await?.del_rule6(rule).await }.await,
            };
            if let Err(e) = result {
                errors.push(e);
            }
        }
        errors
    }

    /// Servers and domains written after the lease's own; re-applies the installed lease
    /// (only its resolv.conf item changes) when they differ.
    async fn set_extra_dns(&mut self, extra: DnsConfig) -> Result<(), NetcfgError> {
        if self.extra_dns == extra {
            return Ok(());
        }
        self.extra_dns = extra;
        match self.applied.take() {
            Some(lease) => self.apply_lease(&lease).await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::lease_apply::{RULE_PRIORITY_FROM, RULE_PRIORITY_FWMARK};
    use crate::engine::test_lease::slaac_settings as settings;

    const TAP: u32 = 9;

    #[test]
    fn address_and_on_link_route_only_by_default() {
        let items = plan6(&settings(), &NetOptions::default(), TAP, false);
        assert_eq!(
            items,
            [
                Added6::Address("fd00:6::11:22ff:fe33:4455/64".parse().unwrap(), false),
                Added6::Route(Route6Spec::to("fd00:6::/64".parse().unwrap()).dev(TAP)),
            ]
        );
    }

    #[test]
    fn default_route_via_link_local_policy_rules_and_fwmark() {
        let opts = NetOptions {
            accept_default_gateway: true,
            policy_table: Some(200),
            connmark: true,
            ..NetOptions::default()
        };
        let items = plan6(&settings(), &opts, TAP, false);
        let gw: Ipv6Addr = "fe80::1".parse().unwrap();
        assert!(items.contains(&Added6::Route(
            Route6Spec::default_route().via(gw).dev(TAP).metric(50)
        )));
        assert!(items.contains(&Added6::Route(
            Route6Spec::default_route().via(gw).dev(TAP).table(200)
        )));
        assert!(items.contains(&Added6::Rule(PolicyRule6::from_address(
            "fd00:6::11:22ff:fe33:4455".parse().unwrap(),
            200,
            RULE_PRIORITY_FROM
        ))));
        assert!(items.contains(&Added6::Rule(PolicyRule6::fwmark(
            200,
            u32::MAX,
            200,
            RULE_PRIORITY_FWMARK
        ))));
        // Reaching the server over IPv6 keeps the main default route out of the tunnel.
        let guarded = plan6(&settings(), &opts, TAP, true);
        assert!(!guarded
            .iter()
            .any(|i| matches!(i, Added6::Route(r) if r.metric == Some(50))));
    }

    #[test]
    fn route_information_needs_accept_static_routes_and_deprecation_is_carried() {
        let mut s = settings();
        s.routes = vec![dhcp_client::v6::Ipv6Route {
            destination: "fd00:77::/48".parse().unwrap(),
            gateway: "fe80::1".parse().unwrap(),
        }];
        s.addresses[0].deprecated = true;
        let rio = Added6::Route(
            Route6Spec::to("fd00:77::/48".parse().unwrap())
                .via("fe80::1".parse().unwrap())
                .dev(TAP),
        );
        let off = plan6(&s, &NetOptions::default(), TAP, false);
        assert!(!off.contains(&rio));
        assert!(matches!(off[0], Added6::Address(_, true)));
        let opts = NetOptions {
            accept_static_routes: true,
            ..NetOptions::default()
        };
        assert!(plan6(&s, &opts, TAP, false).contains(&rio));
        // The result and CHECK list it too (the pod's plan is this plan).
        assert!(plan_ipv6(&s, &opts, TAP, false)
            .routes
            .iter()
            .any(|r| r.destination == "fd00:77::/48".parse().unwrap()));
    }

    #[test]
    fn the_ipv6_mtu_is_the_advertised_one_never_above_the_link() {
        assert_eq!(ipv6_mtu(Some(1400), Some(1500)), Some(1400));
        assert_eq!(ipv6_mtu(Some(9000), Some(1500)), Some(1500));
        assert_eq!(
            ipv6_mtu(None, Some(1420)),
            Some(1420),
            "back to the link MTU"
        );
        assert_eq!(ipv6_mtu(Some(1400), None), None);
    }

    #[test]
    fn dns_merges_after_the_lease_without_duplicates() {
        let v4 = DnsConfig {
            nameservers: vec!["192.168.30.1".parse().unwrap()],
            search: vec!["vpn.test".into()],
        };
        let mut extra = dns6(&settings());
        extra.search = vec!["vpn.test".into(), "lab".into()];
        let merged = merge_dns(Some(v4.clone()), &extra).unwrap();
        assert_eq!(merged.nameservers.len(), 2);
        assert_eq!(merged.search, ["vpn.test", "lab"]);
        assert_eq!(merge_dns(Some(v4.clone()), &DnsConfig::default()), Some(v4));
        assert_eq!(merge_dns(None, &extra).unwrap().nameservers.len(), 1);
        assert_eq!(merge_dns(None, &DnsConfig::default()), None);
    }
}
