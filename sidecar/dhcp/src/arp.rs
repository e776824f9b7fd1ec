//! ARP frames (RFC 826, RFC 5227) for "who has the gateway" checks before and after DHCP.
//!
//! Sans-IO like the rest of the crate: builders return complete Ethernet frames, [`parse`]
//! takes one apart without allocating.

use std::net::Ipv4Addr;

/// Ethernet header (14) + ARP for IPv4 over Ethernet (28). Not padded to 60 bytes: the
/// receiving stack or NIC does that.
pub const ARP_FRAME_LEN: usize = 42;
const ETHERTYPE_ARP: [u8; 2] = [0x08, 0x06];
/// htype Ethernet (1), ptype IPv4 (0x0800), hlen 6, plen 4.
const ARP_IPV4_ETHERNET: [u8; 6] = [0, 1, 0x08, 0x00, 6, 4];

/// The ARP opcode (RFC 826 `ar$op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOperation {
    /// Opcode 1: who has `target_ip`?
    Request,
    /// Opcode 2: `sender_ip` is at `sender_mac`.
    Reply,
}

/// An ARP message for IPv4 over Ethernet, plus the Ethernet destination it travels to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpPacket {
    /// Ethernet destination: broadcast for requests, the asker for replies.
    pub eth_destination: [u8; 6],
    /// Request or reply.
    pub operation: ArpOperation,
    /// Sender hardware address (also the Ethernet source).
    pub sender_mac: [u8; 6],
    /// Sender protocol address; `0.0.0.0` in an RFC 5227 probe.
    pub sender_ip: Ipv4Addr,
    /// Target hardware address; all-zero in a request.
    pub target_mac: [u8; 6],
    /// Target protocol address: the address asked about.
    pub target_ip: Ipv4Addr,
}

impl ArpPacket {
    /// The complete Ethernet frame, [`ARP_FRAME_LEN`] bytes.
    pub fn to_frame(&self) -> Vec<u8> {
        let mut f = Vec::with_capacity(ARP_FRAME_LEN);
        f.extend_from_slice(&self.eth_destination);
        f.extend_from_slice(&self.sender_mac);
        f.extend_from_slice(&ETHERTYPE_ARP);
        f.extend_from_slice(&ARP_IPV4_ETHERNET);
        f.extend_from_slice(match self.operation {
            ArpOperation::Request => &[0, 1],
            ArpOperation::Reply => &[0, 2],
        });
        f.extend_from_slice(&self.sender_mac);
        f.extend_from_slice(&self.sender_ip.octets());
        f.extend_from_slice(&self.target_mac);
        f.extend_from_slice(&self.target_ip.octets());
        f
    }
}

/// "Who has `target_ip`? Tell `sender_ip`", broadcast.
pub fn request(sender_mac: [u8; 6], sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    ArpPacket {
        eth_destination: [0xff; 6],
        operation: ArpOperation::Request,
        sender_mac,
        sender_ip,
        target_mac: [0; 6],
        target_ip,
    }
    .to_frame()
}

/// RFC 5227 probe: a request with sender address 0.0.0.0, asking whether anyone already uses
/// `target_ip`, without polluting other hosts' ARP caches.
pub fn probe(sender_mac: [u8; 6], target_ip: Ipv4Addr) -> Vec<u8> {
    request(sender_mac, Ipv4Addr::UNSPECIFIED, target_ip)
}

/// Gratuitous ARP (RFC 5227 announcement): a broadcast request with sender and target both
/// `ip`, so neighbours update their caches after we take an address.
pub fn announcement(sender_mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    request(sender_mac, ip, ip)
}

/// The unicast reply "`sender_ip` is at `sender_mac`" to a requester.
pub fn reply(
    sender_mac: [u8; 6],
    sender_ip: Ipv4Addr,
    target_mac: [u8; 6],
    target_ip: Ipv4Addr,
) -> Vec<u8> {
    ArpPacket {
        eth_destination: target_mac,
        operation: ArpOperation::Reply,
        sender_mac,
        sender_ip,
        target_mac,
        target_ip,
    }
    .to_frame()
}

/// Parses an IPv4-over-Ethernet ARP frame; `None` for anything else.
pub fn parse(frame: &[u8]) -> Option<ArpPacket> {
    if frame.get(12..14)? != ETHERTYPE_ARP || frame.get(14..20)? != ARP_IPV4_ETHERNET {
        return None;
    }
    let arp = frame.get(14..42)?;
    let operation = match arp[6..8] {
        [0, 1] => ArpOperation::Request,
        [0, 2] => ArpOperation::Reply,
        _ => return None,
    };
    let ip = |at: usize| Ipv4Addr::new(arp[at], arp[at + 1], arp[at + 2], arp[at + 3]);
    Some(ArpPacket {
        eth_destination: mac_at(frame, 0)?,
        operation,
        sender_mac: mac_at(arp, 8)?,
        sender_ip: ip(14),
        target_mac: mac_at(arp, 18)?,
        target_ip: ip(24),
    })
}

fn mac_at(data: &[u8], at: usize) -> Option<[u8; 6]> {
    data.get(at..at + 6)?.try_into().ok()
}

/// `(ip, mac)` from an ARP reply; `None` for requests and non-ARP frames.
pub fn parse_reply(frame: &[u8]) -> Option<(Ipv4Addr, [u8; 6])> {
    let p = parse(frame)?;
    (p.operation == ArpOperation::Reply).then_some((p.sender_ip, p.sender_mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];
    const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);
    const GW: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    #[test]
    fn request_layout() {
        let f = request(MAC, IP, GW);
        assert_eq!(f.len(), ARP_FRAME_LEN);
        assert_eq!(f[..6], [0xff; 6]);
        assert_eq!(f[6..12], MAC);
        assert_eq!(f[12..22], [0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        assert_eq!(f[28..32], [10, 0, 0, 5]);
        assert_eq!(f[32..38], [0; 6]);
        assert_eq!(f[38..42], [10, 0, 0, 1]);
    }

    #[test]
    fn reply_round_trip() {
        let f = reply(GW_MAC, GW, MAC, IP);
        assert_eq!(f[..6], MAC);
        assert_eq!(parse_reply(&f), Some((GW, GW_MAC)));
        assert_eq!(parse_reply(&request(MAC, IP, GW)), None);
        let p = parse(&f).unwrap();
        assert_eq!(
            (p.target_ip, p.target_mac, p.eth_destination),
            (IP, MAC, MAC)
        );
    }

    #[test]
    fn probe_and_announcement() {
        let p = parse(&probe(MAC, IP)).unwrap();
        assert_eq!((p.sender_ip, p.target_ip), (Ipv4Addr::UNSPECIFIED, IP));
        let a = parse(&announcement(MAC, IP)).unwrap();
        assert_eq!(
            (a.operation, a.sender_ip, a.target_ip),
            (ArpOperation::Request, IP, IP)
        );
    }

    #[test]
    fn rejects_other_frames_without_panicking() {
        let f = reply(GW_MAC, GW, MAC, IP);
        for len in 0..f.len() {
            assert_eq!(parse(&f[..len]), None);
        }
        let mut ipv6 = f.clone();
        ipv6[16..18].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(parse(&ipv6), None);
        let mut op = f.clone();
        op[21] = 3;
        assert_eq!(parse(&op), None);
    }
}
