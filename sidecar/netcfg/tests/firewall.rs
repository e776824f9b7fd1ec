//! Root tests: the CONNMARK nft table inside a throwaway namespace.

mod common;

use common::TestNetns;
use netcfg::{Firewall, Netns};
use serde_json::Value;

/// `(chains, rules)` of `table` according to `nft -j list ruleset` run in the namespace.
fn count_in_ruleset(ns: &TestNetns, table: &str) -> (usize, usize) {
    let json: Value = serde_json::from_str(&ns.exec("nft", &["-j", "list", "ruleset"])).unwrap();
    let entries = json["nftables"].as_array().cloned().unwrap_or_default();
    let count = |kind: &str| {
        entries
            .iter()
            .filter_map(|e| e.get(kind))
            .filter(|o| o["table"] == table && o["family"] == "inet")
            .count()
    };
    (count("chain"), count("rule"))
}

#[tokio::test]
async fn connmark_table_apply_is_idempotent_and_removable() {
    let ns = TestNetns::new();
    let fw = Firewall::new(ns.netns(), "pod/1234-abc");
    let table = fw.table_name().to_owned();
    assert!(table.starts_with("softether_pod_1234_abc"), "{table}");
    assert!(!fw.exists().await.unwrap());
    assert_eq!(fw.list().await.unwrap(), None);

    fw.apply_connmark("vpn0", 0x100).await.unwrap();
    fw.apply_connmark("vpn0", 0x100).await.unwrap();
    assert_eq!(count_in_ruleset(&ns, &table), (2, 3));
    assert!(fw.exists().await.unwrap());
    let listing = fw.list().await.unwrap().unwrap();
    assert_eq!(
        listing.chains,
        vec![("prerouting".to_owned(), 2), ("output".to_owned(), 1)]
    );

    let text = ns.exec("nft", &["list", "table", "inet", &table]);
    assert!(
        text.contains("type filter hook prerouting priority mangle"),
        "{text}"
    );
    assert!(
        text.contains("type route hook output priority mangle"),
        "{text}"
    );
    assert!(
        text.contains("iifname \"vpn0\" ct state new ct mark set 0x00000100"),
        "{text}"
    );
    assert!(
        text.contains("ct direction reply meta mark set ct mark"),
        "{text}"
    );

    // The host's ruleset is untouched.
    let host = Firewall::new(Netns::Current, "pod/1234-abc");
    assert!(
        !host.exists().await.unwrap(),
        "table leaked into the host netns"
    );

    fw.remove().await.unwrap();
    assert_eq!(count_in_ruleset(&ns, &table), (0, 0));
    assert!(!fw.exists().await.unwrap());
    fw.remove().await.unwrap();
}

#[tokio::test]
async fn nft_failures_are_reported_with_context() {
    let ns = TestNetns::new();
    let fw = Firewall::new(ns.netns(), "x").with_nft_binary("/nonexistent/nft");
    let err = fw.apply_connmark("vpn0", 1).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("softether_x") && text.contains(&ns.name),
        "{text}"
    );
    assert!(Firewall::new(ns.netns(), "x")
        .apply_connmark("", 1)
        .await
        .is_err());
}
