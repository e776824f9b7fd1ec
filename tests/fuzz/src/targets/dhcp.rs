//! dhcp-client fed Ethernet frames from the tunnel, with time passing and restarts in between,
//! plus the companion ARP and ICMP frame parsers that see the same frames.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use dhcp_client::{arp, icmp, Config, DhcpClient, Event};

/// The client's MAC (chaddr); frames fed with op 0 get it and the current xid patched in.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
/// Where the BOOTP message starts in the client's own frames (Ethernet + IPv4 without options
/// + UDP); its xid is 4 bytes further.
const OWN_BOOTP: usize = 14 + 20 + 8;

/// Input: a flags byte (bit 0: INIT-REBOOT for 192.168.30.10, bit 1: a hostname, bit 2: an
/// explicit client id), then operations until the input ends (the op byte is taken mod 8: 4
/// and 5 are 0 and 1, 6 is 2):
/// - `0, len_hi, len_lo, frame…`: a frame with the current xid and our chaddr patched in (so
///   the fuzzer reaches every state without guessing the xid);
/// - `1, len_hi, len_lo, frame…`: a frame as is;
/// - `2, secs_hi, secs_lo`: time passes, timers run;
/// - `3`: restart (tunnel reconnected); `7`: release.
///
/// After each operation everything the client has to say is drained, as the driver does.
pub fn dhcp_client(data: &[u8]) {
    let Some((&flags, mut ops)) = data.split_first() else {
        return;
    };
    let mut config = Config::new(CLIENT_MAC, 0x5eed);
    if flags & 1 != 0 {
        config.requested_ip = Some(Ipv4Addr::new(192, 168, 30, 10));
    }
    if flags & 2 != 0 {
        config.hostname = Some("pod-1".into());
    }
    if flags & 4 != 0 {
        config.client_id = Some(b"\x00fuzz-client".to_vec());
    }
    let mut now = Instant::now();
    let mut client = DhcpClient::new(config, now).expect("the harness's config is valid");
    let mut xid = drain(&mut client, now, [0; 4]);
    while let Some((&op, rest)) = ops.split_first() {
        ops = rest;
        match op & 7 {
            0 | 1 | 4 | 5 => {
                let len = take_u16(&mut ops).map_or(0, usize::from).min(ops.len());
                let (frame, rest) = ops.split_at(len);
                ops = rest;
                let mut frame = frame.to_vec();
                if op & 1 == 0 {
                    patch_transaction(&mut frame, xid);
                }
                feed_frame(&mut client, now, &frame);
            }
            2 | 6 => {
                let secs = take_u16(&mut ops).unwrap_or(0);
                now += Duration::from_secs(secs.into());
                client.handle_timeout(now);
            }
            3 => client.restart(now),
            _ => {
                let _ = client.release();
            }
        }
        xid = drain(&mut client, now, xid);
    }
}

fn take_u16(ops: &mut &[u8]) -> Option<u16> {
    let (bytes, rest) = ops.split_first_chunk::<2>()?;
    *ops = rest;
    Some(u16::from_be_bytes(*bytes))
}

/// Writes `xid` and our MAC where a BOOTP reply in this frame carries them.
fn patch_transaction(frame: &mut [u8], xid: [u8; 4]) {
    let Some(&version_ihl) = frame.get(14) else {
        return;
    };
    let bootp = 14 + usize::from(version_ihl & 0x0f) * 4 + 8;
    if let Some(field) = frame.get_mut(bootp + 4..bootp + 8) {
        field.copy_from_slice(&xid);
    }
    if let Some(field) = frame.get_mut(bootp + 28..bootp + 34) {
        field.copy_from_slice(&CLIENT_MAC);
    }
}

fn feed_frame(client: &mut DhcpClient, now: Instant, frame: &[u8]) {
    let is_reply = DhcpClient::is_dhcp_reply(frame);
    let handled = client.handle_frame(now, frame);
    assert!(
        is_reply || !handled,
        "handled a frame the classifier rejects"
    );
    let _ = (arp::parse(frame), arp::parse_reply(frame));
    if let Some((_, echo, payload)) = icmp::parse_echo(frame) {
        let _ = (payload.len(), icmp::is_reply_to(frame, &echo.reversed()));
    }
}

/// Drains transmits and events; returns the xid of the last frame sent (or `xid`).
fn drain(client: &mut DhcpClient, now: Instant, mut xid: [u8; 4]) -> [u8; 4] {
    while let Some(frame) = client.poll_transmit(now) {
        if let Some(sent) = frame.get(OWN_BOOTP + 4..OWN_BOOTP + 8) {
            xid.copy_from_slice(sent);
        }
    }
    while let Some(event) = client.poll_event() {
        let lease = match &event {
            Event::Bound(l) | Event::Renewed(l) | Event::Changed { new: l, .. } => Some(l),
            Event::Lost { lease, .. } => Some(lease),
            _ => None,
        };
        if let Some(l) = lease {
            let _ = (l.interface_address(), l.default_gateway(), l.is_infinite());
            let _ = (l.renew_deadline(), l.rebind_deadline(), l.expires_at());
        }
    }
    if let Some(deadline) = client.poll_timeout() {
        assert!(
            client.lease().is_some() || deadline <= now + Duration::from_secs(3600),
            "a retransmit scheduled more than an hour ahead"
        );
    }
    let _ = (client.state(), client.lease());
    xid
}
