//! What the engines of one process share when a server comes back: a bound on concurrent logins
//! and one probe per server.
//!
//! With many attachments on one daemon, every engine sees the outage at once and would probe
//! and log in at once. The SoftEther listener drops an IP that opens more than 16 connections in
//! quick succession (a successful login clears its entry) and blacklists one with more than 60
//! failed TLS handshakes in 10 min — which is what an accepted probe is to it. So probes of one
//! server are coalesced (engines probing within [`PROBE_SHARED_FOR`] share one TCP connect) and
//! logins and resumes take a permit from a process-wide semaphore.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// A probe result is reused by other engines for this long.
pub const PROBE_SHARED_FOR: Duration = Duration::from_millis(250);
/// How long a probe waits for the TCP connect.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Concurrent logins of a daemon: enough to bring 100 pods back within seconds, few enough to
/// stay below the listener's burst limit (16 from one IP).
pub const DAEMON_CONCURRENT_LOGINS: usize = 6;

type ProbeSlot = Arc<tokio::sync::Mutex<Option<(Instant, bool)>>>;

/// Shared by the engines of one process; `connect` has one of its own.
pub struct RecoveryGate {
    logins: Semaphore,
    concurrent_logins: usize,
    probes: Mutex<HashMap<(String, u16), ProbeSlot>>,
}

impl fmt::Debug for RecoveryGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecoveryGate")
            .field("concurrent_logins", &self.concurrent_logins)
            .finish_non_exhaustive()
    }
}

impl RecoveryGate {
    /// A gate letting `concurrent_logins` (at least 1) logins run at once.
    pub fn new(concurrent_logins: usize) -> Arc<Self> {
        let n = concurrent_logins.max(1);
        Arc::new(RecoveryGate {
            logins: Semaphore::new(n),
            concurrent_logins: n,
            probes: Mutex::new(HashMap::new()),
        })
    }

    /// Waits for a login slot; the login runs while the permit lives.
    pub async fn login_permit(&self) -> Option<SemaphorePermit<'_>> {
        self.logins.acquire().await.ok()
    }

    /// Whether `host:port` accepts TCP connections: `probe` (polled only when needed), or the
    /// result of one another engine made less than [`PROBE_SHARED_FOR`] ago (or is making now).
    pub async fn probe(
        &self,
        host: &str,
        port: u16,
        probe: impl std::future::Future<Output = bool>,
    ) -> bool {
        let slot = {
            let mut probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
            probes.entry((host.to_owned(), port)).or_default().clone()
        };
        let mut last = slot.lock().await;
        if let Some((at, accepting)) = *last {
            if at.elapsed() < PROBE_SHARED_FOR {
                return accepting;
            }
        }
        let accepting = probe.await;
        *last = Some((Instant::now(), accepting));
        accepting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::transport::connection::tcp_probe;

    fn probe(port: u16) -> impl std::future::Future<Output = bool> {
        tcp_probe("127.0.0.1", port, PROBE_TIMEOUT)
    }

    #[tokio::test]
    async fn probes_are_shared_and_see_a_listener_come_back() {
        let gate = RecoveryGate::new(2);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        assert!(
            !gate.probe("127.0.0.1", port, probe(port)).await,
            "nothing listens"
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await;
        let Ok(_listener) = listener else {
            return; // the port was taken meanwhile; nothing to learn
        };
        // Within PROBE_SHARED_FOR the earlier answer stands; after it, a fresh probe.
        assert!(!gate.probe("127.0.0.1", port, probe(port)).await);
        tokio::time::sleep(PROBE_SHARED_FOR).await;
        assert!(gate.probe("127.0.0.1", port, probe(port)).await);
        let a = gate.login_permit().await.unwrap();
        let _b = gate.login_permit().await.unwrap();
        assert_eq!(gate.logins.available_permits(), 0);
        drop(a);
        assert_eq!(gate.logins.available_permits(), 1);
    }
}
