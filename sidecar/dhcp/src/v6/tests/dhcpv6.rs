//! DHCPv6 per the M/O flags: stateful IA_NA, stateless Information-request, timers, release.

use super::*;

fn managed() -> Ra {
    Ra {
        managed: true,
        other: true,
        ..Ra::default()
    }
    .prefix("fd00:6::", 64, 0x80, 3600, 3600)
}

/// A client bound through Solicit/Advertise/Request/Reply at t ≈ 1 s.
fn bound() -> Harness {
    let mut h = Harness::new();
    h.transmits();
    h.feed(&managed().frame());
    h.events();
    let sent = h.converse();
    assert_eq!(sent, [MessageType::Solicit]);
    // The Advertise is held for the first RT (RFC 8415 §18.2.1), then the Request goes out.
    assert_eq!(h.client.dhcp_state(), Dhcp6State::Soliciting);
    let frames = h.next_deadline(2.0).unwrap();
    assert!(h.secs() > 1.0 && h.secs() <= 1.1, "{}", h.secs());
    assert_eq!(h.client.dhcp_state(), Dhcp6State::Requesting);
    let [request] = frames.as_slice() else {
        panic!("{frames:?}")
    };
    assert_eq!(
        decode_sent(request).unwrap().msg.msg_type(),
        MessageType::Request
    );
    let reply = h.server.answer(request).unwrap();
    assert!(h.client.handle_frame(h.now, &reply));
    assert_eq!(h.client.dhcp_state(), Dhcp6State::Bound);
    h
}

#[test]
fn stateful_exchange_gives_an_on_link_address_and_dns() {
    let mut h = bound();
    let s = h.updated();
    assert_eq!(
        s.addresses,
        [Ipv6Address {
            address: ip("fd00:6::100"),
            prefix_len: 64,
            from_slaac: false,
            deprecated: false
        }]
    );
    assert_eq!(s.dns_servers, [ip("fd00:6::53")]);
    assert_eq!(s.router.unwrap().address, router_ll());
}

#[test]
fn messages_carry_identity_and_go_to_all_servers() {
    let mut h = Harness::new();
    h.transmits();
    h.feed(&managed().frame());
    let frames = h.transmits();
    let solicit = decode_sent(&frames[0]).unwrap();
    assert!(solicit.checksum_ok);
    assert_eq!(solicit.dst_mac, [0x33, 0x33, 0, 1, 0, 2]);
    assert_eq!(
        (solicit.src, solicit.dst),
        (link_local(MAC), ip("ff02::1:2"))
    );
    let opts = solicit.msg.opts();
    assert_eq!(
        opts.get(OptionCode::ClientId),
        Some(&DhcpOption::ClientId(duid_ll(MAC)))
    );
    assert_eq!(duid_ll(MAC), [0, 3, 0, 1, 2, 0x11, 0x22, 0x33, 0x44, 0x55]);
    assert_eq!(
        opts.get(OptionCode::ElapsedTime),
        Some(&DhcpOption::ElapsedTime(0))
    );
    let Some(DhcpOption::IANA(ia)) = opts.get(OptionCode::IANA) else {
        panic!("no IA_NA")
    };
    assert_eq!(ia.id, 0x2233_4455);
    let Some(DhcpOption::ORO(oro)) = opts.get(OptionCode::ORO) else {
        panic!("no ORO")
    };
    assert_eq!(
        oro.opts,
        [OptionCode::DomainNameServers, OptionCode::DomainSearchList]
    );
    // The retransmit shows the elapsed time and keeps the xid.
    let again = h.until_sent(MessageType::Solicit, 5.0);
    let again = decode_sent(&again).unwrap().msg;
    assert_eq!(again.xid(), solicit.msg.xid());
    let Some(DhcpOption::ElapsedTime(centis)) = again.opts().get(OptionCode::ElapsedTime) else {
        panic!("no elapsed time")
    };
    assert!((100..=110).contains(centis), "{centis}");
}

#[test]
fn solicit_retransmits_double_and_request_gives_up_after_ten() {
    let mut h = Harness::new();
    h.transmits();
    h.feed(&managed().frame());
    h.transmits();
    let mut times = vec![0.0];
    for _ in 0..6 {
        h.until_sent(MessageType::Solicit, 200.0);
        times.push(h.secs());
    }
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[0] > 1.0 && gaps[0] <= 1.1, "{gaps:?}");
    assert!(
        gaps.windows(2)
            .all(|g| (1.7..=2.3).contains(&(g[1] / g[0]))),
        "{gaps:?}"
    );

    // Any Advertise after the first RT is requested at once; silence then exhausts REQ_MAX_RC.
    let solicit = h.until_sent(MessageType::Solicit, 400.0);
    let advertise = h.server.answer(&solicit).unwrap();
    assert!(h.client.handle_frame(h.now, &advertise));
    assert_eq!(h.client.dhcp_state(), Dhcp6State::Requesting);
    let mut requests = 0;
    while h.client.dhcp_state() == Dhcp6State::Requesting {
        let frames = h.next_deadline(2000.0).unwrap();
        requests += frames
            .iter()
            .filter(|f| decode_sent(f).is_some_and(|s| s.msg.msg_type() == MessageType::Request))
            .count();
    }
    assert_eq!(requests, 10);
    assert_eq!(h.client.dhcp_state(), Dhcp6State::Soliciting);
}

#[test]
fn preference_255_is_requested_at_once() {
    let mut h = Harness::new();
    h.server.preference = Some(255);
    h.transmits();
    h.feed(&managed().frame());
    assert_eq!(h.converse(), [MessageType::Solicit, MessageType::Request]);
    assert_eq!(h.client.dhcp_state(), Dhcp6State::Bound);
    assert_eq!(h.secs(), 0.0);
}

#[test]
fn renew_at_t1_rebind_at_t2_loss_at_valid_lifetime() {
    let mut h = bound();
    h.updated();
    let bound_at = h.secs();
    // T1 = 100 s: Renew names the server; unanswered until T2 = 160 s, then Rebind without it.
    let renew = h.until_sent(MessageType::Renew, 1000.0);
    assert!((h.secs() - bound_at - 100.0).abs() < 1e-6);
    let renew = decode_sent(&renew).unwrap().msg;
    assert_eq!(
        renew.opts().get(OptionCode::ServerId),
        Some(&DhcpOption::ServerId(SERVER_DUID.to_vec()))
    );
    let Some(DhcpOption::IANA(ia)) = renew.opts().get(OptionCode::IANA) else {
        panic!("no IA_NA in Renew")
    };
    assert!(
        matches!(ia.opts.get(OptionCode::IAAddr), Some(DhcpOption::IAAddr(a)) if a.addr == ip("fd00:6::100"))
    );
    let rebind = h.until_sent(MessageType::Rebind, 1000.0);
    assert!((h.secs() - bound_at - 160.0).abs() < 1e-6);
    assert!(decode_sent(&rebind)
        .unwrap()
        .msg
        .opts()
        .get(OptionCode::ServerId)
        .is_none());
    assert_eq!(h.client.dhcp_state(), Dhcp6State::Rebinding);
    assert!(h.events().is_empty(), "the address stays while rebinding");
    // Valid lifetime 300 s: the address goes and Solicit starts over.
    h.until_sent(MessageType::Solicit, 1000.0);
    assert!((h.secs() - bound_at - 300.0).abs() < 1e-6);
    let s = h.updated();
    assert!(s.addresses.is_empty() && s.dns_servers.is_empty());
    assert!(s.router.is_some(), "the router is unaffected");
}

#[test]
fn renew_answered_extends_and_changed_address_is_reported() {
    let mut h = bound();
    h.updated();
    let renew = h.until_sent(MessageType::Renew, 1000.0);
    let reply = h.server.answer(&renew).unwrap();
    assert!(h.client.handle_frame(h.now, &reply));
    assert_eq!(h.client.dhcp_state(), Dhcp6State::Bound);
    assert!(
        h.events().is_empty(),
        "same configuration, only timers moved"
    );
    // After a reconnect the binding is confirmed with Rebind; the server hands a new address.
    h.client.restart(h.now);
    h.server.address = ip("fd00:6::200");
    assert_eq!(h.converse(), [MessageType::Rebind]);
    assert_eq!(h.client.dhcp_state(), Dhcp6State::Bound);
    let s = h.updated();
    assert_eq!(s.addresses[0].address, ip("fd00:6::200"));
    assert!(h.events().is_empty());
}

#[test]
fn no_binding_on_renew_leads_to_request() {
    let mut h = bound();
    h.updated();
    let renew = h.until_sent(MessageType::Renew, 1000.0);
    h.server.ia_status = Some(3);
    let reply = h.server.answer(&renew).unwrap();
    assert!(h.client.handle_frame(h.now, &reply));
    assert_eq!(h.client.dhcp_state(), Dhcp6State::Requesting);
    h.server.ia_status = None;
    assert_eq!(h.converse(), [MessageType::Request]);
    assert_eq!(h.client.dhcp_state(), Dhcp6State::Bound);
}

#[test]
fn no_addrs_avail_in_advertise_is_ignored() {
    let mut h = Harness::new();
    h.server.ia_status = Some(2);
    h.transmits();
    h.feed(&managed().frame());
    assert_eq!(h.converse(), [MessageType::Solicit]);
    h.next_deadline(5.0);
    assert_eq!(h.client.dhcp_state(), Dhcp6State::Soliciting);
}

#[test]
fn other_flag_only_runs_stateless_information_request() {
    let mut h = Harness::new();
    h.server.refresh = Some(900);
    h.transmits();
    let ra = Ra {
        other: true,
        ..Ra::default()
    }
    .lab_prefix();
    h.feed(&ra.frame());
    let s = h.updated();
    assert_eq!(s.addresses[0].address, slaac_in_lab());
    let frames = h.transmits();
    let info = decode_sent(&frames[0]).unwrap().msg;
    assert_eq!(info.msg_type(), MessageType::InformationRequest);
    assert!(info.opts().get(OptionCode::IANA).is_none());
    let Some(DhcpOption::ORO(oro)) = info.opts().get(OptionCode::ORO) else {
        panic!("no ORO")
    };
    assert!(oro.opts.contains(&OptionCode::InformationRefreshTime));
    let reply = h.server.answer(&frames[0]).unwrap();
    assert!(h.client.handle_frame(h.now, &reply));
    assert_eq!(h.client.dhcp_state(), Dhcp6State::Informed);
    assert_eq!(h.updated().dns_servers, [ip("fd00:6::53")]);
    // Refreshed after the Information Refresh Time; the old values stay meanwhile.
    h.until_sent(MessageType::InformationRequest, 2000.0);
    assert!((h.secs() - 900.0).abs() < 1e-6);
    let events = h.events();
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn managed_without_other_and_slaac_together() {
    let mut h = Harness::new();
    h.server.preference = Some(255);
    h.transmits();
    let ra = Ra {
        managed: true,
        ..Ra::default()
    }
    .lab_prefix();
    h.feed(&ra.frame());
    h.events();
    h.converse();
    let s = h.updated();
    assert_eq!(
        s.addresses
            .iter()
            .map(|a| (a.address, a.from_slaac))
            .collect::<Vec<_>>(),
        [(slaac_in_lab(), true), (ip("fd00:6::100"), false)]
    );
    // A later RA with only O does not downgrade the stateful client.
    h.feed(
        &Ra {
            other: true,
            ..Ra::default()
        }
        .frame(),
    );
    assert_eq!(h.client.dhcp_state(), Dhcp6State::Bound);
}

#[test]
fn neither_flag_means_no_dhcpv6_and_dhcpv6_can_be_disabled() {
    let mut h = Harness::new();
    h.transmits();
    h.feed(&Ra::default().lab_prefix().frame());
    assert!(h.transmits().is_empty());
    assert_eq!(h.client.dhcp_state(), Dhcp6State::Idle);

    let mut config = Ipv6Config::new(MAC, 1);
    config.dhcpv6 = false;
    config.slaac = false;
    let mut c = Ipv6Client::new(config, h.now);
    c.handle_frame(h.now, &managed().lab_prefix().frame());
    assert_eq!(c.dhcp_state(), Dhcp6State::Idle);
    assert!(c.settings().addresses.is_empty());
}

#[test]
fn release_names_the_server_and_addresses_then_stops() {
    let mut h = bound();
    h.updated();
    let release = h.client.release().expect("a Release while bound");
    let msg = decode_sent(&release).unwrap().msg;
    assert_eq!(msg.msg_type(), MessageType::Release);
    assert!(msg.opts().get(OptionCode::ServerId).is_some());
    assert!(msg.opts().get(OptionCode::ORO).is_none());
    assert_eq!(h.client.poll_timeout(), None);
    assert!(h.transmits().is_empty());
    assert_eq!(h.client.release(), None);
    assert!(!h.client.handle_frame(h.now, &managed().frame()));
}
