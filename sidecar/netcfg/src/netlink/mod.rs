//! rtnetlink bound to one network namespace.
//!
//! [`Netlink::open`] creates the `NETLINK_ROUTE` socket on a thread that entered the target
//! namespace (a netlink socket talks to the namespace it was created in, forever), registers it
//! with the caller's tokio runtime, and spawns the rtnetlink connection task. All requests on
//! the handle then act on that namespace, from any task.
//!
//! Operations are idempotent where that makes sense: adding what already exists and deleting
//! what is already gone both return `Ok`. Each method names its `ip` equivalent.
//!
//! The operations are split by object: links here, addresses in `addr`, routes in `route`,
//! policy rules in `rule`; their IPv6 counterparts in `inet6`.

mod addr;
mod inet6;
mod route;
mod rule;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::sys::{protocols::NETLINK_ROUTE, AsyncSocket, TokioSocket};
use rtnetlink::LinkUnspec;

pub use inet6::Route6Spec;
pub use route::{DefaultRoute, RouteLookup, RouteSpec, TABLE_MAIN};
pub use rule::{FwMark, PolicyRule, PolicyRule6, Rule, RuleFamily};

use crate::error::{netlink_errno, NetcfgError, Result};
use crate::netns::Netns;

/// A netlink connection into one network namespace. Dropping it stops the connection task.
#[derive(Debug)]
pub struct Netlink {
    handle: rtnetlink::Handle,
    netns: Netns,
    connection: tokio::task::JoinHandle<()>,
}

/// A [`Netlink`] connection opened by the first request that needs it and dropped by
/// [`NetlinkOnDemand::close`]. A long-lived holder (one per VPN session) keeps no socket
/// between its rare bursts of requests: an open rtnetlink connection holds ~72 KiB of buffers
/// (netlink-proto's 64 KiB receive and 8 KiB send buffers), a third of what an idle
/// attachment cost the daemon, while opening one takes well under a millisecond.
#[derive(Debug)]
pub struct NetlinkOnDemand {
    netns: Netns,
    open: tokio::sync::OnceCell<Netlink>,
}

impl NetlinkOnDemand {
    /// Nothing is opened yet.
    pub fn new(netns: Netns) -> NetlinkOnDemand {
        NetlinkOnDemand {
            netns,
            open: tokio::sync::OnceCell::new(),
        }
    }

    /// The connection, opened now if it is not. Must be called from within a tokio runtime.
    pub async fn get(&self) -> Result<&Netlink> {
        self.open
            .get_or_try_init(|| Netlink::open(self.netns.clone()))
            .await
    }

    /// Whether a connection is open (for tests and diagnostics).
    pub fn is_open(&self) -> bool {
        self.open.initialized()
    }

    /// Drops the connection, if any; the next [`get`](Self::get) opens a new one.
    pub fn close(&mut self) {
        self.open.take();
    }

    /// The namespace requests act on.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }
}

/// What [`Netlink::link_by_name`] reports about an interface (`ip link show dev NAME`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// The interface index (`ifindex`).
    pub index: u32,
    /// The interface name.
    pub name: String,
    /// MTU in bytes, when the kernel reported one.
    pub mtu: Option<u32>,
    /// Hardware address (6 bytes for Ethernet/TAP).
    pub mac: Option<Vec<u8>>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// `IFLA_INFO_KIND` (`tun` for a TAP, `veth`, …); `None` for kinds without link ops
    /// (loopback, physical NICs).
    pub kind: Option<String>,
}

impl Netlink {
    /// Connect to `netns`. Must be called from within a tokio runtime (the connection task is
    /// spawned on it).
    pub async fn open(netns: Netns) -> Result<Netlink> {
        let runtime = tokio::runtime::Handle::current();
        let socket = netns
            .run_async(move || {
                // Registering with the reactor needs a runtime context but not a worker
                // thread; the socket's namespace is fixed here, at creation.
                let _entered = runtime.enter();
                TokioSocket::new(NETLINK_ROUTE)
            })
            .await?
            .map_err(|source| NetcfgError::Socket {
                what: "NETLINK_ROUTE",
                netns: netns.to_string(),
                source,
            })?;
        let (connection, handle, _unsolicited) = rtnetlink::from_socket(socket);
        let connection = tokio::spawn(connection);
        Ok(Netlink {
            handle,
            netns,
            connection,
        })
    }

    /// The namespace this handle acts on.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// The raw rtnetlink handle, for requests this crate does not wrap.
    pub fn handle(&self) -> &rtnetlink::Handle {
        &self.handle
    }

    /// Index of the link `name`, or `None` if there is none (`ip link show dev NAME`).
    pub async fn link_index_opt(&self, name: &str) -> Result<Option<u32>> {
        Ok(self.link_by_name(name).await?.map(|l| l.index))
    }

    /// Index of the link `name`; [`NetcfgError::LinkNotFound`] if absent.
    pub async fn link_index(&self, name: &str) -> Result<u32> {
        self.link_index_opt(name)
            .await?
            .ok_or_else(|| self.link_not_found(name))
    }

    /// Name, MTU, MAC, up-flag and kind of `name`, or `None` (`ip link show dev NAME`).
    pub async fn link_by_name(&self, name: &str) -> Result<Option<LinkInfo>> {
        let req = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match self.first_link(req).await {
            Err(e) if netlink_errno(&e) == Some(libc::ENODEV) => Ok(None),
            other => other.map_err(|e| self.error("link get", name, e)),
        }
    }

    /// Name, MTU, MAC and up-flag of link `index`, or `None`.
    pub async fn link_by_index(&self, index: u32) -> Result<Option<LinkInfo>> {
        let req = self.handle.link().get().match_index(index).execute();
        match self.first_link(req).await {
            Err(e) if netlink_errno(&e) == Some(libc::ENODEV) => Ok(None),
            other => other.map_err(|e| self.error("link get", format!("index {index}"), e)),
        }
    }

    /// `ip link set dev IDX up`.
    pub async fn set_link_up(&self, index: u32) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.link_set(msg, "link set up", index).await
    }

    /// `ip link set dev IDX down`.
    pub async fn set_link_down(&self, index: u32) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index).down().build();
        self.link_set(msg, "link set down", index).await
    }

    /// `ip link set dev IDX mtu MTU`.
    pub async fn set_link_mtu(&self, index: u32, mtu: u32) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index).mtu(mtu).build();
        self.link_set(msg, "link set mtu", index).await
    }

    /// `ip link set dev IDX address MAC`.
    pub async fn set_link_mac(&self, index: u32, mac: [u8; 6]) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index)
            .address(mac.to_vec())
            .build();
        self.link_set(msg, "link set address", index).await
    }

    /// `ip link del dev NAME`; Ok if there is no such link.
    pub async fn delete_link(&self, name: &str) -> Result<()> {
        let Some(index) = self.link_index_opt(name).await? else {
            return Ok(());
        };
        match self.handle.link().del(index).execute().await {
            Err(e) if netlink_errno(&e) == Some(libc::ENODEV) => Ok(()),
            other => other.map_err(|e| self.error("link del", name, e)),
        }
    }

    async fn link_set(&self, msg: LinkMessage, op: &'static str, index: u32) -> Result<()> {
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| self.error(op, format!("link index {index}"), e))
    }

    async fn first_link(
        &self,
        stream: impl futures::Stream<Item = Result<LinkMessage, rtnetlink::Error>>,
    ) -> Result<Option<LinkInfo>, rtnetlink::Error> {
        let mut stream = std::pin::pin!(stream);
        Ok(stream.try_next().await?.map(|m| link_info(&m)))
    }

    fn link_not_found(&self, name: &str) -> NetcfgError {
        NetcfgError::LinkNotFound {
            name: name.to_owned(),
            netns: self.netns.to_string(),
        }
    }

    fn error(
        &self,
        op: &'static str,
        target: impl Into<String>,
        source: rtnetlink::Error,
    ) -> NetcfgError {
        NetcfgError::Netlink {
            op,
            target: target.into(),
            netns: self.netns.to_string(),
            source: Box::new(source),
        }
    }
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

fn link_info(msg: &LinkMessage) -> LinkInfo {
    let mut info = LinkInfo {
        index: msg.header.index,
        name: String::new(),
        mtu: None,
        mac: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        kind: None,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => info.name = n.clone(),
            LinkAttribute::Mtu(m) => info.mtu = Some(*m),
            LinkAttribute::Address(a) => info.mac = Some(a.clone()),
            LinkAttribute::LinkInfo(infos) => {
                info.kind = infos.iter().find_map(|i| match i {
                    rtnetlink::packet_route::link::LinkInfo::Kind(kind) => Some(kind.to_string()),
                    _ => None,
                });
            }
            _ => {}
        }
    }
    info
}

/// Map "already exists" (for adds) or "not there" (for deletes) to success.
fn tolerate(result: Result<(), rtnetlink::Error>, benign: &[i32]) -> Result<(), rtnetlink::Error> {
    match result {
        Err(e) if netlink_errno(&e).is_some_and(|code| benign.contains(&code)) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opened by the first request, gone after `close`, and opened again by the next one
    /// (reading links needs no privilege: this runs as any user).
    #[tokio::test]
    async fn on_demand_connection_opens_per_use_and_closes() {
        let mut nl = NetlinkOnDemand::new(Netns::Current);
        assert!(!nl.is_open());
        let lo = nl.get().await.unwrap().link_index("lo").await.unwrap();
        assert!(nl.is_open());
        nl.close();
        assert!(!nl.is_open());
        nl.close();
        let again = nl.get().await.unwrap().link_index("lo").await.unwrap();
        assert_eq!(lo, again);
        assert!(nl.is_open());
    }
}
