//! softether-sidecar: the I/O layer around the sans-IO crates, in layers; each uses only the
//! ones listed before it.
//!
//! - [`transport`]: reaching a server — TLS, login, redirects, additional connections, session
//!   resume, and the tunnel driver.
//! - [`engine`]: one attachment's life — TAP ⇄ tunnel bridge, DHCP, lease applied to a
//!   namespace, reconnects, status, login failure counts.
//! - [`observe`]: metrics, health and readiness over HTTP, and lease hooks, all read from the
//!   engines' status.
//! - [`daemon`]: the `run` daemon behind the CNI plugin — control socket, attachment registry,
//!   state directory, CHECK's verifier, its metrics endpoint.
//! - [`cmd`]: the subcommands (`probe`, `connect`, `run`, `status`) with their flags.
//!
//! Beside them, used by any: [`memory`] (allocator housekeeping) over `sys` (the crate's only
//! `unsafe`).
//!
//! The binary `softether-sidecar` (src/main.rs) parses flags and dispatches to [`cmd`].

pub mod cmd;
pub mod daemon;
pub mod engine;
pub mod memory;
pub mod observe;
mod sys;
pub mod transport;
