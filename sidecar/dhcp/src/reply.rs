//! Incoming DHCP replies: a byte-comparison classifier and a checked view of BOOTREPLY frames.
//!
//! Replies are decoded here rather than with dhcproto because its decoder can panic
//! (`debug_assert!`) on malformed options and drops every option after the first bad one. Here
//! each option is decoded on its own and a malformed one is ignored.

use crate::routes::{decode_classless_routes, ClasslessRoute};
use etherparse::{LinkSlice, NetSlice, SlicedPacket, TransportSlice};
use std::net::Ipv4Addr;

const ETH_LEN: usize = 14;
const BOOTP_FIXED_LEN: usize = 236;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Fixed BOOTP part plus the magic cookie: the smallest DHCP message.
const DHCP_MIN_LEN: usize = BOOTP_FIXED_LEN + 4;

/// Message types (option 53) the client reacts to.
pub(crate) const DHCPOFFER: u8 = 2;
pub(crate) const DHCPACK: u8 = 5;
pub(crate) const DHCPNAK: u8 = 6;

/// Offset of the BOOTP payload if `frame` looks like an unfragmented IPv4 UDP 67→68 BOOTREPLY.
///
/// Called for every frame leaving the tunnel: only byte comparisons, no allocation.
#[inline]
pub(crate) fn bootp_offset(frame: &[u8]) -> Option<usize> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ver_ihl = *frame.get(ETH_LEN)?;
    let ihl = usize::from(ver_ihl & 0x0f) * 4;
    if ver_ihl >> 4 != 4 || ihl < 20 || *frame.get(ETH_LEN + 9)? != 17 {
        return None;
    }
    // More-fragments flag or a non-zero offset: a fragment, which a DHCP reply never should be.
    let frag = frame.get(ETH_LEN + 6..ETH_LEN + 8)?;
    if frag[0] & 0x3f != 0 || frag[1] != 0 {
        return None;
    }
    let udp = ETH_LEN + ihl;
    if frame.get(udp..udp + 4)? != [0, 67, 0, 68] {
        return None;
    }
    let bootp = udp + 8;
    if frame.len() < bootp + DHCP_MIN_LEN || frame[bootp] != 2 {
        return None;
    }
    Some(bootp)
}

/// True if the reply at `bootp` carries transaction `xid` for an Ethernet client `mac`.
#[inline]
pub(crate) fn is_for(frame: &[u8], bootp: usize, xid: u32, mac: &[u8; 6]) -> bool {
    let hdr = match frame.get(bootp..bootp + 34) {
        Some(h) => h,
        None => return false,
    };
    hdr[1] == 1 && hdr[2] == 6 && hdr[4..8] == xid.to_be_bytes() && hdr[28..34] == mac[..]
}

/// A validated DHCP reply with the options the client uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub src_mac: [u8; 6],
    pub src_ip: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub message_type: Option<u8>,
    pub subnet_mask: Option<Ipv4Addr>,
    pub routers: Vec<Ipv4Addr>,
    pub dns_servers: Vec<Ipv4Addr>,
    pub domain_name: Option<String>,
    pub mtu: Option<u16>,
    pub lease_secs: Option<u32>,
    pub server_id: Option<Ipv4Addr>,
    pub renewal_secs: Option<u32>,
    pub rebinding_secs: Option<u32>,
    pub routes_121: Option<Vec<ClasslessRoute>>,
    pub routes_249: Option<Vec<ClasslessRoute>>,
    pub message: Option<String>,
}

impl Default for Reply {
    fn default() -> Self {
        Self {
            src_mac: [0; 6],
            src_ip: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            message_type: None,
            subnet_mask: None,
            routers: Vec::new(),
            dns_servers: Vec::new(),
            domain_name: None,
            mtu: None,
            lease_secs: None,
            server_id: None,
            renewal_secs: None,
            rebinding_secs: None,
            routes_121: None,
            routes_249: None,
            message: None,
        }
    }
}

/// Option codes worth collecting; everything else is skipped without copying.
const WANTED: [u8; 14] = [1, 3, 6, 15, 26, 51, 52, 53, 54, 56, 58, 59, 121, 249];

/// Parses a frame already accepted by [`bootp_offset`]. `None` if any layer is inconsistent.
pub(crate) fn parse(frame: &[u8]) -> Option<Reply> {
    let packet = SlicedPacket::from_ethernet(frame).ok()?;
    let Some(LinkSlice::Ethernet2(eth)) = packet.link else {
        return None;
    };
    let Some(NetSlice::Ipv4(ip)) = packet.net else {
        return None;
    };
    if ip.is_payload_fragmented() {
        return None;
    }
    let Some(TransportSlice::Udp(udp)) = packet.transport else {
        return None;
    };
    let bootp = udp.payload();
    if bootp.len() < DHCP_MIN_LEN
        || bootp[0] != 2
        || bootp[BOOTP_FIXED_LEN..DHCP_MIN_LEN] != MAGIC_COOKIE
    {
        return None;
    }
    let mut raw = RawOptions::default();
    raw.walk(&bootp[DHCP_MIN_LEN..]);
    // RFC 2131 §4.1 option overload: 1 = file field, 2 = sname, 3 = both (file first).
    if let Some(&[overload]) = raw.get(52) {
        if overload & 1 != 0 {
            raw.walk(&bootp[108..236]);
        }
        if overload & 2 != 0 {
            raw.walk(&bootp[44..108]);
        }
    }
    Some(Reply {
        src_mac: eth.source(),
        src_ip: ip.header().source_addr(),
        yiaddr: ipv4_at(bootp, 16)?,
        message_type: raw.get(53).and_then(one_u8),
        subnet_mask: raw.get(1).and_then(one_ipv4),
        routers: raw.get(3).map(ipv4_list).unwrap_or_default(),
        dns_servers: raw.get(6).map(ipv4_list).unwrap_or_default(),
        domain_name: raw.get(15).and_then(text),
        mtu: raw.get(26).and_then(be_u16).filter(|&mtu| mtu >= 68),
        lease_secs: raw.get(51).and_then(be_u32),
        server_id: raw.get(54).and_then(one_ipv4),
        renewal_secs: raw.get(58).and_then(be_u32),
        rebinding_secs: raw.get(59).and_then(be_u32),
        routes_121: raw.get(121).and_then(decode_classless_routes),
        routes_249: raw.get(249).and_then(decode_classless_routes),
        message: raw.get(56).and_then(text),
    })
}

/// Collected option values; repeated codes are concatenated (RFC 3396).
#[derive(Default)]
struct RawOptions(Vec<(u8, Vec<u8>)>);

impl RawOptions {
    fn walk(&mut self, mut area: &[u8]) {
        while let Some((&code, rest)) = area.split_first() {
            match code {
                0 => area = rest,
                255 => return,
                _ => {
                    let Some((&len, rest)) = rest.split_first() else {
                        return;
                    };
                    let Some(value) = rest.get(..usize::from(len)) else {
                        return;
                    };
                    if WANTED.contains(&code) {
                        self.push(code, value);
                    }
                    area = &rest[usize::from(len)..];
                }
            }
        }
    }

    fn push(&mut self, code: u8, value: &[u8]) {
        match self.0.iter_mut().find(|(c, _)| *c == code) {
            Some((_, data)) => data.extend_from_slice(value),
            None => self.0.push((code, value.to_vec())),
        }
    }

    fn get(&self, code: u8) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, d)| d.as_slice())
    }
}

fn ipv4_at(data: &[u8], at: usize) -> Option<Ipv4Addr> {
    let b = data.get(at..at + 4)?;
    Some(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
}

fn one_u8(data: &[u8]) -> Option<u8> {
    match data {
        [b] => Some(*b),
        _ => None,
    }
}

fn one_ipv4(data: &[u8]) -> Option<Ipv4Addr> {
    (data.len() == 4).then(|| ipv4_at(data, 0)).flatten()
}

fn be_u16(data: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(data.try_into().ok()?))
}

fn be_u32(data: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(data.try_into().ok()?))
}

/// Lists must be whole addresses; a ragged list is ignored rather than guessed at.
fn ipv4_list(data: &[u8]) -> Vec<Ipv4Addr> {
    let chunks = data.chunks_exact(4);
    if !chunks.remainder().is_empty() {
        return Vec::new();
    }
    chunks
        .map(|b| Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        .collect()
}

/// Servers sometimes NUL-terminate strings; non-UTF-8 bytes are replaced, not fatal.
fn text(data: &[u8]) -> Option<String> {
    let trimmed = match data.iter().position(|&b| b == 0) {
        Some(nul) => &data[..nul],
        None => data,
    };
    let s = String::from_utf8_lossy(trimmed).trim().to_string();
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{reply_frame, ReplyBuilder, CLIENT_MAC};
    use dhcproto::v4::{DhcpOption, MessageType, OptionCode, UnknownOption};

    #[test]
    fn classifier_accepts_reply_and_rejects_others() {
        let frame = reply_frame(&ReplyBuilder::new(MessageType::Offer, 7));
        let at = bootp_offset(&frame).unwrap();
        assert!(is_for(&frame, at, 7, &CLIENT_MAC));
        assert!(!is_for(&frame, at, 8, &CLIENT_MAC));
        assert!(!is_for(&frame, at, 7, &[2, 0, 0, 0, 0, 9]));

        let mut arp = frame.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(bootp_offset(&arp), None);
        let mut wrong_port = frame.clone();
        wrong_port[14 + 20 + 3] = 67;
        assert_eq!(bootp_offset(&wrong_port), None);
        let mut fragment = frame.clone();
        fragment[14 + 6] = 0x20;
        assert_eq!(bootp_offset(&fragment), None);
        let mut request = frame.clone();
        request[14 + 28] = 1;
        assert_eq!(bootp_offset(&request), None);
        for len in 0..frame.len() {
            let _ = bootp_offset(&frame[..len]);
        }
        assert_eq!(bootp_offset(&frame[..frame.len() - 100]), None);
    }

    #[test]
    fn parses_all_used_options() {
        let mut b = ReplyBuilder::new(MessageType::Ack, 1);
        b.opt(DhcpOption::DomainName("corp.example".into()))
            .opt(DhcpOption::InterfaceMtu(1400))
            .opt(DhcpOption::Renewal(100))
            .opt(DhcpOption::Rebinding(175))
            .opt(DhcpOption::Message("hello".into()));
        let r = parse(&reply_frame(&b)).unwrap();
        assert_eq!(r.message_type, Some(DHCPACK));
        assert_eq!(r.yiaddr, Ipv4Addr::new(192, 168, 30, 10));
        assert_eq!(r.subnet_mask, Some(Ipv4Addr::new(255, 255, 255, 0)));
        assert_eq!(r.routers, [Ipv4Addr::new(192, 168, 30, 1)]);
        assert_eq!(
            r.dns_servers,
            [Ipv4Addr::new(192, 168, 30, 1), Ipv4Addr::new(9, 9, 9, 9)]
        );
        assert_eq!(r.domain_name.as_deref(), Some("corp.example"));
        assert_eq!((r.mtu, r.lease_secs), (Some(1400), Some(200)));
        assert_eq!((r.renewal_secs, r.rebinding_secs), (Some(100), Some(175)));
        assert_eq!(r.server_id, Some(Ipv4Addr::new(192, 168, 30, 1)));
        assert_eq!(r.message.as_deref(), Some("hello"));
    }

    #[test]
    fn one_bad_option_does_not_hide_the_rest() {
        let mut b = ReplyBuilder::new(MessageType::Ack, 1);
        // Length 5 for a subnet mask and a ragged router list: both ignored, everything else kept.
        b.opt(DhcpOption::Unknown(UnknownOption::new(
            OptionCode::SubnetMask,
            vec![255; 5],
        )))
        .opt(DhcpOption::Unknown(UnknownOption::new(
            OptionCode::Router,
            vec![10; 6],
        )))
        .opt(DhcpOption::Unknown(UnknownOption::new(
            OptionCode::DomainName,
            vec![0xff, b'a', 0],
        )));
        let r = parse(&reply_frame(&b)).unwrap();
        assert_eq!(r.subnet_mask, None);
        assert!(r.routers.is_empty());
        assert_eq!(r.domain_name.as_deref(), Some("\u{fffd}a"));
        assert_eq!(r.lease_secs, Some(200));
    }

    #[test]
    fn options_in_file_field_when_overloaded() {
        let mut b = ReplyBuilder::new(MessageType::Ack, 1);
        b.opt(DhcpOption::OptionOverload(1));
        let mut frame = reply_frame(&b);
        let file = bootp_offset(&frame).unwrap() + 108;
        frame[file..file + 7].copy_from_slice(&[26, 2, 0x05, 0x78, 0, 0, 255]);
        // The UDP checksum is stale now; etherparse does not verify it and neither do we.
        assert_eq!(parse(&frame).unwrap().mtu, Some(1400));
    }
}
