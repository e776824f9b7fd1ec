//! Frames the client must ignore or survive: foreign transactions, invalid advertisements,
//! truncations and byte mutations. Nothing here may panic.

use super::*;
use crate::retransmit::SeededRng;

#[test]
fn invalid_advertisements_are_dropped() {
    let mut h = Harness::new();
    let not_255 = Ra {
        hop_limit: 64,
        ..Ra::default()
    };
    let global_source = Ra {
        src: ip("fd00::1"),
        ..Ra::default()
    };
    for ra in [not_255, global_source] {
        assert!(!h.feed(&ra.lab_prefix().frame()));
    }
    // Bad checksum.
    let mut frame = Ra::default().lab_prefix().frame();
    let last = frame.len() - 1;
    frame[last] ^= 1;
    assert!(!h.feed(&frame));
    // A zero-length option invalidates the whole advertisement (RFC 4861 §6.1.2).
    let mut ra = Ra::default().lab_prefix();
    ra.options.extend_from_slice(&[99, 0, 0, 0, 0, 0, 0, 0]);
    assert!(!h.feed(&ra.frame()));
    assert!(h.events().is_empty());
    assert!(h.client.settings().is_empty());
}

/// A client that saw M and sent its first Solicit.
fn soliciting() -> (Harness, Vec<u8>) {
    let mut h = Harness::new();
    h.transmits();
    let managed = Ra {
        managed: true,
        ..Ra::default()
    };
    h.feed(&managed.frame());
    h.events();
    let solicit = h.transmits().remove(0);
    (h, solicit)
}

#[test]
fn replies_for_other_transactions_or_clients_are_ignored() {
    let (mut h, solicit) = soliciting();
    let req = decode_sent(&solicit).unwrap().msg;
    let advertise = |xid: [u8; 3], client: Option<Vec<u8>>, server: bool| {
        let mut m = Message::new_with_id(MessageType::Advertise, xid);
        if let Some(c) = client {
            m.opts_mut().insert(DhcpOption::ClientId(c));
        }
        if server {
            m.opts_mut()
                .insert(DhcpOption::ServerId(SERVER_DUID.to_vec()));
        }
        server_frame(&m)
    };
    let mut other_xid = req.xid();
    other_xid[2] ^= 1;
    assert!(!h.feed(&advertise(other_xid, Some(duid_ll(MAC)), true)));
    assert!(!h.feed(&advertise(
        req.xid(),
        Some(duid_ll([2, 9, 9, 9, 9, 9])),
        true
    )));
    assert!(!h.feed(&advertise(req.xid(), None, true)));
    // Ours but without a server id or any address: consumed, nothing happens.
    assert!(h.feed(&advertise(req.xid(), Some(duid_ll(MAC)), false)));
    assert!(h.feed(&advertise(req.xid(), Some(duid_ll(MAC)), true)));
    h.next_deadline(1.5);
    assert_eq!(h.client.dhcp_state(), Dhcp6State::Soliciting);
    // Our own Solicit echoed back by the hub is not a reply.
    assert!(!Ipv6Client::wants_frame(&solicit));
    assert!(!h.client.handle_frame(h.now, &solicit));
}

#[test]
fn malformed_options_are_bounded() {
    let (mut h, solicit) = soliciting();
    let good = h.server.answer(&solicit).unwrap();
    // Options with lengths that overrun, short status codes, odd DNS lists: dhcproto's own
    // decoder would panic on some of these; ours must just skip them.
    let payload_at = 14 + 40 + 8;
    let tails: [&[u8]; 5] = [
        &[0, 13, 0, 1, 0],             // status code shorter than its code
        &[0, 23, 0, 17, 0, 0, 0, 0],   // DNS length overruns
        &[0, 3, 0, 4, 0, 0, 0, 1],     // IA_NA shorter than its fixed part
        &[0, 7, 0, 0],                 // preference without a value
        &[0, 24, 0, 3, 0xc0, 0x0c, 0], // compressed name
    ];
    for tail in tails {
        let mut frame = good.clone();
        frame.extend_from_slice(tail);
        fix_lengths(&mut frame, payload_at);
        h.client.handle_frame(h.now, &frame);
    }
}

/// Rewrites the IPv6 payload length and UDP length/checksum after the frame changed.
fn fix_lengths(frame: &mut [u8], payload_at: usize) {
    let udp_len = (frame.len() - 14 - 40) as u16;
    frame[18..20].copy_from_slice(&udp_len.to_be_bytes());
    let header = etherparse::UdpHeader {
        source_port: u16::from_be_bytes([frame[54], frame[55]]),
        destination_port: u16::from_be_bytes([frame[56], frame[57]]),
        length: udp_len,
        checksum: 0,
    };
    let src: [u8; 16] = frame[22..38].try_into().unwrap();
    let dst: [u8; 16] = frame[38..54].try_into().unwrap();
    let sum = header
        .calc_checksum_ipv6_raw(src, dst, &frame[payload_at..])
        .unwrap();
    frame[58..60].copy_from_slice(&udp_len.to_be_bytes());
    frame[60..62].copy_from_slice(&sum.to_be_bytes());
}

#[test]
fn truncations_and_mutations_never_panic() {
    let mut h = Harness::new();
    h.transmits();
    let ra = Ra {
        managed: true,
        other: true,
        ..Ra::default()
    }
    .lab_prefix()
    .rdnss(600, &["fd00:6::53"])
    .dnssl(600, b"\x03lab\x00")
    .mtu(1400)
    .frame();
    h.feed(&ra);
    let solicit = h.transmits().remove(0);
    let reply = h.server.answer(&solicit).unwrap();
    let mut rng = SeededRng::new(99);
    for original in [&ra, &reply] {
        for len in 0..original.len() {
            h.client.handle_frame(h.now, &original[..len]);
        }
        for _ in 0..3000 {
            let mut frame = original.clone();
            for _ in 0..(1 + rng.next_u32() % 4) {
                let at = rng.next_u32() as usize % frame.len();
                frame[at] = rng.next_u32() as u8;
            }
            // Mutations behind the checksum are rejected; also try them with it repaired.
            h.client.handle_frame(h.now, &frame);
            if frame.len() > 62 && frame[20] == 17 {
                fix_lengths(&mut frame, 62);
                h.client.handle_frame(h.now, &frame);
            }
            h.client.handle_timeout(h.now);
        }
    }
    while h.client.poll_event().is_some() {}
    assert!(h.client.poll_timeout().is_some());
}
