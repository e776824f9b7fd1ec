//! The attachment registry: one entry (record + session task) per `(containerID, ifname)`.
//!
//! CNI never runs two operations for the same container at once, but different containers do
//! run in parallel, so the map sits behind a short-lived mutex and long work (waiting for a
//! lease, stopping a session) happens outside it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use netcfg::{Netlink, Netns, Tap};

use crate::engine::status::Phase;

use super::session::{self, SessionHandle};
use super::state::{unix_now, AttachmentKey, AttachmentRecord, StateDir, RECORD_VERSION};
use crate::daemon::verify::missing_objects;
use crate::engine::lease_apply::plan;
use crate::engine::status::StopMode;
use softether_control::{
    code, AttachRequest, AttachResult, AttachedIp, AttachedRoute, AttachmentStatus, CheckRequest,
    DetachRequest, Dns, GcReport, GcRequest, IpPrefix, Mac, SidecarStatus, ValidAttachment,
    WireError,
};

/// The attach answer must reach the plugin before its own deadline.
const REPLY_MARGIN: Duration = Duration::from_millis(1500);

struct Entry {
    record: AttachmentRecord,
    session: SessionHandle,
}

pub struct Registry {
    state: StateDir,
    entries: Mutex<HashMap<AttachmentKey, Entry>>,
}

fn bad_request(e: String) -> WireError {
    WireError::new(code::INVALID_ENV, e, "")
}

fn netns_error(what: String, e: impl std::fmt::Display) -> WireError {
    WireError::new(code::TAP_NETNS, what, e.to_string())
}

impl Registry {
    pub fn new(state: StateDir) -> Registry {
        Registry {
            state,
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

    /// ADD: adopt the TAP fd, start the session, wait for the lease.
    pub async fn attach(
        &self,
        req: AttachRequest,
        fds: Vec<OwnedFd>,
    ) -> Result<AttachResult, WireError> {
        let deadline =
            Instant::now() + Duration::from_millis(req.timeout_ms).saturating_sub(REPLY_MARGIN);
        let key = AttachmentKey::new(&req.attachment.container_id, &req.attachment.ifname)
            .map_err(bad_request)?;
        let mut fds = fds.into_iter();
        let (Some(fd), None) = (fds.next(), fds.next()) else {
            return Err(WireError::new(
                code::PROTOCOL,
                "attach needs exactly one TAP file descriptor (SCM_RIGHTS)",
                "",
            ));
        };
        let tap =
            Tap::from_fd(fd).map_err(|e| netns_error("the passed fd is not a TAP".into(), e))?;
        if tap.name() != key.ifname {
            return Err(netns_error(
                format!("the passed TAP is {:?}, not {:?}", tap.name(), key.ifname),
                "",
            ));
        }
        if self.lock().contains_key(&key) {
            return Err(netns_error(
                format!("{key} is already attached"),
                "DEL the attachment first",
            ));
        }
        let mac = match req.link.mac {
            Some(mac) => mac.octets(),
            None => self.read_mac(&req.netns, &key.ifname).await?,
        };
        // Fail fast (code 7) on an unusable password file or pin.
        session::session_config(&req.login)?;
        let record = AttachmentRecord {
            version: RECORD_VERSION,
            network: req.attachment.network.clone(),
            container_id: key.container_id.clone(),
            ifname: key.ifname.clone(),
            netns: req.netns.clone(),
            mac: Mac(mac).to_string(),
            login: req.login.clone(),
            link: req.link.clone(),
            last_address: None,
            pod_namespace: req.pod_namespace.clone(),
            pod_name: req.pod_name.clone(),
            created_at: unix_now(),
        };
        let handle = session::spawn(record.clone(), mac, tap, self.state.clone());
        let mut status = handle.status.clone();
        let failure = handle.failure.clone();
        self.lock().insert(
            key.clone(),
            Entry {
                record: record.clone(),
                session: handle,
            },
        );
        let bound = async {
            let bound = status
                .wait_for(|s| s.phase == Phase::Bound && s.lease.is_some())
                .await
                .ok()
                .and_then(|s| s.lease.clone());
            // Not bound: the task ended, after saying why (the failure is sent before the
            // task drops its status sender).
            bound.ok_or_else(|| {
                failure.borrow().clone().unwrap_or_else(|| {
                    WireError::new(code::TAP_NETNS, "the session task ended", "")
                })
            })
        };
        let outcome = match tokio::time::timeout_at(deadline.into(), bound).await {
            Ok(result) => result,
            Err(_) => {
                let s = status.borrow().clone();
                Err(WireError::new(
                    code::TRY_AGAIN_LATER,
                    format!(
                        "no DHCP lease within the ADD timeout (session {})",
                        s.phase.as_str()
                    ),
                    s.last_error.unwrap_or_default(),
                ))
            }
        };
        match outcome {
            Ok(lease) => {
                let mut saved = record;
                saved.last_address = Some(lease.interface_address());
                if let Err(e) = self.state.save(&saved) {
                    self.forget(&key, StopMode::Teardown).await;
                    return Err(WireError::new(
                        code::TAP_NETNS,
                        "cannot persist the attachment record",
                        e.to_string(),
                    ));
                }
                if let Some(entry) = self.lock().get_mut(&key) {
                    entry.record = saved;
                }
                Ok(result_of(mac, &lease, &req))
            }
            Err(e) => {
                self.forget(&key, StopMode::Teardown).await;
                Err(e)
            }
        }
    }

    async fn read_mac(&self, netns: &str, ifname: &str) -> Result<[u8; 6], WireError> {
        let nl = Netlink::open(Netns::from_path(netns))
            .await
            .map_err(|e| netns_error(format!("cannot open netlink in {netns}"), e))?;
        let info = nl
            .link_by_name(ifname)
            .await
            .map_err(|e| netns_error(format!("cannot read {ifname}"), e))?;
        info.and_then(|i| i.mac)
            .and_then(|m| <[u8; 6]>::try_from(m.as_slice()).ok())
            .ok_or_else(|| netns_error(format!("{ifname} has no Ethernet MAC"), ""))
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

    /// CHECK: the session is up, the interface carries the leased address, and the routes,
    /// policy rules and nft table the lease implies are in place.
    pub async fn check(&self, req: CheckRequest) -> Result<(), WireError> {
        let key = AttachmentKey::new(&req.attachment.container_id, &req.attachment.ifname)
            .map_err(bad_request)?;
        let (record, live, up) = {
            let map = self.lock();
            match map.get(&key) {
                Some(entry) => (
                    entry.record.clone(),
                    entry.session.status.borrow().clone(),
                    entry.session.is_up(),
                ),
                None => {
                    return Err(netns_error(
                        format!("the sidecar has no attachment {key}"),
                        "",
                    ))
                }
            }
        };
        let lease = match (up, live.lease) {
            (true, Some(lease)) => lease,
            _ => {
                return Err(WireError::new(
                    code::TRY_AGAIN_LATER,
                    format!("the VPN session of {key} is {}", live.phase.as_str()),
                    live.last_error.unwrap_or_default(),
                ))
            }
        };
        let nl = Netlink::open(Netns::from_path(&req.netns))
            .await
            .map_err(|e| netns_error(format!("cannot open netlink in {}", req.netns), e))?;
        let info = nl
            .link_by_name(&key.ifname)
            .await
            .map_err(|e| netns_error(format!("cannot read {}", key.ifname), e))?
            .ok_or_else(|| {
                netns_error(format!("{} is missing in {}", key.ifname, req.netns), "")
            })?;
        let mac = info
            .mac
            .as_deref()
            .and_then(|m| <[u8; 6]>::try_from(m).ok())
            .map(Mac);
        let want_mac = req.mac.or_else(|| record.mac.parse().ok());
        if mac != want_mac {
            return Err(netns_error(format!("{} has the wrong MAC", key.ifname), ""));
        }
        let have = nl
            .addresses(info.index)
            .await
            .map_err(|e| netns_error("cannot list addresses".into(), e))?;
        let mut want: Vec<String> = req.ips.iter().map(IpPrefix::to_string).collect();
        want.push(lease.interface_address().to_string());
        for ip in want {
            if !have.iter().any(|a| a.to_string() == ip) {
                return Err(netns_error(
                    format!("{} lacks address {ip}", key.ifname),
                    format!("present: {have:?}"),
                ));
            }
        }
        let planned = plan(&lease, &session::net_options(&record.link), info.index);
        let firewall = session::firewall_of(&req.netns, &key.container_id, &key.ifname);
        let missing = missing_objects(&nl, &firewall, &planned, &key.ifname)
            .await
            .map_err(|e| netns_error(format!("cannot inspect {}", req.netns), e))?;
        if !missing.is_empty() {
            return Err(netns_error(missing.join("; "), format!("in {}", req.netns)));
        }
        Ok(())
    }

    /// STATUS: ready unless some session is down.
    pub fn status(&self) -> SidecarStatus {
        let down: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, e)| !e.session.is_up())
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
        let stale: Vec<(AttachmentKey, String)> = self
            .lock()
            .iter()
            .filter(|(k, e)| {
                e.record.network == req.network
                    && !req
                        .valid
                        .iter()
                        .any(|v| v.container_id == k.container_id && v.ifname == k.ifname)
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

    /// One line per attachment for `softether-sidecar status`.
    pub fn list(&self) -> Vec<AttachmentStatus> {
        let mut out: Vec<AttachmentStatus> = self
            .lock()
            .values()
            .map(|e| {
                let l = e.session.status.borrow();
                let traffic = l.traffic.snapshot();
                let r = &e.record;
                AttachmentStatus {
                    network: r.network.clone(),
                    container_id: r.container_id.clone(),
                    netns: r.netns.clone(),
                    ifname: r.ifname.clone(),
                    mac: r.mac.clone(),
                    address: l
                        .lease
                        .as_ref()
                        .map(|x| x.interface_address())
                        .or(r.last_address)
                        .map(ip_prefix),
                    server: format!("{}:{}", r.login.server, r.login.port),
                    hub: r.login.hub.clone(),
                    user: r.login.user.clone(),
                    state: e.session.state_name().to_owned(),
                    since: e.session.since(),
                    bytes_in: traffic.bytes_in,
                    bytes_out: traffic.bytes_out,
                    reconnects: l.reconnects,
                    last_error: l.last_error.clone(),
                    udp_acceleration: Some(l.udp_mode().as_str().to_owned()),
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.container_id, &a.ifname).cmp(&(&b.container_id, &b.ifname)));
        out
    }

    /// Startup: finish the plugin's tombstones, then re-adopt every remaining record.
    pub async fn recover(&self) {
        match self.state.tombstones_list() {
            Ok(list) => {
                for t in list {
                    match t {
                        Ok(t) => self.bury(t).await,
                        Err(e) => tracing::warn!("skipping tombstone: {e}"),
                    }
                }
            }
            Err(e) => tracing::warn!("cannot list tombstones: {e}"),
        }
        let records = match self.state.records() {
            Ok(r) => r,
            Err(e) => return tracing::warn!("cannot list attachment records: {e}"),
        };
        for rec in records {
            match rec {
                Ok(rec) => self.adopt(rec).await,
                Err(e) => tracing::warn!("skipping attachment record: {e}"),
            }
        }
    }

    async fn bury(&self, t: super::state::Tombstone) {
        let Ok(key) = AttachmentKey::new(&t.container_id, &t.ifname) else {
            return tracing::warn!("ignoring tombstone with a bad key {:?}", t.container_id);
        };
        tracing::info!(attachment = %key, "processing the plugin's DEL from while we were down");
        let record = read_record(&self.state, &key);
        let connmark = record.as_ref().is_some_and(|r| r.link.connmark);
        let rules = record.as_ref().map(policy_rules_of).unwrap_or_default();
        let netns = record.map(|r| r.netns).or(t.netns);
        if let Some(ns) = netns.filter(|ns| std::path::Path::new(ns).exists()) {
            remove_link(&ns, &key.ifname).await;
            // The plugin removes these itself when it can; repeat it, deleting is idempotent.
            if !rules.is_empty() {
                match Netlink::open(Netns::from_path(&ns)).await {
                    Ok(nl) => {
                        for rule in &rules {
                            if let Err(e) = nl.del_rule(rule).await {
                                tracing::warn!(attachment = %key, "cannot remove a policy rule: {e}");
                            }
                        }
                    }
                    Err(e) => tracing::warn!(attachment = %key, "cannot open netlink in {ns}: {e}"),
                }
            }
            if connmark {
                let fw = session::firewall_of(&ns, &key.container_id, &key.ifname);
                if let Err(e) = fw.remove().await {
                    tracing::warn!(attachment = %key, "cannot remove the nft table: {e}");
                }
            }
        }
        // The lease itself expires on the server: releasing needs a session from the
        // attachment's MAC, which is not worth opening just to say goodbye.
        self.forget(&key, StopMode::Teardown).await;
    }

    async fn adopt(&self, rec: AttachmentRecord) {
        let Ok(key) = rec.key() else {
            return tracing::warn!("ignoring record with a bad key {:?}", rec.container_id);
        };
        let ns = Netns::from_path(&rec.netns);
        let exists = match Netlink::open(ns.clone()).await {
            Ok(nl) => nl
                .link_index_opt(&key.ifname)
                .await
                .ok()
                .flatten()
                .is_some(),
            Err(_) => false,
        };
        if !exists {
            tracing::info!(attachment = %key, netns = %rec.netns, "interface or netns gone; forgetting the attachment");
            let _ = self.state.remove(&key);
            return;
        }
        let Ok(mac) = rec.mac.parse::<Mac>() else {
            return tracing::warn!(attachment = %key, "record has a bad MAC {:?}", rec.mac);
        };
        let tap = match Tap::open_persistent(&ns, &key.ifname).await {
            Ok(t) => t,
            Err(e) => return tracing::warn!(attachment = %key, "cannot reopen the TAP: {e}"),
        };
        tracing::info!(attachment = %key, address = ?rec.last_address, "re-adopting attachment");
        let handle = session::spawn(rec.clone(), mac.octets(), tap, self.state.clone());
        self.lock().insert(
            key,
            Entry {
                record: rec,
                session: handle,
            },
        );
    }

    /// Daemon shutdown: end the sessions but keep TAPs and records for the next start.
    pub async fn shutdown(&self) {
        let entries: Vec<Entry> = self.lock().drain().map(|(_, e)| e).collect();
        for e in entries {
            e.session.stop(StopMode::Detach).await;
        }
    }
}

fn read_record(state: &StateDir, key: &AttachmentKey) -> Option<AttachmentRecord> {
    let bytes = std::fs::read(state.record_path(key)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Same namespace file: equal paths, or the same inode (`/run/netns/x` and `/proc/<pid>/ns/net`).
fn same_netns(a: &str, b: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    a == b
        || matches!(
            (std::fs::metadata(a), std::fs::metadata(b)),
            (Ok(x), Ok(y)) if x.dev() == y.dev() && x.ino() == y.ino()
        )
}

/// Deletes `ifname` in `netns` if both still exist.
async fn remove_link(netns: &str, ifname: &str) {
    if !std::path::Path::new(netns).exists() {
        return;
    }
    if let Ok(nl) = Netlink::open(Netns::from_path(netns)).await {
        if let Ok(Some(_)) = nl.link_index_opt(ifname).await {
            if let Err(e) = nl.delete_link(ifname).await {
                tracing::warn!(%netns, %ifname, "cannot delete the interface: {e}");
            }
        }
    }
}

/// The lease's `Ipv4Net` in the wire's family-neutral form.
fn ip_prefix(net: Ipv4Net) -> IpPrefix {
    IpPrefix {
        addr: IpAddr::V4(net.addr()),
        len: net.prefix_len(),
    }
}

/// The CNI result: what the engine installs for `lease` with this attachment's options
/// (the same plan, so the result cannot drift from the pod's routing).
fn result_of(mac: [u8; 6], lease: &dhcp_client::Lease, req: &AttachRequest) -> AttachResult {
    let installed = plan(lease, &session::net_options(&req.link), 0);
    let routes = installed
        .routes
        .iter()
        .map(|r| AttachedRoute {
            dst: ip_prefix(r.destination),
            gw: r.gateway.map(IpAddr::V4),
            table: (r.table != netcfg::TABLE_MAIN).then_some(r.table),
            priority: None,
        })
        .collect();
    AttachResult {
        mac: Mac(mac),
        mtu: lease.mtu.map(u32::from).or(req.link.mtu.map(u32::from)),
        ips: vec![AttachedIp {
            address: ip_prefix(installed.address),
            gateway: lease.default_gateway().or(lease.router).map(IpAddr::V4),
        }],
        routes,
        dns: Dns {
            nameservers: lease.dns_servers.iter().map(|d| d.to_string()).collect(),
            domain: lease.domain_name.clone(),
            ..Dns::default()
        },
    }
}

/// The policy rules an attachment's engine installs (`lease_apply::plan`), rebuilt from its
/// record: `from <last address> lookup N` and, with CONNMARK, `fwmark N lookup N`.
fn policy_rules_of(rec: &AttachmentRecord) -> Vec<netcfg::PolicyRule> {
    let Some(table) = rec.link.policy_route_table else {
        return Vec::new();
    };
    let mut rules = Vec::new();
    if let Some(addr) = rec.last_address {
        rules.push(netcfg::PolicyRule::from_address(
            addr.addr(),
            table,
            softether_control::pod_netns::RULE_PRIORITY_FROM,
        ));
    }
    if rec.link.connmark {
        rules.push(netcfg::PolicyRule::fwmark(
            table,
            u32::MAX,
            table,
            softether_control::pod_netns::RULE_PRIORITY_FWMARK,
        ));
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_netns_by_path_or_inode() {
        let own = format!("/proc/{}/ns/net", std::process::id());
        assert!(same_netns("/proc/self/ns/net", &own));
        assert!(same_netns("/run/netns/gone", "/run/netns/gone"));
        assert!(!same_netns("/run/netns/gone-a", "/run/netns/gone-b"));
    }
}
