//! Router discovery, SLAAC, RDNSS/DNSSL, MTU and their lifetimes.

use super::*;

#[test]
fn solicits_at_once_then_backs_off_until_a_router_answers() {
    let mut h = Harness::new();
    assert_eq!(h.client.poll_timeout(), Some(h.now));
    let first = h.transmits();
    assert_eq!(first.len(), 1);
    assert!(is_router_solicitation(&first[0]));
    assert_eq!(&first[0][..6], &[0x33, 0x33, 0, 0, 0, 2]);
    // RFC 7559: 4 s, then doubling (±10 %).
    let mut times = Vec::new();
    while let Some(frames) = h.next_deadline(200.0) {
        assert!(frames.iter().all(|f| is_router_solicitation(f)));
        times.push(h.secs());
    }
    assert!((3.6..=4.4).contains(&times[0]), "{times:?}");
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.windows(2)
            .all(|g| (1.7..=2.3).contains(&(g[1] / g[0]))),
        "{gaps:?}"
    );
    assert!(h.events().is_empty(), "a hub without IPv6 reports nothing");
    assert!(h.client.settings().is_empty());

    // An advertisement without anything to configure still stops the solicitations.
    assert!(h.feed(&Ra::default().frame()));
    let s = h.updated();
    assert_eq!(s.router.map(|r| r.address), Some(router_ll()));
    assert_eq!(s.router.map(|r| r.mac), Some(ROUTER_MAC));
    assert!(s.addresses.is_empty());
    let next = h.client.poll_timeout().unwrap();
    assert_eq!(
        (next - h.now).as_secs(),
        1800,
        "only the router lifetime is left"
    );
}

#[test]
fn slaac_address_on_link_prefix_dns_domains_and_mtu() {
    let mut h = Harness::new();
    h.transmits();
    let ra = Ra::default()
        .lab_prefix()
        .rdnss(600, &["fd00:6::53", "fd00:6::54"])
        .dnssl(600, b"\x03lab\x07example\x00")
        .mtu(1400);
    assert!(h.feed(&ra.frame()));
    let s = h.updated();
    assert_eq!(
        s.addresses,
        [Ipv6Address {
            address: slaac_in_lab(),
            prefix_len: 64,
            from_slaac: true,
            deprecated: false
        }]
    );
    assert_eq!(
        s.addresses[0].interface_address(),
        net("fd00:6::11:22ff:fe33:4455/64")
    );
    assert_eq!(s.on_link, [net("fd00:6::/64")]);
    assert_eq!(s.dns_servers, [ip("fd00:6::53"), ip("fd00:6::54")]);
    assert_eq!(s.search_domains, ["lab.example"]);
    assert_eq!(s.mtu, Some(1400));
    // No M/O: no DHCPv6 traffic, and a repeated RA changes nothing.
    assert_eq!(h.client.dhcp_state(), Dhcp6State::Idle);
    h.advance(10.0);
    assert!(h.transmits().is_empty());
    assert!(h.feed(&ra.frame()));
    assert!(h.events().is_empty());
}

#[test]
fn flags_decide_what_a_prefix_gives() {
    let mut h = Harness::new();
    let ra = Ra::default()
        // A only: an address but no on-link route, so a host route.
        .prefix("fd00:a::", 64, 0x40, 3600, 3600)
        // L only: a route, no address.
        .prefix("fd00:b::", 64, 0x80, 3600, 3600)
        // A on a /48: no SLAAC (interface identifiers are 64 bits).
        .prefix("fd00:c::", 48, 0xc0, 3600, 3600)
        // Preferred > valid: ignored for SLAAC.
        .prefix("fd00:d::", 64, 0x40, 100, 200)
        // Link-local: ignored.
        .prefix("fe80::", 64, 0xc0, 3600, 3600)
        // Host bits in the prefix are cleared.
        .prefix("fd00:e::1", 64, 0x80, 3600, 3600);
    h.feed(&ra.frame());
    let s = h.updated();
    assert_eq!(
        s.addresses
            .iter()
            .map(|a| a.interface_address())
            .collect::<Vec<_>>(),
        [net("fd00:a::11:22ff:fe33:4455/128")]
    );
    assert_eq!(
        s.on_link,
        [net("fd00:b::/64"), net("fd00:c::/48"), net("fd00:e::/64")]
    );
}

#[test]
fn lifetimes_expire_in_virtual_time() {
    let mut h = Harness::new();
    h.transmits();
    let ra = Ra {
        lifetime: 20,
        ..Ra::default()
    }
    .prefix("fd00:6::", 64, 0xc0, 60, 30)
    .rdnss(40, &["fd00:6::53"]);
    h.feed(&ra.frame());
    let s = h.updated();
    assert!(s.router.is_some() && s.dns_servers.len() == 1 && s.addresses.len() == 1);

    // 20 s: the router goes, and soliciting starts again (the only frame sent).
    let sent = h.next_deadline(1000.0).unwrap();
    assert_eq!(h.secs(), 20.0);
    assert!(sent.len() == 1 && is_router_solicitation(&sent[0]));
    let s = h.updated();
    assert!(s.router.is_none() && s.addresses.len() == 1);
    // 30 s: the address is deprecated; 40 s: RDNSS; 60 s: prefix and address. Solicitations
    // in between carry no events.
    let mut seen = Vec::new();
    while let Some(_frames) = h.next_deadline(100.0) {
        for e in h.events() {
            seen.push((h.secs(), e));
        }
    }
    let [(t0, Ipv6Event::Updated(d)), (t1, Ipv6Event::Updated(a)), (t2, Ipv6Event::Updated(b))] =
        seen.as_slice()
    else {
        panic!("{seen:?}");
    };
    assert_eq!((*t0, *t1, *t2), (30.0, 40.0, 60.0));
    assert!(d.addresses[0].deprecated && d.dns_servers.len() == 1);
    assert!(a.dns_servers.is_empty() && a.addresses.len() == 1);
    assert!(b.is_empty());
}

#[test]
fn withdrawals_and_the_two_hour_rule() {
    let mut h = Harness::new();
    h.feed(
        &Ra::default()
            .prefix("fd00:6::", 64, 0xc0, 86_400, 86_400)
            .rdnss(600, &["fd00:6::53"])
            .frame(),
    );
    h.updated();
    // A short valid lifetime cannot cut a SLAAC address below two hours (RFC 4862 §5.5.3 e);
    // the on-link prefix and RDNSS follow the router (lifetime 0 removes at once).
    let ra = Ra {
        lifetime: 0,
        ..Ra::default()
    }
    .prefix("fd00:6::", 64, 0xc0, 60, 60)
    .rdnss(0, &["fd00:6::53"]);
    h.feed(&ra.frame());
    let s = h.updated();
    assert!(s.router.is_none() && s.dns_servers.is_empty());
    assert_eq!(s.addresses.len(), 1);
    h.advance(3600.0);
    h.client.handle_timeout(h.now);
    h.transmits();
    // The on-link prefix was set to 60 s and is gone; the address lives for two hours.
    let s = h.updated();
    assert!(s.on_link.is_empty() && s.addresses.len() == 1);
    h.advance(3601.0);
    h.client.handle_timeout(h.now);
    assert!(h.updated().is_empty());
    // Valid lifetime 0 for a new prefix creates nothing.
    h.feed(&Ra::default().prefix("fd00:7::", 64, 0xc0, 0, 0).frame());
    assert!(h.updated().addresses.is_empty());
}

#[test]
fn preferred_router_wins_and_limits_hold() {
    let mut h = Harness::new();
    let low = Ra {
        preference_bits: 0b11,
        src: ip("fe80::1"),
        ..Ra::default()
    };
    h.feed(&low.frame());
    assert_eq!(h.updated().router.unwrap().address, ip("fe80::1"));
    let high = Ra {
        preference_bits: 0b01,
        src: ip("fe80::2"),
        ..Ra::default()
    };
    h.feed(&high.frame());
    assert_eq!(h.updated().router.unwrap().address, ip("fe80::2"));
    // Many prefixes and DNS servers: capped.
    let mut ra = Ra::default();
    for i in 0..40u16 {
        ra = ra.prefix(&format!("fd00:{i:x}::"), 64, 0xc0, 3600, 3600);
    }
    ra = ra.rdnss(
        600,
        &[
            "fd00::1", "fd00::2", "fd00::3", "fd00::4", "fd00::5", "fd00::6", "fd00::7", "fd00::8",
            "fd00::9", "fd00::a",
        ],
    );
    h.feed(&ra.frame());
    let s = h.updated();
    assert!(s.addresses.len() <= 16 && s.on_link.len() <= 16 && s.dns_servers.len() == 8);
    // MTU outside 1280..=65535 is ignored.
    h.feed(&Ra::default().mtu(1000).frame());
    assert!(h.events().is_empty());
}

#[test]
fn restart_keeps_configuration_and_solicits_again() {
    let mut h = Harness::new();
    h.transmits();
    h.feed(&Ra::default().lab_prefix().frame());
    let before = h.updated();
    assert!(h.transmits().is_empty());
    h.client.restart(h.now);
    let sent = h.transmits();
    assert!(sent.len() == 1 && is_router_solicitation(&sent[0]));
    assert!(h.events().is_empty());
    assert_eq!(h.client.settings(), &before);
}
