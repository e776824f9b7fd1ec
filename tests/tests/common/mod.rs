//! Shared helpers for the end-to-end tests (`mod common;` in a test file).
#![allow(dead_code)] // each test binary uses a different subset

pub mod cni;
pub mod cni_lab;
pub mod connect;
pub mod containerd;
pub mod ipv6_lab;
pub mod nft;
pub mod observe;
pub mod podman;
pub mod session;

use std::path::PathBuf;

/// A workspace binary built by `cargo build --workspace --bins` (tests/run does this first).
pub fn workspace_bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("debug").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first (tests/run does)",
        path.display()
    );
    path
}

/// Pids of processes named `comm` whose command line contains `needle` (a runtime's helper
/// processes that name the instance's private directory or socket: conmon, containerd shims).
pub fn helper_pids(comm: &str, needle: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            name.trim() == comm && String::from_utf8_lossy(&cmdline).contains(needle)
        })
        .collect()
}

/// Lazily unmounts every mount point below `dir` (a runtime's overlay layers, shm, …), deepest
/// first, so that a leftover mount does not keep the directory alive.
pub fn unmount_below(dir: &std::path::Path) {
    let prefix = format!("{}/", dir.display());
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| m.starts_with(&prefix))
        .map(str::to_owned)
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = softether_lab::command::run(
            std::process::Command::new("umount").arg("-l").arg(&m),
            std::time::Duration::from_secs(10),
        );
    }
}

/// Polls `done` every 200 ms until it holds or `limit` passes; whether it held. Tests wait for
/// effects (a file written, a record removed) this way, never for a log line that precedes
/// them nor for a fixed time.
pub fn wait_until(limit: std::time::Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if std::time::Instant::now() >= until {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
