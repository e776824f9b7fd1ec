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
//! - The daemon runs with glibc's per-thread cache off ([`restart_daemon_with_tunables`]).
//!   Each thread keeps up to 7 freed chunks of every small size class (the tcache). To the
//!   arena those chunks are in use, so neither coalescing nor `malloc_trim` can return the
//!   pages around them. After 100 attachments were deleted, the two runtime workers' caches
//!   pinned 2.5 MiB of otherwise free pages, while the heap held 237 KiB of live data
//!   (heaptrack). With the cache off, anonymous memory after all were deleted fell from 3.5 to
//!   1.0 MiB (baseline 0.6). The cache can only be set before the process starts
//!   (`GLIBC_TUNABLES`), hence the re-execution. Measured on `connect` (three alternating
//!   rounds of iperf3 up and down, 1 and 4 streams), client CPU per GB and throughput were
//!   within the noise either way; `connect` keeps the cache: its one thread's cache is small
//!   beside the re-execution's cost to its time to address.
//! - Not done: capping glibc's arenas (`M_ARENA_MAX`) at the runtime's threads. Measured
//!   neutral for `connect` (one thread) and for the daemon with the buffers released when
//!   idle; on the daemon without that it was worse (285 instead of 220 KiB per attachment).
//!
//! Other C libraries: a no-op.

use std::ffi::OsStr;

/// Blocks of at least this size get their own mapping (see the module docs).
const MMAP_THRESHOLD: i32 = 32 * 1024;

/// glibc's tunables for the daemon: no per-thread cache (see the module docs).
pub const DAEMON_TUNABLES: &str = "glibc.malloc.tcache_count=0";
/// Where glibc reads its tunables from, once, at process start.
const TUNABLES_VAR: &str = "GLIBC_TUNABLES";

/// The `GLIBC_TUNABLES` value the daemon must be restarted with, given the current one:
/// `None` when it already runs with tunables, which includes an operator's own (theirs win).
pub fn daemon_tunables(current: Option<&OsStr>) -> Option<&'static str> {
    match current {
        None if cfg!(all(target_os = "linux", target_env = "gnu")) => Some(DAEMON_TUNABLES),
        _ => None,
    }
}

/// Replaces the process (same pid, arguments and environment) with the same binary and
/// [`DAEMON_TUNABLES`], unless [`daemon_tunables`] says not to. Call first thing in the
/// daemon's `main`, before any thread starts or any resource is opened. Returns only if it
/// did not restart: the reason, when the `exec` failed (the daemon then runs with glibc's
/// defaults).
pub fn restart_daemon_with_tunables() -> Option<std::io::Error> {
    use std::os::unix::process::CommandExt;
    let tunables = daemon_tunables(std::env::var_os(TUNABLES_VAR).as_deref())?;
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "softether-sidecar".into());
    // `/proc/self/exe`: the binary this process runs, even if its path was replaced since.
    let e = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .env(TUNABLES_VAR, tunables)
        .exec();
    Some(e)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemon_restarts_once_and_never_over_an_operators_tunables() {
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert_eq!(daemon_tunables(None), Some(DAEMON_TUNABLES));
        }
        // After the restart the variable is set: no second one.
        assert_eq!(daemon_tunables(Some(OsStr::new(DAEMON_TUNABLES))), None);
        assert_eq!(
            daemon_tunables(Some(OsStr::new("glibc.malloc.arena_max=1"))),
            None
        );
        assert_eq!(daemon_tunables(Some(OsStr::new(""))), None);
    }
}
