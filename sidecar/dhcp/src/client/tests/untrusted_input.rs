//! Frames the client must ignore or survive: other transactions, other traffic, mutations.

use super::*;

#[test]
fn replies_for_other_transactions_or_clients_are_ignored() {
    let mut h = Harness::new(config());
    h.transmits();
    let xid = h.current_xid();
    let mut wrong_xid = ReplyBuilder::new(MessageType::Offer, xid ^ 1);
    assert!(!h.client.handle_frame(h.now, &reply_frame(&wrong_xid)));
    wrong_xid.msg.set_xid(xid).set_chaddr(&[2, 9, 9, 9, 9, 9]);
    assert!(!h.client.handle_frame(h.now, &reply_frame(&wrong_xid)));
    // Right xid and MAC, but an ACK while selecting, or an offer without a server id.
    assert!(h.client.handle_frame(
        h.now,
        &reply_frame(&ReplyBuilder::new(MessageType::Ack, xid))
    ));
    let mut no_server = ReplyBuilder::new(MessageType::Offer, xid);
    no_server.remove(OptionCode::ServerIdentifier);
    assert!(h.client.handle_frame(h.now, &reply_frame(&no_server)));
    assert_eq!(h.client.state(), State::Selecting);
    assert!(h.events().is_empty() && h.transmits().is_empty());

    // In REQUESTING, an ACK from a server we did not choose is not taken.
    h.client.handle_frame(
        h.now,
        &reply_frame(&ReplyBuilder::new(MessageType::Offer, xid)),
    );
    h.transmits();
    let mut other = ReplyBuilder::new(MessageType::Ack, xid);
    other.opt(DhcpOption::ServerIdentifier(Ipv4Addr::new(192, 168, 30, 2)));
    h.client.handle_frame(h.now, &reply_frame(&other));
    assert_eq!(h.client.state(), State::Requesting);
}

#[test]
fn classifier_fast_path_rejects_other_traffic() {
    let mut h = Harness::new(config());
    let discover = h.transmits().remove(0);
    let ping = icmp::Echo {
        src_mac: SERVER_MAC,
        dst_mac: CLIENT_MAC,
        src_ip: SERVER_IP,
        dst_ip: OFFERED,
        ident: 1,
        seq: 1,
    };
    let others = [
        arp::request(SERVER_MAC, SERVER_IP, OFFERED),
        ping.request_frame(&[0; 300]).unwrap(),
        discover, // our own broadcast echoed back by the hub: UDP 68→67, BOOTREQUEST
        Vec::new(),
        vec![0xff; 13],
    ];
    for frame in &others {
        assert!(!DhcpClient::is_dhcp_reply(frame));
        assert!(!h.client.handle_frame(h.now, frame));
    }
    let offer = reply_frame(&ReplyBuilder::new(MessageType::Offer, h.current_xid()));
    assert!(DhcpClient::is_dhcp_reply(&offer));
}

#[test]
fn seeded_mutation_fuzz_never_panics() {
    let mut rng = crate::retransmit::SeededRng::new(0xf022);
    let mut h = Harness::new(config());
    let mut accepted = 0;
    for i in 0..10_000u32 {
        if i % 500 == 0 {
            h = Harness::new(config());
            h.transmits();
        }
        let xid = h.client.current_xid().unwrap_or(0);
        let kind =
            [MessageType::Offer, MessageType::Ack, MessageType::Nak][rng.next_u32() as usize % 3];
        let mut b = ReplyBuilder::new(kind, xid);
        if rng.next_u32() & 1 == 0 {
            let routes = vec![("10.0.0.0/8".parse().unwrap(), SERVER_IP)];
            b.opt(DhcpOption::ClasslessStaticRoute(routes));
        }
        let mut frame = reply_frame(&b);
        let options_start = 14 + 20 + 8 + 240;
        for _ in 0..1 + rng.next_u32() % 8 {
            let r = rng.next_u32() as usize;
            // Mostly hit the options, where the parsing is; sometimes the headers.
            let at = if r & 3 == 0 {
                r % frame.len()
            } else {
                options_start + r % (frame.len() - options_start)
            };
            frame[at] = (rng.next_u32() >> 8) as u8;
        }
        match rng.next_u32() % 6 {
            0 => frame.truncate(rng.next_u32() as usize % frame.len()),
            1 => frame.extend((0..rng.next_u32() % 64).map(|_| rng.next_u32() as u8)),
            _ => {}
        }
        if h.client.handle_frame(h.now, &frame) {
            accepted += 1;
        }
        h.transmits();
        h.events();
        if i % 97 == 0 {
            h.now += Duration::from_secs(u64::from(rng.next_u32() % 120));
        }
    }
    assert!(
        accepted > 1000,
        "mutations should still reach the parser: {accepted}"
    );
}
