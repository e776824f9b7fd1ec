//! The pod's TAP, created and removed by the plugin itself inside `CNI_NETNS`.
//!
//! ADD creates a *persistent* TAP named `CNI_IFNAME` (so a restarted sidecar can reopen it by
//! name), sets its MAC, and hands the fd to the sidecar over SCM_RIGHTS. DEL removes it when
//! the sidecar is down, and with it the rules and nft table `pod_routing` knows about. The namespace is entered on a short-lived thread (`netcfg::Netns::run`);
//! the plugin's own threads never change namespace.

use std::os::fd::{AsFd, OwnedFd};

use netcfg::sys::{open_tun, tun_set_iff, tun_set_persist, TapFlags};
use netcfg::Netns;

use crate::pod_routing::{self, PodLeftovers};
use crate::spec::{CniError, ErrorCode};
use crate::sys::{set_tap_mac, tap_mac};

/// What [`PodTaps::delete`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapRemoval {
    /// No interface by that name (or no netns): nothing to do.
    Absent,
    /// The TAP was ours and is gone.
    Removed,
    /// A TAP by that name exists with another MAC: someone else's, left alone.
    NotOurs { mac: [u8; 6] },
}

/// How commands reach the pod's TAP; tests substitute a fake.
pub trait PodTaps {
    /// Creates the persistent TAP `ifname` in `netns` with `mac`; errors if the name exists.
    fn create(&self, netns: &str, ifname: &str, mac: [u8; 6]) -> Result<OwnedFd, CniError>;
    /// Deletes the TAP `ifname` in `netns` if it is there and its MAC is `ours`.
    fn delete(&self, netns: &str, ifname: &str, ours: [u8; 6]) -> Result<TapRemoval, CniError>;
    /// Removes what the attachment installed in `netns` besides the TAP, best effort;
    /// returns the failures for the log.
    fn remove_leftovers(&self, netns: &str, leftovers: &PodLeftovers) -> Vec<String>;
}

/// The real thing: TUN ioctls inside the netns.
#[derive(Debug, Default, Clone, Copy)]
pub struct KernelTaps;

fn tap_error(what: String, e: impl std::fmt::Display) -> CniError {
    CniError::new(ErrorCode::TapNetns, what, e.to_string())
}

impl PodTaps for KernelTaps {
    fn create(&self, netns: &str, ifname: &str, mac: [u8; 6]) -> Result<OwnedFd, CniError> {
        let ns = Netns::from_path(netns);
        let made = ns
            .run(|| -> std::io::Result<OwnedFd> {
                if nix::net::if_::if_nametoindex(ifname).is_ok() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "an interface with this name already exists",
                    ));
                }
                let fd = open_tun()?;
                tun_set_iff(fd.as_fd(), ifname, TapFlags { exclusive: true })?;
                tun_set_persist(fd.as_fd(), true)?;
                if let Err(e) = set_tap_mac(fd.as_fd(), mac) {
                    // Closing after clearing persist removes the half-made TAP.
                    let _ = tun_set_persist(fd.as_fd(), false);
                    return Err(e);
                }
                Ok(fd)
            })
            .map_err(|e| tap_error(format!("cannot enter {netns}"), e))?;
        made.map_err(|e| tap_error(format!("cannot create TAP {ifname} in {netns}"), e))
    }

    fn delete(&self, netns: &str, ifname: &str, ours: [u8; 6]) -> Result<TapRemoval, CniError> {
        if !std::path::Path::new(netns).exists() {
            return Ok(TapRemoval::Absent);
        }
        let ns = Netns::from_path(netns);
        let done = ns
            .run(|| -> std::io::Result<TapRemoval> {
                if nix::net::if_::if_nametoindex(ifname).is_err() {
                    return Ok(TapRemoval::Absent);
                }
                // Attach by name, check the MAC of the device we now hold, drop persistence,
                // close: the kernel removes the TAP. Attaching fails with EBUSY while the
                // sidecar still holds it (then the sidecar removes it). Closing without
                // touching persistence leaves a foreign TAP exactly as it was.
                let fd = open_tun()?;
                tun_set_iff(fd.as_fd(), ifname, TapFlags { exclusive: false })?;
                let mac = tap_mac(fd.as_fd())?;
                if mac != ours {
                    return Ok(TapRemoval::NotOurs { mac });
                }
                tun_set_persist(fd.as_fd(), false)?;
                Ok(TapRemoval::Removed)
            })
            .map_err(|e| tap_error(format!("cannot enter {netns}"), e))?;
        done.map_err(|e| tap_error(format!("cannot delete TAP {ifname} in {netns}"), e))
    }

    fn remove_leftovers(&self, netns: &str, leftovers: &PodLeftovers) -> Vec<String> {
        pod_routing::remove_leftovers(netns, leftovers)
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
