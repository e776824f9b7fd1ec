//! The process's allocator housekeeping. Each lever was measured with `tests/bench` and
//! `tests/bench-daemon` (README, "Performance", "Memory"), one at a time; what did not pay is
//! not here.
//!
//! - After an attachment stops, and when a session's traffic pauses, [`release_free_heap`]
//!   hands glibc's free pages back to the kernel: a heap only shrinks from its top on its own,
//!   and one long-lived allocation above the freed buffers of 100 attachments kept all of them
//!   resident (the daemon stayed at 33 MiB after deleting them, now 11 MiB).
//! - Not done: capping glibc's arenas (`M_ARENA_MAX`) at the runtime's threads. Measured
//!   neutral for `connect` (one thread) and for the daemon with the buffers released when
//!   idle; on the daemon without that it was worse (285 instead of 220 KiB per attachment).
//!
//! Other C libraries: a no-op.

/// Returns the allocator's free pages to the kernel (after a session's buffers were freed).
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    crate::daemon::sys::malloc_trim();
}
