//! The attachment registry: one entry (record + session task) per `(containerID, ifname)`.
//!
//! CNI never runs two operations for the same container at once, but different containers do
//! run in parallel, so the map sits behind a short-lived mutex and long work (waiting for a
//! lease, stopping a session) happens outside it.
//!
//! Here: the map, DEL, STATUS, GC and shutdown. Beside it, one concern each: `attach` (ADD:
//! adopting the TAP, starting the session, waiting for the lease within the plugin's
//! deadline, the CNI result), `check` (CHECK against the pod netns), `recover` (startup:
//! tombstones and re-adopting records) and `observe` (`list`, metrics samples, hook policy).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;

use ipnet::Ipv4Net;
use netcfg::pod_netns::{self, same_netns};
use netcfg::TapRemoval;

use super::session::SessionHandle;
use crate::engine::status::StopMode;
use softether_control::state_dir::{AttachmentKey, AttachmentRecord, KeyError, StateDir};
use softether_control::{
    code, DetachRequest, GcReport, GcRequest, IpPrefix, SidecarStatus, ValidAttachment, WireError,
};

mod attach;
mod check;
mod observe;
mod recover;

struct Entry {
    record: AttachmentRecord,
    session: SessionHandle,
}

pub struct Registry {
    state: StateDir,
    /// `run --hooks-dir`: the only place `onChange` programs may come from (`None`: refused).
    hooks_dir: Option<std::path::PathBuf>,
    entries: Mutex<HashMap<AttachmentKey, Entry>>,
}

fn bad_request(e: KeyError) -> WireError {
    WireError::new(code::INVALID_ENV, e.to_string(), "")
}

fn netns_error(what: String, e: impl std::fmt::Display) -> WireError {
    WireError::new(code::TAP_NETNS, what, e.to_string())
}

impl Registry {
    pub fn new(state: StateDir) -> Registry {
        Registry {
            state,
            hooks_dir: None,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AttachmentKey, Entry>> {
        // A panic while holding the lock leaves a consistent map (no multi-step updates).
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self, key: &AttachmentKey) -> Option<Entry> {
        self.lock().remove(key)
    }

    /// Stops and removes an attachment: session (which, on `Teardown`, releases the lease and
    /// removes its rules and nft table), the TAP, the record and the tombstone.
    async fn forget(&self, key: &AttachmentKey, mode: StopMode) {
        if let Some(entry) = self.take(key) {
            entry.session.stop(mode).await;
            if mode == StopMode::Teardown {
                remove_link(&entry.record.netns, &key.ifname).await;
            }
        }
        if mode == StopMode::Teardown {
            if let Err(e) = self.state.remove(key) {
                tracing::warn!(attachment = %key, "{e}");
            }
            let _ = self.state.remove_tombstone(key);
        }
    }

    /// DEL: best effort, succeeds when nothing is left.
    pub async fn detach(&self, req: DetachRequest) -> Result<(), WireError> {
        let key = AttachmentKey::new(&req.attachment.container_id, &req.attachment.ifname)
            .map_err(bad_request)?;
        let netns = self.lock().get(&key).map(|e| e.record.netns.clone());
        self.forget(&key, StopMode::Teardown).await;
        if let Some(ns) = req.netns.or(netns) {
            // DEL follows every ADD, also one refused because another attachment already had
            // this interface name in this netns: that interface is not ours to remove.
            if !self.link_owned_by_other(&ns, &key) {
                remove_link(&ns, &key.ifname).await;
            }
        }
        Ok(())
    }

    /// Whether a live attachment other than `key` owns `key.ifname` in `netns`.
    fn link_owned_by_other(&self, netns: &str, key: &AttachmentKey) -> bool {
        self.lock()
            .iter()
            .any(|(k, e)| k != key && k.ifname == key.ifname && same_netns(&e.record.netns, netns))
    }

    /// STATUS: ready unless some session is down.
    pub fn status(&self) -> SidecarStatus {
        let down: Vec<String> = self
            .lock()
            .iter()
            // A pod whose namespace is gone waits for its DEL; it does not make the node
            // degraded.
            .filter(|(_, e)| !e.session.is_up() && !e.session.is_gone())
            .map(|(k, _)| k.to_string())
            .collect();
        if down.is_empty() {
            SidecarStatus::Ready
        } else {
            SidecarStatus::Degraded {
                reason: format!("sessions not up: {}", down.join(", ")),
            }
        }
    }

    /// GC: remove every attachment of `network` not in `valid`.
    pub async fn gc(&self, req: GcRequest) -> GcReport {
        // A set: the valid list has one entry per attachment on the node (10,000s).
        let valid: HashSet<(&str, &str)> = req
            .valid
            .iter()
            .map(|v| (v.container_id.as_str(), v.ifname.as_str()))
            .collect();
        let stale: Vec<(AttachmentKey, String)> = self
            .lock()
            .iter()
            .filter(|(k, e)| {
                e.record.network == req.network
                    && !valid.contains(&(k.container_id.as_str(), k.ifname.as_str()))
            })
            .map(|(k, e)| (k.clone(), e.record.netns.clone()))
            .collect();
        let mut report = GcReport::default();
        for (key, netns) in stale {
            self.forget(&key, StopMode::Teardown).await;
            remove_link(&netns, &key.ifname).await;
            report.removed.push(ValidAttachment {
                container_id: key.container_id,
                ifname: key.ifname,
            });
        }
        report
    }

    /// Daemon shutdown: end the sessions but keep TAPs and records for the next start.
    pub async fn shutdown(&self) {
        let entries: Vec<Entry> = self.lock().drain().map(|(_, e)| e).collect();
        for e in entries {
            e.session.stop(StopMode::Detach).await;
        }
    }
}

/// Deletes the TAP `ifname` in `netns` if both still exist (`netcfg::pod_netns`, the same
/// teardown as the plugin's offline DEL); any other kind of link by that name is left alone.
async fn remove_link(netns: &str, ifname: &str) {
    match pod_netns::remove_tap(netns, ifname, None).await {
        Ok(TapRemoval::Absent | TapRemoval::Removed | TapRemoval::NotOurs { .. }) => {}
        Ok(TapRemoval::NotATap { kind }) => {
            tracing::warn!(%netns, %ifname, ?kind, "not a TAP; leaving the interface alone");
        }
        Err(e) => tracing::warn!(%netns, %ifname, "cannot delete the interface: {e}"),
    }
}

/// The lease's `Ipv4Net` in the wire's family-neutral form.
fn ip_prefix(net: Ipv4Net) -> IpPrefix {
    IpPrefix {
        addr: IpAddr::V4(net.addr()),
        len: net.prefix_len(),
    }
}
