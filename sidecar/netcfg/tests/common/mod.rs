//! Shared fixtures for the root tests: a throwaway network namespace per test.
//!
//! These tests need root and FAIL (never skip) without it.
#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use netcfg::Netns;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique name with the pid and a per-process counter, e.g. for interfaces.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "netcfg root tests must run as root (they create network namespaces)"
    );
}

/// `ip netns add` on creation, `ip netns del` on drop (also when the test panics).
pub struct TestNetns {
    pub name: String,
}

impl TestNetns {
    pub fn new() -> Self {
        require_root();
        let name = unique("netcfg-t");
        run("ip", &["netns", "add", &name]);
        // Loopback up, as a real pod netns has it.
        run("ip", &["-n", &name, "link", "set", "lo", "up"]);
        TestNetns { name }
    }

    pub fn netns(&self) -> Netns {
        Netns::named(&self.name)
    }

    /// `ip -n NS ARGS…`, panicking on failure; returns stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Like `ip`, but returns whether it succeeded.
    pub fn ip_ok(&self, args: &[&str]) -> bool {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        Command::new("ip")
            .args(&full)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// `ip netns exec NS CMD ARGS…`; returns stdout.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", self.name.as_str(), cmd];
        full.extend_from_slice(args);
        run("ip", &full)
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
