//! Keeping the control socket's accept loop alive under pressure.
//!
//! The daemon carries every pod's VPN, so running out of descriptors must never stop it:
//! - at start the soft `RLIMIT_NOFILE` is raised to the hard limit ([`raise_nofile_limit`]);
//! - at most [`MAX_CONTROL_CONNECTIONS`] control connections are served at once; the excess is
//!   answered at once with error 11 ("try again later") and closed ([`Admission`]);
//! - a failed `accept()` (EMFILE, ENFILE, ENOBUFS, ...) is logged and retried after a pause
//!   that doubles up to [`ACCEPT_PAUSE_MAX`] ([`AcceptBackoff`]), never ending the loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use tokio::net::UnixStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use softether_control::{code, Reply, WireError};

/// Control connections served concurrently. Each holds one fd for at most the request
/// timeout; the plugin opens one per CNI call, so this is far above any real burst.
pub const MAX_CONTROL_CONNECTIONS: usize = 128;
/// First pause after a failed `accept()`.
const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(50);
/// Longest pause after repeated failed `accept()`s.
pub const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);
/// At most one warning per this interval about refused connections or failed accepts.
const WARN_EVERY: Duration = Duration::from_secs(5);

/// Raises the soft open-files limit to the hard limit; returns `(old, new)` soft limits.
pub fn raise_nofile_limit() -> nix::Result<(u64, u64)> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok((soft, soft.max(hard)))
}

/// Warns at most once per [`WARN_EVERY`], counting what it swallowed in between.
struct RateLimitedWarn {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedWarn {
    fn new() -> Self {
        RateLimitedWarn {
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(suppressed since the last warning)` when a warning is due now.
    fn due(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < WARN_EVERY)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// The bound on concurrently served control connections.
pub struct Admission {
    slots: Arc<Semaphore>,
    warn: RateLimitedWarn,
}

impl Default for Admission {
    fn default() -> Self {
        Self::new(MAX_CONTROL_CONNECTIONS)
    }
}

impl Admission {
    pub fn new(max: usize) -> Self {
        Admission {
            slots: Arc::new(Semaphore::new(max)),
            warn: RateLimitedWarn::new(),
        }
    }

    /// A slot for serving `stream`, or `None` after answering it with error 11 and closing it
    /// (without waiting: the reply fits in the fresh socket's buffer, or is dropped).
    pub fn admit(&mut self, stream: UnixStream) -> Option<(UnixStream, OwnedSemaphorePermit)> {
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => Some((stream, permit)),
            Err(_) => {
                if let Some(suppressed) = self.warn.due() {
                    tracing::warn!(
                        limit = MAX_CONTROL_CONNECTIONS,
                        refused_since_last_warning = suppressed,
                        "too many concurrent control connections; refusing the excess with error 11"
                    );
                }
                if let Ok(line) = busy_reply().line() {
                    let _ = stream.try_write(&line);
                }
                None
            }
        }
    }
}

/// The reply to a connection over the limit.
pub fn busy_reply() -> Reply {
    Reply::Error(WireError::new(
        code::TRY_AGAIN_LATER,
        format!(
            "softether-sidecar is serving {MAX_CONTROL_CONNECTIONS} control connections already"
        ),
        "retry in a moment; something on this node is flooding the control socket",
    ))
}

/// The pause policy after failed `accept()` calls.
pub struct AcceptBackoff {
    pause: Duration,
    warn: RateLimitedWarn,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        AcceptBackoff {
            pause: ACCEPT_PAUSE_MIN,
            warn: RateLimitedWarn::new(),
        }
    }
}

impl AcceptBackoff {
    /// Call after a successful accept.
    pub fn reset(&mut self) {
        self.pause = ACCEPT_PAUSE_MIN;
    }

    /// Logs `err` (rate-limited) and returns how long to wait before accepting again. The
    /// pending connection stays in the listen backlog, so retrying at once would spin.
    pub fn failed(&mut self, err: &std::io::Error) -> Duration {
        let pause = self.pause;
        if let Some(suppressed) = self.warn.due() {
            tracing::warn!(
                failed_since_last_warning = suppressed,
                ?pause,
                "accepting on the control socket failed: {err}; retrying"
            );
        }
        self.pause = (self.pause * 2).min(ACCEPT_PAUSE_MAX);
        pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_pause_doubles_to_the_cap_and_resets() {
        let mut b = AcceptBackoff::default();
        let e = std::io::Error::from_raw_os_error(nix::libc::EMFILE);
        let pauses: Vec<_> = (0..8).map(|_| b.failed(&e)).collect();
        assert_eq!(pauses[0], ACCEPT_PAUSE_MIN);
        assert_eq!(pauses[1], ACCEPT_PAUSE_MIN * 2);
        assert_eq!(*pauses.last().unwrap(), ACCEPT_PAUSE_MAX);
        b.reset();
        assert_eq!(b.failed(&e), ACCEPT_PAUSE_MIN);
    }

    #[test]
    fn warnings_are_rate_limited_and_count_the_rest() {
        let mut w = RateLimitedWarn::new();
        assert_eq!(w.due(), Some(0));
        assert_eq!(w.due(), None);
        assert_eq!(w.due(), None);
        w.last = Some(Instant::now() - WARN_EVERY);
        assert_eq!(w.due(), Some(2));
    }

    #[test]
    fn raising_the_limit_never_lowers_it() {
        let (old, new) = raise_nofile_limit().unwrap();
        assert!(new >= old);
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(soft, hard);
    }

    #[tokio::test]
    async fn the_excess_connection_gets_error_11() {
        let mut admission = Admission::new(1);
        let (a, _a_peer) = UnixStream::pair().unwrap();
        let (b, b_peer) = UnixStream::pair().unwrap();
        let kept = admission.admit(a).expect("first is admitted");
        assert!(admission.admit(b).is_none());
        let mut reply = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut { b_peer }, &mut reply)
            .await
            .unwrap();
        assert!(reply.contains("\"code\":11"), "{reply}");
        drop(kept);
        let (c, _c_peer) = UnixStream::pair().unwrap();
        assert!(admission.admit(c).is_some(), "slot freed with the permit");
    }
}
