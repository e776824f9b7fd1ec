//! Sans-IO client for the SoftEther VPN native protocol (the TLS protocol of `vpnclient` and
//! cascade links). Nothing here does I/O, reads a clock or draws randomness: the caller feeds
//! bytes and `Instant`s in, writes the returned bytes out, and supplies seeds for padding and
//! jitter. A tokio/rustls driver lives in `softether-sidecar`. Protocol reference:
//! `shared/docs/softether-protocol.md` (section numbers below refer to it).
//!
//! # Layers
//! - [`sha0`], [`password`]: SHA-0 and the password challenge (§6).
//! - [`pack`]: the Pack container codec (§4). [`http`]: the HTTP/1.1 subset of the pre-tunnel
//!   phase. [`rsa`]: SHA-1 PKCS#1 v1.5 signing for certificate logins (§5.3).
//! - [`handshake`]: signature → hello → login/additional_connect → Welcome/error/redirect
//!   (§2–§9), built from [`login`] (request packs) and [`welcome`] (reply parsing).
//! - [`tunnel`]: record framing, keep-alives and receive timeout of the data phase (§10).
//! - [`udp_accel`]: the UDP acceleration side channel, v1 (RC4 + SHA-1) and v2
//!   (ChaCha20-Poly1305): negotiation, datagrams, keep-alives, readiness (§11).
//! - [`compress`]: zlib per block for `use_compress` (§10.4).
//! - [`error`]: SoftEther error codes with names, descriptions and a retry policy (§7.3).
//! - `testing` (feature `testing`): a sans-IO fake server for handshake and tunnel tests, and a
//!   client + server `Pair` on a fake clock (loss by a cut link).
//!
//! # Driving one connection
//! ```no_run
//! # use softether_proto::handshake::*;
//! # use softether_proto::tunnel::Tunnel;
//! # fn io(_: &[u8]) -> Vec<u8> { Vec::new() }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // After TCP connect + TLS (send/recv below stand for the TLS stream):
//! let hashed = softether_proto::password::hash_password("alice", "s3cret");
//! let request = Request::Login(LoginRequest {
//!     hub: "DEFAULT".into(),
//!     username: "alice".into(),
//!     credential: Credential::HashedPassword(hashed),
//!     max_connection: 1,
//!     half_connection: false,
//!     use_compress: false,
//!     udp_accel: None,
//!     info: ClientInfo { server_host: "198.18.0.1".into(), ..Default::default() },
//! });
//! let mut hs = ClientHandshake::new(request, 0x5eed);
//! let outcome = loop {
//!     while let Some(bytes) = hs.poll_transmit() {
//!         let _ = io(&bytes); // write to the TLS stream
//!     }
//!     if hs.is_finished() {
//!         break hs.take_outcome();
//!     }
//!     let read = io(&[]); // read whatever arrives (any chunking)
//!     hs.handle_input(&read)?; // Err(..) is final: close; see HandshakeError::retry_class
//! };
//! let Some(Outcome::Welcome(welcome)) = outcome else {
//!     // Redirect: close, connect to redirect.ip:choose_port(), require cert == cert_der,
//!     // and log in with Credential::Ticket(redirect.ticket).
//!     return Ok(());
//! };
//! // Same stream, now tunnel records (TLS stays on: the login always sends use_encrypt=1).
//! let now = std::time::Instant::now();
//! let mut tunnel = Tunnel::new(now, welcome.timeout, 0x5eed);
//! tunnel.handle_input(now, &hs.take_leftover())?;
//! // Loop: read → tunnel.handle_input(now, ..), drain poll_frame() to the TAP device;
//! // TAP frames → queue_frame(); write every poll_transmit(now) record;
//! // sleep until poll_timeout(), then handle_timeout(now)? and poll_transmit(now).
//! # Ok(()) }
//! ```
//! Additional connections use `Request::AdditionalConnect` with `welcome.session_key` and end
//! in `Outcome::Joined { direction }`.

// Tests may take an arbitrary epoch from the clock; the library itself never reads it
// (clippy.toml disallows clock reads and sleeps in this crate).
#![cfg_attr(test, allow(clippy::disallowed_methods))]
#![warn(missing_docs)]

pub mod compress;
pub mod error;
pub mod handshake;
pub mod http;
pub mod login;
pub mod pack;
pub mod password;
pub(crate) mod prng;
pub mod rsa;
pub mod sha0;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tunnel;
pub mod udp_accel;
mod udp_accel_codec;
mod udp_accel_negotiate;
pub mod welcome;

#[cfg(test)]
mod fuzz_tests;
