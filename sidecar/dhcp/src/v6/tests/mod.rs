//! Virtual-time tests of the IPv6 client: a scripted router (hand-built advertisements) and a
//! DHCPv6 server whose replies dhcproto encodes, so the hand-written decoder is checked
//! against an independent encoder. No network, no clock.

mod dhcpv6;
mod router;
mod router_options;
mod untrusted_input;

use super::*;
use dhcproto::v6::{self as d6, DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use etherparse::{Icmpv6Type, LinkSlice, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use std::time::{Duration, Instant};

pub const MAC: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
pub const ROUTER_MAC: [u8; 6] = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];

pub fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

pub fn net(s: &str) -> Ipv6Net {
    s.parse().unwrap()
}

pub fn router_ll() -> Ipv6Addr {
    ip("fe80::aa:bbff:fecc:ddee")
}

/// Our SLAAC address in `fd00:6::/64`.
pub fn slaac_in_lab() -> Ipv6Addr {
    ip("fd00:6::11:22ff:fe33:4455")
}

/// A router advertisement under construction.
#[derive(Clone)]
pub struct Ra {
    pub managed: bool,
    pub other: bool,
    /// RFC 4191 bits (0b01 high, 0b11 low).
    pub preference_bits: u8,
    pub lifetime: u16,
    pub hop_limit: u8,
    pub src: Ipv6Addr,
    pub options: Vec<u8>,
}

impl Default for Ra {
    fn default() -> Self {
        Ra {
            managed: false,
            other: false,
            preference_bits: 0,
            lifetime: 1800,
            hop_limit: 255,
            src: router_ll(),
            options: Vec::new(),
        }
    }
}

impl Ra {
    /// Prefix information: `flags` 0x80 = L, 0x40 = A.
    pub fn prefix(mut self, prefix: &str, len: u8, flags: u8, valid: u32, preferred: u32) -> Self {
        self.options.extend_from_slice(&[3, 4, len, flags]);
        self.options.extend_from_slice(&valid.to_be_bytes());
        self.options.extend_from_slice(&preferred.to_be_bytes());
        self.options.extend_from_slice(&[0; 4]);
        self.options.extend_from_slice(&ip(prefix).octets());
        self
    }

    pub fn lab_prefix(self) -> Self {
        self.prefix("fd00:6::", 64, 0xc0, 3600, 1800)
    }

    pub fn rdnss(mut self, lifetime: u32, servers: &[&str]) -> Self {
        self.options
            .extend_from_slice(&[25, (1 + 2 * servers.len()) as u8, 0, 0]);
        self.options.extend_from_slice(&lifetime.to_be_bytes());
        for s in servers {
            self.options.extend_from_slice(&ip(s).octets());
        }
        self
    }

    pub fn dnssl(mut self, lifetime: u32, wire: &[u8]) -> Self {
        let mut data = wire.to_vec();
        data.resize(wire.len().div_ceil(8) * 8, 0);
        self.options
            .extend_from_slice(&[31, (1 + data.len() / 8) as u8, 0, 0]);
        self.options.extend_from_slice(&lifetime.to_be_bytes());
        self.options.extend_from_slice(&data);
        self
    }

    /// Route Information (RFC 4191): `prf` bits as for the router (0b01 high, 0b11 low);
    /// `units` 8-byte units in all (1–3), the prefix cut to fit.
    pub fn route(mut self, prefix: &str, len: u8, prf: u8, lifetime: u32, units: u8) -> Self {
        self.options.extend_from_slice(&[24, units, len, prf << 3]);
        self.options.extend_from_slice(&lifetime.to_be_bytes());
        let bytes = usize::from(units.saturating_sub(1)) * 8;
        self.options
            .extend_from_slice(&ip(prefix).octets()[..bytes]);
        self
    }

    pub fn mtu(mut self, mtu: u32) -> Self {
        self.options.extend_from_slice(&[5, 1, 0, 0]);
        self.options.extend_from_slice(&mtu.to_be_bytes());
        self
    }

    pub fn frame(&self) -> Vec<u8> {
        let flags = (u8::from(self.managed) << 7)
            | (u8::from(self.other) << 6)
            | (self.preference_bits << 3);
        let [l0, l1] = self.lifetime.to_be_bytes();
        let mut payload = vec![0; 8];
        payload.extend_from_slice(&[1, 1]);
        payload.extend_from_slice(&ROUTER_MAC);
        payload.extend_from_slice(&self.options);
        let builder = PacketBuilder::ethernet2(ROUTER_MAC, [0x33, 0x33, 0, 0, 0, 1])
            .ipv6(self.src.octets(), ip("ff02::1").octets(), self.hop_limit)
            .icmpv6_raw(134, 0, [64, flags, l0, l1]);
        let mut frame = Vec::new();
        builder.write(&mut frame, &payload).unwrap();
        frame
    }
}

/// A client DHCPv6 frame taken apart, with an independent UDP checksum check.
pub struct Sent6 {
    pub msg: Message,
    pub dst_mac: [u8; 6],
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub checksum_ok: bool,
}

pub fn decode_sent(frame: &[u8]) -> Option<Sent6> {
    let p = SlicedPacket::from_ethernet(frame).ok()?;
    let (Some(LinkSlice::Ethernet2(eth)), Some(NetSlice::Ipv6(ip6))) = (&p.link, &p.net) else {
        return None;
    };
    let Some(TransportSlice::Udp(udp)) = &p.transport else {
        return None;
    };
    assert_eq!((udp.source_port(), udp.destination_port()), (546, 547));
    let header = ip6.header().to_header();
    Some(Sent6 {
        msg: Message::decode(&mut Decoder::new(udp.payload())).ok()?,
        dst_mac: eth.destination(),
        src: ip6.header().source_addr(),
        dst: ip6.header().destination_addr(),
        checksum_ok: udp
            .to_header()
            .calc_checksum_ipv6(&header, udp.payload())
            .ok()
            == Some(udp.checksum()),
    })
}

pub fn is_router_solicitation(frame: &[u8]) -> bool {
    let Ok(p) = SlicedPacket::from_ethernet(frame) else {
        return false;
    };
    matches!(&p.transport, Some(TransportSlice::Icmpv6(i)) if i.icmp_type() == Icmpv6Type::RouterSolicitation)
}

pub const SERVER_DUID: [u8; 10] = [0, 3, 0, 1, 2, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];

/// The reply to `request` as a frame from the server's link-local address to ours.
pub fn server_frame(msg: &Message) -> Vec<u8> {
    let payload = msg.to_vec().unwrap();
    let builder = PacketBuilder::ethernet2(ROUTER_MAC, MAC)
        .ipv6(router_ll().octets(), link_local(MAC).octets(), 64)
        .udp(547, 546);
    let mut frame = Vec::new();
    builder.write(&mut frame, &payload).unwrap();
    frame
}

/// A scripted DHCPv6 server: advertises/grants `address`, answers Information-requests.
pub struct FakeServer6 {
    pub address: Ipv6Addr,
    pub t1: u32,
    pub t2: u32,
    pub preferred: u32,
    pub valid: u32,
    pub preference: Option<u8>,
    pub dns: Vec<Ipv6Addr>,
    pub refresh: Option<u32>,
    /// IA_NA status instead of an address (e.g. NoBinding = 3).
    pub ia_status: Option<u16>,
}

impl Default for FakeServer6 {
    fn default() -> Self {
        FakeServer6 {
            address: ip("fd00:6::100"),
            t1: 100,
            t2: 160,
            preferred: 200,
            valid: 300,
            preference: None,
            dns: vec![ip("fd00:6::53")],
            refresh: None,
            ia_status: None,
        }
    }
}

impl FakeServer6 {
    pub fn answer(&self, frame: &[u8]) -> Option<Vec<u8>> {
        let req = decode_sent(frame)?.msg;
        let kind = match req.msg_type() {
            MessageType::Solicit => MessageType::Advertise,
            MessageType::Request
            | MessageType::Renew
            | MessageType::Rebind
            | MessageType::InformationRequest => MessageType::Reply,
            _ => return None,
        };
        let mut msg = Message::new_with_id(kind, req.xid());
        let opts = msg.opts_mut();
        opts.insert(req.opts().get(OptionCode::ClientId)?.clone());
        opts.insert(DhcpOption::ServerId(SERVER_DUID.to_vec()));
        if let Some(p) = self.preference {
            opts.insert(DhcpOption::Preference(p));
        }
        if !self.dns.is_empty() {
            opts.insert(DhcpOption::DomainNameServers(self.dns.clone()));
        }
        if let Some(DhcpOption::IANA(ia)) = req.opts().get(OptionCode::IANA) {
            let mut ia_opts = d6::DhcpOptions::new();
            match self.ia_status {
                Some(code) => ia_opts.insert(DhcpOption::StatusCode(d6::StatusCode {
                    status: code.into(),
                    msg: "no".into(),
                })),
                None => ia_opts.insert(DhcpOption::IAAddr(d6::IAAddr {
                    addr: self.address,
                    preferred_life: self.preferred,
                    valid_life: self.valid,
                    opts: Default::default(),
                })),
            }
            opts.insert(DhcpOption::IANA(d6::IANA {
                id: ia.id,
                t1: self.t1,
                t2: self.t2,
                opts: ia_opts,
            }));
        } else if let Some(secs) = self.refresh {
            opts.insert(DhcpOption::InformationRefreshTime(secs));
        }
        Some(server_frame(&msg))
    }
}

pub struct Harness {
    pub client: Ipv6Client,
    pub start: Instant,
    pub now: Instant,
    pub server: FakeServer6,
}

impl Harness {
    pub fn new() -> Self {
        let start = Instant::now();
        Harness {
            client: Ipv6Client::new(Ipv6Config::new(MAC, 7), start),
            start,
            now: start,
            server: FakeServer6::default(),
        }
    }

    pub fn secs(&self) -> f64 {
        (self.now - self.start).as_secs_f64()
    }

    pub fn advance(&mut self, secs: f64) {
        self.now += Duration::from_secs_f64(secs);
    }

    pub fn transmits(&mut self) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| self.client.poll_transmit(self.now)).collect()
    }

    pub fn events(&mut self) -> Vec<Ipv6Event> {
        std::iter::from_fn(|| self.client.poll_event()).collect()
    }

    /// The one Updated event expected now.
    pub fn updated(&mut self) -> Ipv6Settings {
        match self.events().as_slice() {
            [Ipv6Event::Updated(s)] => s.clone(),
            other => panic!("expected one Updated, got {other:?}"),
        }
    }

    pub fn feed(&mut self, frame: &[u8]) -> bool {
        assert!(Ipv6Client::wants_frame(frame));
        self.client.handle_frame(self.now, frame)
    }

    /// Jumps to the next deadline (at most `limit` s from start); returns what was sent.
    pub fn next_deadline(&mut self, limit: f64) -> Option<Vec<Vec<u8>>> {
        let t = self.client.poll_timeout()?;
        if (t - self.start).as_secs_f64() > limit {
            return None;
        }
        self.now = self.now.max(t);
        self.client.handle_timeout(self.now);
        Some(self.transmits())
    }

    /// Delivers DHCPv6 frames to the server and its answers back, until quiet. Returns the
    /// message types the client sent.
    pub fn converse(&mut self) -> Vec<MessageType> {
        let mut sent = Vec::new();
        for _ in 0..10 {
            let frames = self.transmits();
            if frames.is_empty() {
                break;
            }
            for frame in frames {
                let Some(s) = decode_sent(&frame) else {
                    continue;
                };
                sent.push(s.msg.msg_type());
                if let Some(answer) = self.server.answer(&frame) {
                    assert!(self.client.handle_frame(self.now, &answer));
                }
            }
        }
        sent
    }

    /// Runs deadlines until the client sent `kind` or `limit` s passed; answers nothing.
    pub fn until_sent(&mut self, kind: MessageType, limit: f64) -> Vec<u8> {
        loop {
            let frames = self
                .next_deadline(limit)
                .expect("deadline before the limit");
            for f in frames {
                if decode_sent(&f).is_some_and(|s| s.msg.msg_type() == kind) {
                    return f;
                }
            }
        }
    }
}
