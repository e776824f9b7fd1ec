//! What the engine reports while it runs, and how it is told to stop.
//!
//! The engine publishes an [`EngineStatus`] on a `watch` channel the caller creates with
//! [`status_channel`]: `connect` ignores it (it logs), the CNI sidecar answers ADD with the
//! lease from it and shows it in `softether-sidecar status`. Frame and byte counters are
//! atomics shared through the status value, so counting a frame never wakes a watcher.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

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
}

/// Frames and bytes through the bridge, both directions, since the engine started.
#[derive(Debug, Default)]
pub struct Traffic {
    frames_in: AtomicU64,
    bytes_in: AtomicU64,
    frames_out: AtomicU64,
    bytes_out: AtomicU64,
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

    pub fn snapshot(&self) -> TrafficSnapshot {
        TrafficSnapshot {
            frames_in: self.frames_in.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            frames_out: self.frames_out.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
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
    pub traffic: Arc<Traffic>,
    /// UDP acceleration of the current session (`None` before the first session).
    pub udp: Option<Arc<UdpIndicator>>,
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
            traffic: Arc::default(),
            udp: None,
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
