//! Test helper: a real [`Lease`] value, obtained by feeding a hand-built DHCPACK to a
//! [`DhcpClient`] (the type is `#[non_exhaustive]`, so it cannot be built field by field).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use dhcp_client::{Config, DhcpClient, Event, Lease};

const MAC: [u8; 6] = [0x5e, 1, 2, 3, 4, 5];
const SERVER_MAC: [u8; 6] = [0x5e, 9, 9, 9, 9, 9];
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 30, 1);
const ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 168, 30, 10);

/// A DHCPACK frame for transaction `xid`.
pub fn ack_frame(xid: u32, lease: Duration) -> Vec<u8> {
    let mut bootp = vec![0u8; 236];
    bootp[0] = 2;
    bootp[1] = 1;
    bootp[2] = 6;
    bootp[4..8].copy_from_slice(&xid.to_be_bytes());
    bootp[16..20].copy_from_slice(&ADDRESS.octets());
    bootp[28..34].copy_from_slice(&MAC);
    bootp.extend_from_slice(&[99, 130, 83, 99]);
    let secs = u32::try_from(lease.as_secs())
        .unwrap_or(u32::MAX)
        .to_be_bytes();
    bootp.extend_from_slice(&[53, 1, 5]);
    bootp.extend_from_slice(&[54, 4]);
    bootp.extend_from_slice(&SERVER.octets());
    bootp.extend_from_slice(&[51, 4]);
    bootp.extend_from_slice(&secs);
    bootp.extend_from_slice(&[1, 4, 255, 255, 255, 0]);
    bootp.extend_from_slice(&[3, 4]);
    bootp.extend_from_slice(&SERVER.octets());
    bootp.push(255);
    let mut frame = Vec::new();
    etherparse::PacketBuilder::ethernet2(SERVER_MAC, MAC)
        .ipv4(SERVER.octets(), ADDRESS.octets(), 64)
        .udp(67, 68)
        .write(&mut frame, &bootp)
        .expect("build ACK");
    frame
}

/// The transaction id of a client frame (Ethernet + 20-byte IPv4 + UDP + BOOTP).
pub fn xid_of(frame: &[u8]) -> u32 {
    let at = 14 + 20 + 8 + 4;
    u32::from_be_bytes(frame[at..at + 4].try_into().expect("xid"))
}

/// A bound lease for 192.168.30.10/24 via 192.168.30.1.
pub fn bound_lease(now: Instant, lease: Duration) -> Lease {
    let mut config = Config::new(MAC, 1);
    config.requested_ip = Some(ADDRESS);
    let mut client = DhcpClient::new(config, now).expect("config");
    let request = client.poll_transmit(now).expect("INIT-REBOOT REQUEST");
    assert!(client.handle_frame(now, &ack_frame(xid_of(&request), lease)));
    match client.poll_event() {
        Some(Event::Bound(lease)) => lease,
        other => panic!("expected Bound, got {other:?}"),
    }
}

/// IPv6 settings as a router advertising `fd00:6::/64` (A and L flags, RDNSS) teaches them.
pub fn slaac_settings() -> dhcp_client::v6::Ipv6Settings {
    use dhcp_client::v6::{Ipv6Address, Ipv6Router, Ipv6Settings};
    let mut s = Ipv6Settings::default();
    s.addresses = vec![Ipv6Address {
        address: "fd00:6::11:22ff:fe33:4455".parse().unwrap(),
        prefix_len: 64,
        from_slaac: true,
        deprecated: false,
    }];
    s.on_link = vec!["fd00:6::/64".parse().unwrap()];
    s.router = Some(Ipv6Router {
        address: "fe80::1".parse().unwrap(),
        mac: [2, 0, 0, 0, 0, 1],
    });
    s.dns_servers = vec!["fd00:6::53".parse().unwrap()];
    s
}
