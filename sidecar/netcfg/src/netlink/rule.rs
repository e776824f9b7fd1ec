//! Policy-routing rules (`ip rule`, `ip -6 rule`), always with action "lookup TABLE": one
//! [`Rule`] type for both families, [`PolicyRule`] (IPv4) and [`PolicyRule6`] (IPv6).

use std::net::{Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::IpVersion;

use super::{tolerate, Netlink};
use crate::error::Result;

/// `ip [-6] rule … [from SRC] [fwmark MARK/MASK] lookup TABLE priority PRIO`, for the family
/// of `N` ([`Ipv4Net`] or [`Ipv6Net`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule<N> {
    /// `from SRC/LEN`; `None` is `from all`.
    pub source: Option<N>,
    /// `fwmark MARK/MASK`.
    pub fwmark: Option<FwMark>,
    /// `lookup TABLE`.
    pub table: u32,
    /// `priority PRIO`: rules with a lower priority are consulted first.
    pub priority: u32,
}

/// An IPv4 rule (`ip rule`).
pub type PolicyRule = Rule<Ipv4Net>;
/// An IPv6 rule (`ip -6 rule`); fwmark rules are per family: the IPv4 one does not route IPv6
/// replies.
pub type PolicyRule6 = Rule<Ipv6Net>;

/// The address family of a [`Rule`]: its prefix type and what the wire needs of it.
pub trait RuleFamily: Copy + Sized {
    /// A host address of the family.
    type Addr: Copy + PartialEq;
    /// rtnetlink's name of the family.
    const VERSION: IpVersion;
    /// The prefix length of one host (32, 128).
    const HOST_LEN: u8;
    /// `ADDR/HOST_LEN`.
    fn host(addr: Self::Addr) -> Self;
    /// The address of the prefix (not masked).
    fn address(&self) -> Self::Addr;
    /// The prefix length.
    fn prefix_length(&self) -> u8;
    /// Either family's prefix.
    fn to_ipnet(self) -> IpNet;
    /// This family's prefix, if `net` is one.
    fn from_ipnet(net: IpNet) -> Option<Self>;
}

impl RuleFamily for Ipv4Net {
    type Addr = Ipv4Addr;
    const VERSION: IpVersion = IpVersion::V4;
    const HOST_LEN: u8 = 32;
    fn host(addr: Ipv4Addr) -> Self {
        Ipv4Net::from(addr)
    }
    fn address(&self) -> Ipv4Addr {
        self.addr()
    }
    fn prefix_length(&self) -> u8 {
        self.prefix_len()
    }
    fn to_ipnet(self) -> IpNet {
        IpNet::V4(self)
    }
    fn from_ipnet(net: IpNet) -> Option<Self> {
        match net {
            IpNet::V4(n) => Some(n),
            IpNet::V6(_) => None,
        }
    }
}

impl RuleFamily for Ipv6Net {
    type Addr = Ipv6Addr;
    const VERSION: IpVersion = IpVersion::V6;
    const HOST_LEN: u8 = 128;
    fn host(addr: Ipv6Addr) -> Self {
        Ipv6Net::from(addr)
    }
    fn address(&self) -> Ipv6Addr {
        self.addr()
    }
    fn prefix_length(&self) -> u8 {
        self.prefix_len()
    }
    fn to_ipnet(self) -> IpNet {
        IpNet::V6(self)
    }
    fn from_ipnet(net: IpNet) -> Option<Self> {
        match net {
            IpNet::V6(n) => Some(n),
            IpNet::V4(_) => None,
        }
    }
}

/// A firewall mark selector; `mask` 0xffffffff is what a bare `fwmark MARK` means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FwMark {
    /// The mark value compared after masking.
    pub mark: u32,
    /// Which bits of the packet's mark are compared.
    pub mask: u32,
}

impl<N: RuleFamily> Rule<N> {
    /// `from ADDR/32 (/128) lookup TABLE priority PRIO`: replies sourced from the VPN address
    /// go back through the tunnel.
    pub fn from_address(addr: N::Addr, table: u32, priority: u32) -> Self {
        Self {
            source: Some(N::host(addr)),
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
            family: N::VERSION,
            source: self.source.map(N::to_ipnet),
            fwmark: self.fwmark,
            table: self.table,
            priority: self.priority,
        }
    }

    /// A dumped rule of this family (a source of the other family counts as none; the dump
    /// is per family, so there is none).
    fn of_parts(p: RuleParts) -> Self {
        Self {
            source: p.source.and_then(N::from_ipnet),
            fwmark: p.fwmark,
            table: p.table,
            priority: p.priority,
        }
    }
}

/// A rule of either family on the wire.
struct RuleParts {
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
    /// `ip [-6] rule add …`; Ok if an identical rule exists.
    pub async fn add_rule<N: RuleFamily>(&self, rule: &Rule<N>) -> Result<()> {
        self.add_rule_parts(&rule.parts()).await
    }

    /// `ip [-6] rule del …`; Ok if no such rule.
    pub async fn del_rule<N: RuleFamily>(&self, rule: &Rule<N>) -> Result<()> {
        self.del_rule_parts(&rule.parts()).await
    }

    /// `ip -4 rule show`: every "lookup TABLE" rule (the defaults for local/main/default
    /// included), in kernel order.
    pub async fn rules(&self) -> Result<Vec<PolicyRule>> {
        self.rules_of().await
    }

    /// `ip -6 rule show`: every "lookup TABLE" rule, in kernel order.
    pub async fn rules6(&self) -> Result<Vec<PolicyRule6>> {
        self.rules_of().await
    }

    /// `ip [-6] rule show` for the family of `N`.
    pub async fn rules_of<N: RuleFamily>(&self) -> Result<Vec<Rule<N>>> {
        let parts = self.rule_parts(N::VERSION).await?;
        Ok(parts.into_iter().map(Rule::of_parts).collect())
    }

    async fn add_rule_parts(&self, rule: &RuleParts) -> Result<()> {
        let mut req = self.handle.rule().add();
        *req.message_mut() = self.rule_message(rule);
        let result = req.execute().await;
        tolerate(result, &[libc::EEXIST]).map_err(|e| self.error("rule add", rule.describe(), e))
    }

    async fn del_rule_parts(&self, rule: &RuleParts) -> Result<()> {
        // The kernel matches a delete against the attributes present, so the add message
        // doubles as the delete selector.
        let msg = self.rule_message(rule);
        let result = self.handle.rule().del(msg).execute().await;
        tolerate(result, &[libc::ENOENT]).map_err(|e| self.error("rule del", rule.describe(), e))
    }

    async fn rule_parts(&self, family: IpVersion) -> Result<Vec<RuleParts>> {
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
