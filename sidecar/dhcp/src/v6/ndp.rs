//! Neighbour Discovery messages the client speaks: router solicitations out, router
//! advertisements in (RFC 4861 §4.1–4.2, §6.1.2 validation; RFC 8106 RDNSS/DNSSL; RFC 4191
//! router preference).
//!
//! Advertisements are parsed by hand over etherparse's slicing: each option is bounded by its
//! own length and a malformed option ends the walk without affecting what was already read.

use super::addr::{self, ALL_ROUTERS};
use crate::message::FrameError;
use etherparse::{Icmpv6Type, LinkSlice, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use std::net::Ipv6Addr;

const ETH_LEN: usize = 14;
const IPV6_LEN: usize = 40;
const ICMPV6: u8 = 58;
const TYPE_RA: u8 = 134;
/// Options per advertisement kept at most, so a hostile router cannot grow memory.
pub(crate) const MAX_PREFIXES: usize = 16;
pub(crate) const MAX_DNS: usize = 8;
pub(crate) const MAX_DOMAINS: usize = 8;

/// RFC 4191 default router preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RouterPreference {
    /// Preference 11 (-1).
    Low,
    /// Preference 00 (the default; also what the reserved 10 means).
    Medium,
    /// Preference 01 (+1).
    High,
}

/// One Prefix Information option (type 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixInfo {
    /// Already truncated to `len` bits.
    pub prefix: Ipv6Addr,
    /// Prefix length in bits.
    pub len: u8,
    /// L flag: the prefix is on-link.
    pub on_link: bool,
    /// A flag: form an address from it (SLAAC).
    pub autonomous: bool,
    /// Seconds; `u32::MAX` is infinity.
    pub valid_secs: u32,
    /// Preferred lifetime in seconds; `u32::MAX` is infinity.
    pub preferred_secs: u32,
}

/// One Route Information option (type 24, RFC 4191): a more specific route via the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteInfo {
    /// The destination (host bits cleared).
    pub prefix: Ipv6Addr,
    /// Prefix length, at most 128.
    pub len: u8,
    /// Route preference (the reserved value voids the option).
    pub preference: RouterPreference,
    /// Seconds; `u32::MAX` is infinity, 0 withdraws the route.
    pub lifetime_secs: u32,
}

/// A validated router advertisement with the options the client uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterAdvertisement {
    /// The router's link-local address (IPv6 source).
    pub router: Ipv6Addr,
    /// Source link-layer address option, else the Ethernet source.
    pub router_mac: [u8; 6],
    /// M flag: addresses are available from DHCPv6.
    pub managed: bool,
    /// O flag: other configuration (DNS) is available from DHCPv6.
    pub other: bool,
    /// The default router preference (RFC 4191).
    pub preference: RouterPreference,
    /// 0: not a default router.
    pub router_lifetime_secs: u16,
    /// MTU option (type 5), in bytes.
    pub mtu: Option<u32>,
    /// Prefix Information options, in order.
    pub prefixes: Vec<PrefixInfo>,
    /// RDNSS (type 25): lifetime in seconds and servers.
    pub dns: Vec<(u32, Vec<Ipv6Addr>)>,
    /// DNSSL (type 31): lifetime in seconds and domains.
    pub domains: Vec<(u32, Vec<String>)>,
    /// Route Information options, at most 16.
    pub routes: Vec<RouteInfo>,
}

/// Cheap test: an Ethernet frame carrying IPv6 (no extension header) with an ICMPv6 router
/// advertisement. Byte comparisons only.
#[inline]
pub fn is_router_advertisement(frame: &[u8]) -> bool {
    frame.get(12..14) == Some(&[0x86, 0xdd][..])
        && frame.get(ETH_LEN + 6) == Some(&ICMPV6)
        && frame.get(ETH_LEN + IPV6_LEN) == Some(&TYPE_RA)
}

/// A router solicitation from `src` (our link-local address, or `::` while it is not usable)
/// to all routers, with the source link-layer option when the source is specified.
pub fn router_solicitation(mac: [u8; 6], src: Ipv6Addr) -> Result<Vec<u8>, FrameError> {
    let builder = PacketBuilder::ethernet2(mac, addr::multicast_mac(ALL_ROUTERS))
        .ipv6(src.octets(), ALL_ROUTERS.octets(), 255)
        .icmpv6(Icmpv6Type::RouterSolicitation);
    // RFC 4861 §4.1: 4 reserved bytes (part of the header here), then options.
    let mut options = Vec::with_capacity(8);
    if !src.is_unspecified() {
        options.extend_from_slice(&[1, 1]);
        options.extend_from_slice(&mac);
    }
    let mut frame = Vec::with_capacity(builder.size(options.len()));
    builder
        .write(&mut frame, &options)
        .map_err(|e| FrameError::Encode(e.to_string()))?;
    Ok(frame)
}

/// Parses and validates (RFC 4861 §6.1.2) a router advertisement frame. `None` for anything
/// else or anything invalid.
pub fn parse_router_advertisement(frame: &[u8]) -> Option<RouterAdvertisement> {
    if !is_router_advertisement(frame) {
        return None;
    }
    let packet = SlicedPacket::from_ethernet(frame).ok()?;
    let (Some(LinkSlice::Ethernet2(eth)), Some(NetSlice::Ipv6(ip))) = (&packet.link, &packet.net)
    else {
        return None;
    };
    let Some(TransportSlice::Icmpv6(icmp)) = &packet.transport else {
        return None;
    };
    let header = ip.header();
    let (src, dst) = (header.source_addr(), header.destination_addr());
    if header.hop_limit() != 255 || !addr::is_link_local(src) || icmp.code_u8() != 0 {
        return None;
    }
    if !icmp.is_checksum_valid(src.octets(), dst.octets()) {
        return None;
    }
    let Icmpv6Type::RouterAdvertisement(ra) = icmp.icmp_type() else {
        return None;
    };
    // After the 8-byte ICMP header: reachable time (4) and retrans timer (4), then options.
    let options = icmp.payload().get(8..)?;
    let flags = icmp.bytes5to8()[1];
    let mut out = RouterAdvertisement {
        router: src,
        router_mac: eth.source(),
        managed: ra.managed_address_config,
        other: ra.other_config,
        preference: match (flags >> 3) & 0b11 {
            0b01 => RouterPreference::High,
            0b11 => RouterPreference::Low,
            // 0b10 is reserved and treated as medium (RFC 4191 §2.2).
            _ => RouterPreference::Medium,
        },
        router_lifetime_secs: ra.router_lifetime,
        mtu: None,
        prefixes: Vec::new(),
        dns: Vec::new(),
        domains: Vec::new(),
        routes: Vec::new(),
    };
    walk_options(options, &mut out)?;
    Some(out)
}

/// `None` if an option has length zero (the whole advertisement must then be dropped).
fn walk_options(mut area: &[u8], out: &mut RouterAdvertisement) -> Option<()> {
    while area.len() >= 2 {
        let len = usize::from(area[1]) * 8;
        if len == 0 {
            return None;
        }
        let Some(option) = area.get(..len) else {
            // Truncated last option: keep what was read before it.
            return Some(());
        };
        match option[0] {
            1 if len == 8 => {
                out.router_mac.copy_from_slice(&option[2..8]);
            }
            3 if len == 32 && out.prefixes.len() < MAX_PREFIXES => {
                if let Some(prefix) = prefix_info(option) {
                    out.prefixes.push(prefix);
                }
            }
            24 if len <= 24 && out.routes.len() < MAX_PREFIXES => {
                if let Some(route) = route_info(option) {
                    out.routes.push(route);
                }
            }
            5 if len == 8 => {
                out.mtu = Some(be_u32(&option[4..8]));
            }
            25 if len >= 24 && out.dns.len() < MAX_DNS => {
                let servers = option[8..]
                    .chunks_exact(16)
                    .take(MAX_DNS)
                    .map(|c| Ipv6Addr::from(<[u8; 16]>::try_from(c).unwrap_or_default()))
                    .filter(|ip| !ip.is_unspecified() && !ip.is_multicast())
                    .collect();
                out.dns.push((be_u32(&option[4..8]), servers));
            }
            31 if len >= 16 && out.domains.len() < MAX_DOMAINS => {
                let names = dns_names(&option[8..], MAX_DOMAINS);
                out.domains.push((be_u32(&option[4..8]), names));
            }
            _ => {}
        }
        area = &area[len..];
    }
    Some(())
}

fn prefix_info(option: &[u8]) -> Option<PrefixInfo> {
    let len = option[2];
    if len > 128 {
        return None;
    }
    let flags = option[3];
    let raw: [u8; 16] = option[16..32].try_into().ok()?;
    Some(PrefixInfo {
        prefix: addr::truncate(Ipv6Addr::from(raw), len),
        len,
        on_link: flags & 0x80 != 0,
        autonomous: flags & 0x40 != 0,
        valid_secs: be_u32(&option[4..8]),
        preferred_secs: be_u32(&option[8..12]),
    })
}

/// RFC 4191 §2.3: the prefix field holds as many 8-byte units as the option has beyond its
/// first, and must cover the prefix length; the reserved preference (10) voids the option.
fn route_info(option: &[u8]) -> Option<RouteInfo> {
    let len = option[2];
    let carried = (option.len() - 8) * 8;
    if len > 128 || usize::from(len) > carried {
        return None;
    }
    let preference = match (option[3] >> 3) & 0b11 {
        0b00 => RouterPreference::Medium,
        0b01 => RouterPreference::High,
        0b11 => RouterPreference::Low,
        _ => return None,
    };
    let mut raw = [0u8; 16];
    raw[..option.len() - 8].copy_from_slice(&option[8..]);
    Some(RouteInfo {
        prefix: addr::truncate(Ipv6Addr::from(raw), len),
        len,
        preference,
        lifetime_secs: be_u32(&option[4..8]),
    })
}

fn be_u32(bytes: &[u8]) -> u32 {
    bytes
        .get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_be_bytes)
}

/// Uncompressed DNS wire-format names (RFC 1035 §3.1, as RFC 8106 and RFC 3646 require), at
/// most `max`; zero padding at the end is skipped, a malformed name ends the list.
pub(crate) fn dns_names(mut data: &[u8], max: usize) -> Vec<String> {
    let mut names = Vec::new();
    while names.len() < max {
        // Skip padding (empty names).
        while let Some((&0, rest)) = data.split_first() {
            data = rest;
        }
        if data.is_empty() {
            break;
        }
        let mut labels: Vec<&str> = Vec::new();
        let mut total = 0usize;
        loop {
            let Some((&len, rest)) = data.split_first() else {
                return names;
            };
            if len == 0 {
                data = rest;
                break;
            }
            // 0xc0 pointers are not allowed here; 64+ is not a plain label.
            let Some(label) = rest.get(..usize::from(len)).filter(|_| len < 64) else {
                return names;
            };
            let Some(label) = std::str::from_utf8(label).ok().filter(|l| valid_label(l)) else {
                return names;
            };
            total += label.len() + 1;
            if total > 254 {
                return names;
            }
            labels.push(label);
            data = &rest[usize::from(len)..];
        }
        names.push(labels.join("."));
    }
    names
}

fn valid_label(label: &str) -> bool {
    label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_decode_and_stop_at_garbage() {
        let wire = b"\x07example\x03com\x00\x03lab\x00\x00\x00";
        assert_eq!(dns_names(wire, 8), ["example.com", "lab"]);
        assert_eq!(dns_names(b"\x07exam", 8), Vec::<String>::new());
        assert_eq!(dns_names(b"\x03a b\x00", 8), Vec::<String>::new());
        assert_eq!(dns_names(b"\xc0\x0c", 8), Vec::<String>::new());
        assert_eq!(dns_names(b"\x01a\x00\x01b\x00", 1), ["a"]);
    }

    #[test]
    fn solicitation_layout() {
        let mac = [2, 0, 0, 0, 0, 1];
        let frame = router_solicitation(mac, addr::link_local(mac)).unwrap();
        assert_eq!(&frame[..6], &[0x33, 0x33, 0, 0, 0, 2]);
        let p = SlicedPacket::from_ethernet(&frame).unwrap();
        let Some(NetSlice::Ipv6(ip)) = &p.net else {
            panic!("not ipv6")
        };
        assert_eq!(ip.header().hop_limit(), 255);
        let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
            panic!("not icmpv6")
        };
        assert_eq!(icmp.icmp_type(), Icmpv6Type::RouterSolicitation);
        assert!(icmp.is_checksum_valid(ip.header().source_addr().octets(), ALL_ROUTERS.octets()));
        // The 4 reserved bytes belong to etherparse's header; the payload is the option.
        assert_eq!(icmp.payload(), &[1, 1, 2, 0, 0, 0, 0, 1]);
        let anonymous = router_solicitation(mac, Ipv6Addr::UNSPECIFIED).unwrap();
        assert_eq!(anonymous.len(), frame.len() - 8);
    }
}
