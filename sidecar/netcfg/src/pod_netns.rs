//! What one CNI attachment leaves in its pod's network namespace, owned in one place: the
//! persistent TAP named `CNI_IFNAME`, the policy rules of `policyRouteTable` (IPv4 and IPv6),
//! and the CONNMARK nft table. (Addresses and routes through the TAP go with the TAP.)
//!
//! The plugin creates the TAP ([`create_tap`]); the sidecar installs the rules
//! ([`policy_rules`], through the engine's lease plan) and the table ([`firewall`]). Teardown
//! is the same code whoever does it — the sidecar on DEL or when it processes a tombstone, the
//! plugin on a DEL that finds the sidecar down: [`remove_tap`] and [`PodRouting::remove`],
//! both best effort and fine when things are already gone.

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use crate::error::{NetcfgError, Result};
use ipnet::{Ipv4Net, Ipv6Net};

use crate::netlink::{Rule, RuleFamily};
use crate::{sys, Firewall, Netlink, Netns, PolicyRule, PolicyRule6};

/// `ip rule` priority of `from <VPN_IP>/32 lookup <policyRouteTable>`.
pub const RULE_PRIORITY_FROM: u32 = 1000;
/// `ip rule` priority of `fwmark <policyRouteTable> lookup <policyRouteTable>`
/// (CONNMARK-restored replies).
pub const RULE_PRIORITY_FWMARK: u32 = 1001;

/// The id of an attachment's session engine, `<containerID>_<ifname>`; it names the
/// attachment's CONNMARK table (see [`firewall`]).
pub fn engine_id(container_id: &str, ifname: &str) -> String {
    format!("{container_id}_{ifname}")
}

/// The attachment's CONNMARK table, `inet softether_<engine id>` (sanitised by [`Firewall`]).
pub fn firewall(netns: &str, container_id: &str, ifname: &str) -> Firewall {
    Firewall::new(Netns::from_path(netns), &engine_id(container_id, ifname))
}

/// The policy rules of one family an attachment with `policyRouteTable` = `table` installs
/// for its `addresses`: `from <address> lookup table` for each and, with CONNMARK,
/// `fwmark table lookup table`.
pub fn policy_rules<N: RuleFamily>(
    table: u32,
    addresses: &[N::Addr],
    connmark: bool,
) -> Vec<Rule<N>> {
    let mut rules: Vec<Rule<N>> = addresses
        .iter()
        .map(|addr| Rule::from_address(*addr, table, RULE_PRIORITY_FROM))
        .collect();
    if connmark {
        rules.push(Rule::fwmark(table, u32::MAX, table, RULE_PRIORITY_FWMARK));
    }
    rules
}

/// What an attachment's configuration put into the pod netns besides the TAP, for teardown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodRouting {
    /// `policyRouteTable`: its `from <VPN_IP>/32` and `fwmark` rules at our priorities.
    pub policy_table: Option<u32>,
    /// The attachment's address when known (record, `prevResult`): then only the from-rule
    /// with exactly that source is ours; unknown, any /32 from-rule at our priority is.
    pub address: Option<Ipv4Addr>,
    /// The attachment's engine id when `connmark` is on: names its nft table.
    pub connmark_id: Option<String>,
}

impl PodRouting {
    /// Nothing to remove besides the TAP.
    pub fn is_empty(&self) -> bool {
        self.policy_table.is_none() && self.connmark_id.is_none()
    }

    /// Our rules among `rules` (an `ip rule` dump): the from-rule (a /32 source, exactly
    /// `address` when known) and the fwmark rule, each looking up the table at its priority.
    pub fn own_rules(&self, rules: &[PolicyRule]) -> Vec<PolicyRule> {
        self.own(rules, self.address)
    }

    /// Our IPv6 rules among `rules` (an `ip -6 rule` dump): from-rules with a /128 source and
    /// the fwmark rule, each looking up the table at its priority. IPv6 addresses are not
    /// recorded, so any /128 from-rule at our priority in our table counts as ours.
    pub fn own_rules6(&self, rules: &[PolicyRule6]) -> Vec<PolicyRule6> {
        self.own(rules, None)
    }

    /// Our rules of one family: a from-rule with a host source (exactly `address` when known)
    /// and the fwmark rule, each looking up our table at its priority.
    fn own<N: RuleFamily>(&self, rules: &[Rule<N>], address: Option<N::Addr>) -> Vec<Rule<N>> {
        let Some(table) = self.policy_table else {
            return Vec::new();
        };
        rules
            .iter()
            .filter(|r| r.table == table)
            .filter(|r| match (r.priority, r.source, r.fwmark) {
                (RULE_PRIORITY_FROM, Some(src), None) => {
                    src.prefix_length() == N::HOST_LEN && address.is_none_or(|a| src.address() == a)
                }
                (RULE_PRIORITY_FWMARK, None, Some(_)) => true,
                _ => false,
            })
            .copied()
            .collect()
    }

    /// Deletes our rules of one family from `nl`, collecting the failures; a family whose
    /// rules cannot be listed counts as failed only when `must_list` (a kernel without IPv6
    /// has no IPv6 rules to dump: nothing to remove).
    async fn remove_own<N: RuleFamily>(
        &self,
        nl: &Netlink,
        address: Option<N::Addr>,
        must_list: bool,
        errors: &mut Vec<NetcfgError>,
    ) {
        match nl.rules_of::<N>().await {
            Ok(rules) => {
                for rule in self.own(&rules, address) {
                    if let Err(e) = nl.del_rule(&rule).await {
                        errors.push(e);
                    }
                }
            }
            Err(e) if must_list => errors.push(e),
            Err(_) => {}
        }
    }

    /// Removes the rules (both families) and the nft table from `netns`, best effort: every step runs
    /// whatever the previous ones did; the failures are returned for the log.
    pub async fn remove(&self, netns: &str) -> Vec<NetcfgError> {
        let mut errors = Vec::new();
        if self.is_empty() {
            return errors;
        }
        let ns = Netns::from_path(netns);
        if self.policy_table.is_some() {
            match Netlink::open(ns.clone()).await {
                Ok(nl) => {
                    self.remove_own::<Ipv4Net>(&nl, self.address, true, &mut errors)
                        .await;
                    self.remove_own::<Ipv6Net>(&nl, None, false, &mut errors)
                        .await;
                }
                Err(e) => errors.push(e),
            }
        }
        if let Some(id) = &self.connmark_id {
            if let Err(e) = Firewall::new(ns, id).remove().await {
                errors.push(e);
            }
        }
        errors
    }
}

/// Creates the persistent TAP `ifname` with `mac` in `netns` and returns its fd (which ADD
/// passes to the sidecar). Fails if any interface of that name exists: it is not ours.
/// Blocks for a thread spawn and a few ioctls; the namespace is entered on that thread.
pub fn create_tap(netns: &str, ifname: &str, mac: [u8; 6]) -> Result<OwnedFd> {
    let ns = Netns::from_path(netns);
    let tap_error = |op, source| NetcfgError::Tap {
        op,
        name: ifname.to_owned(),
        netns: netns.to_owned(),
        source,
    };
    let made = ns.run(
        || -> std::result::Result<OwnedFd, (&'static str, std::io::Error)> {
            if nix::net::if_::if_nametoindex(ifname).is_ok() {
                return Err((
                    "create",
                    std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "an interface with this name already exists",
                    ),
                ));
            }
            let fd = sys::open_tun().map_err(|e| ("open /dev/net/tun", e))?;
            // IFF_VNET_HDR: the sidecar's data path uses the TAP offloads (issue 11). The
            // flag belongs to the device and the sidecar reads it back, so either side may
            // be older; only a sidecar that predates offloads must not get such an fd.
            let flags = sys::TapFlags {
                exclusive: true,
                vnet_hdr: true,
            };
            sys::tun_set_iff(fd.as_fd(), ifname, flags).map_err(|e| ("TUNSETIFF", e))?;
            sys::tun_set_persist(fd.as_fd(), true).map_err(|e| ("TUNSETPERSIST", e))?;
            if let Err(e) = sys::tun_set_mac(fd.as_fd(), mac) {
                // Closing after clearing persist removes the half-made TAP.
                let _ = sys::tun_set_persist(fd.as_fd(), false);
                return Err(("SIOCSIFHWADDR", e));
            }
            Ok(fd)
        },
    )?;
    made.map_err(|(op, e)| tap_error(op, e))
}

/// What [`remove_tap`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TapRemoval {
    /// No interface by that name, or no such netns: nothing to do.
    Absent,
    /// The TAP was ours and is gone.
    Removed,
    /// A TAP by that name exists with another MAC: someone else's, left alone.
    NotOurs {
        /// The MAC the interface has.
        mac: [u8; 6],
    },
    /// An interface by that name exists but is no TAP (a veth, a bridge): never ours, left
    /// alone whatever its MAC.
    NotATap {
        /// Its link kind (`veth`, `bridge`, …), if the kernel reported one.
        kind: Option<String>,
    },
}

/// Deletes the TAP `ifname` in `netns` if it is there, is a TAP, and — when `ours` is given —
/// has that MAC. Deleting through netlink works while another process still holds the TAP's
/// fd (the sidecar's session, gone or hung). Fine when the netns or the link is gone.
pub async fn remove_tap(netns: &str, ifname: &str, ours: Option<[u8; 6]>) -> Result<TapRemoval> {
    if !std::path::Path::new(netns).exists() {
        return Ok(TapRemoval::Absent);
    }
    let nl = Netlink::open(Netns::from_path(netns)).await?;
    let Some(link) = nl.link_by_name(ifname).await? else {
        return Ok(TapRemoval::Absent);
    };
    if link.kind.as_deref() != Some("tun") {
        return Ok(TapRemoval::NotATap { kind: link.kind });
    }
    if let Some(ours) = ours {
        let mac: Option<[u8; 6]> = link.mac.as_deref().and_then(|m| m.try_into().ok());
        if let Some(mac) = mac.filter(|mac| *mac != ours) {
            return Ok(TapRemoval::NotOurs { mac });
        }
    }
    nl.delete_link(ifname).await?;
    Ok(TapRemoval::Removed)
}

/// Same namespace file: equal paths, or two paths (bind mounts, `/proc/<pid>/ns/net`) of the
/// same namespace.
pub fn same_netns(a: &str, b: &str) -> bool {
    a == b
        || matches!(
            (std::fs::metadata(a), std::fs::metadata(b)),
            (Ok(x), Ok(y)) if x.dev() == y.dev() && x.ino() == y.ino()
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FwMark;

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

    fn routing(table: u32, address: Option<Ipv4Addr>) -> PodRouting {
        PodRouting {
            policy_table: Some(table),
            address,
            connmark_id: None,
        }
    }

    #[test]
    fn engine_id_joins_container_and_ifname() {
        assert_eq!(engine_id("c1", "vpn0"), "c1_vpn0");
        assert_ne!(engine_id("c1", "vpn0"), engine_id("c1", "vpn1"));
    }

    #[test]
    fn installed_rules_are_what_teardown_finds() {
        let installed = policy_rules(100, &[ME], true);
        assert_eq!(
            installed,
            vec![
                PolicyRule::from_address(ME, 100, RULE_PRIORITY_FROM),
                PolicyRule::fwmark(100, u32::MAX, 100, RULE_PRIORITY_FWMARK),
            ]
        );
        assert_eq!(routing(100, Some(ME)).own_rules(&installed), installed);
        assert_eq!(routing(100, None).own_rules(&installed), installed);
        assert_eq!(policy_rules::<Ipv4Net>(100, &[], false), vec![]);
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
        assert_eq!(routing(100, None).own_rules(&all), vec![from, mark]);
        assert_eq!(routing(100, Some(ME)).own_rules(&all), vec![from, mark]);
        // A known address leaves another host's from-rule alone.
        let other_host = PolicyRule::from_address(Ipv4Addr::new(192, 168, 30, 11), 100, 1000);
        assert_eq!(
            routing(100, Some(ME)).own_rules(&[other_host, mark]),
            vec![mark]
        );
        assert_eq!(
            routing(100, None).own_rules(&[other_host, mark]),
            vec![other_host, mark]
        );
        assert!(routing(100, None).own_rules(&others).is_empty());
        assert!(PodRouting::default().own_rules(&all).is_empty());
    }

    #[test]
    fn own_ipv6_rules_are_host_from_rules_and_the_fwmark_rule_of_the_table() {
        let me: std::net::Ipv6Addr = "fd00:6::1".parse().unwrap();
        let from = PolicyRule6::from_address(me, 100, RULE_PRIORITY_FROM);
        let mark = PolicyRule6::fwmark(100, u32::MAX, 100, RULE_PRIORITY_FWMARK);
        let others = [
            PolicyRule6::from_address(me, 101, RULE_PRIORITY_FROM),
            PolicyRule6::from_address(me, 100, 999),
            PolicyRule6 {
                source: Some("fd00:6::/64".parse().unwrap()),
                ..from
            },
            PolicyRule6::fwmark(100, u32::MAX, 100, RULE_PRIORITY_FROM),
        ];
        let mut all = others.to_vec();
        all.extend([from, mark]);
        assert_eq!(routing(100, Some(ME)).own_rules6(&all), vec![from, mark]);
        assert!(routing(100, None).own_rules6(&others).is_empty());
        assert!(PodRouting::default().own_rules6(&all).is_empty());
    }

    #[test]
    fn netns_paths_compare_by_inode() {
        let own = format!("/proc/{}/ns/net", std::process::id());
        assert!(same_netns("/proc/self/ns/net", &own));
        assert!(same_netns("/run/netns/gone", "/run/netns/gone"));
        assert!(!same_netns("/run/netns/gone-a", "/run/netns/gone-b"));
    }
}
