//! nftables in a lab namespace: apply a ruleset, read a named counter.

use softether_lab::Lab;

/// Applies `rules` (an `nft -f` script) in namespace `ns`; panics with nft's message on failure.
pub fn apply(lab: &Lab, ns: &str, rules: &str) {
    let out = lab
        .exec_in(ns, &["sh", "-c", &format!("printf '{rules}' | nft -f -")])
        .expect("nft");
    assert!(
        out.status.success(),
        "nft: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `packets` or `bytes` value of named counter `name` in `inet` table `table` in `ns`.
pub fn counter(lab: &Lab, ns: &str, table: &str, name: &str, field: &str) -> u64 {
    let out = lab
        .exec_in_ok(ns, &["nft", "list", "counter", "inet", table, name])
        .expect("nft list counter");
    // "... counter big { packets 12 bytes 15000 }"
    out.split_whitespace()
        .skip_while(|w| *w != field)
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {out}"))
}
