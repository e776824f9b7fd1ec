//! IPv4 routes: add/replace/delete, listing a table, the main default route, `route get`.

use std::fmt::Display;
use std::net::Ipv4Addr;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::RouteMessageBuilder;

use super::{tolerate, Netlink};
use crate::error::{netlink_errno, Result};

/// The main routing table (`table main`).
pub const TABLE_MAIN: u32 = RouteHeader::RT_TABLE_MAIN as u32;

/// An IPv4 unicast route, as `ip route … DST [via GW] [dev OIF] [metric M] [table T]`.
///
/// A route without a gateway is installed with `scope link` (on-link), like iproute2 does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSpec {
    /// Destination prefix (host bits cleared by [`RouteSpec::to`]).
    pub destination: Ipv4Net,
    /// `via GW`; `None` for an on-link (`scope link`) route.
    pub gateway: Option<Ipv4Addr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// Routing table; any u32 (values above 255 travel in `RTA_TABLE`).
    pub table: u32,
    /// `metric` / `priority`.
    pub metric: Option<u32>,
    /// `src` (preferred source address).
    pub pref_source: Option<Ipv4Addr>,
}

impl RouteSpec {
    /// A route to `destination` in the main table, nothing else set.
    pub fn to(destination: Ipv4Net) -> Self {
        Self {
            destination: destination.trunc(),
            gateway: None,
            oif: None,
            table: TABLE_MAIN,
            metric: None,
            pref_source: None,
        }
    }

    /// The default route `0.0.0.0/0`.
    pub fn default_route() -> Self {
        Self::to(Ipv4Net::default())
    }

    /// Sets `via GW`.
    pub fn via(mut self, gateway: Ipv4Addr) -> Self {
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

    /// Sets `src ADDR`, the preferred source address.
    pub fn src(mut self, addr: Ipv4Addr) -> Self {
        self.pref_source = Some(addr);
        self
    }

    fn message(&self) -> RouteMessage {
        let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(self.destination.network(), self.destination.prefix_len())
            .table_id(self.table);
        if let Some(gw) = self.gateway {
            b = b.gateway(gw);
        } else {
            b = b.scope(RouteScope::Link);
        }
        if let Some(oif) = self.oif {
            b = b.output_interface(oif);
        }
        if let Some(metric) = self.metric {
            b = b.priority(metric);
        }
        if let Some(src) = self.pref_source {
            b = b.pref_source(src);
        }
        b.build()
    }

    /// Like iproute2's `ip route del`: match any protocol, scope and type, so routes we did not
    /// add ourselves (proto kernel/dhcp/boot) can be removed too.
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

/// An add message turned into a delete selector that matches any protocol, scope and type.
pub(super) fn match_any(mut msg: RouteMessage) -> RouteMessage {
    msg.header.protocol = RouteProtocol::Unspec;
    msg.header.scope = RouteScope::NoWhere;
    msg.header.kind = RouteType::Unspec;
    msg
}

/// `DST [via GW] [dev #OIF] [metric M] table T`, for error messages.
pub(super) fn describe_route(
    destination: &dyn Display,
    gateway: Option<&dyn Display>,
    oif: Option<u32>,
    metric: Option<u32>,
    table: u32,
) -> String {
    let mut s = destination.to_string();
    if let Some(gw) = gateway {
        s += &format!(" via {gw}");
    }
    if let Some(oif) = oif {
        s += &format!(" dev #{oif}");
    }
    if let Some(m) = metric {
        s += &format!(" metric {m}");
    }
    s + &format!(" table {table}")
}

/// The main table's default route (`ip route show default table main`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultRoute {
    /// `via GW`; `None` when the default route is on-link.
    pub gateway: Option<Ipv4Addr>,
    /// `dev OIF`: output interface index.
    pub oif: Option<u32>,
    /// `metric` (0 when unset).
    pub metric: u32,
}

/// How the kernel would route one destination (`ip route get DST`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteLookup {
    /// `via GW`; `None` when the destination is on-link.
    pub gateway: Option<Ipv4Addr>,
    /// `dev OIF`: output interface index.
    pub oif: Option<u32>,
    /// `src ADDR`: the source address the kernel would pick.
    pub pref_source: Option<Ipv4Addr>,
    /// The table the matching route is in.
    pub table: u32,
}

impl Netlink {
    /// `ip route add SPEC`; Ok if a route with the same destination/metric/table exists
    /// (whatever its gateway: use [`Netlink::replace_route`] to enforce one).
    pub async fn add_route(&self, spec: &RouteSpec) -> Result<()> {
        self.add_route_message(spec.message(), false, || spec.describe())
            .await
    }

    /// `ip route replace SPEC`: create, or overwrite the route with the same
    /// destination/metric/table.
    pub async fn replace_route(&self, spec: &RouteSpec) -> Result<()> {
        self.add_route_message(spec.message(), true, || spec.describe())
            .await
    }

    /// `ip route del SPEC`; Ok if no such route. Unset fields of `spec` match anything.
    pub async fn del_route(&self, spec: &RouteSpec) -> Result<()> {
        self.del_route_message(spec.delete_message(), || spec.describe())
            .await
    }

    /// Adds (Ok if it exists) or replaces one route of either family.
    pub(super) async fn add_route_message(
        &self,
        msg: RouteMessage,
        replace: bool,
        describe: impl FnOnce() -> String,
    ) -> Result<()> {
        let req = self.handle.route().add(msg);
        let (result, op) = if replace {
            (req.replace().execute().await, "route replace")
        } else {
            let result = tolerate(req.execute().await, &[libc::EEXIST]);
            (result, "route add")
        };
        result.map_err(|e| self.error(op, describe(), e))
    }

    /// Deletes one route of either family; Ok if it is gone.
    pub(super) async fn del_route_message(
        &self,
        msg: RouteMessage,
        describe: impl FnOnce() -> String,
    ) -> Result<()> {
        let result = self.handle.route().del(msg).execute().await;
        // ESRCH: no such route; ENODEV: its interface is already gone (and the route with it);
        // ENOENT: IPv6's "no such route".
        tolerate(result, &[libc::ESRCH, libc::ENODEV, libc::ENOENT])
            .map_err(|e| self.error("route del", describe(), e))
    }

    /// `ip -4 route show table TABLE`: the unicast routes of one table.
    pub async fn routes(&self, table: u32) -> Result<Vec<RouteSpec>> {
        Ok(self
            .dump_routes()
            .await?
            .iter()
            .filter(|m| m.header.kind == RouteType::Unicast)
            .map(spec_of)
            .filter(|r| r.table == table)
            .collect())
    }

    /// The main table's default route with the lowest metric, if any. This is the
    /// "pre-existing default gateway" the host route to the VPN server goes through.
    pub async fn default_route(&self) -> Result<Option<DefaultRoute>> {
        let routes = self.routes(TABLE_MAIN).await?;
        Ok(routes
            .iter()
            .filter(|r| r.destination.prefix_len() == 0)
            .map(|r| DefaultRoute {
                gateway: r.gateway,
                oif: r.oif,
                metric: r.metric.unwrap_or(0),
            })
            .min_by_key(|d| d.metric))
    }

    /// `ip route get DST`: the kernel's routing decision for `dst` (policy rules included),
    /// or `None` if it is unreachable.
    pub async fn route_get(&self, dst: Ipv4Addr) -> Result<Option<RouteLookup>> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(dst, 32)
            .build();
        let mut stream = std::pin::pin!(self.handle.route().get(msg).execute());
        match stream.try_next().await {
            Ok(Some(m)) => {
                let spec = spec_of(&m);
                Ok(Some(RouteLookup {
                    gateway: spec.gateway,
                    oif: spec.oif,
                    pref_source: spec.pref_source,
                    table: spec.table,
                }))
            }
            Ok(None) => Ok(None),
            Err(e)
                if netlink_errno(&e)
                    .is_some_and(|c| c == libc::ENETUNREACH || c == libc::EHOSTUNREACH) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.error("route get", dst.to_string(), e)),
        }
    }

    async fn dump_routes(&self) -> Result<Vec<RouteMessage>> {
        // A request without RTA_DST is a dump of all tables (local/broadcast included).
        let msg = RouteMessageBuilder::<Ipv4Addr>::new().build();
        self.dump_family(msg, AddressFamily::Inet).await
    }

    /// Every route of one family in every table.
    pub(super) async fn dump_family(
        &self,
        request: RouteMessage,
        family: AddressFamily,
    ) -> Result<Vec<RouteMessage>> {
        let all: Vec<RouteMessage> = self
            .handle
            .route()
            .get(request)
            .execute()
            .try_collect()
            .await
            .map_err(|e| self.error("route dump", format!("all {family:?} tables"), e))?;
        Ok(all
            .into_iter()
            .filter(|m| m.header.address_family == family)
            .collect())
    }
}

fn spec_of(msg: &RouteMessage) -> RouteSpec {
    let mut dst = Ipv4Addr::UNSPECIFIED;
    let mut spec = RouteSpec::default_route();
    spec.table = u32::from(msg.header.table);
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(RouteAddress::Inet(a)) => dst = *a,
            RouteAttribute::Gateway(RouteAddress::Inet(a)) => spec.gateway = Some(*a),
            RouteAttribute::PrefSource(RouteAddress::Inet(a)) => spec.pref_source = Some(*a),
            RouteAttribute::Oif(i) => spec.oif = Some(*i),
            RouteAttribute::Priority(p) => spec.metric = Some(*p),
            RouteAttribute::Table(t) => spec.table = *t,
            _ => {}
        }
    }
    // A kernel-supplied prefix length is at most 32; fall back to a host route otherwise.
    spec.destination = Ipv4Net::new(dst, msg.header.destination_prefix_length)
        .unwrap_or_else(|_| Ipv4Net::from(dst));
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_table_goes_into_attribute_and_roundtrips() {
        let spec = RouteSpec::to("10.1.2.0/24".parse().unwrap())
            .via(Ipv4Addr::new(10, 1, 2, 1))
            .dev(7)
            .table(1000)
            .metric(50);
        let msg = spec.message();
        assert!(msg.attributes.contains(&RouteAttribute::Table(1000)));
        assert_eq!(spec_of(&msg), spec);
    }

    #[test]
    fn onlink_route_gets_scope_link_and_delete_matches_any() {
        let spec = RouteSpec::to("10.9.0.7/24".parse().unwrap()).dev(3);
        assert_eq!(spec.destination.to_string(), "10.9.0.0/24");
        assert_eq!(spec.message().header.scope, RouteScope::Link);
        let del = spec.delete_message();
        assert_eq!(del.header.scope, RouteScope::NoWhere);
        assert_eq!(del.header.protocol, RouteProtocol::Unspec);
    }
}
