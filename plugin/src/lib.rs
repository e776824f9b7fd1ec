//! The CNI plugin `softether` (config `"type": "softether"`).
//!
//! A short-lived, synchronous program: the runtime runs it with `CNI_*`
//! variables and the network config on stdin; it validates both, asks the
//! long-lived `softether-sidecar` daemon (Unix socket `sidecarSocket`) to do
//! the work, and prints the result. Layers:
//!
//! - `spec`: CNI versions, the error object and codes, env, results, what a command prints;
//! - `netconf`: this plugin's network-config keys;
//! - `sidecar_client`: the seam to the daemon (trait + Unix-socket client);
//! - `pod_tap`: the persistent TAP the plugin creates in the pod netns (fd passed to the
//!   sidecar), and what DEL removes itself when the sidecar is down (the TAP, the policy
//!   rules, the CONNMARK table) — all through `netcfg::pod_netns`, which the sidecar uses too;
//! - `cmd`: one module per CNI command (a folder when it has submodules), nothing else.
//! - `netavark`: the same binary as a netavark plugin (`info`, `create`, `setup`, `teardown`
//!   as the first argument), running `cmd`'s ADD and DEL.
//!
//! The binary's `main` is the only place that writes to stdout in CNI mode: the result on
//! success, or the error object (and exit status 1) on failure; `netavark::exec` is that place
//! in netavark mode. Logs go to stderr.

pub mod cmd;
pub mod logging;
pub mod netavark;
pub mod netconf;
pub mod pod_tap;
pub mod sidecar_client;
pub mod spec;
#[cfg(test)]
mod test_support;
