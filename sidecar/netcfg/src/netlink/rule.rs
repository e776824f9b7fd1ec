//! IPv4 policy-routing rules (`ip rule`), always with action "lookup TABLE".

use std::net::Ipv4Addr;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
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
    pub table: u32,
    pub priority: u32,
}

/// A firewall mark selector; `mask` 0xffffffff is what a bare `fwmark MARK` means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FwMark {
    pub mark: u32,
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

    fn describe(&self) -> String {
        let mut s = format!("priority {}", self.priority);
        match self.source {
            Some(src) => s += &format!(" from {src}"),
            None => s += " from all",
        }
        if let Some(FwMark { mark, mask }) = self.fwmark {
            s += &format!(" fwmark {mark:#x}/{mask:#x}");
        }
        s + &format!(" lookup {}", self.table)
    }
}

impl Netlink {
    /// `ip rule add …`; Ok if an identical rule exists.
    pub async fn add_rule(&self, rule: &PolicyRule) -> Result<()> {
        let result = self.rule_request(rule).execute().await;
        tolerate(result, &[libc::EEXIST]).map_err(|e| self.error("rule add", rule.describe(), e))
    }

    /// `ip rule del …`; Ok if no such rule.
    pub async fn del_rule(&self, rule: &PolicyRule) -> Result<()> {
        // The kernel matches a delete against the attributes present, so the add message
        // doubles as the delete selector.
        let msg = self.rule_request(rule).message_mut().clone();
        let result = self.handle.rule().del(msg).execute().await;
        tolerate(result, &[libc::ENOENT]).map_err(|e| self.error("rule del", rule.describe(), e))
    }

    /// `ip -4 rule show`: every "lookup TABLE" rule (the defaults for local/main/default
    /// included), in kernel order.
    pub async fn rules(&self) -> Result<Vec<PolicyRule>> {
        let msgs: Vec<RuleMessage> = self
            .handle
            .rule()
            .get(IpVersion::V4)
            .execute()
            .try_collect()
            .await
            .map_err(|e| self.error("rule dump", "ipv4", e))?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.family == AddressFamily::Inet)
            .filter(|m| m.header.action == RuleAction::ToTable)
            .map(rule_of)
            .collect())
    }

    fn rule_request(&self, rule: &PolicyRule) -> rtnetlink::RuleAddRequest<Ipv4Addr> {
        // Without an explicit action the kernel stores action 0 ("unspec"), which never
        // looks anything up.
        let mut req = self
            .handle
            .rule()
            .add()
            .v4()
            .table_id(rule.table)
            .priority(rule.priority)
            .action(RuleAction::ToTable);
        if let Some(src) = rule.source {
            req = req.source_prefix(src.network(), src.prefix_len());
        }
        if let Some(FwMark { mark, mask }) = rule.fwmark {
            req = req.fw_mark(mark);
            req.message_mut()
                .attributes
                .push(RuleAttribute::FwMask(mask));
        }
        req
    }
}

fn rule_of(msg: &RuleMessage) -> PolicyRule {
    let mut rule = PolicyRule {
        source: None,
        fwmark: None,
        table: u32::from(msg.header.table),
        priority: 0,
    };
    let mut mark = None;
    let mut mask = u32::MAX;
    for attr in &msg.attributes {
        match attr {
            RuleAttribute::Source(std::net::IpAddr::V4(a)) => {
                rule.source = Ipv4Net::new(*a, msg.header.src_len).ok();
            }
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
