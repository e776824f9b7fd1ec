//! The process's allocator settings. Each was measured with `tests/bench` (README,
//! "Performance": RSS of `connect` and of the daemon per attachment), one at a time.
//!
//! - glibc's malloc gives a thread that finds the other arenas locked an arena of its own (up
//!   to 8 per core), and memory freed in one arena is never reused by another: with tokio's
//!   workers and blocking threads that is several arenas each holding freed buffers. Capping
//!   them at the number of runtime workers keeps the freed memory in few heaps, where it is
//!   reused and trimmed.
//! - After an attachment stops, [`release_free_heap`] hands the free pages back: a heap only
//!   shrinks from its top on its own, and one long-lived allocation above the freed buffers of
//!   100 attachments kept all of them resident.
//!
//! Other C libraries: no-ops.

/// Caps the malloc arenas at `workers` (the runtime's threads that allocate on the hot path).
pub fn limit_arenas(workers: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if !crate::daemon::sys::set_malloc_arena_max(workers.clamp(1, 64) as i32) {
        tracing::debug!("mallopt(M_ARENA_MAX) refused");
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = workers;
}

/// Returns the allocator's free pages to the kernel (after a session's buffers were freed).
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    crate::daemon::sys::malloc_trim();
}
