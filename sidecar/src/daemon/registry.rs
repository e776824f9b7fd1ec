//! The attachment registry: one entry (record + session task) per `(containerID, ifname)`.
//!
//! CNI never runs two operations for the same container at once, but different containers do
//! run in parallel, so the map sits behind a short-lived mutex and long work (waiting for a
//! lease, stopping a session) happens outside it.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use netcfg::pod_netns::{self, same_netns};
use netcfg::{Netlink, Netns, PodRouting, Tap, TapRemoval};

use crate::engine::status::Phase;

use super::ipv6;
use super::session::{self, SessionHandle};
use crate::daemon::verify::{missing_objects, missing_objects6};
use crate::engine::lease_apply::plan;
use crate::engine::status::StopMode;
use softether_control::state_dir::{
    unix_now, AttachmentKey, AttachmentRecord, KeyError, StateDir, Tombstone, RECORD_VERSION,
};
use softether_control::{
    code, AttachRequest, AttachResult, AttachedIp, AttachedRoute, AttachmentStatus, CheckRequest,
    DetachRequest, Dns, GcReport, GcRequest, IpPrefix, Mac, SidecarStatus, ValidAttachment,
    WireError,
};

#[path = "registry_observe.rs"]
mod observe;
use observe::{secs_from_now, unix_secs};

/// The attach answer must reach the plugin before its own deadline.
const REPLY_MARGIN: Duration = Duration::from_millis(1500);

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
        session::session_config(&req.login).await?;
        self.check_hook(&req.link.on_change)?;
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
        let hooks = self.hooks_dir.as_deref();
        let handle = session::spawn(record.clone(), mac, tap, self.state.clone(), hooks);
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
                let ipv6 = if req.link.ipv6_enabled() {
                    let hub = ipv6::hub_key(&req.login);
                    let settled =
                        ipv6::settle(&mut status, ipv6::daemon_hubs(), &hub, deadline.into()).await;
                    tracing::info!(attachment = %key, waited_ms = settled.waited.as_millis() as u64,
                        addresses = settled.settings.addresses.len(), why = settled.why,
                        "IPv6 for the ADD result");
                    settled.settings
                } else {
                    Default::default()
                };
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
                let mut result = result_of(mac, &lease, &req);
                ipv6::add_to_result(&mut result, &ipv6, &session::net_options(&req.link));
                Ok(result)
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
        let mut have: Vec<String> = nl
            .addresses(info.index)
            .await
            .map_err(|e| netns_error("cannot list addresses".into(), e))?
            .iter()
            .map(Ipv4Net::to_string)
            .collect();
        if req.ips.iter().any(|ip| ip.addr.is_ipv6()) {
            let have6 = nl
                .addresses6(info.index)
                .await
                .map_err(|e| netns_error("cannot list IPv6 addresses".into(), e))?;
            have.extend(have6.iter().map(ToString::to_string));
        }
        let mut want: Vec<String> = req.ips.iter().map(IpPrefix::to_string).collect();
        want.push(lease.interface_address().to_string());
        for ip in want {
            if !have.contains(&ip) {
                return Err(netns_error(
                    format!("{} lacks address {ip}", key.ifname),
                    format!("present: {have:?}"),
                ));
            }
        }
        let opts = session::net_options(&record.link);
        let planned = plan(&lease, &opts, info.index);
        let firewall = pod_netns::firewall(&req.netns, &key.container_id, &key.ifname);
        let mut missing = missing_objects(&nl, &firewall, &planned, &key.ifname)
            .await
            .map_err(|e| netns_error(format!("cannot inspect {}", req.netns), e))?;
        let planned6 = ipv6::pod_plan(&live.ipv6.settings, &opts, info.index);
        missing.extend(
            missing_objects6(&nl, &planned6, info.index, &key.ifname)
                .await
                .map_err(|e| netns_error(format!("cannot inspect IPv6 in {}", req.netns), e))?,
        );
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
                    next_retry_secs: l.next_retry().map(secs_from_now),
                    lease_expires: l.lease_expiry().map(unix_secs),
                    rate_in: traffic.rate_in,
                    rate_out: traffic.rate_out,
                    udp_acceleration: Some(l.udp_mode().as_str().to_owned()),
                    addresses6: l
                        .ipv6
                        .settings
                        .addresses
                        .iter()
                        .map(|a| IpPrefix {
                            addr: IpAddr::V6(a.address),
                            len: a.interface_address().prefix_len(),
                        })
                        .collect(),
                    gateway6: l.ipv6.settings.router.map(|r| IpAddr::V6(r.address)),
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

    async fn bury(&self, t: Tombstone) {
        let Ok(key) = AttachmentKey::new(&t.container_id, &t.ifname) else {
            return tracing::warn!("ignoring tombstone with a bad key {:?}", t.container_id);
        };
        tracing::info!(attachment = %key, "processing the plugin's DEL from while we were down");
        let record = self.state.record(&key).unwrap_or_else(|e| {
            tracing::warn!(attachment = %key, "{e}");
            None
        });
        let routing = record.as_ref().map(pod_routing_of).unwrap_or_default();
        let netns = record.map(|r| r.netns).or(t.netns);
        if let Some(ns) = netns.filter(|ns| std::path::Path::new(ns).exists()) {
            remove_link(&ns, &key.ifname).await;
            // The plugin removes these itself when it can; repeat it, deleting is idempotent.
            for e in routing.remove(&ns).await {
                tracing::warn!(attachment = %key, "{e}");
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
        let hooks = self.hooks_dir.as_deref();
        let handle = session::spawn(rec.clone(), mac.octets(), tap, self.state.clone(), hooks);
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

/// What an attachment's engine installed besides the TAP (`lease_apply::plan`), rebuilt from
/// its record.
fn pod_routing_of(rec: &AttachmentRecord) -> PodRouting {
    PodRouting {
        policy_table: rec.link.policy_route_table,
        address: rec.last_address.map(|a| a.addr()),
        connmark_id: rec
            .link
            .connmark
            .then(|| pod_netns::engine_id(&rec.container_id, &rec.ifname)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn teardown_finds_exactly_what_the_plan_installed() {
        let rec = session::tests::record(Some("192.168.30.10/24"));
        let lease = crate::engine::test_lease::bound_lease(Instant::now(), Duration::from_secs(60));
        let mut installed = plan(&lease, &session::net_options(&rec.link), 7).rules;
        let routing = pod_routing_of(&AttachmentRecord {
            last_address: Some(lease.interface_address()),
            ..rec.clone()
        });
        assert_eq!(routing.connmark_id.as_deref(), Some("c1_vpn0"));
        assert_eq!(routing.own_rules(&installed), installed);
        // Another attachment's from-rule in the same table is not ours.
        installed.push(netcfg::PolicyRule::from_address(
            std::net::Ipv4Addr::new(10, 99, 0, 1),
            100,
            pod_netns::RULE_PRIORITY_FROM,
        ));
        assert_eq!(routing.own_rules(&installed).len(), 2);
        // Without a policy table or connmark there is nothing besides the TAP.
        let mut bare = rec;
        bare.link.policy_route_table = None;
        bare.link.connmark = false;
        assert!(pod_routing_of(&bare).is_empty());
    }

    /// Issue 14: a 300-byte container id logged in and leased before failing 102 on its
    /// record; the daemon now refuses it (code 4) before touching anything, as the plugin does.
    #[tokio::test]
    async fn an_over_long_container_id_is_refused_before_anything() {
        let dir = std::env::temp_dir().join(format!("se-registry-long-{}", std::process::id()));
        let registry = Registry::new(StateDir::open(&dir).unwrap());
        let req: AttachRequest = serde_json::from_value(serde_json::json!({
            "network": "vpnnet", "containerID": "a".repeat(300), "ifname": "vpn0",
            "netns": "/run/netns/none",
            "login": {"server": "198.18.0.1", "port": 443, "hub": "H", "user": "u",
                      "passwordFile": "/nonexistent", "plainPassword": false, "insecure": true,
                      "maxConnections": 1},
            "link": {"acceptDefaultGateway": false, "acceptStaticRoutes": false,
                     "connmark": false},
            "timeoutMs": 30000}))
        .unwrap();
        let e = registry.attach(req, Vec::new()).await.unwrap_err();
        assert_eq!(e.code, code::INVALID_ENV, "{e}");
        assert!(e.msg.contains("longer than 128"), "{e}");
        assert!(registry.list().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
