//! The pod's TAP and what the attachment left beside it, created and removed by the plugin
//! itself inside `CNI_NETNS`.
//!
//! ADD creates a *persistent* TAP named `CNI_IFNAME` (so a restarted sidecar can reopen it by
//! name), sets its MAC, and hands the fd to the sidecar over SCM_RIGHTS. DEL removes it when
//! the sidecar is down, and with it the policy rules and nft table. All of it is
//! `netcfg::pod_netns`, the same code the sidecar runs; the namespace is entered on netcfg's
//! short-lived threads, never on the plugin's own.

use std::future::Future;
use std::os::fd::OwnedFd;
use std::time::Duration;

pub use netcfg::{PodRouting, TapRemoval};

use crate::spec::{CniError, ErrorCode};

/// Bound on one teardown step (a netlink dump, a few deletes, one `nft` run).
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// How commands reach the pod's TAP; tests substitute a fake.
pub trait PodTaps {
    /// Creates the persistent TAP `ifname` in `netns` with `mac`; errors if the name exists.
    fn create(&self, netns: &str, ifname: &str, mac: [u8; 6]) -> Result<OwnedFd, CniError>;
    /// Deletes the TAP `ifname` in `netns` if it is there, is a TAP, and its MAC is `ours`.
    fn delete(&self, netns: &str, ifname: &str, ours: [u8; 6]) -> Result<TapRemoval, CniError>;
    /// Removes what the attachment installed in `netns` besides the TAP, best effort;
    /// returns the failures for the log.
    fn remove_leftovers(&self, netns: &str, leftovers: &PodRouting) -> Vec<String>;
}

/// The real thing: `netcfg::pod_netns` in the pod's namespace.
#[derive(Debug, Default, Clone, Copy)]
pub struct KernelTaps;

fn tap_error(what: String, e: impl std::fmt::Display) -> CniError {
    CniError::new(ErrorCode::TapNetns, what, e.to_string())
}

/// netcfg's netlink is async: a current-thread runtime lives just for one step.
fn block_on<T>(what: &str, step: impl Future<Output = T>) -> Result<T, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime for netlink: {e}"))?;
    runtime
        .block_on(async { tokio::time::timeout(STEP_TIMEOUT, step).await })
        .map_err(|_| format!("{what} took over {STEP_TIMEOUT:?}; gave up"))
}

impl PodTaps for KernelTaps {
    fn create(&self, netns: &str, ifname: &str, mac: [u8; 6]) -> Result<OwnedFd, CniError> {
        netcfg::pod_netns::create_tap(netns, ifname, mac)
            .map_err(|e| tap_error(format!("cannot create TAP {ifname} in {netns}"), e))
    }

    fn delete(&self, netns: &str, ifname: &str, ours: [u8; 6]) -> Result<TapRemoval, CniError> {
        let what = format!("deleting TAP {ifname} in {netns}");
        block_on(
            &what,
            netcfg::pod_netns::remove_tap(netns, ifname, Some(ours)),
        )
        .map_err(|e| tap_error(format!("cannot delete TAP {ifname} in {netns}"), e))?
        .map_err(|e| tap_error(format!("cannot delete TAP {ifname} in {netns}"), e))
    }

    fn remove_leftovers(&self, netns: &str, leftovers: &PodRouting) -> Vec<String> {
        if leftovers.is_empty() {
            return Vec::new();
        }
        let what = format!("cleaning up rules and nft table in {netns}");
        match block_on(&what, leftovers.remove(netns)) {
            Ok(errors) => errors.iter().map(ToString::to_string).collect(),
            Err(e) => vec![e],
        }
    }
}

/// A stable MAC for an attachment without one: `5E:` (unicast, locally administered; the
/// range SoftEther clients use) plus 40 bits of FNV-1a over container id and ifname, so a
/// re-ADD of the same attachment gets the same MAC, hence the same DHCP lease.
pub fn derived_mac(container_id: &str, ifname: &str) -> [u8; 6] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in container_id.bytes().chain([0]).chain(ifname.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    [0x5e, b[3], b[4], b[5], b[6], b[7]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_mac_is_stable_unicast_local_and_distinct() {
        let a = derived_mac("c1", "vpn0");
        assert_eq!(a, derived_mac("c1", "vpn0"));
        assert_eq!(a[0], 0x5e);
        assert_eq!(a[0] & 1, 0, "unicast");
        assert_eq!(a[0] & 2, 2, "locally administered");
        assert_ne!(a, derived_mac("c1", "vpn1"));
        assert_ne!(a, derived_mac("c2", "vpn0"));
        assert_ne!(derived_mac("a", "bc"), derived_mac("ab", "c"));
    }
}
