//! IPv4 policy-routing rules (`ip rule`), always with action "lookup TABLE".

use std::net::Ipv4Addr;

use futures::TryStreamExt;
use ipnet::{IpNet, Ipv4Net};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::IpVersion;

use super::{tolerate, Netlink};
use crate::error::Result;

/// `ip rule … [from SRC] [fwmark MARK/MASK] lookup TABLE priority PRIO`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyRule {
    /// `from SRC/LEN`; `None` is `from all`.
    pub source: Option<Ipv4Net>,
    /// `fwmark MARK/MASK`.
    pub fwmark: Option<FwMark>,
    /// `lookup TABLE`.
    pub table: u32,
    /// `priority PRIO`: rules with a lower priority are consulted first.
    pub priority: u32,
}

/// A firewall mark selector; `mask` 0xffffffff is what a bare `fwmark MARK` means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FwMark {
    /// The mark value compared after masking.
    pub mark: u32,
    /// Which bits of the packet's mark are compared.
    pub mask: u32,
}

impl PolicyRule {
    /// `from ADDR/32 lookup TABLE priority PRIO`: replies sourced from the VPN address go back
    /// through the tunnel.
    pub fn from_address(addr: Ipv4Addr, table: u32, priority: u32) -> Self {
        Self {
            source: Some(Ipv4Net::from(addr)),
            fwmark: None,
            table,
            priority,
        }
    }

    /// `fwmark MARK/MASK lookup TABLE priority PRIO`: CONNMARK-restored replies go back
    /// through the tunnel.
    pub fn fwmark(mark: u32, mask: u32, table: u32, priority: u32) -> Self {
        Self {
            source: None,
            fwmark: Some(FwMark { mark, mask }),
            table,
            priority,
        }
    }

    fn parts(&self) -> RuleParts {
        RuleParts {
            family: IpVersion::V4,
            source: self.source.map(IpNet::V4),
            fwmark: self.fwmark,
            table: self.table,
            priority: self.priority,
        }
    }
}

/// A rule of either family: what `PolicyRule` and `PolicyRule6` share on the wire.
pub(super) struct RuleParts {
    pub family: IpVersion,
    pub source: Option<IpNet>,
    pub fwmark: Option<FwMark>,
    pub table: u32,
    pub priority: u32,
}

impl RuleParts {
    fn describe(&self) -> String {
        let family = match self.family {
            IpVersion::V4 => "",
            IpVersion::V6 => "inet6 ",
        };
        let mut s = format!("{family}priority {}", self.priority);
        match self.source {
            Some(src) => s += &format!(" from {src}"),
            None => s += " from all",
        }
        if let Some(FwMark { mark, mask }) = self.fwmark {
            s += &format!(" fwmark {mark:#x}/{mask:#x}");
        }
        s + &format!(" lookup {}", self.table)
    }

    fn of(msg: &RuleMessage, family: IpVersion) -> RuleParts {
        let mut rule = RuleParts {
            family,
            source: None,
            fwmark: None,
            table: u32::from(msg.header.table),
            priority: 0,
        };
        let mut mark = None;
        let mut mask = u32::MAX;
        for attr in &msg.attributes {
            match attr {
                RuleAttribute::Source(a) => rule.source = IpNet::new(*a, msg.header.src_len).ok(),
                RuleAttribute::FwMark(m) => mark = Some(*m),
                RuleAttribute::FwMask(m) => mask = *m,
                RuleAttribute::Table(t) => rule.table = *t,
                RuleAttribute::Priority(p) => rule.priority = *p,
                _ => {}
            }
        }
        rule.fwmark = mark.map(|mark| FwMark { mark, mask });
        rule
    }
}

impl Netlink {
    /// `ip rule add …`; Ok if an identical rule exists.
    pub async fn add_rule(&self, rule: &PolicyRule) -> Result<()> {
        self.add_rule_parts(&rule.parts()).await
    }

    /// `ip rule del …`; Ok if no such rule.
    pub async fn del_rule(&self, rule: &PolicyRule) -> Result<()> {
        self.del_rule_parts(&rule.parts()).await
    }

    /// `ip -4 rule show`: every "lookup TABLE" rule (the defaults for local/main/default
    /// included), in kernel order.
    pub async fn rules(&self) -> Result<Vec<PolicyRule>> {
        let parts = self.rule_parts(IpVersion::V4).await?;
        Ok(parts
            .into_iter()
            .map(|p| PolicyRule {
                source: match p.source {
                    Some(IpNet::V4(n)) => Some(n),
                    _ => None,
                },
                fwmark: p.fwmark,
                table: p.table,
                priority: p.priority,
            })
            .collect())
    }

    pub(super) async fn add_rule_parts(&self, rule: &RuleParts) -> Result<()> {
        let mut req = self.handle.rule().add();
        *req.message_mut() = self.rule_message(rule);
        let result = req.execute().await;
        tolerate(result, &[libc::EEXIST]).map_err(|e| self.error("rule add", rule.describe(), e))
    }

    pub(super) async fn del_rule_parts(&self, rule: &RuleParts) -> Result<()> {
        // The kernel matches a delete against the attributes present, so the add message
        // doubles as the delete selector.
        let msg = self.rule_message(rule);
        let result = self.handle.rule().del(msg).execute().await;
        tolerate(result, &[libc::ENOENT]).map_err(|e| self.error("rule del", rule.describe(), e))
    }

    pub(super) async fn rule_parts(&self, family: IpVersion) -> Result<Vec<RuleParts>> {
        let (want, name) = match family {
            IpVersion::V4 => (AddressFamily::Inet, "ipv4"),
            IpVersion::V6 => (AddressFamily::Inet6, "ipv6"),
        };
        let msgs: Vec<RuleMessage> = self
            .handle
            .rule()
            .get(family.clone())
            .execute()
            .try_collect()
            .await
            .map_err(|e| self.error("rule dump", name, e))?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.family == want)
            .filter(|m| m.header.action == RuleAction::ToTable)
            .map(|m| RuleParts::of(m, family.clone()))
            .collect())
    }

    fn rule_message(&self, rule: &RuleParts) -> RuleMessage {
        // Without an explicit action the kernel stores action 0 ("unspec"), which never
        // looks anything up.
        let base = self
            .handle
            .rule()
            .add()
            .table_id(rule.table)
            .priority(rule.priority)
            .action(RuleAction::ToTable);
        let base = match rule.fwmark {
            Some(FwMark { mark, .. }) => base.fw_mark(mark),
            None => base,
        };
        let mut msg = match (&rule.family, rule.source) {
            (_, Some(IpNet::V4(src))) => base
                .v4()
                .source_prefix(src.network(), src.prefix_len())
                .message_mut()
                .clone(),
            (_, Some(IpNet::V6(src))) => base
                .v6()
                .source_prefix(src.network(), src.prefix_len())
                .message_mut()
                .clone(),
            (IpVersion::V4, None) => base.v4().message_mut().clone(),
            (IpVersion::V6, None) => base.v6().message_mut().clone(),
        };
        if let Some(FwMark { mask, .. }) = rule.fwmark {
            msg.attributes.push(RuleAttribute::FwMask(mask));
        }
        msg
    }
}
