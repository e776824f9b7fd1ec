//! The I/O layer's clock: tokio's, so the in-process tests run it in virtual time
//! (`#[tokio::test(start_paused = true)]`) while the sans-IO machines keep taking
//! `std::time::Instant`s.

/// Now, on tokio's clock (which is the system's monotonic clock unless a test paused it).
pub fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}
