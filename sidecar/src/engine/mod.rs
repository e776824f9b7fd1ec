//! The connection engine behind `softether-sidecar connect` and, per pod, the CNI daemon.
//!
//! Layers, bottom up:
//! - [`backoff`]: the reconnect delay policy, a pure seeded value.
//! - [`reconnect`]: the reconnect policy as a pure state machine (login, up, resuming,
//!   waiting with probes of a refusing server, stopped), driven by [`supervisor`].
//! - [`mac`]: the TAP's MAC, given or derived stably from host + user + hub.
//! - [`lease_apply`]: lease → addresses, routes, policy rules, CONNMARK table and resolv.conf
//!   in one namespace (through `netcfg`), with a record of what was added for teardown.
//! - [`bridge`]: one tunnel session's frame pump (TAP ⇄ tunnel, batched) with the sans-IO DHCP
//!   client listening in and lease events applied as they come; generic over
//!   [`bridge::FramePort`] (the TAP, or a channel-backed fake in the in-process tests).
//! - [`status`]: what the engine reports (phase, lease, traffic, reconnects) and how it is
//!   stopped ([`status::StopMode`]: tear down, or detach and leave the configuration).
//! - [`recovery`]: what the engines of one process share when a server comes back (login
//!   slots, one probe per server).
//! - [`supervisor`]: the thin async loop performing the reconnect machine's actions: log in,
//!   resume, run the bridge, probe, wait; RELEASE on a tearing-down stop.
//! - [`run`]: the engine: open the namespace's configuration, bring the TAP up, run the
//!   supervisor, tear down (or detach) on stop. It takes the TAP and the namespace as inputs.
//!
//! Driving the engine: create (or reopen) a [`netcfg::Tap`] in the namespace to configure,
//! build an [`run::EngineConfig`], make a status channel with [`status::status_channel`], and
//! call [`run::run_engine`] with a `watch` stop channel whose value turns `Some(mode)` to stop.
//! `connect` ([`crate::cmd::connect`]) runs one engine in its own namespace; the CNI daemon
//! ([`crate::daemon::session`]) runs one per pod attachment.

pub mod backoff;
pub mod bridge;
#[cfg(test)]
pub(crate) mod fake_tap;
pub mod lease_apply;
pub mod login_failures;
pub mod mac;
pub mod reconnect;
pub mod recovery;
pub mod run;
pub mod status;
pub mod supervisor;
pub mod tap_offload;
#[cfg(test)]
pub(crate) mod test_lease;
