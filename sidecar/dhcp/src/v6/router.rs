//! What router advertisements taught us (RFC 4861 §6.3.4, RFC 4862 §5.5.3, RFC 8106 §5.3):
//! default routers, on-link prefixes, SLAAC addresses, DNS servers and domains, each with the
//! instant it expires; plus the solicitation schedule (RFC 7559 backoff) until a router speaks.

use super::addr;
use super::ndp::{PrefixInfo, RouteInfo, RouterAdvertisement, RouterPreference};
use super::ndp::{MAX_DNS, MAX_DOMAINS};
use super::retrans::{Retrans, Timing};
use crate::retransmit::SeededRng;
use ipnet::Ipv6Net;
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

/// RFC 7559: RTR_SOLICITATION_INTERVAL doubling up to MAX_RTR_SOLICITATION_INTERVAL.
pub const SOLICIT_TIMING: Timing = Timing {
    initial: Duration::from_secs(4),
    max: Some(Duration::from_secs(3600)),
    max_count: None,
};
/// RFC 4862 §5.5.3 e): an unauthenticated RA cannot cut a SLAAC address below two hours.
const TWO_HOURS: Duration = Duration::from_secs(7200);
const MAX_ROUTERS: usize = 4;
const MAX_PREFIXES: usize = 16;

/// `None`: infinite.
pub(crate) type Expiry = Option<Instant>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Router {
    pub address: Ipv6Addr,
    pub mac: [u8; 6],
    pub preference: RouterPreference,
    pub expires: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slaac {
    pub address: Ipv6Addr,
    pub valid_until: Expiry,
    pub preferred_until: Expiry,
    /// The preferred lifetime ended (set by [`RouterState::expire`], cleared by a refresh).
    pub deprecated: bool,
}

/// A Route Information option's route via one router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LearnedRoute {
    pub destination: Ipv6Net,
    pub router: Ipv6Addr,
    pub preference: RouterPreference,
    pub expires: Expiry,
}

#[derive(Debug, Default)]
pub(crate) struct RouterState {
    pub routers: Vec<Router>,
    /// On-link prefixes (L flag).
    pub on_link: Vec<(Ipv6Net, Expiry)>,
    pub slaac: Vec<Slaac>,
    pub routes: Vec<LearnedRoute>,
    pub dns: Vec<(Ipv6Addr, Instant)>,
    pub domains: Vec<(String, Instant)>,
    pub mtu: Option<u32>,
    /// Soliciting until the first advertisement.
    pub soliciting: Option<Retrans>,
}

fn expiry(now: Instant, secs: u32) -> Expiry {
    (secs != u32::MAX).then(|| now + Duration::from_secs(u64::from(secs)))
}

impl RouterState {
    pub(crate) fn start_soliciting(&mut self, now: Instant, rng: &mut SeededRng) {
        self.soliciting = Some(Retrans::new(SOLICIT_TIMING, rng.next_u32(), now, None));
    }

    /// Learns from one validated advertisement. `mac` is ours (for SLAAC), `slaac` whether to
    /// form addresses at all.
    pub(crate) fn learn(
        &mut self,
        ra: &RouterAdvertisement,
        now: Instant,
        mac: [u8; 6],
        slaac: bool,
    ) {
        self.soliciting = None;
        self.learn_router(ra, now);
        for prefix in &ra.prefixes {
            if addr::is_link_local(prefix.prefix) || prefix.prefix.is_multicast() {
                continue;
            }
            if prefix.on_link {
                self.learn_on_link(prefix, now);
            }
            if slaac && prefix.autonomous {
                self.learn_slaac(prefix, now, mac);
            }
        }
        for route in &ra.routes {
            self.learn_route(route, ra.router, now);
        }
        if let Some(mtu) = ra.mtu.filter(|m| (1280..=65535).contains(m)) {
            self.mtu = Some(mtu);
        }
        for (lifetime, servers) in &ra.dns {
            for &server in servers {
                upsert(&mut self.dns, server, now, *lifetime, MAX_DNS);
            }
        }
        for (lifetime, names) in &ra.domains {
            for name in names {
                upsert(&mut self.domains, name.clone(), now, *lifetime, MAX_DOMAINS);
            }
        }
    }

    fn learn_router(&mut self, ra: &RouterAdvertisement, now: Instant) {
        let known = self.routers.iter().position(|r| r.address == ra.router);
        if ra.router_lifetime_secs == 0 {
            if let Some(i) = known {
                self.routers.remove(i);
            }
            return;
        }
        let router = Router {
            address: ra.router,
            mac: ra.router_mac,
            preference: ra.preference,
            expires: now + Duration::from_secs(u64::from(ra.router_lifetime_secs)),
        };
        match known {
            Some(i) => self.routers[i] = router,
            None if self.routers.len() < MAX_ROUTERS => self.routers.push(router),
            None => {}
        }
    }

    fn learn_on_link(&mut self, p: &PrefixInfo, now: Instant) {
        let Ok(net) = Ipv6Net::new(p.prefix, p.len) else {
            return;
        };
        let known = self.on_link.iter().position(|(n, _)| *n == net);
        match (known, p.valid_secs) {
            (Some(i), 0) => {
                self.on_link.remove(i);
            }
            (Some(i), secs) => self.on_link[i].1 = expiry(now, secs),
            (None, 0) => {}
            (None, secs) if self.on_link.len() < MAX_PREFIXES => {
                self.on_link.push((net, expiry(now, secs)));
            }
            (None, _) => {}
        }
    }

    fn learn_route(&mut self, r: &RouteInfo, router: Ipv6Addr, now: Instant) {
        let Ok(destination) = Ipv6Net::new(r.prefix, r.len) else {
            return;
        };
        // ::/0 is the default router's (router lifetime); link-local and multicast are no
        // destinations to route through a router.
        if r.len == 0 || addr::is_link_local(r.prefix) || r.prefix.is_multicast() {
            return;
        }
        let known = self
            .routes
            .iter()
            .position(|l| l.destination == destination && l.router == router);
        let learned = LearnedRoute {
            destination,
            router,
            preference: r.preference,
            expires: expiry(now, r.lifetime_secs),
        };
        match (known, r.lifetime_secs) {
            (Some(i), 0) => {
                self.routes.remove(i);
            }
            (Some(i), _) => self.routes[i] = learned,
            (None, 0) => {}
            (None, _) if self.routes.len() < MAX_PREFIXES => self.routes.push(learned),
            (None, _) => {}
        }
    }

    /// The route per destination: the highest preference, then the first heard.
    pub(crate) fn best_routes(&self) -> Vec<(Ipv6Net, Ipv6Addr)> {
        let mut best: Vec<&LearnedRoute> = Vec::new();
        for r in &self.routes {
            match best.iter_mut().find(|b| b.destination == r.destination) {
                Some(b) if r.preference > b.preference => *b = r,
                Some(_) => {}
                None => best.push(r),
            }
        }
        best.iter().map(|r| (r.destination, r.router)).collect()
    }

    /// RFC 4862 §5.5.3: only /64 prefixes (64-bit interface identifiers), preferred ≤ valid,
    /// and the two-hour rule for lifetimes of addresses we already have.
    fn learn_slaac(&mut self, p: &PrefixInfo, now: Instant, mac: [u8; 6]) {
        if p.len != 64 || p.preferred_secs > p.valid_secs {
            return;
        }
        let address = addr::slaac_address(p.prefix, mac);
        let preferred_until = expiry(now, p.preferred_secs);
        let deprecated = p.preferred_secs == 0;
        let Some(existing) = self.slaac.iter_mut().find(|s| s.address == address) else {
            if p.valid_secs > 0 && self.slaac.len() < MAX_PREFIXES {
                let valid_until = expiry(now, p.valid_secs);
                self.slaac.push(Slaac {
                    address,
                    valid_until,
                    preferred_until,
                    deprecated,
                });
            }
            return;
        };
        // The preferred lifetime is simply reset (§5.5.3 e); only the valid one is guarded.
        existing.preferred_until = preferred_until;
        existing.deprecated = deprecated;
        let received = Duration::from_secs(u64::from(p.valid_secs));
        let remaining = existing
            .valid_until
            .map(|t| t.saturating_duration_since(now));
        existing.valid_until = if p.valid_secs == u32::MAX {
            None
        } else if received > TWO_HOURS || remaining.is_some_and(|r| received > r) {
            Some(now + received)
        } else if remaining.is_some_and(|r| r <= TWO_HOURS) {
            existing.valid_until
        } else {
            Some(now + TWO_HOURS)
        };
    }

    /// Drops whatever expired at `now`. Returns true if the last router went away, so the
    /// caller can start soliciting again.
    pub(crate) fn expire(&mut self, now: Instant) -> bool {
        let had_routers = !self.routers.is_empty();
        self.routers.retain(|r| now < r.expires);
        self.on_link.retain(|(_, t)| t.is_none_or(|t| now < t));
        self.slaac.retain(|s| s.valid_until.is_none_or(|t| now < t));
        for s in &mut self.slaac {
            if s.preferred_until.is_some_and(|t| now >= t) {
                s.deprecated = true;
            }
        }
        self.routes.retain(|r| r.expires.is_none_or(|t| now < t));
        self.dns.retain(|(_, t)| now < *t);
        self.domains.retain(|(_, t)| now < *t);
        had_routers && self.routers.is_empty()
    }

    /// The earliest expiry or solicitation.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let routers = self.routers.iter().map(|r| r.expires);
        let on_link = self.on_link.iter().filter_map(|(_, t)| *t);
        let slaac = self.slaac.iter().filter_map(|s| s.valid_until);
        // A deprecated address has no preferred deadline left to run.
        let preferred = self
            .slaac
            .iter()
            .filter(|s| !s.deprecated)
            .filter_map(|s| s.preferred_until);
        let routes = self.routes.iter().filter_map(|r| r.expires);
        let dns = self.dns.iter().map(|(_, t)| *t);
        let domains = self.domains.iter().map(|(_, t)| *t);
        let solicit = self.soliciting.iter().map(|r| r.next_send);
        routers
            .chain(on_link)
            .chain(slaac)
            .chain(preferred)
            .chain(routes)
            .chain(dns)
            .chain(domains)
            .chain(solicit)
            .min()
    }

    /// The default router: highest preference, then the first one heard (stable choice).
    pub(crate) fn default_router(&self) -> Option<&Router> {
        let mut best: Option<&Router> = None;
        for r in &self.routers {
            if best.is_none_or(|b| r.preference > b.preference) {
                best = Some(r);
            }
        }
        best
    }
}

/// Inserts or refreshes `key` with `lifetime` seconds (0 removes it), keeping at most `max`.
fn upsert<K: PartialEq>(
    list: &mut Vec<(K, Instant)>,
    key: K,
    now: Instant,
    lifetime: u32,
    max: usize,
) {
    let known = list.iter().position(|(k, _)| *k == key);
    if lifetime == 0 {
        if let Some(i) = known {
            list.remove(i);
        }
        return;
    }
    // RFC 8106 lifetimes are finite in practice; infinity is capped to keep Instant math safe.
    let until = now + Duration::from_secs(u64::from(lifetime.min(u32::MAX - 1)));
    match known {
        Some(i) => list[i].1 = until,
        None if list.len() < max => list.push((key, until)),
        None => {}
    }
}
