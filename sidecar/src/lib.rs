//! softether-sidecar: the I/O layer around the sans-IO crates.
//!
//! - [`tls`]: rustls configuration (system roots, CA file, SHA-256 pin, insecure) that records the
//!   server certificate.
//! - [`establish`]: TCP + TLS + the SoftEther HTTP handshake, following cluster redirects.
//! - [`tunnel_driver`]: one task pumping the tunnel state machine over the TLS stream; frames in
//!   and out through channels.
//! - [`probe`]: the `probe` subcommand.
//! - [`daemon`]: the `run` daemon behind the CNI plugin (control socket, attachments) and `status`.
//! - [`client`]: the connection engine and the `connect` subcommand.
//!
//! The binary `softether-sidecar` (src/main.rs) parses flags and dispatches.

pub mod client;
pub mod credentials;
pub mod daemon;
pub mod establish;
pub mod probe;
pub mod probe_frames;
pub mod server_args;
pub mod session_join;
pub mod tls;
pub mod tunnel_driver;
