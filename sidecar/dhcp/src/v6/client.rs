//! [`Ipv6Client`]: router discovery, SLAAC and DHCPv6 behind one sans-IO interface, reporting
//! one [`Ipv6Settings`] snapshot whenever the configuration to apply changes.

use super::dhcp6::{Dhcp6Client, Dhcp6State};
use super::dhcp6_wire::is_dhcpv6_reply;
use super::ndp::{self, is_router_advertisement};
use super::router::RouterState;
use super::{addr, Ipv6Address, Ipv6Route, Ipv6Router, Ipv6Settings};
use crate::retransmit::SeededRng;
use std::collections::VecDeque;
use std::net::Ipv6Addr;
use std::time::Instant;

/// How the IPv6 client identifies itself and what it may configure.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Ipv6Config {
    /// The TAP's MAC: Ethernet source, EUI-64 identifier (link-local and SLAAC), DUID-LL.
    pub mac: [u8; 6],
    /// IA_NA identifier; defaults to the MAC's last four bytes (stable like the MAC).
    pub iaid: u32,
    /// Form SLAAC addresses from A-flag prefixes.
    pub slaac: bool,
    /// Run DHCPv6 when a router sets M or O.
    pub dhcpv6: bool,
    /// Seed for transaction ids and jitter (the client has no randomness of its own).
    pub seed: u64,
}

impl Ipv6Config {
    /// IPv6 configuration for a TAP with `mac`: SLAAC and DHCPv6 on, IAID from the MAC's last four
    /// bytes, `seed` for transaction ids and jitter.
    pub fn new(mac: [u8; 6], seed: u64) -> Self {
        Ipv6Config {
            mac,
            iaid: u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]),
            slaac: true,
            dhcpv6: true,
            seed,
        }
    }
}

/// Something the driver has to act on, from [`Ipv6Client::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ipv6Event {
    /// The configuration to apply changed (addresses, on-link prefixes, default router, DNS,
    /// domains or MTU); `settings` is the complete new state. Lifetime refreshes that change
    /// nothing else are not reported.
    Updated(Ipv6Settings),
}

/// Sans-IO IPv6 host configuration; see the [module documentation](super) for the contract.
#[derive(Debug)]
pub struct Ipv6Client {
    config: Ipv6Config,
    rng: SeededRng,
    router: RouterState,
    dhcp: Dhcp6Client,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<Ipv6Event>,
    reported: Ipv6Settings,
    stopped: bool,
}

impl Ipv6Client {
    /// Starts soliciting routers at once: call [`Ipv6Client::poll_transmit`] next.
    pub fn new(config: Ipv6Config, now: Instant) -> Self {
        let mut rng = SeededRng::new(config.seed ^ 0x0006_0006);
        let mut router = RouterState::default();
        router.start_soliciting(now, &mut rng);
        Ipv6Client {
            dhcp: Dhcp6Client::new(config.mac, config.iaid, config.seed),
            config,
            rng,
            router,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            reported: Ipv6Settings::default(),
            stopped: false,
        }
    }

    /// Cheap classifier for the frames this client consumes: router advertisements and
    /// DHCPv6 Advertise/Reply. Byte comparisons only, no allocation.
    pub fn wants_frame(frame: &[u8]) -> bool {
        is_router_advertisement(frame) || is_dhcpv6_reply(frame)
    }

    /// Feeds one Ethernet frame from the tunnel. Returns true if it was a valid router
    /// advertisement or a DHCPv6 reply to our current transaction.
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8]) -> bool {
        if self.stopped {
            return false;
        }
        let used = if is_router_advertisement(frame) {
            match ndp::parse_router_advertisement(frame) {
                Some(ra) => {
                    self.router
                        .learn(&ra, now, self.config.mac, self.config.slaac);
                    if self.config.dhcpv6 {
                        self.dhcp.on_flags(ra.managed, ra.other, now);
                    }
                    true
                }
                None => false,
            }
        } else if is_dhcpv6_reply(frame) {
            self.dhcp.handle_frame(now, frame)
        } else {
            false
        };
        if used {
            self.collect();
        }
        used
    }

    /// Runs every timer due at `now`: solicitations, retransmits, T1/T2, lifetimes.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Called after every batch of tunnel frames (through poll_transmit): when nothing is
        // due this is a few comparisons, with no allocation.
        if self.poll_timeout().is_none_or(|due| now < due) {
            return;
        }
        if self.router.expire(now) {
            // The last router went away: look for one again (RFC 7559 backoff).
            self.router.start_soliciting(now, &mut self.rng);
        }
        if let Some(rs) = self.router.soliciting.as_mut() {
            if now >= rs.next_send {
                // From our link-local address: the kernel forms the same one on the TAP.
                let src = addr::link_local(self.config.mac);
                if let Ok(frame) = ndp::router_solicitation(self.config.mac, src) {
                    self.transmits.push_back(frame);
                }
                rs.sent_at(now, &mut self.rng, false);
            }
        }
        self.dhcp.handle_timeout(now);
        self.collect();
    }

    /// Next frame to send through the tunnel. Runs due timers first.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        self.handle_timeout(now);
        self.transmits.pop_front()
    }

    /// Next thing the driver has to act on; call until `None` after every input.
    pub fn poll_event(&mut self) -> Option<Ipv6Event> {
        self.events.pop_front()
    }

    /// When [`Ipv6Client::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.stopped {
            return None;
        }
        [self.router.next_deadline(), self.dhcp.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// The configuration last reported (empty until something was learned).
    pub fn settings(&self) -> &Ipv6Settings {
        &self.reported
    }

    /// Where the DHCPv6 exchange is.
    pub fn dhcp_state(&self) -> Dhcp6State {
        self.dhcp.state()
    }

    /// The DHCPv6 client identifier (DUID-LL of the MAC).
    pub fn duid(&self) -> &[u8] {
        self.dhcp.duid()
    }

    /// The configuration the client was created with.
    pub fn config(&self) -> &Ipv6Config {
        &self.config
    }

    /// After the tunnel reconnected: solicit routers again and confirm a DHCPv6 binding with
    /// Rebind. What was learned is kept until it expires or is replaced, like the DHCPv4
    /// client keeps its configuration across a reconnect.
    pub fn restart(&mut self, now: Instant) {
        self.stopped = false;
        self.transmits.clear();
        self.router.start_soliciting(now, &mut self.rng);
        self.dhcp.restart(now);
    }

    /// Clean shutdown: the DHCPv6 Release frame if addresses were leased; stops everything.
    /// No event is emitted; the caller removes the configuration it applied.
    pub fn release(&mut self) -> Option<Vec<u8>> {
        self.stopped = true;
        self.transmits.clear();
        self.router.soliciting = None;
        self.dhcp.release()
    }

    /// Moves DHCPv6 frames to the queue and reports a changed configuration.
    fn collect(&mut self) {
        self.transmits.extend(self.dhcp.transmits.drain(..));
        let settings = self.compute();
        if settings != self.reported {
            self.reported = settings.clone();
            self.events.push_back(Ipv6Event::Updated(settings));
        }
    }

    fn compute(&self) -> Ipv6Settings {
        let on_link: Vec<_> = self.router.on_link.iter().map(|(n, _)| *n).collect();
        let binding = self.dhcp.binding();
        let mut addresses: Vec<Ipv6Address> = Vec::new();
        let slaac = self
            .router
            .slaac
            .iter()
            .map(|s| (s.address, true, s.deprecated));
        let leased = binding
            .into_iter()
            .flat_map(|b| b.addresses.iter().map(|(a, _)| (*a, false, false)));
        for (address, from_slaac, deprecated) in slaac.chain(leased) {
            if addresses.iter().any(|a| a.address == address) {
                continue;
            }
            // The on-link prefix containing the address gives its length; else a host route.
            let prefix_len = on_link
                .iter()
                .filter(|n| n.contains(&address))
                .map(|n| n.prefix_len())
                .max()
                .unwrap_or(128);
            addresses.push(Ipv6Address {
                address,
                prefix_len,
                from_slaac,
                deprecated,
            });
        }
        let mut dns_servers: Vec<Ipv6Addr> = self.router.dns.iter().map(|(a, _)| *a).collect();
        let mut search_domains: Vec<String> =
            self.router.domains.iter().map(|(d, _)| d.clone()).collect();
        if let Some(b) = binding {
            for &server in &b.dns {
                if !dns_servers.contains(&server) {
                    dns_servers.push(server);
                }
            }
            for domain in &b.domains {
                if !search_domains.contains(domain) {
                    search_domains.push(domain.clone());
                }
            }
        }
        dns_servers.truncate(ndp::MAX_DNS);
        search_domains.truncate(ndp::MAX_DOMAINS);
        Ipv6Settings {
            addresses,
            on_link,
            router: self.router.default_router().map(|r| Ipv6Router {
                address: r.address,
                mac: r.mac,
            }),
            dns_servers,
            search_domains,
            mtu: self.router.mtu,
            routes: self
                .router
                .best_routes()
                .into_iter()
                .map(|(destination, gateway)| Ipv6Route {
                    destination,
                    gateway,
                })
                .collect(),
        }
    }
}
