//! Shared helpers for the end-to-end tests (`mod common;` in a test file).
#![allow(dead_code)] // each test binary uses a different subset

pub mod cni;
pub mod cni_lab;
pub mod connect;
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
