//! What operators see besides logs: Prometheus metrics, health and readiness over HTTP
//! (`--metrics-addr`), and lease hooks (`--on-change`, the CNI config's `onChange`).
//!
//! - [`metrics`]: the `/metrics` content (prometheus-client), per attachment from the engines'
//!   status at scrape time, plus the daemon's request counters;
//! - [`http`]: the hyper server for `/metrics`, `/healthz` and `/readyz`;
//! - [`hooks`]: the per-attachment runner that turns status changes into hook runs.
//!
//! The engine knows nothing of this module except [`count_login_failure`]: everything else is
//! read from [`crate::engine::status::EngineStatus`].

pub mod hooks;
pub mod http;
pub mod metrics;

pub use metrics::count_login_failure;
