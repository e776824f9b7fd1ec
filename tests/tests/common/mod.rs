//! Shared helpers for the end-to-end tests (`mod common;` in a test file).
#![allow(dead_code)] // each test binary uses a different subset

pub mod cni;
pub mod cni_lab;
pub mod connect;
pub mod ipv6_lab;
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
