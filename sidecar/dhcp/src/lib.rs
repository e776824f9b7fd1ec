//! Sans-IO DHCPv4 client that speaks raw Ethernet frames.
//!
//! The sidecar's interface has no IP address until DHCP finishes, and its frames travel through
//! a SoftEther layer-2 tunnel, so this client builds and parses whole Ethernet/IPv4/UDP frames
//! itself. It owns no socket, reads no clock and has no randomness source: the driver feeds it
//! frames and the current [`Instant`](std::time::Instant), and a seed for transaction ids and
//! retransmit jitter comes in through [`Config::xid_seed`]. Every transition can therefore be
//! tested in virtual time.
//!
//! # Driving a [`DhcpClient`]
//!
//! `now` must never go backwards between calls.
//!
//! 1. Create it with [`DhcpClient::new`]. It starts in INIT (or INIT-REBOOT when
//!    [`Config::requested_ip`] is set) with its first message already due.
//! 2. After creating it and after every input below, drain the outputs:
//!    - [`DhcpClient::poll_transmit`] until `None`; write each frame into the tunnel;
//!    - [`DhcpClient::poll_event`] until `None`; apply leases ([`Event::Bound`],
//!      [`Event::Changed`]), remove configuration on [`Event::Lost`];
//!    - [`DhcpClient::poll_timeout`]: arm one timer for that instant (`None`: no timer).
//! 3. Inputs:
//!    - every frame read from the tunnel goes to [`DhcpClient::handle_frame`]; anything that is
//!      not a DHCP reply for this client is rejected after a few byte comparisons, without
//!      allocating, so it is fine to call on the hot path ([`DhcpClient::is_dhcp_reply`] is
//!      the same check without the client);
//!    - when the timer fires, call [`DhcpClient::handle_timeout`].
//! 4. When the tunnel reconnects, call [`DhcpClient::restart`]: it asks for the previous
//!    address first (INIT-REBOOT) and falls back to DISCOVER on NAK or silence.
//! 5. On clean shutdown, send the frame from [`DhcpClient::release`].
//!
//! ```
//! use dhcp_client::{Config, DhcpClient, Event};
//! use std::time::Instant;
//!
//! let now = Instant::now();
//! let mut client = DhcpClient::new(Config::new([0x02, 0, 0, 0, 0, 1], 0x5eed), now).unwrap();
//! let discover = client.poll_transmit(now).expect("DISCOVER is due at once");
//! assert_eq!(&discover[..6], &[0xff; 6]);
//! // ... write `discover` to the tunnel; feed frames from it to `client.handle_frame(now, &f)`;
//! while let Some(event) = client.poll_event() {
//!     if let Event::Bound(lease) = event { println!("got {}", lease.interface_address()); }
//! }
//! ```
//!
//! # Protocol behaviour
//!
//! - DISCOVER → OFFER → REQUEST → ACK, taking the first usable offer. DISCOVER and REQUEST
//!   retransmit after 4, 8, 16, 32, 64, 64 … s (±1 s) by default ([`Config::initial_retransmit`],
//!   [`Config::max_retransmit`]); after [`Config::request_attempts`] unanswered REQUESTs, or a
//!   NAK, the client starts over with DISCOVER.
//! - Bound: at T1 a REQUEST is unicast to the server (to the MAC the ACK came from, because the
//!   client writes layer 2 itself), at T2 it is broadcast, at expiry the lease is reported lost
//!   and DISCOVER starts again. T1/T2 default to 0.5/0.875 of the lease.
//! - Options requested: 1, 3, 6, 15, 26, 51, 54, 58, 59, 121, 249. Classless routes come from
//!   option 121, else 249 (same RFC 3442 format); malformed route data is ignored.
//! - Replies are decoded by a hand-written checked view rather than dhcproto's decoder, which
//!   can panic (`debug_assert!`) on malformed options and drops every option after a bad one;
//!   here each option is validated on its own and a bad one is ignored. dhcproto builds the
//!   client's own messages and, in tests, the fake server's replies.
//!
//! Companion frame helpers for the same tunnel: [`arp`] (requests, probes, gratuitous ARP,
//! reply parsing) and [`icmp`] (echo request builder and reply matcher).
//!
//! IPv6 (router discovery, SLAAC, DHCPv6) is the separate sans-IO machine [`v6::Ipv6Client`],
//! driven the same way.

// Tests may take an arbitrary epoch from the clock; the library itself never reads it
// (clippy.toml disallows clock reads and sleeps in this crate).
#![cfg_attr(test, allow(clippy::disallowed_methods))]
#![warn(missing_docs)]

pub mod arp;
mod client;
mod config;
pub mod icmp;
mod lease;
mod message;
mod reply;
mod retransmit;
pub mod routes;
#[cfg(test)]
mod testkit;
pub mod v6;

pub use client::{DhcpClient, Event, LostReason, State};
pub use config::{Config, ConfigError};
pub use lease::{Lease, INFINITE_LEASE, MIN_LEASE};
pub use message::FrameError;
pub use routes::ClasslessRoute;
