//! What the engine reports while it runs, and how it is told to stop.
//!
//! The engine publishes an [`EngineStatus`] on a `watch` channel the caller creates with
//! [`status_channel`]: `connect` ignores it (it logs), the CNI sidecar answers ADD with the
//! lease from it and shows it in `softether-sidecar status`. Frame and byte counters are
//! atomics shared through the status value, so counting a frame never wakes a watcher.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dhcp_client::v6::Ipv6Settings;
use dhcp_client::Lease;
use tokio::sync::watch;

use crate::transport::udp_accel::{UdpIndicator, UdpMode};

/// How a stop request ends the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// RELEASE the lease, close the session and remove everything the engine added
    /// (`connect` on SIGINT/SIGTERM, CNI DEL/GC).
    Teardown,
    /// Close the session without RELEASE and leave the TAP and its configuration in place,
    /// so a later engine can adopt them (CNI sidecar shutdown or restart).
    Detach,
}

/// The stop signal: `None` while running; the first `Some` wins. A dropped sender means
/// [`StopMode::Detach`] (the owner went away; do not touch what a successor may adopt).
pub type StopSignal = watch::Receiver<Option<StopMode>>;

/// Waits for a stop request and says which.
pub async fn stop_requested(stop: &mut StopSignal) -> StopMode {
    let requested = match stop.wait_for(Option::is_some).await {
        Ok(mode) => *mode,
        Err(_) => None,
    };
    requested.unwrap_or(StopMode::Detach)
}

/// What the engine is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// Logging in (first time, or again after a backoff).
    Connecting,
    /// Logged in; waiting for a DHCP lease (or bridging only, without DHCP).
    LoggedIn,
    /// A lease is installed and the session is up.
    Bound,
    /// The session or a login attempt failed; the next attempt starts after `delay`.
    Reconnecting { reason: String, delay: Duration },
    /// The engine has returned.
    Stopped,
    /// The pod's network namespace disappeared without a DEL (a crashed runtime): the
    /// session was closed; a DEL or GC removes the attachment.
    Gone,
}

impl Phase {
    /// The word shown by `softether-sidecar status`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Phase::Connecting => "connecting",
            Phase::LoggedIn => "dhcp",
            Phase::Bound => "up",
            Phase::Reconnecting { .. } => "reconnecting",
            Phase::Stopped => "stopped",
            Phase::Gone => "gone",
        }
    }
}

/// The last thing that happened to the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseEvent {
    Bound,
    Renewed,
    Changed,
    Lost,
    /// RELEASEd on a stop with [`StopMode::Teardown`]; the configuration is removed.
    Released,
}

/// Frames and bytes through the bridge, both directions, since the engine started.
#[derive(Debug, Default)]
pub struct Traffic {
    frames_in: AtomicU64,
    bytes_in: AtomicU64,
    frames_out: AtomicU64,
    bytes_out: AtomicU64,
    /// Frames dropped by sessions that have ended (the live session's are in `session_drops`).
    dropped_in_done: AtomicU64,
    dropped_out_done: AtomicU64,
    /// The live session's drops as last sampled: (tunnel → TAP, TAP → tunnel).
    session_dropped_in: AtomicU64,
    session_dropped_out: AtomicU64,
    /// Pure ACKs left out as redundant ([`netcfg::ack_thinning`]): tunnel → TAP, TAP → tunnel.
    acks_thinned_in: AtomicU64,
    acks_thinned_out: AtomicU64,
    /// TCP connections carrying the live session (0 between sessions).
    tcp_connections: AtomicU64,
    /// Bytes per second over the last sampling interval (0 between sessions).
    rate_in: AtomicU64,
    rate_out: AtomicU64,
}

/// A copy of [`Traffic`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficSnapshot {
    /// Tunnel → TAP.
    pub frames_in: u64,
    pub bytes_in: u64,
    /// TAP → tunnel.
    pub frames_out: u64,
    pub bytes_out: u64,
    /// Frames dropped on the way to the TAP (kernel refused; consumer behind on UDP) and into the
    /// tunnel (send queue full).
    pub dropped_in: u64,
    pub dropped_out: u64,
    /// Redundant pure ACKs left out: tunnel → TAP, TAP → tunnel.
    pub acks_thinned_in: u64,
    pub acks_thinned_out: u64,
    pub tcp_connections: u64,
    /// Bytes per second, last sampling interval.
    pub rate_in: u64,
    pub rate_out: u64,
}

impl Traffic {
    pub fn count_in(&self, bytes: usize) {
        self.frames_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn count_out(&self, bytes: usize) {
        self.frames_out.fetch_add(1, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Redundant ACKs left out of a batch: `inbound` tunnel → TAP, else TAP → tunnel.
    pub fn count_thinned(&self, inbound: bool, acks: usize) {
        let counter = if inbound {
            &self.acks_thinned_in
        } else {
            &self.acks_thinned_out
        };
        counter.fetch_add(acks as u64, Ordering::Relaxed);
    }

    /// A frame the kernel refused on its way into the TAP.
    pub fn count_dropped_in(&self) {
        self.dropped_in_done.fetch_add(1, Ordering::Relaxed);
    }

    /// The live session's state: its drop counters so far, its TCP connections and the rates
    /// over the last interval.
    pub fn sample_session(&self, dropped: (u64, u64), connections: usize, rates: (u64, u64)) {
        self.session_dropped_in.store(dropped.0, Ordering::Relaxed);
        self.session_dropped_out.store(dropped.1, Ordering::Relaxed);
        self.tcp_connections
            .store(connections as u64, Ordering::Relaxed);
        self.rate_in.store(rates.0, Ordering::Relaxed);
        self.rate_out.store(rates.1, Ordering::Relaxed);
    }

    /// The live session ended with these drop counters: fold them into the totals.
    pub fn end_session(&self, dropped: (u64, u64)) {
        self.dropped_in_done.fetch_add(dropped.0, Ordering::Relaxed);
        self.dropped_out_done
            .fetch_add(dropped.1, Ordering::Relaxed);
        self.sample_session((0, 0), 0, (0, 0));
    }

    pub fn snapshot(&self) -> TrafficSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TrafficSnapshot {
            frames_in: load(&self.frames_in),
            bytes_in: load(&self.bytes_in),
            frames_out: load(&self.frames_out),
            bytes_out: load(&self.bytes_out),
            dropped_in: load(&self.dropped_in_done) + load(&self.session_dropped_in),
            dropped_out: load(&self.dropped_out_done) + load(&self.session_dropped_out),
            acks_thinned_in: load(&self.acks_thinned_in),
            acks_thinned_out: load(&self.acks_thinned_out),
            tcp_connections: load(&self.tcp_connections),
            rate_in: load(&self.rate_in),
            rate_out: load(&self.rate_out),
        }
    }
}

/// The engine's live state.
#[derive(Debug, Clone)]
pub struct EngineStatus {
    pub phase: Phase,
    /// When `phase` was entered.
    pub since: SystemTime,
    /// The lease currently installed (kept across a reconnect until replaced or lost).
    pub lease: Option<Lease>,
    pub lease_event: Option<LeaseEvent>,
    /// Sessions lost (or failed logins) since the first login attempt.
    pub reconnects: u32,
    /// The last reason for a reconnect.
    pub last_error: Option<String>,
    /// Sessions rejoined after a broken connection without a new login.
    pub resumes: u32,
    /// When the current (or last) session logged in; a resume keeps it.
    pub session_started: Option<SystemTime>,
    pub traffic: Arc<Traffic>,
    /// UDP acceleration of the current session (`None` before the first session).
    pub udp: Option<Arc<UdpIndicator>>,
    /// IPv6 from the VPN's routers, when the engine manages it.
    pub ipv6: Ipv6Status,
}

/// How far IPv6 configuration has got: what the CNI daemon's ADD waits for (briefly) and
/// reports beside the lease.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ipv6Status {
    /// The configuration installed last (empty: none, or IPv6 is not managed).
    pub settings: Ipv6Settings,
    /// A router advertisement told us something: a router, a prefix, DNS, or to ask DHCPv6.
    pub router_heard: bool,
    /// A DHCPv6 exchange a router asked for (M or O flag) has not been answered yet.
    pub dhcpv6_pending: bool,
    /// When the engine's first router solicitation went out (ADD on a new hub waits for the
    /// answer from there).
    pub solicited_at: Option<std::time::Instant>,
}

impl EngineStatus {
    /// The current session's UDP acceleration mode.
    pub fn udp_mode(&self) -> UdpMode {
        self.udp.as_ref().map_or(UdpMode::Off, |u| u.get())
    }

    fn new() -> Self {
        Self {
            phase: Phase::Connecting,
            since: SystemTime::now(),
            lease: None,
            lease_event: None,
            reconnects: 0,
            last_error: None,
            resumes: 0,
            session_started: None,
            traffic: Arc::default(),
            udp: None,
            ipv6: Ipv6Status::default(),
        }
    }
}

/// A fresh status channel for one engine (or one attachment across engine restarts).
pub fn status_channel() -> (watch::Sender<EngineStatus>, watch::Receiver<EngineStatus>) {
    watch::channel(EngineStatus::new())
}

/// Phase changes, with `since` kept when the phase does not change.
pub(crate) fn set_phase(status: &watch::Sender<EngineStatus>, phase: Phase) {
    status.send_modify(|s| {
        if s.phase != phase {
            s.phase = phase;
            s.since = SystemTime::now();
        }
    });
}

/// A lease event; `lease` is the lease now installed (`None` after a loss).
pub(crate) fn set_lease(
    status: &watch::Sender<EngineStatus>,
    event: LeaseEvent,
    lease: Option<Lease>,
) {
    status.send_modify(|s| {
        let phase = if lease.is_some() {
            Phase::Bound
        } else {
            Phase::LoggedIn
        };
        if s.phase != phase {
            s.phase = phase;
            s.since = SystemTime::now();
        }
        s.lease = lease;
        s.lease_event = Some(event);
    });
}

/// A new login succeeded (not a resume).
pub(crate) fn set_logged_in(status: &watch::Sender<EngineStatus>) {
    status.send_modify(|s| s.session_started = Some(SystemTime::now()));
}

/// A broken session was rejoined without a login.
pub(crate) fn count_resume(status: &watch::Sender<EngineStatus>) {
    status.send_modify(|s| s.resumes = s.resumes.saturating_add(1));
}

/// The lease was released on a teardown: nothing is installed any more.
pub(crate) fn set_released(status: &watch::Sender<EngineStatus>) {
    status.send_modify(|s| {
        if s.lease.take().is_some() {
            s.lease_event = Some(LeaseEvent::Released);
        }
        s.ipv6 = Ipv6Status::default();
    });
}

/// Where an IPv6 client stands: (a router was heard, a DHCPv6 exchange is pending). An
/// advertisement that neither configures anything nor asks for DHCPv6 counts as unheard.
pub(crate) fn ipv6_progress(v6: &dhcp_client::v6::Ipv6Client) -> (bool, bool) {
    use dhcp_client::v6::Dhcp6State;
    let dhcp = v6.dhcp_state();
    let heard = !v6.settings().is_empty() || !matches!(dhcp, Dhcp6State::Idle);
    let pending = matches!(
        dhcp,
        Dhcp6State::Soliciting | Dhcp6State::Requesting | Dhcp6State::Informing
    );
    (heard, pending)
}

/// The first IPv6 frame (the router solicitation) went out at `at`; later ones change nothing.
pub(crate) fn set_ipv6_solicited(status: &watch::Sender<EngineStatus>, at: std::time::Instant) {
    if status.borrow().ipv6.solicited_at.is_none() {
        status.send_modify(|s| s.ipv6.solicited_at = Some(at));
    }
}

/// IPv6 progress without new settings. Called on every pass of the session loop: a read
/// lock when nothing changed, watchers woken only when something did.
pub(crate) fn set_ipv6_progress(
    status: &watch::Sender<EngineStatus>,
    (heard, pending): (bool, bool),
) {
    let same = {
        let s = status.borrow();
        s.ipv6.router_heard == heard && s.ipv6.dhcpv6_pending == pending
    };
    if !same {
        status.send_modify(|s| {
            s.ipv6.router_heard = heard;
            s.ipv6.dhcpv6_pending = pending;
        });
    }
}

/// IPv6 progress with the settings just installed (`None`: installing failed, the previous
/// ones stay reported).
pub(crate) fn set_ipv6_installed(
    status: &watch::Sender<EngineStatus>,
    (heard, pending): (bool, bool),
    settings: Option<Ipv6Settings>,
) {
    status.send_modify(|s| {
        s.ipv6.router_heard = heard;
        s.ipv6.dhcpv6_pending = pending;
        if let Some(settings) = settings {
            s.ipv6.settings = settings;
        }
    });
}

impl EngineStatus {
    /// Up: the session is up and a lease is held.
    pub fn is_up(&self) -> bool {
        self.phase == Phase::Bound && self.lease.is_some()
    }

    /// When the next reconnect attempt starts, while reconnecting.
    pub fn next_retry(&self) -> Option<SystemTime> {
        match &self.phase {
            Phase::Reconnecting { delay, .. } => Some(self.since + *delay),
            _ => None,
        }
    }

    /// When the held lease expires (`None` without a lease or for an infinite one).
    pub fn lease_expiry(&self) -> Option<SystemTime> {
        let lease = self.lease.as_ref()?;
        if lease.lease_time == dhcp_client::INFINITE_LEASE {
            return None;
        }
        let left = (lease.acquired_at + lease.lease_time)
            .saturating_duration_since(crate::transport::clock::now());
        Some(SystemTime::now() + left)
    }
}

/// A reconnect after `reason`, starting in `delay`.
pub(crate) fn set_reconnecting(
    status: &watch::Sender<EngineStatus>,
    reason: String,
    delay: Duration,
) {
    status.send_modify(|s| {
        s.reconnects = s.reconnects.saturating_add(1);
        s.last_error = Some(reason.clone());
        s.phase = Phase::Reconnecting { reason, delay };
        s.since = SystemTime::now();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_changes_keep_since_when_unchanged_and_count_reconnects() {
        let (tx, rx) = status_channel();
        let first = rx.borrow().since;
        set_phase(&tx, Phase::Connecting);
        assert_eq!(rx.borrow().since, first);
        set_reconnecting(&tx, "gone".into(), Duration::from_secs(1));
        set_reconnecting(&tx, "gone again".into(), Duration::from_secs(2));
        let s = rx.borrow().clone();
        assert_eq!(s.reconnects, 2);
        assert_eq!(s.last_error.as_deref(), Some("gone again"));
        assert_eq!(s.phase.as_str(), "reconnecting");
    }

    #[test]
    fn lease_events_drive_the_phase() {
        let (tx, rx) = status_channel();
        let lease = crate::engine::test_lease::bound_lease(
            std::time::Instant::now(),
            Duration::from_secs(60),
        );
        set_lease(&tx, LeaseEvent::Bound, Some(lease));
        assert_eq!(rx.borrow().phase, Phase::Bound);
        set_lease(&tx, LeaseEvent::Lost, None);
        assert_eq!(rx.borrow().phase, Phase::LoggedIn);
        assert!(rx.borrow().lease.is_none());
    }

    #[test]
    fn traffic_counts_and_stop_signal_defaults_to_detach() {
        let t = Traffic::default();
        t.count_in(100);
        t.count_out(60);
        t.count_out(40);
        let s = t.snapshot();
        assert_eq!(
            (s.frames_in, s.bytes_in, s.frames_out, s.bytes_out),
            (1, 100, 2, 100)
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (tx, mut rx) = watch::channel(None);
        drop(tx);
        assert_eq!(rt.block_on(stop_requested(&mut rx)), StopMode::Detach);
        let (tx, mut rx) = watch::channel(None);
        tx.send(Some(StopMode::Teardown)).unwrap();
        drop(tx);
        assert_eq!(rt.block_on(stop_requested(&mut rx)), StopMode::Teardown);
    }
}
