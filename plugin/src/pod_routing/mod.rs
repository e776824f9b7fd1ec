//! What an attachment leaves in the pod netns besides its TAP: the policy rules of
//! `policyRouteTable` and the CONNMARK nft table. The sidecar installs and removes them; a
//! DEL that finds the sidecar down removes them here. (Addresses and routes through the TAP
//! go with the TAP.)
//!
//! The names come from `softether_control::pod_netns`, shared with the sidecar: the rule
//! priorities, and the attachment's engine id that `netcfg::Firewall` turns into the table
//! name. netcfg's netlink is async, so a current-thread tokio runtime lives just for this
//! call; the namespace is entered on netcfg's short-lived threads, never on this one.

use std::net::Ipv4Addr;
use std::time::Duration;

use netcfg::{Firewall, Netlink, Netns, PolicyRule};
use softether_control::pod_netns::{RULE_PRIORITY_FROM, RULE_PRIORITY_FWMARK};

/// Bound on the whole cleanup (a netlink dump, a few deletes, one `nft` run).
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);

/// What to look for in the pod netns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodLeftovers {
    /// `policyRouteTable`: its `from <VPN_IP>/32` and `fwmark` rules at our priorities.
    pub policy_table: Option<u32>,
    /// This attachment's address from `prevResult`, when named there: then only the
    /// from-rule with exactly that source is ours.
    pub address: Option<Ipv4Addr>,
    /// The attachment's engine id when `connmark` is on: names its nft table.
    pub connmark_id: Option<String>,
}

impl PodLeftovers {
    pub fn is_empty(&self) -> bool {
        self.policy_table.is_none() && self.connmark_id.is_none()
    }
}

/// Our rules among `rules` (an `ip rule` dump): the from-rule (a /32 source, exactly
/// `address` when known) and the fwmark rule, each looking up `table` at its priority.
pub fn own_rules(rules: &[PolicyRule], table: u32, address: Option<Ipv4Addr>) -> Vec<PolicyRule> {
    rules
        .iter()
        .filter(|r| r.table == table)
        .filter(|r| match (r.priority, r.source, r.fwmark) {
            (RULE_PRIORITY_FROM, Some(src), None) => {
                src.prefix_len() == 32 && address.is_none_or(|a| src.addr() == a)
            }
            (RULE_PRIORITY_FWMARK, None, Some(_)) => true,
            _ => false,
        })
        .copied()
        .collect()
}

/// Removes `leftovers` from the namespace at `netns`, best effort: every step runs whatever
/// the previous ones did; the failures are returned as messages for the log.
pub fn remove_leftovers(netns: &str, leftovers: &PodLeftovers) -> Vec<String> {
    if leftovers.is_empty() {
        return Vec::new();
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return vec![format!("cannot start a runtime for netlink: {e}")],
    };
    runtime.block_on(async {
        tokio::time::timeout(CLEANUP_TIMEOUT, remove(netns, leftovers))
            .await
            .unwrap_or_else(|_| {
                vec![format!(
                    "cleaning up rules and nft table in {netns} took over {CLEANUP_TIMEOUT:?}; gave up"
                )]
            })
    })
}

async fn remove(netns: &str, leftovers: &PodLeftovers) -> Vec<String> {
    let ns = Netns::from_path(netns);
    let mut errors = Vec::new();
    if let Some(table) = leftovers.policy_table {
        remove_rules(&ns, table, leftovers.address, &mut errors).await;
    }
    if let Some(id) = &leftovers.connmark_id {
        if let Err(e) = Firewall::new(ns, id).remove().await {
            errors.push(format!("cannot remove the CONNMARK table: {e}"));
        }
    }
    errors
}

async fn remove_rules(ns: &Netns, table: u32, address: Option<Ipv4Addr>, errors: &mut Vec<String>) {
    let nl = match Netlink::open(ns.clone()).await {
        Ok(nl) => nl,
        Err(e) => return errors.push(format!("cannot remove the policy rules: {e}")),
    };
    let rules = match nl.rules().await {
        Ok(rules) => rules,
        Err(e) => return errors.push(format!("cannot remove the policy rules: {e}")),
    };
    for rule in own_rules(&rules, table, address) {
        if let Err(e) = nl.del_rule(&rule).await {
            errors.push(e.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netcfg::FwMark;

    const ME: Ipv4Addr = Ipv4Addr::new(192, 168, 30, 10);

    fn rule(source: Option<&str>, fwmark: Option<u32>, table: u32, priority: u32) -> PolicyRule {
        PolicyRule {
            source: source.map(|s| s.parse().unwrap()),
            fwmark: fwmark.map(|mark| FwMark {
                mark,
                mask: u32::MAX,
            }),
            table,
            priority,
        }
    }

    #[test]
    fn own_rules_match_table_priority_and_a_host_source() {
        let from = PolicyRule::from_address(ME, 100, RULE_PRIORITY_FROM);
        let mark = PolicyRule::fwmark(100, u32::MAX, 100, RULE_PRIORITY_FWMARK);
        let others = [
            rule(None, None, 254, 32766),
            rule(Some("192.168.30.10/32"), None, 101, RULE_PRIORITY_FROM),
            rule(Some("192.168.30.0/24"), None, 100, RULE_PRIORITY_FROM),
            rule(Some("192.168.30.10/32"), None, 100, 999),
            rule(None, Some(100), 100, RULE_PRIORITY_FROM),
            rule(None, None, 100, RULE_PRIORITY_FWMARK),
            rule(Some("10.0.0.1/32"), Some(100), 100, RULE_PRIORITY_FWMARK),
        ];
        let mut all = others.to_vec();
        all.extend([from, mark]);
        assert_eq!(own_rules(&all, 100, None), vec![from, mark]);
        assert_eq!(own_rules(&all, 100, Some(ME)), vec![from, mark]);
        // A known address leaves another host's from-rule alone.
        let other_host = PolicyRule::from_address(Ipv4Addr::new(192, 168, 30, 11), 100, 1000);
        assert_eq!(own_rules(&[other_host, mark], 100, Some(ME)), vec![mark]);
        assert_eq!(
            own_rules(&[other_host, mark], 100, None),
            vec![other_host, mark]
        );
        assert!(own_rules(&others, 100, None).is_empty());
    }

    #[test]
    fn nothing_to_remove_touches_nothing() {
        assert!(PodLeftovers::default().is_empty());
        // No runtime, no netns access: a netns that does not exist is not even opened.
        assert!(remove_leftovers("/nonexistent/netns", &PodLeftovers::default()).is_empty());
        let errors = remove_leftovers(
            "/nonexistent/netns",
            &PodLeftovers {
                policy_table: Some(100),
                address: None,
                connmark_id: Some("c1_vpn0".into()),
            },
        );
        assert_eq!(errors.len(), 2, "both steps tried: {errors:?}");
    }
}

#[cfg(test)]
mod root_tests;
