//! IPv6 addresses and routes: the `inet6` counterparts of `addr` and `route`, kept apart so the
//! IPv4 types stay as they are. (Policy rules of both families are `rule`'s.)
//!
//! Addresses are added with `IFA_F_NODAD` (the router or DHCPv6 server assigned them; without
//! it the kernel keeps each one tentative for a second of duplicate address detection) and
//! `IFA_F_NOPREFIXROUTE` (on-link routes are installed explicitly from the router's L-flag
//! prefixes, so that removing them is symmetric).

use std::fmt::Display;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::{IpNet, Ipv6Net};
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressMessage, AddressScope, CacheInfo,
};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{AddressMessageBuilder, RouteMessageBuilder};

use super::route::{describe_route, match_any};
use super::rule::PolicyRule6;
use super::{Netlink, TABLE_MAIN};
use crate::error::Result;

/// An IPv6 unicast route, as `ip -6 route … DST [via GW] [dev OIF] [metric M] [table T]`.
/// A link-local gateway needs `oif`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route6Spec {
    /// Destination prefix (host bits cleared by [`Route6Spec::to`]).
    pub destination: Ipv6Net,
    /// `via GW`; `None` for an on-link route.
    pub gateway: Option<Ipv6Addr>,
    /// `dev OIF`: output interface index (required with a link-local gateway).
    pub oif: Option<u32>,
    /// `table T`: routing table id ([`TABLE_MAIN`] by default).
    pub table: u32,
    /// `metric M`; `None` leaves the kernel's default.
    pub metric: Option<u32>,
}

impl Route6Spec {
    /// A route to `destination` in the main table.
    pub fn to(destination: Ipv6Net) -> Self {
        Self {
            destination: destination.trunc(),
            gateway: None,
            oif: None,
            table: TABLE_MAIN,
            metric: None,
        }
    }

    /// The default route `::/0`.
    pub fn default_route() -> Self {
        Self::to(Ipv6Net::default())
    }

    /// Sets `via GW`.
    pub fn via(mut self, gateway: Ipv6Addr) -> Self {
        self.gateway = Some(gateway);
        self
    }

    /// Sets `dev OIF` (an interface index).
    pub fn dev(mut self, oif: u32) -> Self {
        self.oif = Some(oif);
        self
    }

    /// Sets `table T`.
    pub fn table(mut self, table: u32) -> Self {
        self.table = table;
        self
    }

    /// Sets `metric M`.
    pub fn metric(mut self, metric: u32) -> Self {
        self.metric = Some(metric);
        self
    }

    fn message(&self) -> RouteMessage {
        let mut b = RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(self.destination.network(), self.destination.prefix_len())
            .table_id(self.table);
        if let Some(gw) = self.gateway {
            b = b.gateway(gw);
        }
        if let Some(oif) = self.oif {
            b = b.output_interface(oif);
        }
        if let Some(metric) = self.metric {
            b = b.priority(metric);
        }
        b.build()
    }

    /// Matches any protocol and type, like `ip -6 route del`.
    fn delete_message(&self) -> RouteMessage {
        match_any(self.message())
    }

    fn describe(&self) -> String {
        describe_route(
            &self.destination,
            self.gateway.as_ref().map(|g| g as &dyn Display),
            self.oif,
            self.metric,
            self.table,
        )
    }
}

impl Netlink {
    /// `ip -6 addr add ADDR/LEN dev IDX nodad noprefixroute`; Ok if it is already there.
    pub async fn add_address6(&self, index: u32, addr: Ipv6Net) -> Result<()> {
        let flags = AddressFlags::Nodad | AddressFlags::Noprefixroute;
        self.add_address_with(index, IpNet::V6(addr), Some(flags))
            .await
    }

    /// `ip -6 addr replace ADDR/LEN dev IDX nodad noprefixroute [preferred_lft 0]`: adds the
    /// address or updates the one there in place (no moment without it). `deprecated` sets
    /// the preferred lifetime to 0 (`IFA_F_DEPRECATED`: kept for existing connections, not
    /// chosen as a source for new ones); otherwise both lifetimes are forever.
    pub async fn set_address6(&self, index: u32, addr: Ipv6Net, deprecated: bool) -> Result<()> {
        let flags = AddressFlags::Nodad | AddressFlags::Noprefixroute;
        let mut req = self
            .handle
            .address()
            .add(index, IpAddr::V6(addr.addr()), addr.prefix_len())
            .replace();
        let attributes = &mut req.message_mut().attributes;
        attributes.push(AddressAttribute::Flags(flags));
        // CacheInfo is non-exhaustive: fill a default one.
        let mut lifetimes = CacheInfo::default();
        lifetimes.ifa_preferred = if deprecated { 0 } else { u32::MAX };
        lifetimes.ifa_valid = u32::MAX;
        attributes.push(AddressAttribute::CacheInfo(lifetimes));
        req.execute()
            .await
            .map_err(|e| self.error("address replace", format!("{addr} on link {index}"), e))
    }

    /// `ip -6 addr del ADDR/LEN dev IDX`; Ok if it is not there or the link is gone.
    pub async fn del_address6(&self, index: u32, addr: Ipv6Net) -> Result<()> {
        let msg = AddressMessageBuilder::<Ipv6Addr>::new()
            .index(index)
            .address(addr.addr(), addr.prefix_len())
            .build();
        self.del_address_message(index, msg, IpNet::V6(addr)).await
    }

    /// `ip -6 addr show dev IDX scope global`: the link's global (and ULA) addresses.
    pub async fn addresses6(&self, index: u32) -> Result<Vec<Ipv6Net>> {
        let msgs = self.address_messages(index).await?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.scope == AddressScope::Universe)
            .filter_map(ipv6_of)
            .collect())
    }

    /// `ip -6 route add SPEC`; Ok if the same route exists.
    pub async fn add_route6(&self, spec: &Route6Spec) -> Result<()> {
        self.add_route_message(spec.message(), false, || spec.describe())
            .await
    }

    /// `ip -6 route replace SPEC`.
    pub async fn replace_route6(&self, spec: &Route6Spec) -> Result<()> {
        self.add_route_message(spec.message(), true, || spec.describe())
            .await
    }

    /// `ip -6 route del SPEC`; Ok if there is no such route.
    pub async fn del_route6(&self, spec: &Route6Spec) -> Result<()> {
        self.del_route_message(spec.delete_message(), || spec.describe())
            .await
    }

    /// `ip -6 route show table TABLE`: the unicast routes of one table.
    pub async fn routes6(&self, table: u32) -> Result<Vec<Route6Spec>> {
        let msg = RouteMessageBuilder::<Ipv6Addr>::new().build();
        let all = self.dump_family(msg, AddressFamily::Inet6).await?;
        Ok(all
            .iter()
            .filter(|m| m.header.kind == RouteType::Unicast)
            .map(route6_of)
            .filter(|r| r.table == table)
            .collect())
    }

    /// `ip -6 rule add …`; Ok if an identical rule exists (the same as [`Netlink::add_rule`]).
    pub async fn add_rule6(&self, rule: &PolicyRule6) -> Result<()> {
        self.add_rule(rule).await
    }

    /// `ip -6 rule del …`; Ok if no such rule (the same as [`Netlink::del_rule`]).
    pub async fn del_rule6(&self, rule: &PolicyRule6) -> Result<()> {
        self.del_rule(rule).await
    }
}

fn ipv6_of(msg: &AddressMessage) -> Option<Ipv6Net> {
    msg.attributes.iter().find_map(|attr| match attr {
        AddressAttribute::Address(IpAddr::V6(a)) | AddressAttribute::Local(IpAddr::V6(a)) => {
            Ipv6Net::new(*a, msg.header.prefix_len).ok()
        }
        _ => None,
    })
}

fn route6_of(msg: &RouteMessage) -> Route6Spec {
    let mut dst = Ipv6Addr::UNSPECIFIED;
    let mut spec = Route6Spec::default_route();
    spec.table = u32::from(msg.header.table);
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(RouteAddress::Inet6(a)) => dst = *a,
            RouteAttribute::Gateway(RouteAddress::Inet6(a)) => spec.gateway = Some(*a),
            RouteAttribute::Oif(i) => spec.oif = Some(*i),
            RouteAttribute::Priority(p) => spec.metric = Some(*p),
            RouteAttribute::Table(t) => spec.table = *t,
            _ => {}
        }
    }
    spec.destination = Ipv6Net::new(dst, msg.header.destination_prefix_length)
        .unwrap_or_else(|_| Ipv6Net::from(dst));
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_roundtrips_with_big_table_and_link_local_gateway() {
        let spec = Route6Spec::default_route()
            .via("fe80::1".parse().unwrap())
            .dev(4)
            .table(1000)
            .metric(10);
        let msg = spec.message();
        assert!(msg.attributes.contains(&RouteAttribute::Table(1000)));
        assert_eq!(route6_of(&msg), spec);
        let onlink = Route6Spec::to("fd00:6::1/64".parse().unwrap()).dev(4);
        assert_eq!(onlink.destination.to_string(), "fd00:6::/64");
        assert_eq!(route6_of(&onlink.message()), onlink);
    }
}
