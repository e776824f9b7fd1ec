//! Reaching a SoftEther server: everything between the sans-IO protocol crate and a socket.
//!
//! Bottom up:
//! - [`tls`]: rustls configuration (system roots, CA file, SHA-256 pin, insecure) that records
//!   the server certificate.
//! - [`user_file`]: reading files a user names (regular files only, size caps, off the runtime
//!   with a deadline).
//! - [`credentials`]: password files, certificate + key, and the login identity.
//! - [`connection`]: one connection — session configuration, TCP + TLS, one handshake over it,
//!   [`connection::Established`] and [`connection::SessionError`]. Everything above is generic
//!   over [`connection::SessionStream`] / [`connection::Dialer`]: TLS in production, an
//!   in-memory fake server (`testkit`, tests only) over `tokio::io::duplex` in the in-process
//!   tests, which run in paused time on tokio's clock ([`clock`]).
//! - [`proxy`] and [`proxy_lookup`]: HTTP/SOCKS proxies, and the local lookup of the server's
//!   name behind one, kept for the session.
//! - [`join`]: additional connections and resuming a session with its key.
//! - [`establish`]: the first login, following cluster redirects, then joining more connections.
//! - [`driver`]: one task pumping the tunnel state machine over the session's connections;
//!   frames in and out through channels; [`spread`] assigns outgoing frames to connections by
//!   flow.
//! - [`udp_accel`]: the UDP acceleration socket and the task in front of the driver that sends
//!   frames over UDP while the link is up (§11).

pub mod clock;
pub mod connection;
pub mod credentials;
pub mod driver;
pub mod establish;
pub mod join;
pub mod proxy;
pub mod proxy_lookup;
pub mod spread;
#[cfg(test)]
pub(crate) mod testkit;
pub mod tls;
pub mod udp_accel;
mod udp_batch;
pub mod user_file;

/// A seed for protocol padding and DHCP transaction ids; uniqueness matters, not secrecy.
pub fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        return t ^ u64::from(std::process::id());
    }
    u64::from_le_bytes(bytes)
}
