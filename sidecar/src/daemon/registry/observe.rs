//! The registry as the observability layer sees it: one line per attachment for
//! `softether-sidecar status` (`list`), labels and live status per attachment for the metrics
//! endpoint, and the `onChange` hook policy.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{ip_prefix, Registry};
use crate::daemon::session;
use crate::observe::hooks;
use crate::observe::metrics::AttachmentSample;
use softether_control::{code, AttachmentStatus, IpPrefix, WireError};

impl Registry {
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

    /// Allows `onChange` programs from `dir` (`run --hooks-dir`); without it they are refused.
    pub fn with_hooks_dir(mut self, dir: Option<PathBuf>) -> Registry {
        self.hooks_dir = dir;
        self
    }

    /// ADD refuses (code 7) an `onChange` program outside the hooks directory: a network
    /// config must not be able to run arbitrary programs as the sidecar's root.
    pub(super) fn check_hook(&self, on_change: &[String]) -> Result<(), WireError> {
        let Some(program) = on_change.first() else {
            return Ok(());
        };
        hooks::allowed_program(program.as_ref(), self.hooks_dir.as_deref())
            .map(drop)
            .map_err(|why| {
                WireError::new(
                    code::INVALID_CONFIG,
                    format!("onChange {program:?} is refused: {why}"),
                    "put the hook in the directory given to softether-sidecar run --hooks-dir",
                )
            })
    }

    /// Each attachment's labels and live status, for the metrics endpoint.
    pub fn samples(&self) -> Vec<AttachmentSample> {
        self.lock()
            .values()
            .map(|e| AttachmentSample {
                labels: session::metric_labels(&e.record),
                status: e.session.status.borrow().clone(),
            })
            .collect()
    }
}

/// Whole seconds from now until `t` (rounded up; 0 when past).
fn secs_from_now(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::now())
        .map_or(0, |d| d.as_secs_f64().ceil() as u64)
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
