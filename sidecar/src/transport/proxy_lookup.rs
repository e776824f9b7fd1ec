//! The server's address when a proxy does the connecting. The proxy resolves the name; the
//! local address only feeds logs and session resume, so a local lookup gets a short deadline
//! and its answer is kept for the session: with local DNS blocked (common behind a proxy) the
//! first connection waits [`LOCAL_LOOKUP`] once, not every connection and every reconnect.
//!
//! Kept: a resolved address for [`KEEP_RESOLVED`] or until a connection to it fails (the
//! server may have moved, and a working DNS answers again at once); a failed lookup for
//! [`KEEP_UNRESOLVED`] (a blocked DNS stays blocked). Another host or port looks up afresh.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::clock;

/// How long a local DNS lookup of the server may take when a proxy does the connecting.
pub const LOCAL_LOOKUP: Duration = Duration::from_secs(2);
/// How long a resolved address is reused without asking DNS again.
pub const KEEP_RESOLVED: Duration = Duration::from_secs(600);
/// How long a failed lookup is remembered before DNS is asked again.
pub const KEEP_UNRESOLVED: Duration = Duration::from_secs(300);

/// One lookup's answer (`None`: failed or timed out) and until when it stands.
#[derive(Debug)]
struct Answer {
    host: String,
    port: u16,
    addr: Option<SocketAddr>,
    until: Instant,
}

/// The server address lookups of one session (clones share them).
#[derive(Debug, Clone, Default)]
pub struct ProxyLookups {
    // An async mutex held over the lookup: connections opened together wait for one lookup.
    last: Arc<tokio::sync::Mutex<Option<Answer>>>,
}

impl ProxyLookups {
    /// `host:port` as an address: an IP literal as is, else the kept or a fresh local lookup
    /// (`lookup`, given [`LOCAL_LOOKUP`]), else unspecified with the port.
    pub async fn server_addr<F, Fut>(&self, host: &str, port: u16, lookup: F) -> SocketAddr
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Option<SocketAddr>>,
    {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return SocketAddr::new(ip, port);
        }
        let unspecified = SocketAddr::from(([0, 0, 0, 0], port));
        let mut last = self.last.lock().await;
        if let Some(answer) = last
            .as_ref()
            .filter(|a| a.host == host && a.port == port && clock::now() < a.until)
        {
            return answer.addr.unwrap_or(unspecified);
        }
        let addr = tokio::time::timeout(LOCAL_LOOKUP, lookup())
            .await
            .ok()
            .flatten();
        if addr.is_none() {
            tracing::debug!(
                "{host} does not resolve locally within {LOCAL_LOOKUP:?}; the proxy resolves it \
                 (not asking again for {KEEP_UNRESOLVED:?})"
            );
        }
        let keep = if addr.is_some() {
            KEEP_RESOLVED
        } else {
            KEEP_UNRESOLVED
        };
        *last = Some(Answer {
            host: host.to_owned(),
            port,
            addr,
            until: clock::now() + keep,
        });
        addr.unwrap_or(unspecified)
    }

    /// A connection to `host:port` failed: a resolved address is looked up again next time; a
    /// failed lookup stays remembered.
    pub async fn connection_failed(&self, host: &str, port: u16) {
        let mut last = self.last.lock().await;
        if last
            .as_ref()
            .is_some_and(|a| a.host == host && a.port == port && a.addr.is_some())
        {
            *last = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const HOST: &str = "vpn.example";

    /// A lookup that counts its calls and answers `addr` after `delay` (never, for `None`).
    fn lookup<'a>(
        calls: &'a AtomicUsize,
        delay: Option<Duration>,
        addr: Option<SocketAddr>,
    ) -> impl FnOnce() -> Pin<Box<dyn Future<Output = Option<SocketAddr>> + 'a>> + 'a {
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                match delay {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending::<()>().await,
                }
                addr
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_blocked_dns_costs_the_deadline_once_per_session() {
        let lookups = ProxyLookups::default();
        let calls = AtomicUsize::new(0);
        let start = clock::now();
        let addr = lookups
            .server_addr(HOST, 443, lookup(&calls, None, None))
            .await;
        assert_eq!(addr, SocketAddr::from(([0, 0, 0, 0], 443)));
        assert_eq!(clock::now() - start, LOCAL_LOOKUP);

        // Every further connection (joins, reconnects, a clone's) answers at once.
        for _ in 0..10 {
            let before = clock::now();
            let again = lookups
                .clone()
                .server_addr(HOST, 443, lookup(&calls, None, None))
                .await;
            assert_eq!(again, addr);
            assert_eq!(
                clock::now(),
                before,
                "waited for a lookup already known to fail"
            );
            lookups.connection_failed(HOST, 443).await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // After KEEP_UNRESOLVED DNS gets another chance.
        tokio::time::advance(KEEP_UNRESOLVED).await;
        let resolved = SocketAddr::from(([198, 18, 0, 1], 443));
        let got = lookups
            .server_addr(
                HOST,
                443,
                lookup(&calls, Some(Duration::from_millis(5)), Some(resolved)),
            )
            .await;
        assert_eq!((got, calls.load(Ordering::SeqCst)), (resolved, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_resolved_address_is_kept_until_it_expires_or_fails() {
        let lookups = ProxyLookups::default();
        let calls = AtomicUsize::new(0);
        let first = SocketAddr::from(([198, 18, 0, 1], 443));
        let moved = SocketAddr::from(([198, 18, 0, 2], 443));
        let quick = Some(Duration::from_millis(5));
        assert_eq!(
            lookups
                .server_addr(HOST, 443, lookup(&calls, quick, Some(first)))
                .await,
            first
        );
        assert_eq!(
            lookups
                .server_addr(HOST, 443, lookup(&calls, quick, Some(moved)))
                .await,
            first
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // A failed connection forgets it; so does time.
        lookups.connection_failed(HOST, 443).await;
        assert_eq!(
            lookups
                .server_addr(HOST, 443, lookup(&calls, quick, Some(moved)))
                .await,
            moved
        );
        tokio::time::advance(KEEP_RESOLVED).await;
        assert_eq!(
            lookups
                .server_addr(HOST, 443, lookup(&calls, quick, Some(first)))
                .await,
            first
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        // Another port (a redirect) or an IP literal is not the kept answer.
        let other = SocketAddr::from(([198, 18, 0, 3], 992));
        assert_eq!(
            lookups
                .server_addr(HOST, 992, lookup(&calls, quick, Some(other)))
                .await,
            other
        );
        let literal = lookups
            .server_addr("198.18.0.9", 443, lookup(&calls, quick, None))
            .await;
        assert_eq!(literal, SocketAddr::from(([198, 18, 0, 9], 443)));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn connections_opened_together_share_one_lookup() {
        let lookups = ProxyLookups::default();
        let calls = AtomicUsize::new(0);
        let start = clock::now();
        let (a, b) = tokio::join!(
            lookups.server_addr(HOST, 443, lookup(&calls, None, None)),
            lookups.server_addr(HOST, 443, lookup(&calls, None, None)),
        );
        assert_eq!(a, b);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(clock::now() - start, LOCAL_LOOKUP);
    }
}
