//! The process's allocator housekeeping. Each lever was measured with `tests/bench` and
//! `tests/bench-daemon` (README, "Performance", "Memory"), one at a time; what did not pay is
//! not here.
//!
//! - After an attachment stops, and when a session's traffic pauses, [`release_free_heap`]
//!   hands glibc's free pages back to the kernel: a heap only shrinks from its top on its own,
//!   and one long-lived allocation above the freed buffers of 100 attachments kept all of them
//!   resident (the daemon stayed at 33 MiB after deleting them, now 11 MiB).
//! - [`tune_allocator`] at start: blocks of 32 KiB or more (the data plane's 64 KiB TAP read
//!   buffer and segment arena, batch arenas, UDP receive blocks, all taken when traffic starts
//!   and given back after a second without it) get their own mappings, returned to the kernel
//!   the moment they are freed. With glibc's default, the first such free raises the threshold
//!   to that size, after which they come from the heap, between long-lived allocations of
//!   other sessions, and their pages stay resident: the daemon held 168 KiB per idle
//!   attachment at 100 (now 121), and 44 MiB at its peak under iperf3 on 10 of them (now 31).
//!   Under load the uplink takes a fresh 64 KiB segment arena per 64 KiB sent, now each an
//!   `mmap`: measured against the same binary without the threshold (`connect`, iperf3 5 s,
//!   three alternating rounds), client CPU per GB up 2.18 vs 2.33 s and down 1.93 vs 2.04 s
//!   (medians; within the noise), throughput and peak RSS alike.
//! - Not done: capping glibc's arenas (`M_ARENA_MAX`) at the runtime's threads. Measured
//!   neutral for `connect` (one thread) and for the daemon with the buffers released when
//!   idle; on the daemon without that it was worse (285 instead of 220 KiB per attachment).
//!
//! Other C libraries: a no-op.

/// Blocks of at least this size get their own mapping (see the module docs).
const MMAP_THRESHOLD: i32 = 32 * 1024;

/// Sets the allocator up for a long-running process; call in `main` before any thread starts.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if !crate::sys::set_mmap_threshold(MMAP_THRESHOLD) {
        tracing::debug!("glibc refused M_MMAP_THRESHOLD");
    }
}

/// Returns the allocator's free pages to the kernel (after a session's buffers were freed).
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    crate::sys::malloc_trim();
}
