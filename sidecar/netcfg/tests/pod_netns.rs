//! Root tests: what an attachment leaves in a pod netns, created and removed by
//! `netcfg::pod_netns` (the code both the plugin's offline DEL and the sidecar run).

mod common;

use std::net::Ipv4Addr;

use common::TestNetns;
use netcfg::pod_netns::{self, create_tap, remove_tap, same_netns, PodRouting, TapRemoval};

const MAC: [u8; 6] = [0x5e, 1, 2, 3, 4, 5];

fn path(ns: &TestNetns) -> String {
    format!("/run/netns/{}", ns.name)
}

#[tokio::test]
async fn a_created_tap_is_persistent_and_removed_only_with_its_mac() {
    let ns = TestNetns::new();
    let fd = create_tap(&path(&ns), "vpn0", MAC).unwrap();
    drop(fd);
    let links = ns.ip(&["-d", "link", "show", "vpn0"]);
    assert!(links.contains("5e:01:02:03:04:05"), "{links}");
    assert!(
        links.contains("tun type tap"),
        "persistent after close: {links}"
    );
    // The name is taken now.
    assert!(create_tap(&path(&ns), "vpn0", MAC).is_err());
    assert_eq!(
        remove_tap(&path(&ns), "vpn0", Some([2, 0, 0, 0, 0, 9]))
            .await
            .unwrap(),
        TapRemoval::NotOurs { mac: MAC }
    );
    assert!(ns.ip_ok(&["link", "show", "vpn0"]));
    assert_eq!(
        remove_tap(&path(&ns), "vpn0", Some(MAC)).await.unwrap(),
        TapRemoval::Removed
    );
    assert!(!ns.ip_ok(&["link", "show", "vpn0"]));
    assert_eq!(
        remove_tap(&path(&ns), "vpn0", Some(MAC)).await.unwrap(),
        TapRemoval::Absent
    );
    assert_eq!(
        remove_tap("/run/netns/netcfg-gone", "vpn0", None)
            .await
            .unwrap(),
        TapRemoval::Absent
    );
}

#[tokio::test]
async fn a_tap_is_removed_while_another_fd_still_holds_it() {
    let ns = TestNetns::new();
    let held = create_tap(&path(&ns), "vpn0", MAC).unwrap();
    assert_eq!(
        remove_tap(&path(&ns), "vpn0", None).await.unwrap(),
        TapRemoval::Removed
    );
    assert!(!ns.ip_ok(&["link", "show", "vpn0"]));
    drop(held);
}

/// Issue 14: DEL against a link that is no TAP, even with the attachment's MAC, left it but
/// went on as if it were ours.
#[tokio::test]
async fn a_link_that_is_no_tap_is_never_ours_whatever_its_mac() {
    let ns = TestNetns::new();
    ns.ip(&[
        "link",
        "add",
        "vpn0",
        "address",
        "5e:01:02:03:04:05",
        "type",
        "veth",
        "peer",
        "name",
        "vpn0p",
    ]);
    assert_eq!(
        remove_tap(&path(&ns), "vpn0", Some(MAC)).await.unwrap(),
        TapRemoval::NotATap {
            kind: Some("veth".into())
        }
    );
    assert_eq!(
        remove_tap(&path(&ns), "vpn0", None).await.unwrap(),
        TapRemoval::NotATap {
            kind: Some("veth".into())
        }
    );
    assert!(ns.ip_ok(&["link", "show", "vpn0"]));
}

#[tokio::test]
async fn removes_our_rules_and_table_and_nothing_else() {
    let ns = TestNetns::new();
    for (from, table) in [
        ("192.168.30.10", "100"),
        ("192.168.30.11", "100"),
        ("192.168.30.10", "101"),
    ] {
        ns.ip(&[
            "rule", "add", "from", from, "lookup", table, "priority", "1000",
        ]);
    }
    ns.ip(&[
        "rule", "add", "fwmark", "100", "lookup", "100", "priority", "1001",
    ]);
    let table = pod_netns::firewall(&path(&ns), "c1", "vpn0")
        .table_name()
        .to_owned();
    ns.exec("nft", &["add", "table", "inet", &table]);
    ns.exec("nft", &["add", "table", "inet", "softether_other"]);

    let routing = PodRouting {
        policy_table: Some(100),
        address: Some(Ipv4Addr::new(192, 168, 30, 10)),
        connmark_id: Some(pod_netns::engine_id("c1", "vpn0")),
    };
    let errors = routing.remove(&path(&ns)).await;
    assert!(errors.is_empty(), "{errors:?}");
    let rules = ns.ip(&["rule"]);
    assert!(!rules.contains("from 192.168.30.10 lookup 100"), "{rules}");
    assert!(!rules.contains("fwmark"), "{rules}");
    assert!(rules.contains("from 192.168.30.11 lookup 100"), "{rules}");
    assert!(rules.contains("from 192.168.30.10 lookup 101"), "{rules}");
    let tables = ns.exec("nft", &["list", "tables"]);
    assert!(!tables.contains(&table), "{tables}");
    assert!(tables.contains("softether_other"), "{tables}");
    // Again: nothing left is success.
    let errors = routing.remove(&path(&ns)).await;
    assert!(errors.is_empty(), "{errors:?}");
}

#[tokio::test]
async fn removal_in_a_missing_netns_reports_each_step() {
    common::require_root();
    let routing = PodRouting {
        policy_table: Some(100),
        address: None,
        connmark_id: Some("c1_vpn0".into()),
    };
    assert_eq!(routing.remove("/nonexistent/netns").await.len(), 2);
    assert!(PodRouting::default()
        .remove("/nonexistent/netns")
        .await
        .is_empty());
}

#[test]
fn netns_bind_mounts_are_the_same_namespace() {
    let ns = TestNetns::new();
    let pid_path = format!("/proc/{}/ns/net", std::process::id());
    assert!(same_netns("/proc/self/ns/net", &pid_path));
    assert!(!same_netns(&path(&ns), &pid_path));
}
