//! The daemon's endpoint: its attachments from the registry, request counters fed by the
//! control socket, `/healthz` asking the control socket, `/readyz` once re-adoption is done.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::registry::Registry;
use crate::observe::http::{self, Endpoints, Health, ReadyFlag};
use crate::observe::metrics::{Metrics, SampleSource};

/// Test-only knob (the e2e tests make re-adoption long enough to observe `/readyz` = 503):
/// milliseconds to wait before re-adopting. Not for production use.
pub const TEST_READOPT_DELAY_ENV: &str = "SOFTETHER_SIDECAR_TEST_READOPT_DELAY_MS";

/// The running endpoint of `run --metrics-addr`.
pub struct DaemonObserver {
    endpoints: Arc<Endpoints>,
    ready: Arc<ReadyFlag>,
    listening: Arc<AtomicBool>,
}

impl DaemonObserver {
    /// Binds `addr` and serves it; not ready until [`DaemonObserver::serving`].
    pub async fn start(
        addr: SocketAddr,
        socket: &Path,
        registry: Arc<Registry>,
    ) -> std::io::Result<DaemonObserver> {
        let listener = http::bind(addr).await?;
        let ready = ReadyFlag::new("loading the state directory and re-adopting attachments");
        let listening = Arc::new(AtomicBool::new(false));
        let source: SampleSource = Arc::new(move || registry.samples());
        let ready_check = ready.clone();
        let endpoints = Arc::new(Endpoints {
            metrics: Metrics::new(source, true),
            health: Health::ControlSocket {
                path: socket.to_owned(),
                listening: listening.clone(),
            },
            ready: Arc::new(move || ready_check.check()),
        });
        tracing::info!(addr = ?listener.local_addr().ok(), "metrics endpoint listening");
        http::spawn(listener, endpoints.clone());
        Ok(DaemonObserver {
            endpoints,
            ready,
            listening,
        })
    }

    /// Re-adoption is done and the control socket listens: ready, and `/healthz` asks it.
    pub fn serving(&self) {
        self.listening.store(true, Ordering::Release);
        self.ready.set_ready();
    }

    /// Shutting down: not ready any more.
    pub fn stopping(&self) {
        self.ready.set_not_ready("shutting down");
    }

    /// Counts one control request (and times an attach).
    pub fn count_request(&self, op: &str, ok: bool, took: Duration) {
        self.endpoints.metrics.count_request(op, ok);
        if op == "attach" {
            self.endpoints.metrics.observe_add(took);
        }
    }
}

/// The test-only re-adoption delay from [`TEST_READOPT_DELAY_ENV`], if set.
pub fn test_readopt_delay() -> Option<Duration> {
    let ms: u64 = std::env::var(TEST_READOPT_DELAY_ENV).ok()?.parse().ok()?;
    Some(Duration::from_millis(ms.min(60_000)))
}
