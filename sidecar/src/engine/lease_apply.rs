//! Turns a DHCP lease into addresses, routes, rules, a CONNMARK table and resolv.conf inside
//! one network namespace, and keeps a record of exactly what it added so teardown removes
//! only that.
//!
//! [`plan`] is the pure part (lease + options → what to install) and is unit-tested;
//! [`NetConfigurator`] performs a plan through [`netcfg`] and undoes it. The IPv6 side (router
//! advertisements, SLAAC, DHCPv6) is applied the same way by the `ipv6` submodule.

mod ipv6;
pub use ipv6::{plan_ipv6, Ipv6Mode, Ipv6Plan};

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use dhcp_client::Lease;
use ipnet::Ipv4Net;
use netcfg::{
    pod_netns, resolv, DnsConfig, Firewall, NetcfgError, NetlinkOnDemand, Netns, PolicyRule,
    RouteSpec,
};

/// Metric of the default route through the VPN: below the usual DHCP/static defaults (100+,
/// 0 aside), like softether-go.
pub const DEFAULT_ROUTE_METRIC: u32 = 50;
/// `ip rule` priorities of `from <VPN_IP> lookup N` and `fwmark N lookup N`: the rules are
/// derived in `netcfg::pod_netns`, which the plugin's offline DEL and the daemon's teardown use
/// too.
pub use netcfg::pod_netns::{RULE_PRIORITY_FROM, RULE_PRIORITY_FWMARK};

/// Which parts of a lease to install.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetOptions {
    /// Default route via the lease's router at [`DEFAULT_ROUTE_METRIC`].
    pub accept_default_gateway: bool,
    /// Classless static routes (options 121/249); a 0.0.0.0/0 entry only together with
    /// `accept_default_gateway`.
    pub accept_static_routes: bool,
    /// `from <VPN_IP> lookup N` plus the VPN subnet and default route in table N.
    pub policy_table: Option<u32>,
    /// CONNMARK connections arriving on the TAP with mark N and route marked replies through
    /// table N (needs `policy_table`).
    pub connmark: bool,
    /// Write the lease's DNS servers here (with a backup restored on teardown).
    pub resolv_conf: Option<PathBuf>,
    /// Set the TAP's MTU from the lease (option 26); off when the user fixed the MTU.
    pub lease_mtu: bool,
    /// IPv6 on the TAP (see `ipv6.rs`).
    pub ipv6: Ipv6Mode,
}

impl NetOptions {
    /// Whether the default route (or a route covering the server) may move into the tunnel,
    /// which is when the server needs a pinned /32 route through the underlay.
    pub fn may_capture_server_traffic(&self) -> bool {
        self.accept_default_gateway || self.accept_static_routes
    }
}

/// What one lease becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasePlan {
    pub address: Ipv4Net,
    pub routes: Vec<RouteSpec>,
    pub rules: Vec<PolicyRule>,
    /// The CONNMARK mark (the table number) when `connmark` is on.
    pub connmark: Option<u32>,
    pub dns: Option<DnsConfig>,
    /// The TAP MTU from the lease's option 26, when `lease_mtu` is on.
    pub mtu: Option<u32>,
}

/// The gateway for the default route: RFC 3442's (the 0.0.0.0/0 classless entry) when the
/// lease has classless routes with one, else the router option. A user who asked for the
/// default gateway gets one even when the server pushed split routes plus a router.
fn gateway_of(lease: &Lease) -> Option<Ipv4Addr> {
    lease.default_gateway().or(lease.router)
}

/// The pure translation of a lease into kernel objects for the TAP with index `tap`.
pub fn plan(lease: &Lease, opts: &NetOptions, tap: u32) -> LeasePlan {
    let address = lease.interface_address();
    let gateway = gateway_of(lease);
    let mut routes = Vec::new();
    if opts.accept_static_routes {
        for (net, via) in &lease.classless_routes {
            // The default entry is the default gateway; it is installed below, once.
            if net.prefix_len() == 0 {
                continue;
            }
            let spec = RouteSpec::to(*net).dev(tap);
            routes.push(if via.is_unspecified() {
                spec
            } else {
                spec.via(*via)
            });
        }
    }
    if opts.accept_default_gateway {
        if let Some(gw) = gateway {
            routes.push(
                RouteSpec::default_route()
                    .via(gw)
                    .dev(tap)
                    .metric(DEFAULT_ROUTE_METRIC),
            );
        }
    }
    let mut rules = Vec::new();
    let mut connmark = None;
    if let Some(table) = opts.policy_table {
        routes.push(
            RouteSpec::to(address.trunc())
                .dev(tap)
                .table(table)
                .src(lease.address),
        );
        if let Some(gw) = gateway {
            routes.push(RouteSpec::default_route().via(gw).dev(tap).table(table));
        }
        rules = pod_netns::policy_rules(table, &[lease.address], opts.connmark);
        if opts.connmark {
            connmark = Some(table);
        }
    }
    let dns = opts.resolv_conf.as_ref().and_then(|_| {
        (!lease.dns_servers.is_empty()).then(|| DnsConfig {
            nameservers: lease.dns_servers.iter().copied().map(IpAddr::V4).collect(),
            search: lease.domain_name.iter().cloned().collect(),
        })
    });
    LeasePlan {
        address,
        routes,
        rules,
        connmark,
        dns,
        mtu: opts
            .lease_mtu
            .then_some(lease.mtu)
            .flatten()
            .and_then(usable_mtu),
    }
}

/// Option 26 values we apply: at least the IPv4 minimum for a link we route over (576), at
/// most 1500, since the tunnel carries frames of at most 1600 bytes with the header.
fn usable_mtu(mtu: u16) -> Option<u32> {
    (576..=1500).contains(&mtu).then_some(u32::from(mtu))
}

/// One kernel object (or file) a lease installs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Added {
    Address { index: u32, net: Ipv4Net },
    Route(RouteSpec),
    Rule(PolicyRule),
    Firewall,
    Dns { path: PathBuf, config: DnsConfig },
}

impl LeasePlan {
    /// The plan as installable items, in installation order (the firewall before the fwmark
    /// rule that relies on it; teardown goes in reverse).
    fn items(&self, tap: u32, resolv_conf: Option<&PathBuf>) -> Vec<Added> {
        let mut items = vec![Added::Address {
            index: tap,
            net: self.address,
        }];
        items.extend(self.routes.iter().cloned().map(Added::Route));
        if self.connmark.is_some() {
            items.push(Added::Firewall);
        }
        items.extend(self.rules.iter().copied().map(Added::Rule));
        if let (Some(dns), Some(path)) = (&self.dns, resolv_conf) {
            items.push(Added::Dns {
                path: path.clone(),
                config: dns.clone(),
            });
        }
        items
    }
}

/// Applies leases to one TAP in one namespace and remembers what it did.
///
/// Applying is idempotent and incremental: objects that the new lease shares with the
/// installed one are left alone (no blip), stale ones are removed, missing ones added.
/// Objects that were already present before this configurator added them are not its own
/// and are never removed, unless it [adopted](NetConfigurator::adopt) them: a restarted
/// CNI sidecar takes over what its previous run installed on the pod's TAP.
#[derive(Debug)]
pub struct NetConfigurator {
    /// Open only during an operation (each public `async` method closes it when done): an
    /// idle session holds no netlink socket and none of its buffers.
    nl: NetlinkOnDemand,
    tap_index: u32,
    tap_name: String,
    opts: NetOptions,
    firewall: Firewall,
    /// Take ownership of matching objects that already exist (see [`Self::adopt`]).
    owns_existing: bool,
    /// Lives as long as the process: pinned server routes.
    base: Vec<Added>,
    /// What the current lease added (or adopted), in order.
    lease: Vec<Added>,
    applied: Option<Lease>,
    /// What IPv6 added, and the DNS it adds to the lease's resolv.conf.
    ipv6: Vec<ipv6::Added6>,
    extra_dns: DnsConfig,
    server_over_ipv6: bool,
    /// The advertised IPv6 MTU last applied to the TAP.
    ipv6_mtu: Option<u32>,
}

impl NetConfigurator {
    /// Finds the TAP in `netns` and takes its IPv6 from the kernel. `id` names the nft table
    /// (`softether_<id>`).
    pub async fn open(
        netns: Netns,
        tap_name: &str,
        opts: NetOptions,
        id: &str,
    ) -> Result<Self, NetcfgError> {
        let mut nl = NetlinkOnDemand::new(netns.clone());
        let tap_index = nl.get().await?.link_index(tap_name).await;
        nl.close();
        let tap_index = tap_index?;
        let configurator = Self {
            nl,
            tap_index,
            tap_name: tap_name.to_owned(),
            opts,
            firewall: Firewall::new(netns, id),
            owns_existing: false,
            base: Vec::new(),
            lease: Vec::new(),
            applied: None,
            ipv6: Vec::new(),
            extra_dns: DnsConfig::default(),
            server_over_ipv6: false,
            ipv6_mtu: None,
        };
        configurator.prepare_ipv6().await;
        Ok(configurator)
    }

    /// Sets the TAP's MAC address and MTU (when given) and brings it up.
    pub async fn prepare_link(
        &mut self,
        mac: [u8; 6],
        mtu: Option<u32>,
    ) -> Result<(), NetcfgError> {
        let result = async {
            let (nl, idx) = (self.nl.get().await?, self.tap_index);
            nl.set_link_mac(idx, mac).await?;
            if let Some(mtu) = mtu {
                nl.set_link_mtu(idx, mtu).await?;
            }
            nl.set_link_up(idx).await
        }
        .await;
        self.nl.close();
        result
    }

    pub fn tap_index(&self) -> u32 {
        self.tap_index
    }

    pub fn options(&self) -> &NetOptions {
        &self.opts
    }

    /// The lease currently installed.
    pub fn applied(&self) -> Option<&Lease> {
        self.applied.as_ref()
    }

    /// Takes over what a previous run installed for `address` on this TAP (the address, the
    /// policy rules and the nft table, as far as they exist), so that a new lease replaces
    /// them without a gap and a teardown removes them. From now on, objects a lease needs
    /// that already exist count as this configurator's own.
    pub async fn adopt(&mut self, address: Ipv4Net) -> Result<(), NetcfgError> {
        let result = self.adopt_inner(address).await;
        self.nl.close();
        result
    }

    async fn adopt_inner(&mut self, address: Ipv4Net) -> Result<(), NetcfgError> {
        self.owns_existing = true;
        let mut present = Vec::new();
        if self
            .nl
            .get()
            .await?
            .addresses(self.tap_index)
            .await?
            .contains(&address)
        {
            present.push(Added::Address {
                index: self.tap_index,
                net: address,
            });
        }
        if let Some(table) = self.opts.policy_table {
            if self.opts.connmark && self.firewall.exists().await? {
                present.push(Added::Firewall);
            }
            let rules = self.nl.get().await?.rules().await?;
            let ours = pod_netns::policy_rules(table, &[address.addr()], self.opts.connmark);
            present.extend(
                ours.into_iter()
                    .filter(|r| rules.contains(r))
                    .map(Added::Rule),
            );
        }
        tracing::debug!(%address, adopted = present.len(), "adopting the previous configuration");
        self.lease = present;
        Ok(())
    }

    /// Pins `server/32` to the path the kernel uses now (the pre-existing default gateway),
    /// so that a default route into the tunnel cannot capture the tunnel's own packets.
    /// Call before the first lease is applied. Returns the route, or `None` when not needed
    /// (already pinned, or a route of that exact prefix exists that we did not add).
    pub async fn pin_server_route(
        &mut self,
        server: Ipv4Addr,
    ) -> Result<Option<RouteSpec>, NetcfgError> {
        let result = self.pin_server_route_inner(server).await;
        self.nl.close();
        result
    }

    async fn pin_server_route_inner(
        &mut self,
        server: Ipv4Addr,
    ) -> Result<Option<RouteSpec>, NetcfgError> {
        let host = Ipv4Net::from(server);
        let main = self.nl.get().await?.routes(netcfg::TABLE_MAIN).await?;
        if main.iter().any(|r| r.destination == host) {
            return Ok(None);
        }
        let through_tap = |oif: Option<u32>| oif == Some(self.tap_index);
        let path = match self.nl.get().await?.route_get(server).await? {
            Some(l) if !through_tap(l.oif) => (l.gateway, l.oif),
            _ => {
                // The kernel already prefers the tunnel (a redirect to a new server after our
                // default route went in): use the best default route that is not ours.
                let best = main
                    .iter()
                    .filter(|r| r.destination.prefix_len() == 0 && !through_tap(r.oif))
                    .min_by_key(|r| r.metric.unwrap_or(0));
                match best {
                    Some(r) => (r.gateway, r.oif),
                    None => return Ok(None),
                }
            }
        };
        let mut spec = RouteSpec::to(host);
        if let Some(gw) = path.0 {
            spec = spec.via(gw);
        }
        if let Some(oif) = path.1 {
            spec = spec.dev(oif);
        }
        self.nl.get().await?.add_route(&spec).await?;
        self.base.push(Added::Route(spec.clone()));
        Ok(Some(spec))
    }

    /// Installs `lease`, replacing what the previous lease installed: objects both need stay,
    /// stale ones go, missing ones are added. Re-applying an installed lease touches nothing.
    pub async fn apply_lease(&mut self, lease: &Lease) -> Result<(), NetcfgError> {
        let result = self.apply_lease_inner(lease).await;
        self.nl.close();
        result
    }

    async fn apply_lease_inner(&mut self, lease: &Lease) -> Result<(), NetcfgError> {
        if let Some(old) = &self.applied {
            if old.same_configuration(lease) {
                self.applied = Some(lease.clone());
                return Ok(());
            }
        }
        let mut lease_plan = plan(lease, &self.opts, self.tap_index);
        if self.opts.resolv_conf.is_some() {
            lease_plan.dns = ipv6::merge_dns(lease_plan.dns, &self.extra_dns);
        }
        let mtu = lease_plan.mtu;
        let wanted = lease_plan.items(self.tap_index, self.opts.resolv_conf.as_ref());
        let previous = std::mem::take(&mut self.lease);
        // Removing an address makes the kernel drop the routes through it (and, for a
        // primary address, its secondaries): when the address changes, start from scratch.
        let address_changes = previous
            .iter()
            .any(|i| matches!(i, Added::Address { .. }) && !wanted.contains(i));
        let (kept, stale): (Vec<Added>, Vec<Added>) = previous
            .into_iter()
            .partition(|item| !address_changes && wanted.contains(item));
        self.lease = kept;
        if let Some(first) = self.undo(stale).await.into_iter().next() {
            tracing::warn!("removing the previous lease's configuration: {first}");
        }
        self.applied = Some(lease.clone());
        for item in wanted {
            if self.lease.contains(&item) {
                continue;
            }
            if self.install(&item).await? {
                self.lease.push(item);
            }
        }
        if let Some(mtu) = mtu {
            // `ip link set dev <tap> mtu N`; the TAP is ours, so nothing to undo on teardown.
            self.nl
                .get()
                .await?
                .set_link_mtu(self.tap_index, mtu)
                .await?;
        }
        Ok(())
    }

    /// Adds one item; returns whether it is ours to remove later (added by us, or adopted).
    async fn install(&self, item: &Added) -> Result<bool, NetcfgError> {
        match item {
            Added::Address { index, net } => {
                let existed = self.nl.get().await?.addresses(*index).await?.contains(net);
                self.nl.get().await?.add_address(*index, *net).await?;
                Ok(!existed || self.owns_existing)
            }
            Added::Route(spec) => {
                self.nl.get().await?.replace_route(spec).await?;
                Ok(true)
            }
            Added::Firewall => {
                let mark = self.opts.policy_table.unwrap_or(0);
                self.firewall.apply_connmark(&self.tap_name, mark).await?;
                Ok(true)
            }
            Added::Rule(rule) => {
                let existed = self.nl.get().await?.rules().await?.contains(rule);
                self.nl.get().await?.add_rule(rule).await?;
                Ok(!existed || self.owns_existing)
            }
            Added::Dns { path, config } => {
                resolv::apply(path, config)?;
                Ok(true)
            }
        }
    }

    /// Removes everything the current lease added (newest first), continuing past errors.
    pub async fn remove_lease(&mut self) -> Vec<NetcfgError> {
        let result = self.remove_lease_inner().await;
        self.nl.close();
        result
    }

    async fn remove_lease_inner(&mut self) -> Vec<NetcfgError> {
        self.applied = None;
        let items = std::mem::take(&mut self.lease);
        self.undo(items).await
    }

    /// Removes everything this configurator ever added. Safe to call more than once.
    pub async fn teardown(&mut self) -> Vec<NetcfgError> {
        let result = self.teardown_inner().await;
        self.nl.close();
        result
    }

    async fn teardown_inner(&mut self) -> Vec<NetcfgError> {
        let mut errors = self.remove_ipv6().await;
        errors.extend(self.remove_lease_inner().await);
        let base = std::mem::take(&mut self.base);
        errors.extend(self.undo(base).await);
        errors
    }

    async fn undo(&self, items: Vec<Added>) -> Vec<NetcfgError> {
        let mut errors = Vec::new();
        for item in items.into_iter().rev() {
            let nl = || self.nl.get();
            let result = match &item {
                Added::Address { index, net } => {
                    async { nl().await?.del_address(*index, *net).await }.await
                }
                Added::Route(spec) => async { nl().await?.del_route(spec).await }.await,
                Added::Rule(rule) => async { nl().await?.del_rule(rule).await }.await,
                Added::Firewall => self.firewall.remove().await,
                Added::Dns { path, .. } => resolv::restore(path).map(drop),
            };
            if let Err(e) = result {
                errors.push(e);
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests;
