//! Test-only fake DHCP server and frame helpers, built on dhcproto + etherparse so that the
//! client's hand-written reply decoder is checked against an independent encoder.

use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Encodable};
use etherparse::{LinkSlice, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use std::net::Ipv4Addr;

pub const CLIENT_MAC: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
pub const SERVER_MAC: [u8; 6] = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 30, 1);
pub const OFFERED: Ipv4Addr = Ipv4Addr::new(192, 168, 30, 10);

/// A server reply under construction; defaults describe a /24 with router, two DNS servers and
/// a 200 s lease from `SERVER_IP`.
pub struct ReplyBuilder {
    pub msg: Message,
    pub src_mac: [u8; 6],
    pub src_ip: Ipv4Addr,
}

impl ReplyBuilder {
    pub fn new(kind: MessageType, xid: u32) -> Self {
        let unspecified = Ipv4Addr::UNSPECIFIED;
        let yiaddr = if kind == MessageType::Nak {
            unspecified
        } else {
            OFFERED
        };
        let mut msg = Message::new_with_id(
            xid,
            unspecified,
            yiaddr,
            unspecified,
            unspecified,
            &CLIENT_MAC,
        );
        msg.set_opcode(Opcode::BootReply);
        let opts = msg.opts_mut();
        opts.insert(DhcpOption::MessageType(kind));
        opts.insert(DhcpOption::ServerIdentifier(SERVER_IP));
        if kind != MessageType::Nak {
            opts.insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
            opts.insert(DhcpOption::Router(vec![SERVER_IP]));
            opts.insert(DhcpOption::DomainNameServer(vec![
                SERVER_IP,
                Ipv4Addr::new(9, 9, 9, 9),
            ]));
            opts.insert(DhcpOption::AddressLeaseTime(200));
        }
        Self {
            msg,
            src_mac: SERVER_MAC,
            src_ip: SERVER_IP,
        }
    }

    pub fn opt(&mut self, opt: DhcpOption) -> &mut Self {
        self.msg.opts_mut().insert(opt);
        self
    }

    pub fn remove(&mut self, code: OptionCode) -> &mut Self {
        self.msg.opts_mut().remove(code);
        self
    }
}

/// The reply as a broadcast Ethernet frame, UDP 67→68.
pub fn reply_frame(b: &ReplyBuilder) -> Vec<u8> {
    let payload = b.msg.to_vec().expect("test reply encodes");
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(b.src_mac, [0xff; 6])
        .ipv4(b.src_ip.octets(), [255; 4], 64)
        .udp(67, 68)
        .write(&mut frame, &payload)
        .expect("test frame builds");
    frame
}

/// A client frame taken apart, with an independent checksum check.
pub struct DecodedRequest {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub msg: Message,
    pub checksums_ok: bool,
}

pub fn decode_request(frame: &[u8]) -> DecodedRequest {
    let p = SlicedPacket::from_ethernet(frame).expect("client frame parses");
    let Some(LinkSlice::Ethernet2(eth)) = p.link else {
        panic!("not ethernet")
    };
    let Some(NetSlice::Ipv4(ip)) = p.net else {
        panic!("not ipv4")
    };
    let Some(TransportSlice::Udp(udp)) = p.transport else {
        panic!("not udp")
    };
    assert_eq!((udp.source_port(), udp.destination_port()), (68, 67));
    let ip_header = ip.header().to_header();
    let checksums_ok = ip_header.calc_header_checksum() == ip.header().header_checksum()
        && udp
            .to_header()
            .calc_checksum_ipv4(&ip_header, udp.payload())
            .ok()
            == Some(udp.checksum());
    DecodedRequest {
        dst_mac: eth.destination(),
        src_mac: eth.source(),
        src_ip: ip.header().source_addr(),
        dst_ip: ip.header().destination_addr(),
        msg: Message::from_bytes(udp.payload()).expect("client DHCP message decodes"),
        checksums_ok,
    }
}

/// A scripted server: OFFERs every DISCOVER, ACKs (or NAKs) every REQUEST.
pub struct FakeServer {
    pub address: Ipv4Addr,
    pub lease_secs: u32,
    pub nak_requests: bool,
    /// Added to OFFER and ACK (replacing defaults with the same code).
    pub extra: Vec<DhcpOption>,
}

impl Default for FakeServer {
    fn default() -> Self {
        Self {
            address: OFFERED,
            lease_secs: 200,
            nak_requests: false,
            extra: Vec::new(),
        }
    }
}

impl FakeServer {
    pub fn answer(&self, request: &[u8]) -> Option<Vec<u8>> {
        let req = decode_request(request).msg;
        let kind = match req.opts().msg_type()? {
            MessageType::Discover => MessageType::Offer,
            MessageType::Request if self.nak_requests => MessageType::Nak,
            MessageType::Request => MessageType::Ack,
            _ => return None,
        };
        let mut b = ReplyBuilder::new(kind, req.xid());
        if kind != MessageType::Nak {
            b.msg.set_yiaddr(self.address);
            b.opt(DhcpOption::AddressLeaseTime(self.lease_secs));
            for opt in &self.extra {
                b.opt(opt.clone());
            }
        }
        Some(reply_frame(&b))
    }
}
