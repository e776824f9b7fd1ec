//! DHCPv6 on the wire (RFC 8415): the client's messages as whole Ethernet frames (dhcproto
//! encodes, etherparse frames), and a checked view of Advertise/Reply frames.
//!
//! Replies are decoded by hand rather than with dhcproto's v6 decoder, which subtracts
//! unchecked lengths (`len - 2` in Status Code, `len - 4` in Vendor Class: a panic on a short
//! option in debug builds) and reads fixed-size options without checking their length. Here
//! every option is bounded by its own length and a malformed one is skipped.

use super::addr::{self, ALL_DHCP_SERVERS};
use super::ndp::{dns_names, MAX_DNS, MAX_DOMAINS};
use crate::message::FrameError;
use dhcproto::v6::{DhcpOption, IAAddr, Message, MessageType, OptionCode, IANA, ORO};
use dhcproto::Encodable;
use etherparse::{LinkSlice, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use std::net::Ipv6Addr;

pub(crate) const CLIENT_PORT: u16 = 546;
pub(crate) const SERVER_PORT: u16 = 547;
pub(crate) const ADVERTISE: u8 = 2;
pub(crate) const REPLY: u8 = 7;
/// Status codes the client acts on (RFC 8415 §21.13).
pub(crate) const STATUS_SUCCESS: u16 = 0;
pub(crate) const STATUS_NO_ADDRS_AVAIL: u16 = 2;
pub(crate) const STATUS_NO_BINDING: u16 = 3;
pub(crate) const STATUS_NOT_ON_LINK: u16 = 4;
/// Addresses kept from one IA_NA at most.
const MAX_IA_ADDRESSES: usize = 8;
const ETH_LEN: usize = 14;
const UDP_AT: usize = ETH_LEN + 40;

/// DUID-LL (RFC 8415 §11.4): type 3, hardware type 1 (Ethernet), the MAC. Stable for as long
/// as the MAC is, which is what "stable per attachment" needs.
pub fn duid_ll(mac: [u8; 6]) -> Vec<u8> {
    let mut duid = vec![0, 3, 0, 1];
    duid.extend_from_slice(&mac);
    duid
}

/// Cheap test: IPv6 (no extension header) UDP 547→546 carrying Advertise or Reply.
#[inline]
pub fn is_dhcpv6_reply(frame: &[u8]) -> bool {
    frame.get(12..14) == Some(&[0x86, 0xdd][..])
        && frame.get(ETH_LEN + 6) == Some(&17)
        && frame.get(UDP_AT..UDP_AT + 4) == Some(&[0x02, 0x23, 0x02, 0x22][..])
        && matches!(frame.get(UDP_AT + 8), Some(&ADVERTISE | &REPLY))
}

/// One of the client's messages.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing6<'a> {
    pub kind: MessageType,
    pub xid: u32,
    pub elapsed_centis: u16,
    pub mac: [u8; 6],
    pub duid: &'a [u8],
    pub server_id: Option<&'a [u8]>,
    /// IAID and the addresses to name in IA_NA (lifetimes 0: the server decides); `None`: no
    /// IA_NA (Information-request).
    pub ia_na: Option<(u32, &'a [Ipv6Addr])>,
}

impl Outgoing6<'_> {
    fn payload(&self) -> Result<Vec<u8>, dhcproto::error::EncodeError> {
        let mut msg = Message::new_with_id(self.kind, [0; 3]);
        msg.set_xid_num(self.xid);
        let opts = msg.opts_mut();
        opts.insert(DhcpOption::ClientId(self.duid.to_vec()));
        if let Some(id) = self.server_id {
            opts.insert(DhcpOption::ServerId(id.to_vec()));
        }
        opts.insert(DhcpOption::ElapsedTime(self.elapsed_centis));
        if let Some((iaid, addresses)) = self.ia_na {
            let mut ia_opts = dhcproto::v6::DhcpOptions::new();
            for &addr in addresses {
                ia_opts.insert(DhcpOption::IAAddr(IAAddr {
                    addr,
                    preferred_life: 0,
                    valid_life: 0,
                    opts: Default::default(),
                }));
            }
            opts.insert(DhcpOption::IANA(IANA {
                id: iaid,
                t1: 0,
                t2: 0,
                opts: ia_opts,
            }));
        }
        if self.kind != MessageType::Release {
            let mut wanted = vec![OptionCode::DomainNameServers, OptionCode::DomainSearchList];
            // RFC 8415 §21.23: only Information-request asks for the refresh time.
            if self.kind == MessageType::InformationRequest {
                wanted.push(OptionCode::InformationRefreshTime);
            }
            opts.insert(DhcpOption::ORO(ORO { opts: wanted }));
        }
        msg.to_vec()
    }

    /// From our link-local address to All_DHCP_Relay_Agents_and_Servers, UDP 546→547.
    pub(crate) fn to_frame(&self) -> Result<Vec<u8>, FrameError> {
        let payload = self
            .payload()
            .map_err(|e| FrameError::Encode(e.to_string()))?;
        let builder = PacketBuilder::ethernet2(self.mac, addr::multicast_mac(ALL_DHCP_SERVERS))
            .ipv6(
                addr::link_local(self.mac).octets(),
                ALL_DHCP_SERVERS.octets(),
                1,
            )
            .udp(CLIENT_PORT, SERVER_PORT);
        let mut frame = Vec::with_capacity(builder.size(payload.len()));
        builder
            .write(&mut frame, &payload)
            .map_err(|e| FrameError::Encode(e.to_string()))?;
        Ok(frame)
    }
}

/// An address granted in IA_NA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IaAddress {
    pub addr: Ipv6Addr,
    pub preferred_secs: u32,
    pub valid_secs: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct IaNa {
    pub t1: u32,
    pub t2: u32,
    pub addresses: Vec<IaAddress>,
    pub status: Option<u16>,
}

/// A validated Advertise or Reply with the options the client uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Reply6 {
    pub kind: u8,
    pub xid: u32,
    pub client_id: Option<Vec<u8>>,
    pub server_id: Option<Vec<u8>>,
    pub preference: u8,
    pub status: Option<u16>,
    pub status_message: Option<String>,
    /// The IA_NA with our IAID, if present.
    pub ia_na: Option<IaNa>,
    pub dns: Vec<Ipv6Addr>,
    pub domains: Vec<String>,
    pub refresh_secs: Option<u32>,
}

/// Parses a frame already accepted by [`is_dhcpv6_reply`] whose IA_NA of interest is `iaid`.
pub(crate) fn parse_reply(frame: &[u8], iaid: u32) -> Option<Reply6> {
    let packet = SlicedPacket::from_ethernet(frame).ok()?;
    let (Some(LinkSlice::Ethernet2(_)), Some(NetSlice::Ipv6(ip))) = (&packet.link, &packet.net)
    else {
        return None;
    };
    let Some(TransportSlice::Udp(udp)) = &packet.transport else {
        return None;
    };
    if (udp.source_port(), udp.destination_port()) != (SERVER_PORT, CLIENT_PORT) {
        return None;
    }
    // A wrong non-zero checksum means corruption; zero is invalid for IPv6 UDP (RFC 8200 §8.1).
    let header = ip.header().to_header();
    if udp
        .to_header()
        .calc_checksum_ipv6(&header, udp.payload())
        .ok()
        != Some(udp.checksum())
    {
        return None;
    }
    let msg = udp.payload();
    let (&kind, rest) = msg.split_first()?;
    let xid = rest.get(..3)?;
    let mut reply = Reply6 {
        kind,
        xid: u32::from_be_bytes([0, xid[0], xid[1], xid[2]]),
        ..Reply6::default()
    };
    for (code, value) in options(&rest[3..]) {
        match code {
            1 if !value.is_empty() && value.len() <= 130 => reply.client_id = Some(value.to_vec()),
            2 if !value.is_empty() && value.len() <= 130 => reply.server_id = Some(value.to_vec()),
            3 if reply.ia_na.is_none() => reply.ia_na = ia_na(value, iaid),
            7 if value.len() == 1 => reply.preference = value[0],
            13 => {
                if let Some((status, text)) = status(value) {
                    reply.status = Some(status);
                    reply.status_message = text;
                }
            }
            23 if value.len() % 16 == 0 => {
                reply.dns = value
                    .chunks_exact(16)
                    .filter_map(|c| <[u8; 16]>::try_from(c).ok().map(Ipv6Addr::from))
                    .filter(|ip| !ip.is_unspecified() && !ip.is_multicast())
                    .take(MAX_DNS)
                    .collect();
            }
            24 => reply.domains = dns_names(value, MAX_DOMAINS),
            32 if value.len() == 4 => {
                reply.refresh_secs = Some(u32::from_be_bytes(value.try_into().ok()?));
            }
            _ => {}
        }
    }
    Some(reply)
}

/// `(code, value)` pairs; stops at the first option that overruns the area.
fn options(mut area: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let code = u16::from_be_bytes(area.get(..2)?.try_into().ok()?);
        let len = usize::from(u16::from_be_bytes(area.get(2..4)?.try_into().ok()?));
        let value = area.get(4..4 + len)?;
        area = &area[4 + len..];
        Some((code, value))
    })
}

fn status(value: &[u8]) -> Option<(u16, Option<String>)> {
    let code = u16::from_be_bytes(value.get(..2)?.try_into().ok()?);
    let text = std::str::from_utf8(&value[2..])
        .ok()
        .filter(|t| !t.is_empty())
        .map(|t| t.chars().take(200).collect());
    Some((code, text))
}

fn ia_na(value: &[u8], iaid: u32) -> Option<IaNa> {
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(value.get(at..at + 4)?.try_into().ok()?))
    };
    if word(0)? != iaid {
        return None;
    }
    let mut ia = IaNa {
        t1: word(4)?,
        t2: word(8)?,
        ..IaNa::default()
    };
    for (code, sub) in options(&value[12..]) {
        match code {
            5 if sub.len() >= 24 && ia.addresses.len() < MAX_IA_ADDRESSES => {
                let raw: [u8; 16] = sub[..16].try_into().ok()?;
                let be = |at: usize| {
                    u32::from_be_bytes([sub[at], sub[at + 1], sub[at + 2], sub[at + 3]])
                };
                // An address whose own status is not Success is not granted.
                let refused = options(&sub[24..])
                    .any(|(c, v)| c == 13 && status(v).is_some_and(|(s, _)| s != STATUS_SUCCESS));
                if !refused {
                    ia.addresses.push(IaAddress {
                        addr: Ipv6Addr::from(raw),
                        preferred_secs: be(16),
                        valid_secs: be(20),
                    });
                }
            }
            13 => ia.status = status(sub).map(|(s, _)| s),
            _ => {}
        }
    }
    Some(ia)
}
