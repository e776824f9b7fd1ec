//! IPv6 in the CNI daemon: how long ADD waits for it after the DHCPv4 lease and what of it goes
//! into the result (CHECK's comparisons are in `verify`, beside the IPv4 ones).
//!
//! The result is written once, but router advertisements and DHCPv6 run beside DHCPv4 and may
//! finish a little after the lease. The rule ([`settle`]), measured in the e2e test
//! `cni_ipv6` and documented in the README:
//!
//! 1. A router already heard: wait (at most [`DHCPV6_WAIT`]) only while a DHCPv6 exchange the
//!    router asked for (M or O flag) is unanswered.
//! 2. No router heard yet on a hub (same server, port and hub) where one was heard before
//!    ([`HubMemory`], kept in the state directory across restarts): wait at most [`RA_GRACE`]
//!    for the advertisement, then as in 1. A grace that passes without one marks the hub as
//!    having no IPv6.
//! 3. A hub never attached to before: wait for the advertisement answering the session's first
//!    router solicitation, until [`FIRST_RA_WINDOW`] after it was sent, then as in 1; the
//!    outcome is remembered either way.
//! 4. A hub known to have no IPv6 router: answer at once. IPv6 that comes later is still
//!    configured in the pod, just not listed in the result, and marks the hub as having IPv6.
//!
//! Everything is also bounded by the ADD deadline.

use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use dhcp_client::v6::Ipv6Settings;
use netcfg::TABLE_MAIN;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::engine::lease_apply::{plan_ipv6, Ipv6Plan, NetOptions};
use crate::engine::status::EngineStatus;
use softether_control::state_dir::{unix_now, HubsRecord, StateDir, HUBS_VERSION};
use softether_control::{AttachResult, AttachedIp, AttachedRoute, IpPrefix, LoginSettings};

/// How long ADD waits for a router advertisement on a hub known to have IPv6 routers: routers
/// answer solicitations with multicast advertisements at most every MIN_DELAY_BETWEEN_RAS (3 s)
/// plus up to MAX_RA_DELAY_TIME (0.5 s) (RFC 4861 §6.2.6; radvd, dnsmasq), so a pod added right
/// after another one hears its advertisement up to 3.5 s later.
pub const RA_GRACE: Duration = Duration::from_millis(3500);
/// On a hub never attached to, how long after the session's first router solicitation ADD
/// waits for an advertisement: a router answers within MAX_RA_DELAY_TIME (0.5 s, RFC 4861
/// §6.2.6) when it has not just advertised, plus the tunnel's round trip. The lease usually
/// takes part of it already, so this is the most a hub without IPv6 ever costs, once.
pub const FIRST_RA_WINDOW: Duration = Duration::from_millis(1000);
/// How long, once the router is heard, ADD waits for a DHCPv6 exchange it asked for (a
/// Solicit alone collects Advertises for a second).
pub const DHCPV6_WAIT: Duration = Duration::from_secs(3);

/// Whether an IPv6 router was heard per hub, by any attachment of this daemon or an earlier
/// one: in memory, and in the state directory's `hubs.json` once [`HubMemory::load`] gave it one.
#[derive(Debug, Default)]
pub struct HubMemory {
    hubs: Mutex<HubsRecord>,
    state: Mutex<Option<StateDir>>,
}

impl HubMemory {
    fn hubs(&self) -> std::sync::MutexGuard<'_, HubsRecord> {
        self.hubs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads what earlier daemons learned from `state` and keeps it there from now on. An
    /// unreadable file is logged and replaced.
    pub fn load(&self, state: &StateDir) {
        match state.hubs() {
            Ok(record) => *self.hubs() = record,
            Err(e) => tracing::warn!("ignoring the hub facts: {e}"),
        }
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = Some(state.clone());
    }

    /// Whether an IPv6 router was heard on `hub`; `None`: never attached to it.
    pub fn ipv6(&self, hub: &str) -> Option<bool> {
        self.hubs().ipv6(hub)
    }

    /// Records whether `hub` has an IPv6 router; writes the state directory when that changed.
    pub fn remember(&self, hub: &str, ipv6: bool) {
        let snapshot = {
            let mut hubs = self.hubs();
            hubs.version = HUBS_VERSION;
            if !hubs.set_ipv6(hub, ipv6, unix_now()) {
                return;
            }
            hubs.clone()
        };
        tracing::info!(hub, ipv6, "learned whether the hub has an IPv6 router");
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(state) = state {
            if let Err(e) = state.save_hubs(&snapshot) {
                tracing::warn!("cannot persist the hub facts: {e}");
            }
        }
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
        let (until, why) = match hubs.ipv6(hub) {
            Some(false) => return settled(status, "hub known to have no IPv6 router"),
            Some(true) => (
                started + RA_GRACE,
                "no router advertisement within the grace",
            ),
            None => {
                let solicited = status.borrow().ipv6.solicited_at;
                let solicited = solicited.map_or(started, Instant::from_std);
                tracing::debug!(
                    solicited_ms_ago = started.saturating_duration_since(solicited).as_millis() as u64,
                    "a hub new to the sidecar: waiting for the answer to the first router solicitation"
                );
                (
                    solicited + FIRST_RA_WINDOW,
                    "no router answered the first solicitation",
                )
            }
        };
        let heard = tokio::time::timeout_at(
            until.min(deadline),
            status.wait_for(|s| s.ipv6.router_heard),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        if !heard {
            hubs.remember(hub, false);
            return settled(status, why);
        }
    }
    hubs.remember(hub, true);
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
