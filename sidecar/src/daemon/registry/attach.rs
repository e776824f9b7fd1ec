//! ADD: adopt the TAP fd, start the session, wait for the lease within the plugin's deadline
//! (on tokio's clock, so the wait runs in paused time in tests), answer with the CNI result.

use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use netcfg::{Netlink, Netns, Tap};
use tokio::sync::watch;

use super::{bad_request, ip_prefix, netns_error, Entry, Registry};
use crate::daemon::ipv6;
use crate::daemon::session;
use crate::engine::lease_apply::plan;
use crate::engine::status::{EngineStatus, Phase, StopMode};
use crate::transport::clock;
use softether_control::state_dir::{unix_now, AttachmentKey, AttachmentRecord, RECORD_VERSION};
use softether_control::{
    code, AttachRequest, AttachResult, AttachedIp, AttachedRoute, Dns, Mac, WireError,
};

/// The attach answer must reach the plugin before its own deadline.
const REPLY_MARGIN: Duration = Duration::from_millis(1500);

/// When the attach answer is due: the plugin's `timeoutMs` from now, less [`REPLY_MARGIN`].
fn attach_deadline(timeout_ms: u64) -> Instant {
    clock::now() + Duration::from_millis(timeout_ms).saturating_sub(REPLY_MARGIN)
}

/// Waits until the session is bound with a lease, or fails: with the session's own failure when
/// its task ended, with TRY_AGAIN_LATER (naming the phase) at `deadline`.
async fn wait_for_lease(
    status: &mut watch::Receiver<EngineStatus>,
    failure: &watch::Receiver<Option<WireError>>,
    deadline: Instant,
) -> Result<dhcp_client::Lease, WireError> {
    let bound = async {
        let bound = status
            .wait_for(|s| s.phase == Phase::Bound && s.lease.is_some())
            .await
            .ok()
            .and_then(|s| s.lease.clone());
        // Not bound: the task ended, after saying why (the failure is sent before the
        // task drops its status sender).
        bound.ok_or_else(|| {
            failure
                .borrow()
                .clone()
                .unwrap_or_else(|| WireError::new(code::TAP_NETNS, "the session task ended", ""))
        })
    };
    match tokio::time::timeout_at(deadline.into(), bound).await {
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
    }
}

impl Registry {
    /// ADD: adopt the TAP fd, start the session, wait for the lease.
    pub async fn attach(
        &self,
        req: AttachRequest,
        fds: Vec<OwnedFd>,
    ) -> Result<AttachResult, WireError> {
        let deadline = attach_deadline(req.timeout_ms);
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
        let outcome = wait_for_lease(&mut status, &failure, deadline).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::status::status_channel;
    use softether_control::state_dir::StateDir;

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

    /// The ADD deadline runs on tokio's clock: in paused time a session that never binds is
    /// answered TRY_AGAIN_LATER exactly at `timeoutMs` less the reply margin, naming its phase.
    #[tokio::test(start_paused = true)]
    async fn an_add_without_a_lease_is_answered_at_its_deadline() {
        let (tx, mut status) = status_channel();
        let (_failure_tx, failure) = watch::channel(None);
        let start = clock::now();
        let deadline = attach_deadline(30_000);
        assert_eq!(deadline - start, Duration::from_millis(28_500));
        tx.send_modify(|s| s.last_error = Some("server refused the login".into()));
        let e = wait_for_lease(&mut status, &failure, deadline)
            .await
            .unwrap_err();
        assert_eq!(clock::now(), deadline);
        assert_eq!(e.code, code::TRY_AGAIN_LATER, "{e}");
        assert!(e.msg.contains("session connecting"), "{e}");
        assert_eq!(e.details, "server refused the login");
        // A deadline shorter than the margin answers at once.
        assert_eq!(attach_deadline(1_000), clock::now());
    }

    /// A session that gives up before the deadline answers with its own failure, at once.
    #[tokio::test(start_paused = true)]
    async fn a_failed_session_answers_before_the_deadline() {
        let (tx, mut status) = status_channel();
        let (failure_tx, failure) = watch::channel(None);
        let deadline = attach_deadline(30_000);
        let start = clock::now();
        failure_tx
            .send(Some(WireError::new(
                code::INVALID_CONFIG,
                "bad password file",
                "",
            )))
            .unwrap();
        drop(tx);
        let e = wait_for_lease(&mut status, &failure, deadline)
            .await
            .unwrap_err();
        assert_eq!((e.code, clock::now()), (code::INVALID_CONFIG, start));
    }
}
