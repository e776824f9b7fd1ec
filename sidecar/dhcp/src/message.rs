//! Outgoing DHCP messages as complete Ethernet frames (dhcproto for BOOTP, etherparse for headers).

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::Encodable;
use etherparse::PacketBuilder;
use std::net::Ipv4Addr;

/// Options asked for in DISCOVER and REQUEST (option 55).
pub(crate) const PARAMETER_REQUEST_LIST: [u8; 11] = [1, 3, 6, 15, 26, 51, 54, 58, 59, 121, 249];
/// Older BOOTP relays and servers drop messages shorter than the 300-byte BOOTP minimum.
const BOOTP_MIN_LEN: usize = 300;
/// Option 57: the largest reply we accept (a full 1500-byte Ethernet payload).
const MAX_MESSAGE_SIZE: u16 = 1500;

/// Where a message goes at layer 2/3: the client builds the whole frame itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Destination {
    /// ff:ff:ff:ff:ff:ff / 255.255.255.255 from `src_ip` (0.0.0.0 while unconfigured).
    Broadcast { src_ip: Ipv4Addr },
    /// To the server's MAC and address, from our leased address (RENEW, RELEASE).
    Unicast {
        mac: [u8; 6],
        ip: Ipv4Addr,
        src_ip: Ipv4Addr,
    },
}

/// Everything that varies between the client's messages.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing<'a> {
    pub kind: MessageType,
    pub xid: u32,
    pub secs: u16,
    pub mac: [u8; 6],
    pub ciaddr: Ipv4Addr,
    /// Set while the client has no address and cannot receive unicast replies.
    pub broadcast_flag: bool,
    pub requested_ip: Option<Ipv4Addr>,
    pub server_id: Option<Ipv4Addr>,
    pub client_id: &'a [u8],
    /// Hostname, parameter request list and max size: DISCOVER/REQUEST only (not RELEASE).
    pub hostname: Option<&'a str>,
    pub destination: Destination,
}

impl Outgoing<'_> {
    fn dhcp_payload(&self) -> Result<Vec<u8>, dhcproto::error::EncodeError> {
        let mut msg = Message::new_with_id(
            self.xid,
            self.ciaddr,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &self.mac,
        );
        msg.set_opcode(Opcode::BootRequest).set_secs(self.secs);
        if self.broadcast_flag {
            msg.set_flags(Flags::default().set_broadcast());
        }
        let opts = msg.opts_mut();
        opts.insert(DhcpOption::MessageType(self.kind));
        opts.insert(DhcpOption::ClientIdentifier(self.client_id.to_vec()));
        if let Some(ip) = self.requested_ip {
            opts.insert(DhcpOption::RequestedIpAddress(ip));
        }
        if let Some(id) = self.server_id {
            opts.insert(DhcpOption::ServerIdentifier(id));
        }
        if self.kind != MessageType::Release {
            opts.insert(DhcpOption::ParameterRequestList(
                PARAMETER_REQUEST_LIST
                    .iter()
                    .map(|&c| OptionCode::from(c))
                    .collect(),
            ));
            opts.insert(DhcpOption::MaxMessageSize(MAX_MESSAGE_SIZE));
            if let Some(name) = self.hostname {
                opts.insert(DhcpOption::Hostname(name.to_string()));
            }
        }
        let mut payload = msg.to_vec()?;
        if payload.len() < BOOTP_MIN_LEN {
            payload.resize(BOOTP_MIN_LEN, 0);
        }
        Ok(payload)
    }

    /// The complete Ethernet frame. Fails only if an option cannot be encoded, which
    /// [`crate::Config`] validation rules out.
    pub(crate) fn to_frame(&self) -> Result<Vec<u8>, FrameError> {
        let payload = self
            .dhcp_payload()
            .map_err(|e| FrameError::Encode(e.to_string()))?;
        let (dst_mac, dst_ip, src_ip) = match self.destination {
            Destination::Broadcast { src_ip } => ([0xff; 6], Ipv4Addr::BROADCAST, src_ip),
            Destination::Unicast { mac, ip, src_ip } => (mac, ip, src_ip),
        };
        let builder = PacketBuilder::ethernet2(self.mac, dst_mac)
            .ipv4(src_ip.octets(), dst_ip.octets(), 64)
            .udp(68, 67);
        let mut frame = Vec::with_capacity(builder.size(payload.len()));
        builder
            .write(&mut frame, &payload)
            .map_err(|e| FrameError::Encode(e.to_string()))?;
        Ok(frame)
    }
}

/// A frame could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The payload does not fit in one Ethernet frame.
    #[error("payload of {len} bytes does not fit in one {max}-byte Ethernet frame")]
    PayloadTooLarge {
        /// The payload's length in bytes.
        len: usize,
        /// The largest payload that fits, in bytes.
        max: usize,
    },
    /// The DHCP or packet encoder failed (message from the encoder).
    #[error("encoding a DHCP message failed: {0}")]
    Encode(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::decode_request;

    fn discover() -> Outgoing<'static> {
        Outgoing {
            kind: MessageType::Discover,
            xid: 0x1234_5678,
            secs: 3,
            mac: [2, 0, 0, 0, 0, 1],
            ciaddr: Ipv4Addr::UNSPECIFIED,
            broadcast_flag: true,
            requested_ip: None,
            server_id: None,
            client_id: &[1, 2, 0, 0, 0, 0, 1],
            hostname: Some("pod-a"),
            destination: Destination::Broadcast {
                src_ip: Ipv4Addr::UNSPECIFIED,
            },
        }
    }

    #[test]
    fn discover_frame_layout() {
        let frame = discover().to_frame().unwrap();
        assert_eq!(frame.len(), 14 + 20 + 8 + BOOTP_MIN_LEN);
        let req = decode_request(&frame);
        assert_eq!(req.dst_mac, [0xff; 6]);
        assert_eq!(
            (req.src_ip, req.dst_ip),
            (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST)
        );
        assert_eq!(req.msg.xid(), 0x1234_5678);
        assert_eq!(req.msg.secs(), 3);
        assert!(req.msg.flags().broadcast());
        assert_eq!(req.msg.chaddr(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(req.msg.opts().msg_type(), Some(MessageType::Discover));
        let Some(DhcpOption::ParameterRequestList(prl)) =
            req.msg.opts().get(OptionCode::ParameterRequestList)
        else {
            panic!("no parameter request list");
        };
        let codes: Vec<u8> = prl.iter().map(|&c| u8::from(c)).collect();
        assert_eq!(codes, PARAMETER_REQUEST_LIST);
        assert_eq!(
            req.msg.opts().get(OptionCode::Hostname),
            Some(&DhcpOption::Hostname("pod-a".into()))
        );
        assert!(req.checksums_ok);
    }

    #[test]
    fn release_carries_only_identity() {
        let mut out = discover();
        out.kind = MessageType::Release;
        out.broadcast_flag = false;
        out.ciaddr = Ipv4Addr::new(10, 0, 0, 5);
        out.server_id = Some(Ipv4Addr::new(10, 0, 0, 1));
        out.destination = Destination::Unicast {
            mac: [2, 0, 0, 0, 0, 0xee],
            ip: Ipv4Addr::new(10, 0, 0, 1),
            src_ip: Ipv4Addr::new(10, 0, 0, 5),
        };
        let req = decode_request(&out.to_frame().unwrap());
        assert_eq!(req.dst_mac, [2, 0, 0, 0, 0, 0xee]);
        assert_eq!(req.msg.ciaddr(), Ipv4Addr::new(10, 0, 0, 5));
        assert!(!req.msg.flags().broadcast());
        assert!(req
            .msg
            .opts()
            .get(OptionCode::ParameterRequestList)
            .is_none());
        assert!(req.msg.opts().get(OptionCode::Hostname).is_none());
        assert!(req.checksums_ok);
    }
}
