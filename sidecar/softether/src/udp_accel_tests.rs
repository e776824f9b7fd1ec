use super::*;
use crate::pack::Pack;
use crate::udp_accel_codec::Codec;

const CLIENT: &str = "198.18.0.2:50000";
const SERVER: &str = "198.18.0.1:40000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn frame(n: u8) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x5e, 0, 0, 0, 0, n, 0x08, 0x00]);
    f.extend(std::iter::repeat_n(n, 100));
    f
}

fn offer() -> UdpAccelOffer {
    UdpAccelOffer::new(50000, [0x11; 20], [0x22; 128])
}

fn grant(version: u32, use_encryption: bool, fast: bool) -> UdpAccelGrant {
    UdpAccelGrant {
        version,
        server_ip: Some("198.18.0.1".parse().unwrap()),
        server_port: 40000,
        server_key_v1: [0x33; 20],
        server_key_v2: Box::new([0x44; 128]),
        server_cookie: 0xdead_beef,
        client_cookie: 0x1234_5678,
        use_encryption,
        fast_disconnect_detect: fast,
    }
}

/// A sans-IO fake server: the same state machine with the roles of the negotiation swapped.
fn server_for(o: &UdpAccelOffer, g: &UdpAccelGrant, origin: Instant) -> UdpAccel {
    let e = Endpoint::server_side(o, g, addr(CLIENT));
    // The server's clock starts elsewhere: ticks are per side.
    UdpAccel::new(&e, origin - Duration::from_secs(1000), origin, [9; 20], 77).unwrap()
}

struct Lab {
    now: Instant,
    client: UdpAccel,
    server: UdpAccel,
    /// Datagrams in either direction are lost while set.
    blocked: bool,
}

impl Lab {
    fn new(version: u32, encryption: bool, fast: bool) -> Lab {
        let now = Instant::now();
        let (o, g) = (offer(), grant(version, encryption, fast));
        let client =
            UdpAccel::client(&o, &g, "198.18.0.1".parse().unwrap(), now, now, [1; 20], 5).unwrap();
        Lab {
            now,
            server: server_for(&o, &g, now),
            client,
            blocked: false,
        }
    }

    /// Runs both ends for `d` of virtual time in 50 ms steps, delivering datagrams.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(50);
            self.client.handle_timeout(self.now);
            self.server.handle_timeout(self.now);
            self.pump();
        }
    }

    /// Runs until the client's link is active; returns how long that took (bounded).
    fn run_until_active(&mut self) -> Duration {
        let start = self.now;
        while !self.client.is_ready(self.now) {
            self.run(Duration::from_millis(50));
            assert!(self.now - start < Duration::from_secs(20), "never active");
        }
        self.now - start
    }

    fn pump(&mut self) {
        while let Some(t) = self.client.poll_transmit() {
            if !self.blocked && t.dest == addr(SERVER) {
                self.server
                    .handle_datagram(self.now, addr(CLIENT), &t.payload);
            }
        }
        while let Some(t) = self.server.poll_transmit() {
            if !self.blocked && t.dest == addr(CLIENT) {
                self.client
                    .handle_datagram(self.now, addr(SERVER), &t.payload);
            }
        }
    }
}

/// Seals the known-answer input (a 14-byte frame, 3 bytes of padding) with `codec`, compares
/// with `expect`, and checks that `peer` opens it again. Returns the datagram.
fn known_answer(codec: &mut Codec, peer: &Codec, expect: &str) -> Vec<u8> {
    let h = Header {
        cookie: 0x0102_0304,
        my_tick: 0x1122_3344_5566_7788,
        your_tick: 5,
        flag: 0,
    };
    let payload = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x5e, 0, 0, 0, 0, 1, 8, 6,
    ];
    let d = codec.seal(&h, &payload, 3);
    assert_eq!(hex(&d), expect.replace(' ', ""));
    let mut buf = d.clone();
    let (h2, range) = peer.open(&mut buf).unwrap();
    assert_eq!((h2, &buf[range]), (h, &payload[..]));
    d
}

#[test]
fn v1_known_answer() {
    // Independent oracle: Python hashlib SHA-1 + a textbook RC4, same inputs.
    let key: [u8; 20] = std::array::from_fn(|i| i as u8);
    let iv: [u8; 20] = std::array::from_fn(|i| 0xa0 + i as u8);
    let mut codec = Codec::v1(key, [0; 20], iv);
    // The peer decrypts with our key as its receive key.
    let peer = Codec::v1([0; 20], key, [0; 20]);
    known_answer(
        &mut codec,
        &peer,
        "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b355c7e98a97cb6064463290197ce6f557fdc9946bcaa1d9 \
         d4c39155ffe567f0434231407c0c0adb823c698b2613728fcd1c217f5a3885f1a802c1955a",
    );
    let Codec::V1 { next_iv, .. } = &codec else {
        panic!()
    };
    assert_eq!(hex(next_iv), "3c698b2613728fcd1c217f5a3885f1a802c1955a");
}

#[test]
fn v2_known_answer() {
    // Independent oracle: Python `cryptography` ChaCha20Poly1305(key[..32]), nonce = IV, no AAD.
    let key: [u8; 128] = std::array::from_fn(|i| i as u8);
    let iv: [u8; 12] = std::array::from_fn(|i| 0xc0 + i as u8);
    let mut codec = Codec::v2(&key, &[0; 128], iv);
    let peer = Codec::v2(&[0; 128], &key, [0; 12]);
    let d = known_answer(
        &mut codec,
        &peer,
        "c0c1c2c3c4c5c6c7c8c9cacb18fa2c8025ef247ae841db34727cff5fa0ab015d76caea455a4943035639 \
         3781b474667cb2b80159a9411e5b1eca320d4ffafd5c115a614f",
    );
    let Codec::V2 { next_iv, .. } = &codec else {
        panic!()
    };
    assert_eq!(hex(next_iv), "18fa2c8025ef247ae841db34");
    // One flipped bit anywhere fails authentication.
    for i in 0..d.len() {
        let mut bad = d.clone();
        bad[i] ^= 0x80;
        assert!(peer.open(&mut bad).is_none(), "byte {i}");
    }
}

#[test]
fn plaintext_layout() {
    let mut codec = Codec::Plain;
    let h = Header {
        cookie: 7,
        my_tick: 1,
        your_tick: 0,
        flag: 0,
    };
    let d = codec.seal(&h, b"abc", 30);
    assert_eq!(
        d,
        [
            &[0, 0, 0, 7][..],
            &[0, 0, 0, 0, 0, 0, 0, 1],
            &[0; 8],
            &[0, 3, 0],
            b"abc"
        ]
        .concat()
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn offer_fields_match_client_upload_auth() {
    let mut p = Pack::new();
    offer().add_to(&mut p);
    assert!(p.get_bool("use_udp_acceleration"));
    assert_eq!(p.get_int("udp_acceleration_version"), Some(1));
    assert_eq!(p.get_int("udp_acceleration_max_version"), Some(2));
    assert_eq!(
        p.get_ip("udp_acceleration_client_ip"),
        Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    );
    assert_eq!(p.get_int("udp_acceleration_client_port"), Some(50000));
    assert_eq!(
        p.get_data("udp_acceleration_client_key"),
        Some(&[0x11; 20][..])
    );
    assert_eq!(
        p.get_data("udp_acceleration_client_key_v2"),
        Some(&[0x22; 128][..])
    );
    assert!(p.get_bool("support_hmac_on_udp_acceleration"));
    assert!(p.get_bool("support_udp_accel_fast_disconnect_detect"));
    // Survives the wire.
    let back = Pack::decode(&p.encode()).unwrap();
    assert_eq!(back.get_int("udp_acceleration_client_port"), Some(50000));
    assert!(!format!("{:?}", offer()).contains("17"));
}

#[test]
fn login_pack_carries_the_offer_only_when_set() {
    use crate::login::{login_pack, ClientInfo, Credential, LoginRequest};
    let hello = crate::welcome::ServerHello {
        product: "SoftEther VPN Server".into(),
        version: 501,
        build: 9674,
        random: [7; 20],
    };
    let mut req = LoginRequest {
        hub: "HUB".into(),
        username: "alice".into(),
        credential: Credential::Anonymous,
        max_connection: 1,
        half_connection: false,
        use_compress: false,
        udp_accel: None,
        info: ClientInfo::default(),
    };
    let p = login_pack(&req, &hello).unwrap();
    assert!(!p.contains("use_udp_acceleration"));
    req.udp_accel = Some(offer());
    let p = login_pack(&req, &hello).unwrap();
    assert!(p.get_bool("use_udp_acceleration"));
    assert_eq!(p.get_int("udp_acceleration_client_port"), Some(50000));
}

#[test]
fn grant_parsing_follows_client_connect() {
    let g = grant(2, true, true);
    let mut p = Pack::new();
    g.add_to(&mut p);
    let p = Pack::decode(&p.encode()).unwrap();
    assert_eq!(UdpAccelGrant::from_welcome(&p), Some(g.clone()));
    // Version 0 or anything but 2 means 1.
    for (v, want) in [(0, 1), (1, 1), (2, 2), (3, 1)] {
        let mut q = p.clone();
        q.add_int("udp_acceleration_version", v);
        assert_eq!(UdpAccelGrant::from_welcome(&q).unwrap().version, want);
    }
    // Not granted, no IP element, zero port, zero cookies, wrong key size: no acceleration.
    let without = |f: &dyn Fn(&mut Pack)| {
        let mut q = p.clone();
        f(&mut q);
        UdpAccelGrant::from_welcome(&q)
    };
    assert!(without(&|q| q.add_bool("use_udp_acceleration", false)).is_none());
    assert!(without(&|q| q.remove("udp_acceleration_server_ip")).is_none());
    assert!(without(&|q| q.add_int("udp_acceleration_server_port", 0)).is_none());
    assert!(without(&|q| q.add_int("udp_acceleration_server_port", 70000)).is_none());
    assert!(without(&|q| q.add_int("udp_acceleration_server_cookie", 0)).is_none());
    assert!(without(&|q| q.remove("udp_acceleration_client_cookie")).is_none());
    assert!(without(&|q| q.add_data("udp_acceleration_server_key_v2", &[1; 32])).is_none());
    // A zero server IP means "use the TCP peer".
    let zero = without(&|q| q.add_ipv4("udp_acceleration_server_ip", Ipv4Addr::UNSPECIFIED));
    assert_eq!(zero.unwrap().server_ip, None);
    assert!(!format!("{g:?}").contains("68"));
}

#[test]
fn welcome_carries_the_grant() {
    let mut p = Pack::new();
    p.add_str("session_name", "SID-A-1");
    p.add_str("connection_name", "CID-1");
    p.add_data("session_key", &[1; 20]);
    assert_eq!(crate::welcome::parse_welcome(&p).unwrap().udp_accel, None);
    grant(1, true, false).add_to(&mut p);
    let w = crate::welcome::parse_welcome(&p).unwrap();
    assert_eq!(w.udp_accel, Some(Box::new(grant(1, true, false))));
}

#[test]
fn client_rejects_a_foreign_address_family() {
    let mut g = grant(2, true, false);
    g.server_ip = Some("2001:db8::1".parse().unwrap());
    let now = Instant::now();
    let r = UdpAccel::client(
        &offer(),
        &g,
        "198.18.0.1".parse().unwrap(),
        now,
        now,
        [0; 20],
        1,
    );
    assert!(matches!(r, Err(UdpAccelError::AddressFamily { .. })));
}

fn becomes_active_then_falls_back_and_recovers(version: u32, encryption: bool, fast: bool) {
    let mut lab = Lab::new(version, encryption, fast);
    let t0 = lab.now;
    assert_eq!(lab.client.state(t0), LinkState::Probing);
    assert!(!lab.client.send_frame(t0, &frame(1)), "not ready: TCP");
    // Alive after the first round trip, but frames wait for 10 s of continuous life.
    lab.run(Duration::from_secs(5));
    assert_eq!(lab.client.state(lab.now), LinkState::Stabilising);
    assert!(!lab.client.is_ready(lab.now));
    // The first sign of life is the server's second keep-alive (its first could not echo a
    // tick yet), 1-3 s in; 10 s of continuity later the link is active.
    let took = lab.run_until_active() + Duration::from_secs(5);
    let ka_max = Timers::of(fast).keepalive_max;
    assert!(
        took >= REQUIRE_CONTINUOUS && took <= REQUIRE_CONTINUOUS + ka_max * 2,
        "{took:?}"
    );
    assert_eq!(lab.client.state(lab.now), LinkState::Active);
    // Each side decides on its own; the server follows within a keep-alive interval or two.
    for _ in 0..200 {
        if lab.server.is_ready(lab.now) {
            break;
        }
        lab.run(Duration::from_millis(50));
    }
    assert!(lab.server.is_ready(lab.now));
    // Frames now go over UDP and arrive intact.
    for n in 0..20 {
        assert!(lab.client.send_frame(lab.now, &frame(n)));
        assert!(lab.server.send_frame(lab.now, &frame(n + 100)));
    }
    lab.pump();
    for n in 0..20 {
        assert_eq!(lab.server.poll_frame().unwrap(), frame(n));
        assert_eq!(lab.client.poll_frame().unwrap(), frame(n + 100));
    }
    // UDP blocked: the link is declared dead after the dead-link timeout, not before.
    lab.blocked = true;
    let dead_after = Timers::of(fast).dead_after;
    let blocked_at = lab.now;
    while lab.client.is_ready(lab.now) {
        lab.run(Duration::from_millis(50));
        assert!(lab.now - blocked_at < dead_after + Duration::from_secs(3));
    }
    assert!(lab.now - blocked_at >= dead_after.saturating_sub(Timers::NORMAL.keepalive_max));
    assert_eq!(lab.client.state(lab.now), LinkState::Lost);
    assert!(!lab.client.send_frame(lab.now, &frame(1)));
    lab.run(Duration::from_secs(1));
    assert_eq!(lab.client.stats().lost, 1);
    // Allowed again: stabilising, then active 10 s later.
    lab.blocked = false;
    lab.run(Duration::from_secs(4));
    assert_eq!(lab.client.state(lab.now), LinkState::Stabilising);
    let took = lab.run_until_active() + Duration::from_secs(4);
    assert!(
        took >= REQUIRE_CONTINUOUS && took <= REQUIRE_CONTINUOUS + ka_max * 2,
        "{took:?}"
    );
    let s = lab.client.stats();
    assert_eq!((s.frames_in, s.frames_out, s.rejected), (20, 20, 0));
    assert!(s.keepalives_out > 5 && s.keepalives_in > 5);
}

#[test]
fn v2_link_lifecycle() {
    becomes_active_then_falls_back_and_recovers(2, true, false);
}

#[test]
fn v1_link_lifecycle() {
    becomes_active_then_falls_back_and_recovers(1, true, false);
}

#[test]
fn fast_detect_link_lifecycle() {
    becomes_active_then_falls_back_and_recovers(2, true, true);
}

#[test]
fn plaintext_link_lifecycle() {
    becomes_active_then_falls_back_and_recovers(1, false, false);
}

#[test]
fn keepalive_interval_and_alternate_spray() {
    let mut g = grant(2, true, false);
    g.server_ip = Some("198.18.0.9".parse().unwrap());
    let now = Instant::now();
    let tcp_peer = "198.18.0.1".parse().unwrap();
    let mut c = UdpAccel::client(&offer(), &g, tcp_peer, now, now, [0; 20], 3).unwrap();
    c.handle_timeout(now);
    let first: Vec<_> = std::iter::from_fn(|| c.poll_transmit()).collect();
    let dests: Vec<_> = first.iter().map(|t| t.dest).collect();
    // Primary = TCP peer, alternate = the reported address, while the link is down.
    assert_eq!(dests, [addr("198.18.0.9:40000"), addr(SERVER)]);
    assert_eq!(c.peer(), addr(SERVER));
    let mut t = now;
    let mut last = now;
    for _ in 0..20 {
        t = c.poll_timeout(t);
        c.handle_timeout(t);
        let gap = t - last;
        assert!(
            gap >= Duration::from_secs(1) && gap < Duration::from_secs(3),
            "{gap:?}"
        );
        last = t;
        assert_eq!(std::iter::from_fn(|| c.poll_transmit()).count(), 2);
    }
    // Keep-alives are datagrams with size 0 and stay under the 1000-byte padding bound.
    assert!(first[0].payload.len() >= V2_IV_LEN + HEADER_LEN + V2_TAG_LEN);
    assert!(first[0].payload.len() < V2_IV_LEN + HEADER_LEN + V2_TAG_LEN + 32);
}

#[test]
fn peer_address_follows_the_newest_datagram() {
    let mut lab = Lab::new(2, true, false);
    lab.run(Duration::from_secs(2));
    assert_eq!(lab.client.peer(), addr(SERVER));
    // The server's NAT mapping changes: a newer datagram from elsewhere moves the peer.
    lab.now += Duration::from_millis(10);
    lab.server.handle_timeout(lab.now + Duration::from_secs(5));
    let newer = lab.server.poll_transmit().unwrap();
    let moved = addr("198.18.0.1:40001");
    assert!(lab.client.handle_datagram(lab.now, moved, &newer.payload));
    assert_eq!(lab.client.peer(), moved);
    // An older (reordered) datagram from another address is accepted but does not move it.
    let mut codec = Codec::v2(&[0x44; 128], &[0; 128], [3; 12]);
    let h = Header {
        cookie: 0x1234_5678,
        my_tick: 1_000_000 + 1000,
        your_tick: 0,
        flag: 0,
    };
    let older = codec.seal(&h, &[], 0);
    assert!(lab
        .client
        .handle_datagram(lab.now, addr("198.18.0.7:9"), &older));
    assert_eq!(lab.client.peer(), moved);
}

#[test]
fn foreign_and_stale_datagrams_are_rejected() {
    let mut lab = Lab::new(2, true, false);
    lab.run(Duration::from_secs(1));
    let before = lab.client.stats();
    // Wrong cookie: a server end that expects another client.
    let (o, mut g) = (offer(), grant(2, true, false));
    g.client_cookie = 42;
    let mut other = server_for(&o, &g, lab.now);
    other.handle_timeout(lab.now);
    let d = other.poll_transmit().unwrap();
    assert!(!lab
        .client
        .handle_datagram(lab.now, addr(SERVER), &d.payload));
    // Wrong key.
    let mut g = grant(2, true, false);
    *g.server_key_v2 = [0x55; 128];
    let mut other = server_for(&o, &g, lab.now);
    other.handle_timeout(lab.now);
    let d = other.poll_transmit().unwrap();
    assert!(!lab
        .client
        .handle_datagram(lab.now, addr(SERVER), &d.payload));
    assert_eq!(lab.client.stats().rejected, before.rejected + 2);
    // A datagram whose tick is 30 s older than the newest seen is stale.
    let mut old = server_for(&o, &grant(2, true, false), lab.now);
    let fresh_tick_at = lab.now + Duration::from_secs(40);
    old.handle_timeout(fresh_tick_at);
    let fresh = old.poll_transmit().unwrap();
    assert!(lab
        .client
        .handle_datagram(lab.now, addr(SERVER), &fresh.payload));
    let mut stale_end = server_for(&o, &grant(2, true, false), lab.now);
    stale_end.handle_timeout(lab.now);
    let stale = stale_end.poll_transmit().unwrap();
    assert!(!lab
        .client
        .handle_datagram(lab.now, addr(SERVER), &stale.payload));
    assert_eq!(lab.client.stats().stale, 1);
}

#[test]
fn compressed_frames_are_inflated_or_counted() {
    let mut lab = Lab::new(1, true, false);
    let mut codec = Codec::v1([0x33; 20], [0; 20], [0; 20]);
    let mut h = Header {
        cookie: 0x1234_5678,
        my_tick: 1,
        your_tick: 0,
        flag: 1,
    };
    let d = codec.seal(&h, &crate::compress::deflate(&frame(1)), 0);
    assert!(lab.client.handle_datagram(lab.now, addr(SERVER), &d));
    assert_eq!(lab.client.poll_frame().unwrap(), frame(1));
    h.my_tick = 2;
    let d = codec.seal(&h, b"not zlib", 0);
    assert!(lab.client.handle_datagram(lab.now, addr(SERVER), &d));
    assert!(lab.client.poll_frame().is_none());
    assert_eq!(lab.client.stats().compressed_dropped, 1);
}

#[test]
fn padding_respects_the_datagram_bound() {
    let mut lab = Lab::new(1, true, false);
    lab.run_until_active();
    for len in [1usize, 60, 1383, 1384, 1385, 1400, 1514, 1600] {
        assert!(lab.client.send_frame(lab.now, &vec![7; len]));
        let t = lab.client.poll_transmit().unwrap();
        let bare = V1_IV_LEN + HEADER_LEN + len + V1_IV_LEN;
        assert!(t.payload.len() >= bare && t.payload.len() < bare + 32);
        if bare >= 1426 {
            assert_eq!(t.payload.len(), bare, "no padding past the bound ({len})");
        } else {
            assert!(t.payload.len() < 1426, "{len}");
        }
    }
    assert!(!lab.client.send_frame(lab.now, &vec![7; 1601]));
    assert!(!lab.client.send_frame(lab.now, &[]));
}

#[test]
fn malformed_datagrams_never_panic() {
    for (version, encryption) in [(1, true), (2, true), (1, false)] {
        let mut lab = Lab::new(version, encryption, false);
        lab.run_until_active();
        let mut samples = Vec::new();
        for n in 0..8 {
            lab.server.send_frame(lab.now, &frame(n));
            lab.server.handle_timeout(lab.now + Duration::from_secs(4));
        }
        while let Some(t) = lab.server.poll_transmit() {
            samples.push(t.payload);
        }
        let mut rng = SplitMix64::new(0xf00d ^ version as u64);
        for i in 0..5_000 {
            let base = &samples[i % samples.len()];
            let input = crate::fuzz_tests::mutate(&mut rng, base);
            lab.client.handle_datagram(lab.now, addr(SERVER), &input);
            let mut noise = vec![0u8; rng.below(2200) as usize];
            rng.fill(&mut noise);
            lab.client.handle_datagram(lab.now, addr(SERVER), &noise);
        }
        while lab.client.poll_frame().is_some() {}
        // Still a working link afterwards.
        lab.run(Duration::from_secs(1));
        assert!(lab.client.is_ready(lab.now), "v{version} enc={encryption}");
    }
}

#[path = "udp_accel_compress_tests.rs"]
mod compress;
