//! Sans-IO IPv6 host configuration through the tunnel: router solicitation/advertisement
//! (RFC 4861), SLAAC with EUI-64 identifiers (RFC 4862), RDNSS/DNSSL (RFC 8106) and a DHCPv6
//! client (RFC 8415: stateful IA_NA when a router sets M, stateless Information-request when it
//! sets only O).
//!
//! Like the DHCPv4 client it owns no socket, reads no clock and has no randomness of its own:
//! the driver feeds it Ethernet frames and `now`, and drains frames to send, events and the
//! next deadline.
//!
//! # Driving an [`Ipv6Client`]
//!
//! 1. [`Ipv6Client::new`]: a router solicitation is due at once.
//! 2. After creating it and after every input, drain [`Ipv6Client::poll_transmit`] (frames for
//!    the tunnel), [`Ipv6Client::poll_event`] (apply each [`Ipv6Event::Updated`] snapshot:
//!    it is the whole configuration, so the driver reconciles instead of tracking deltas), and
//!    arm one timer for [`Ipv6Client::poll_timeout`].
//! 3. Frames from the tunnel for which [`Ipv6Client::wants_frame`] is true go to
//!    [`Ipv6Client::handle_frame`] (router advertisements and DHCPv6 replies; a byte-compare
//!    classifier, cheap on the hot path). Timer: [`Ipv6Client::handle_timeout`].
//! 4. Tunnel reconnected: [`Ipv6Client::restart`]. Clean shutdown: send
//!    [`Ipv6Client::release`]'s frame.
//!
//! # What the host side must do
//!
//! The client sends from the EUI-64 link-local address, which is the one the kernel gives a TAP
//! with this MAC (default `addr_gen_mode`). The kernel therefore answers neighbour solicitations
//! for it and for the addresses the driver configures: ND for our own addresses is the kernel's
//! job on the TAP, not this crate's. Configure addresses with `IFA_F_NODAD`: the router or
//! DHCPv6 server made them ours and the tunnel is a link where optimistic use is safe; without
//! it the kernel holds each address tentative for a second of DAD (NS from `::` to the
//! solicited-node group) before it can be used. Disable `accept_ra` and `autoconf` on the TAP
//! so that the kernel does not configure a second, unmanaged copy of the same state.
//!
//! # Protocol behaviour
//!
//! - Router solicitations: at once, then after 4 s doubling to 3600 s (RFC 7559) until an
//!   advertisement arrives; again when the last default router expires or after a restart.
//! - Advertisements are validated (link-local source, hop limit 255, ICMPv6 checksum, code 0,
//!   no zero-length option). Prefixes: L → on-link route, A on a /64 → SLAAC address with the
//!   two-hour rule; lifetimes expire them. Router lifetime 0 withdraws a router; the default
//!   router is the highest RFC 4191 preference, then the first heard. MTU 1280–65535.
//!   RDNSS/DNSSL with lifetimes. Route Information options (RFC 4191) become routes via the
//!   router that sent them (the highest preference per destination, `::/0` excepted: that is
//!   the router lifetime's job), with their own lifetimes. At most 4 routers, 16 prefixes,
//!   16 routes, 8 DNS servers and 8 domains.
//! - DHCPv6: DUID-LL from the MAC, IAID from its last four bytes. Retransmission per RFC 8415
//!   §15 (Solicit 1 s → 3600 s, Request 1 s → 30 s × 10, Renew/Rebind 10 s → 600 s,
//!   Information-request 1 s → 3600 s). Advertises are collected for the first RT (preference
//!   255 is taken at once). T1/T2 of 0 mean 0.5/0.8 of the shortest preferred lifetime; a
//!   NoBinding answer to Renew/Rebind leads to a Request. The Release is sent once. The
//!   initial 0–1 s Solicit delay and Reconfigure are not implemented.
//! - Addresses are reported with the length of the on-link prefix that contains them, else
//!   /128; DHCPv6-leased addresses only become on-link through a router's L flag.
//! - A SLAAC address past its preferred lifetime (or advertised with preferred lifetime 0) is
//!   reported `deprecated` (the driver keeps it but marks it so the kernel prefers others as a
//!   source, RFC 4862 §5.5.4) until a new preferred lifetime revives it or the valid lifetime
//!   removes it. DHCPv6 addresses are renewed at T1, before their preferred lifetime ends.

mod addr;
mod client;
mod dhcp6;
mod dhcp6_wire;
mod ndp;
mod retrans;
mod router;
#[cfg(test)]
mod tests;

pub use addr::{eui64_interface_id, link_local, multicast_mac, slaac_address};
pub use client::{Ipv6Client, Ipv6Config, Ipv6Event};
pub use dhcp6::Dhcp6State;
pub use dhcp6_wire::{duid_ll, is_dhcpv6_reply};
pub use ndp::{is_router_advertisement, parse_router_advertisement, router_solicitation};
pub use ndp::{PrefixInfo, RouteInfo, RouterAdvertisement, RouterPreference};
pub use retrans::Timing;

use ipnet::Ipv6Net;
use std::net::Ipv6Addr;

/// The IPv6 configuration to apply, as last learned. Carries no instants, so two snapshots
/// are equal exactly when there is nothing to reconfigure.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Ipv6Settings {
    /// SLAAC addresses first (in prefix order), then DHCPv6 ones.
    pub addresses: Vec<Ipv6Address>,
    /// Prefixes with the L flag: routes on the interface.
    pub on_link: Vec<Ipv6Net>,
    /// The default router (a link-local address), if any router has a non-zero lifetime.
    pub router: Option<Ipv6Router>,
    /// RDNSS first, then DHCPv6 option 23; at most 8.
    pub dns_servers: Vec<Ipv6Addr>,
    /// DNSSL first, then DHCPv6 option 24; at most 8.
    pub search_domains: Vec<String>,
    /// From the advertisement's MTU option.
    pub mtu: Option<u32>,
    /// Route Information options: more specific routes via a router.
    pub routes: Vec<Ipv6Route>,
}

/// A route from a Route Information option (RFC 4191).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Route {
    /// The destination prefix.
    pub destination: Ipv6Net,
    /// The advertising router's link-local address.
    pub gateway: Ipv6Addr,
}

impl Ipv6Settings {
    /// Nothing learned (a hub without IPv6 routers).
    pub fn is_empty(&self) -> bool {
        self == &Ipv6Settings::default()
    }
}

/// An IPv6 address for the interface, from SLAAC or DHCPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Address {
    /// The address itself.
    pub address: Ipv6Addr,
    /// Length of the longest on-link prefix containing it; 128 when none does.
    pub prefix_len: u8,
    /// Formed by SLAAC (else leased by DHCPv6).
    pub from_slaac: bool,
    /// Past its preferred lifetime: kept, but not chosen as a source for new connections.
    pub deprecated: bool,
}

impl Ipv6Address {
    /// The address with its prefix length, as it goes on the interface.
    pub fn interface_address(&self) -> Ipv6Net {
        Ipv6Net::new(self.address, self.prefix_len.min(128))
            .unwrap_or_else(|_| Ipv6Net::from(self.address))
    }
}

/// The default router learned from router advertisements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Router {
    /// Link-local: the gateway of the default route.
    pub address: Ipv6Addr,
    /// Its MAC (from the source link-layer option, else the Ethernet source).
    pub mac: [u8; 6],
}
