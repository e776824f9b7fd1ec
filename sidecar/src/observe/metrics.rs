//! The `/metrics` content: per-attachment series read from the engines' status at scrape time
//! (so a deleted attachment's series disappear with it), plus the daemon's own counters.
//!
//! Exposition comes from the `prometheus-client` crate (OpenMetrics text). Scrapers that do
//! not ask for OpenMetrics (promtool, curl, pre-2.5 Prometheus) get the classic text format
//! 0.0.4, which differs from the crate's output only in the counter family names of the
//! `# HELP`/`# TYPE` lines (`x_total` instead of `x`) and in lacking `# EOF`: see
//! [`Metrics::render_text`].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::engine::login_failures;
use crate::engine::status::{EngineStatus, TrafficSnapshot};

/// The label set of a daemon counter family.
type Labels = Vec<(&'static str, String)>;

/// Who an attachment is, as labels. Never credentials: the user name is left out too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentLabels {
    /// `None` for `connect` (no container).
    pub container_id: Option<String>,
    pub ifname: String,
    /// `host:port`.
    pub server: String,
    pub hub: String,
}

impl AttachmentLabels {
    fn pairs(&self) -> Labels {
        let mut out = Vec::with_capacity(4);
        if let Some(id) = &self.container_id {
            out.push(("container_id", id.clone()));
        }
        out.push(("ifname", self.ifname.clone()));
        out.push(("server", self.server.clone()));
        out.push(("hub", self.hub.clone()));
        out
    }
}

/// One attachment's state at scrape time.
#[derive(Debug, Clone)]
pub struct AttachmentSample {
    pub labels: AttachmentLabels,
    pub status: EngineStatus,
}

/// Lists the attachments at scrape time.
pub type SampleSource = Arc<dyn Fn() -> Vec<AttachmentSample> + Send + Sync>;

/// Buckets of `softether_cni_add_duration_seconds`: an ADD takes a login plus a DHCP
/// exchange (sub-second on a LAN) and may last up to the plugin's timeout (< 120 s).
const ADD_BUCKETS: [f64; 11] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0];

/// The metrics of one process (`run` or `connect`).
pub struct Metrics {
    registry: Registry,
    cni_requests: Family<Labels, Counter>,
    add_duration: Histogram,
    /// Mirrors [`login_failures::snapshot`] at each scrape.
    login_failures: Family<Labels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// `daemon`: also the CNI request metrics and `softether_attachments`.
    pub fn new(source: SampleSource, daemon: bool) -> Metrics {
        let mut registry = Registry::default();
        let cni_requests = Family::<Labels, Counter>::default();
        let add_duration = Histogram::new(ADD_BUCKETS);
        let build_info = Family::<Labels, Gauge>::default();
        build_info
            .get_or_create(&vec![("version", env!("CARGO_PKG_VERSION").to_owned())])
            .set(1);
        registry.register(
            "softether_build_info",
            "The softether-sidecar version (value 1)",
            build_info,
        );
        let login_failures = Family::<Labels, Counter>::default();
        registry.register(
            "softether_login_failures",
            "Failed SoftEther login attempts by reason (server error name or local stage)",
            login_failures.clone(),
        );
        if daemon {
            registry.register(
                "softether_cni_requests",
                "Control requests from the CNI plugin by op and result",
                cni_requests.clone(),
            );
            registry.register(
                "softether_cni_add_duration_seconds",
                "Time from an attach (CNI ADD) request to its answer",
                add_duration.clone(),
            );
        }
        registry.register_collector(Box::new(AttachmentCollector { source, daemon }));
        Metrics {
            registry,
            cni_requests,
            add_duration,
            login_failures,
        }
    }

    /// Counts a control request; `op` is one of the protocol's ops or `unknown`.
    pub fn count_request(&self, op: &str, ok: bool) {
        let op = match op {
            "attach" | "detach" | "check" | "gc" | "status" | "list" => op,
            _ => "unknown",
        };
        let result = if ok { "ok" } else { "error" };
        self.cni_requests
            .get_or_create(&vec![("op", op.to_owned()), ("result", result.to_owned())])
            .inc();
    }

    pub fn observe_add(&self, took: Duration) {
        self.add_duration.observe(took.as_secs_f64());
    }

    /// OpenMetrics text (`application/openmetrics-text; version=1.0.0`).
    pub fn render_openmetrics(&self) -> String {
        // The engine's process-wide counts, brought up to date (counters only grow).
        for (reason, n) in login_failures::snapshot() {
            let counter = self
                .login_failures
                .get_or_create(&vec![("reason", reason.to_owned())]);
            counter.inc_by(n.saturating_sub(counter.get()));
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!("encoding the metrics failed: {e}");
        }
        out
    }

    /// Prometheus text format 0.0.4 (`text/plain; version=0.0.4`), for scrapers and linters
    /// that do not read OpenMetrics. The crate's output already is valid 0.0.4 text except
    /// that a counter's `# HELP`/`# TYPE` lines name the family (`x`) while the samples are
    /// `x_total`, and the `# EOF` marker; both are adjusted here.
    pub fn render_text(&self) -> String {
        openmetrics_to_text(&self.render_openmetrics())
    }
}

/// See [`Metrics::render_text`].
pub fn openmetrics_to_text(om: &str) -> String {
    let counters: HashSet<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Per-attachment series, built from the engines' status at each scrape.
struct AttachmentCollector {
    source: SampleSource,
    daemon: bool,
}

impl std::fmt::Debug for AttachmentCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachmentCollector")
            .field("daemon", &self.daemon)
            .finish()
    }
}

fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A sample value of one attachment series.
enum Value {
    Counter(u64),
    Gauge(i64),
    GaugeF(f64),
}

/// One metric family: a descriptor, then one sample per label set.
fn family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    samples: &[(Labels, Value)],
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, metric_type)?;
    if let [(labels, value)] = samples {
        if labels.is_empty() {
            // Unlabelled: `name 1`, not `name{} 1`.
            return encode_value(value, metric);
        }
    }
    for (labels, value) in samples {
        encode_value(value, metric.encode_family(labels)?)?;
    }
    Ok(())
}

fn encode_value(value: &Value, sample: MetricEncoder) -> Result<(), std::fmt::Error> {
    match value {
        Value::Counter(v) => ConstCounter::new(*v).encode(sample),
        Value::Gauge(v) => ConstGauge::new(*v).encode(sample),
        Value::GaugeF(v) => ConstGauge::new(*v).encode(sample),
    }
}

/// What one per-attachment family shows: name, help, type, and the value of one attachment
/// (`None` leaves the attachment out of this family).
type Series = (
    &'static str,
    &'static str,
    MetricType,
    fn(&EngineStatus, &TrafficSnapshot) -> Option<Value>,
);

const COUNTER: MetricType = MetricType::Counter;
const GAUGE: MetricType = MetricType::Gauge;

/// Every per-attachment family but the dropped frames (which adds a label).
const SERIES: [Series; 10] = [
    (
        "softether_attachment_up",
        "1 while the session is up and a lease is held.",
        GAUGE,
        |s, _| Some(Value::Gauge(i64::from(s.is_up()))),
    ),
    (
        "softether_attachment_received_bytes",
        "Bytes of Ethernet frames from the tunnel to the interface.",
        COUNTER,
        |_, t| Some(Value::Counter(t.bytes_in)),
    ),
    (
        "softether_attachment_sent_bytes",
        "Bytes of Ethernet frames from the interface into the tunnel.",
        COUNTER,
        |_, t| Some(Value::Counter(t.bytes_out)),
    ),
    (
        "softether_attachment_received_frames",
        "Ethernet frames from the tunnel to the interface.",
        COUNTER,
        |_, t| Some(Value::Counter(t.frames_in)),
    ),
    (
        "softether_attachment_sent_frames",
        "Ethernet frames from the interface into the tunnel.",
        COUNTER,
        |_, t| Some(Value::Counter(t.frames_out)),
    ),
    (
        "softether_attachment_reconnects",
        "Sessions lost or logins failed since the attachment started.",
        COUNTER,
        |s, _| Some(Value::Counter(u64::from(s.reconnects))),
    ),
    (
        "softether_attachment_session_resumes",
        "Broken sessions rejoined without a new login.",
        COUNTER,
        |s, _| Some(Value::Counter(u64::from(s.resumes))),
    ),
    (
        "softether_attachment_lease_expiry_timestamp_seconds",
        "When the held DHCP lease expires (Unix time; absent without a finite lease).",
        GAUGE,
        |s, _| Some(Value::GaugeF(unix_secs(s.lease_expiry()?))),
    ),
    (
        "softether_attachment_session_start_timestamp_seconds",
        "When the current session logged in (Unix time; a resume keeps it).",
        GAUGE,
        |s, _| Some(Value::GaugeF(unix_secs(s.session_started?))),
    ),
    (
        "softether_attachment_tcp_connections",
        "TCP connections carrying the session (0 while it is down).",
        GAUGE,
        |_, t| {
            Some(Value::Gauge(
                i64::try_from(t.tcp_connections).unwrap_or(i64::MAX),
            ))
        },
    ),
];

impl Collector for AttachmentCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let samples: Vec<(Labels, EngineStatus, TrafficSnapshot)> = (self.source)()
            .into_iter()
            .map(|s| {
                let traffic = s.status.traffic.snapshot();
                (s.labels.pairs(), s.status, traffic)
            })
            .collect();
        if self.daemon {
            let n = i64::try_from(samples.len()).unwrap_or(i64::MAX);
            family(
                &mut encoder,
                "softether_attachments",
                "Attachments the daemon holds.",
                GAUGE,
                &[(Vec::new(), Value::Gauge(n))],
            )?;
        }
        for (name, help, metric_type, value) in SERIES {
            let values: Vec<(Labels, Value)> = samples
                .iter()
                .filter_map(|(labels, s, t)| Some((labels.clone(), value(s, t)?)))
                .collect();
            family(&mut encoder, name, help, metric_type, &values)?;
        }
        directional(
            &mut encoder,
            &samples,
            "softether_attachment_dropped_frames",
            "Frames dropped: in = tunnel to interface (reader behind, kernel refused), out = interface to tunnel (send queue full).",
            |t| (t.dropped_in, t.dropped_out),
        )?;
        directional(
            &mut encoder,
            &samples,
            "softether_attachment_thinned_acks",
            "Pure TCP ACKs left out because a later ACK of the same connection in the same batch acknowledged more: in = tunnel to interface, out = interface to tunnel.",
            |t| (t.acks_thinned_in, t.acks_thinned_out),
        )
    }
}

/// A counter family with a `direction` label: `in` (tunnel to interface) and `out`.
fn directional(
    encoder: &mut DescriptorEncoder,
    samples: &[(Labels, EngineStatus, TrafficSnapshot)],
    name: &str,
    help: &str,
    read: fn(&TrafficSnapshot) -> (u64, u64),
) -> Result<(), std::fmt::Error> {
    let mut values = Vec::with_capacity(samples.len() * 2);
    for (labels, _, t) in samples {
        let (inbound, outbound) = read(t);
        for (direction, n) in [("in", inbound), ("out", outbound)] {
            let mut labels = labels.clone();
            labels.push(("direction", direction.to_owned()));
            values.push((labels, Value::Counter(n)));
        }
    }
    family(encoder, name, help, COUNTER, &values)
}
