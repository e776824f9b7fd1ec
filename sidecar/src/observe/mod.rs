//! What operators see besides logs: Prometheus metrics, health and readiness over HTTP
//! (`--metrics-addr`), and lease hooks (`--on-change`, the CNI config's `onChange`).
//!
//! - [`metrics`]: the `/metrics` content (prometheus-client), per attachment from the engines'
//!   status at scrape time, plus the daemon's request counters;
//! - [`http`]: the hyper server for `/metrics`, `/healthz` and `/readyz`;
//! - [`hooks`]: the per-attachment runner that turns status changes into hook runs.
//!
//! The engine knows nothing of this module: everything is read from
//! [`crate::engine::status::EngineStatus`] and [`crate::engine::login_failures`]. The daemon's
//! own endpoint (its registry, control socket and readiness) is `daemon::observer`.

pub mod hooks;
pub mod http;
pub mod metrics;

use std::sync::Arc;

use tokio::sync::watch;

use crate::engine::status::{EngineStatus, Phase};
use http::{Endpoints, Health};
use metrics::{AttachmentLabels, AttachmentSample, Metrics};

/// The one-line reason an engine is not ready, or `Ok` when it is: up with a lease, or
/// logged in when there is no DHCP (`bridge_only`).
pub fn engine_readiness(status: &EngineStatus, bridge_only: bool) -> Result<(), String> {
    if status.is_up() || (bridge_only && status.phase == Phase::LoggedIn) {
        return Ok(());
    }
    let mut reason = format!("session {}", status.phase.as_str());
    if let Some(e) = &status.last_error {
        reason.push_str(": ");
        reason.push_str(e);
    }
    Err(reason.replace('\n', " "))
}

/// The endpoints of `connect`: its one attachment, `/healthz` while the runtime answers,
/// `/readyz` per [`engine_readiness`].
pub fn connect_endpoints(
    status: watch::Receiver<EngineStatus>,
    labels: AttachmentLabels,
    bridge_only: bool,
) -> Endpoints {
    let ready_status = status.clone();
    let source: metrics::SampleSource = Arc::new(move || {
        vec![AttachmentSample {
            labels: labels.clone(),
            status: status.borrow().clone(),
        }]
    });
    Endpoints {
        metrics: Metrics::new(source, false),
        health: Health::Runtime,
        ready: Arc::new(move || engine_readiness(&ready_status.borrow(), bridge_only)),
    }
}

#[cfg(test)]
mod hooks_tests;
#[cfg(test)]
mod http_tests;
#[cfg(test)]
mod metrics_tests;
