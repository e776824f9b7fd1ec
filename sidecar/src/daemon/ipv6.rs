//! IPv6 in the CNI daemon: how long ADD waits for it after the DHCPv4 lease and what of it goes
//! into the result (CHECK's comparisons are in `verify`, beside the IPv4 ones).
//!
//! The result is written once, but router advertisements and DHCPv6 run beside DHCPv4 and may
//! finish a little after the lease. The rule ([`settle`]), measured in the e2e test
//! `cni_ipv6` and documented in the README:
//!
//! 1. A router already heard: wait (at most [`DHCPV6_WAIT`]) only while a DHCPv6 exchange the
//!    router asked for (M or O flag) is unanswered.
//! 2. No router heard yet, but a router was heard on this hub (same server, port and hub) by an
//!    attachment of this daemon: wait at most [`RA_GRACE`] for the advertisement, then as in 1.
//!    A grace that passes without one makes the daemon forget the hub.
//! 3. Otherwise (a hub without IPv6, or the first pod on it): answer at once. IPv6 that comes
//!    later is still configured in the pod, just not listed in the result.
//!
//! Everything is also bounded by the ADD deadline.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use dhcp_client::v6::Ipv6Settings;
use netcfg::TABLE_MAIN;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::engine::lease_apply::{plan_ipv6, Ipv6Plan, NetOptions};
use crate::engine::status::EngineStatus;
use softether_control::{AttachResult, AttachedIp, AttachedRoute, IpPrefix, LoginSettings};

/// How long ADD waits for a router advertisement on a hub known to have IPv6 routers: routers
/// answer solicitations with multicast advertisements at most every MIN_DELAY_BETWEEN_RAS (3 s)
/// plus up to MAX_RA_DELAY_TIME (0.5 s) (RFC 4861 §6.2.6; radvd, dnsmasq), so a pod added right
/// after another one hears its advertisement up to 3.5 s later.
pub const RA_GRACE: Duration = Duration::from_millis(3500);
/// How long, once the router is heard, ADD waits for a DHCPv6 exchange it asked for (a
/// Solicit alone collects Advertises for a second).
pub const DHCPV6_WAIT: Duration = Duration::from_secs(3);

/// Hubs on which an attachment of this daemon heard an IPv6 router.
#[derive(Debug, Default)]
pub struct HubMemory(Mutex<HashSet<String>>);

impl HubMemory {
    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn knows(&self, hub: &str) -> bool {
        self.set().contains(hub)
    }

    pub fn remember(&self, hub: &str) {
        // Bounded by the hubs the daemon's networks name; a handful in practice.
        if !self.knows(hub) {
            self.set().insert(hub.to_owned());
        }
    }

    pub fn forget(&self, hub: &str) {
        self.set().remove(hub);
    }
}

/// The daemon's memory of IPv6 hubs (one per process, like its recovery gate).
pub fn daemon_hubs() -> &'static HubMemory {
    static HUBS: OnceLock<HubMemory> = OnceLock::new();
    HUBS.get_or_init(HubMemory::default)
}

/// The key of a hub in [`HubMemory`].
pub fn hub_key(login: &LoginSettings) -> String {
    format!("{}:{}/{}", login.server, login.port, login.hub)
}

/// What [`settle`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// The IPv6 configuration installed in the pod when ADD answers.
    pub settings: Ipv6Settings,
    /// How long ADD waited for it after the lease.
    pub waited: Duration,
    /// Which branch of the rule applied (for the log).
    pub why: &'static str,
}

/// Waits, per the rule in the module documentation, for the IPv6 configuration to report;
/// call it once the IPv4 lease is bound. `hub` is the attachment's [`hub_key`].
pub async fn settle(
    status: &mut watch::Receiver<EngineStatus>,
    hubs: &HubMemory,
    hub: &str,
    deadline: Instant,
) -> Settled {
    let started = Instant::now();
    let settled = |status: &watch::Receiver<EngineStatus>, why| Settled {
        settings: status.borrow().ipv6.settings.clone(),
        waited: started.elapsed(),
        why,
    };
    if !status.borrow().ipv6.router_heard {
        if !hubs.knows(hub) {
            return settled(status, "no router heard on this hub");
        }
        let until = deadline.min(started + RA_GRACE);
        let heard = tokio::time::timeout_at(until, status.wait_for(|s| s.ipv6.router_heard))
            .await
            .is_ok_and(|r| r.is_ok());
        if !heard {
            hubs.forget(hub);
            return settled(status, "no router advertisement within the grace");
        }
    }
    hubs.remember(hub);
    if !status.borrow().ipv6.dhcpv6_pending {
        return settled(status, "router heard");
    }
    let until = deadline.min(Instant::now() + DHCPV6_WAIT);
    let answered = tokio::time::timeout_at(until, status.wait_for(|s| !s.ipv6.dhcpv6_pending))
        .await
        .is_ok_and(|r| r.is_ok());
    let why = if answered {
        "DHCPv6 answered"
    } else {
        "DHCPv6 unanswered"
    };
    settled(status, why)
}

/// The pod's IPv6 plan for `settings` (the sidecar's TLS never leaves through the pod).
pub fn pod_plan(settings: &Ipv6Settings, opts: &NetOptions, tap: u32) -> Ipv6Plan {
    plan_ipv6(settings, opts, tap, false)
}

/// Appends IPv6 to the result: each address with the default router's (link-local) address as
/// its gateway, the routes the engine installs for it, and the DNS servers and search domains
/// after the lease's. A DHCPv4 domain name stays the first search domain.
pub fn add_to_result(result: &mut AttachResult, settings: &Ipv6Settings, opts: &NetOptions) {
    let plan = pod_plan(settings, opts, 0);
    let gateway = settings.router.map(|r| IpAddr::V6(r.address));
    result.ips.extend(plan.addresses.iter().map(|a| AttachedIp {
        address: IpPrefix {
            addr: IpAddr::V6(a.addr()),
            len: a.prefix_len(),
        },
        gateway,
    }));
    result
        .routes
        .extend(plan.routes.iter().map(|r| AttachedRoute {
            dst: IpPrefix {
                addr: IpAddr::V6(r.destination.addr()),
                len: r.destination.prefix_len(),
            },
            gw: r.gateway.map(IpAddr::V6),
            table: (r.table != TABLE_MAIN).then_some(r.table),
            priority: None,
        }));
    let dns = &mut result.dns;
    for server in &settings.dns_servers {
        let text = server.to_string();
        if !dns.nameservers.contains(&text) {
            dns.nameservers.push(text);
        }
    }
    if !settings.search_domains.is_empty() && dns.search.is_empty() {
        // `search` replaces `domain` in resolv.conf: keep the lease's domain in front.
        dns.search.extend(dns.domain.iter().cloned());
    }
    for domain in &settings.search_domains {
        if !dns.search.contains(domain) {
            dns.search.push(domain.clone());
        }
    }
}

#[cfg(test)]
#[path = "ipv6_tests.rs"]
mod tests;
