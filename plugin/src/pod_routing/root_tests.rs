//! [`remove_leftovers`] against a real namespace (root; fails, not skips, otherwise).

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// `ip netns add`, deleted on drop even when the test fails.
struct TestNetns(String);

impl TestNetns {
    fn new() -> TestNetns {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "se-cni-del-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        run(&["ip", "netns", "add", &name]);
        TestNetns(name)
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }

    fn ip(&self, args: &[&str]) -> String {
        let mut argv = vec!["ip", "-n", &self.0];
        argv.extend_from_slice(args);
        run(&argv)
    }

    fn nft(&self, args: &[&str]) -> String {
        let mut argv = vec!["ip", "netns", "exec", &self.0, "nft"];
        argv.extend_from_slice(args);
        run(&argv)
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run(argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn removes_our_rules_and_table_and_nothing_else() {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root");
    let ns = TestNetns::new();
    ns.ip(&[
        "rule",
        "add",
        "from",
        "192.168.30.10",
        "lookup",
        "100",
        "priority",
        "1000",
    ]);
    ns.ip(&[
        "rule",
        "add",
        "from",
        "192.168.30.11",
        "lookup",
        "100",
        "priority",
        "1000",
    ]);
    ns.ip(&[
        "rule", "add", "fwmark", "100", "lookup", "100", "priority", "1001",
    ]);
    ns.ip(&[
        "rule",
        "add",
        "from",
        "192.168.30.10",
        "lookup",
        "101",
        "priority",
        "1000",
    ]);
    let id = softether_control::pod_netns::attachment_engine_id("c1", "vpn0");
    let table = Firewall::new(Netns::Current, &id).table_name().to_owned();
    ns.nft(&["add", "table", "inet", &table]);
    ns.nft(&["add", "table", "inet", "softether_other"]);

    let leftovers = PodLeftovers {
        policy_table: Some(100),
        address: Some(Ipv4Addr::new(192, 168, 30, 10)),
        connmark_id: Some(id),
    };
    assert_eq!(
        remove_leftovers(&ns.path(), &leftovers),
        Vec::<String>::new()
    );
    let rules = ns.ip(&["rule"]);
    assert!(!rules.contains("from 192.168.30.10 lookup 100"), "{rules}");
    assert!(!rules.contains("fwmark"), "{rules}");
    assert!(rules.contains("from 192.168.30.11 lookup 100"), "{rules}");
    assert!(rules.contains("from 192.168.30.10 lookup 101"), "{rules}");
    let tables = ns.nft(&["list", "tables"]);
    assert!(!tables.contains(&table), "{tables}");
    assert!(tables.contains("softether_other"), "{tables}");
    // Again: nothing left is success.
    assert_eq!(
        remove_leftovers(&ns.path(), &leftovers),
        Vec::<String>::new()
    );
}
