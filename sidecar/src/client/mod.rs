//! The connection engine behind `softether-sidecar connect` (and, per pod, the CNI sidecar).
//!
//! Layers, bottom up:
//! - [`backoff`]: the reconnect delay policy, a pure seeded value.
//! - [`mac`]: the TAP's MAC, given or derived stably from host + user + hub.
//! - [`lease_apply`]: lease → addresses, routes, policy rules, CONNMARK table and resolv.conf
//!   in one namespace (through `netcfg`), with a record of what was added for teardown.
//! - [`bridge`]: one tunnel session's frame pump (TAP ⇄ tunnel, batched) with the sans-IO DHCP
//!   client listening in and lease events applied as they come.
//! - [`connect`]: the engine: log in, run a session, reconnect with backoff, RELEASE and tear
//!   down on shutdown. It takes the TAP and the target namespace as inputs.
//! - [`cli`]: the `connect` subcommand's flags, signals and exit codes.
//!
//! Driving the engine: create a [`netcfg::Tap`] in the namespace to configure, build an
//! [`connect::EngineConfig`], and call [`connect::run_engine`] with a `watch` channel whose
//! value turns `true` to stop. It returns after removing everything it added.

pub mod backoff;
pub mod bridge;
pub mod cli;
pub mod connect;
pub mod lease_apply;
pub mod mac;
#[cfg(test)]
mod test_lease;
