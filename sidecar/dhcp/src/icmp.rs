//! ICMP echo (ping) over Ethernet + IPv4, for reachability probes through the tunnel and tests.

use crate::message::FrameError;
use etherparse::{Icmpv4Type, LinkSlice, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use std::net::Ipv4Addr;

/// Largest echo payload in one 1500-byte IP packet (minus IPv4 and ICMP headers).
pub const MAX_ECHO_PAYLOAD: usize = 1500 - 20 - 8;

/// Addressing and identity of one echo request or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Echo {
    /// Ethernet source.
    pub src_mac: [u8; 6],
    /// Ethernet destination (the gateway's MAC for an off-link target).
    pub dst_mac: [u8; 6],
    /// IPv4 source.
    pub src_ip: Ipv4Addr,
    /// IPv4 destination.
    pub dst_ip: Ipv4Addr,
    /// ICMP identifier: matches replies to this prober.
    pub ident: u16,
    /// ICMP sequence number: matches a reply to its request.
    pub seq: u16,
}

/// Which of the two echo messages a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoKind {
    /// ICMP type 8.
    Request,
    /// ICMP type 0.
    Reply,
}

impl Echo {
    /// An echo request frame carrying `payload` (at most [`MAX_ECHO_PAYLOAD`] bytes).
    pub fn request_frame(&self, payload: &[u8]) -> Result<Vec<u8>, FrameError> {
        self.frame(EchoKind::Request, payload)
    }

    /// The echo reply frame to this echo's addressing, carrying `payload` (at most
    /// [`MAX_ECHO_PAYLOAD`] bytes).
    pub fn reply_frame(&self, payload: &[u8]) -> Result<Vec<u8>, FrameError> {
        self.frame(EchoKind::Reply, payload)
    }

    /// The same exchange seen from the other end (what the answer to `self` carries).
    pub fn reversed(&self) -> Echo {
        Echo {
            src_mac: self.dst_mac,
            dst_mac: self.src_mac,
            src_ip: self.dst_ip,
            dst_ip: self.src_ip,
            ..*self
        }
    }

    fn frame(&self, kind: EchoKind, payload: &[u8]) -> Result<Vec<u8>, FrameError> {
        if payload.len() > MAX_ECHO_PAYLOAD {
            return Err(FrameError::PayloadTooLarge {
                len: payload.len(),
                max: MAX_ECHO_PAYLOAD,
            });
        }
        let ip = PacketBuilder::ethernet2(self.src_mac, self.dst_mac).ipv4(
            self.src_ip.octets(),
            self.dst_ip.octets(),
            64,
        );
        let builder = match kind {
            EchoKind::Request => ip.icmpv4_echo_request(self.ident, self.seq),
            EchoKind::Reply => ip.icmpv4_echo_reply(self.ident, self.seq),
        };
        let mut frame = Vec::with_capacity(builder.size(payload.len()));
        builder
            .write(&mut frame, payload)
            .map_err(|e| FrameError::Encode(e.to_string()))?;
        Ok(frame)
    }
}

/// Takes apart an Ethernet + IPv4 + ICMP echo frame; returns the echo and its payload.
pub fn parse_echo(frame: &[u8]) -> Option<(EchoKind, Echo, &[u8])> {
    // Cheap rejection before slicing: IPv4 carrying ICMP (protocol 1).
    if frame.get(12..14)? != [0x08, 0x00] || *frame.get(23)? != 1 {
        return None;
    }
    let p = SlicedPacket::from_ethernet(frame).ok()?;
    let (Some(LinkSlice::Ethernet2(eth)), Some(NetSlice::Ipv4(ip))) = (&p.link, &p.net) else {
        return None;
    };
    if ip.is_payload_fragmented() {
        return None;
    }
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        return None;
    };
    let (kind, header) = match icmp.icmp_type() {
        Icmpv4Type::EchoRequest(h) => (EchoKind::Request, h),
        Icmpv4Type::EchoReply(h) => (EchoKind::Reply, h),
        _ => return None,
    };
    let echo = Echo {
        src_mac: eth.source(),
        dst_mac: eth.destination(),
        src_ip: ip.header().source_addr(),
        dst_ip: ip.header().destination_addr(),
        ident: header.id,
        seq: header.seq,
    };
    Some((kind, echo, icmp.payload()))
}

/// True if `frame` is the echo reply to `request` (same id and sequence, from the pinged
/// address to ours). MACs are not compared: the reply may come back via another router.
pub fn is_reply_to(frame: &[u8], request: &Echo) -> bool {
    matches!(
        parse_echo(frame),
        Some((EchoKind::Reply, e, _))
            if e.ident == request.ident
                && e.seq == request.seq
                && e.src_ip == request.dst_ip
                && e.dst_ip == request.src_ip
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping() -> Echo {
        Echo {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 0xfe],
            src_ip: Ipv4Addr::new(10, 0, 0, 5),
            dst_ip: Ipv4Addr::new(10, 0, 0, 1),
            ident: 0x5e5e,
            seq: 3,
        }
    }

    #[test]
    fn request_reply_round_trip() {
        let req = ping();
        let frame = req.request_frame(b"abc").unwrap();
        assert_eq!(frame.len(), 14 + 20 + 8 + 3);
        assert_eq!(
            parse_echo(&frame),
            Some((EchoKind::Request, req, &b"abc"[..]))
        );
        assert!(!is_reply_to(&frame, &req), "our own request is not a reply");

        let reply = req.reversed().reply_frame(b"abc").unwrap();
        assert!(is_reply_to(&reply, &req));
        let other_seq = Echo { seq: 4, ..req }.reversed().reply_frame(b"").unwrap();
        assert!(!is_reply_to(&other_seq, &req));
        let other_host = Echo {
            dst_ip: Ipv4Addr::new(10, 0, 0, 9),
            ..req
        };
        assert!(!is_reply_to(
            &other_host.reversed().reply_frame(b"").unwrap(),
            &req
        ));
    }

    #[test]
    fn rejects_oversized_payload_and_truncated_frames() {
        let big = vec![0; MAX_ECHO_PAYLOAD + 1];
        assert!(matches!(
            ping().request_frame(&big),
            Err(FrameError::PayloadTooLarge { .. })
        ));
        assert!(ping().request_frame(&big[1..]).is_ok());
        let frame = ping().reversed().reply_frame(b"xyz").unwrap();
        for len in 0..frame.len() {
            assert!(!is_reply_to(&frame[..len], &ping()));
        }
    }
}
