//! Virtual-time tests: a scripted server (dhcproto-built replies), no network, no clock.

mod untrusted_input;

use super::*;
use crate::testkit::{
    decode_request, reply_frame, FakeServer, ReplyBuilder, CLIENT_MAC, OFFERED, SERVER_IP,
    SERVER_MAC,
};
use crate::{arp, icmp, routes, ClasslessRoute};
use dhcproto::v4::{DhcpOption, Message, OptionCode, UnknownOption};

fn config() -> Config {
    let mut c = Config::new(CLIENT_MAC, 42);
    c.hostname = Some("pod-a".into());
    c
}

struct Harness {
    client: DhcpClient,
    start: Instant,
    now: Instant,
    server: FakeServer,
}

impl Harness {
    fn new(config: Config) -> Self {
        let start = Instant::now();
        Self {
            client: DhcpClient::new(config, start).unwrap(),
            start,
            now: start,
            server: FakeServer::default(),
        }
    }

    fn secs(&self) -> f64 {
        (self.now - self.start).as_secs_f64()
    }

    fn transmits(&mut self) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| self.client.poll_transmit(self.now)).collect()
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.client.poll_event()).collect()
    }

    /// Jumps to the next deadline (at most `limit` seconds from start) and returns what was sent.
    fn next_deadline(&mut self, limit: f64) -> Option<Vec<Vec<u8>>> {
        let t = self.client.poll_timeout()?;
        if (t - self.start).as_secs_f64() > limit {
            return None;
        }
        self.now = self.now.max(t);
        self.client.handle_timeout(self.now);
        Some(self.transmits())
    }

    /// Delivers every pending frame to the server and its answers back, until quiet.
    fn converse(&mut self) -> Vec<Message> {
        let mut sent = Vec::new();
        for _ in 0..10 {
            let frames = self.transmits();
            if frames.is_empty() {
                break;
            }
            for frame in frames {
                sent.push(decode_request(&frame).msg);
                if let Some(answer) = self.server.answer(&frame) {
                    assert!(self.client.handle_frame(self.now, &answer));
                }
            }
        }
        sent
    }

    fn bind(&mut self) -> Lease {
        self.converse();
        match self.events().as_slice() {
            [Event::Bound(lease)] => lease.clone(),
            other => panic!("expected Bound, got {other:?}"),
        }
    }

    fn one_event(&mut self) -> Event {
        let mut events = self.events();
        assert_eq!(events.len(), 1, "{events:?}");
        events.remove(0)
    }

    fn current_xid(&self) -> u32 {
        self.client
            .current_xid()
            .expect("client is in a transaction")
    }
}

fn kind(msg: &Message) -> MessageType {
    msg.opts().msg_type().unwrap()
}

fn opt(msg: &Message, code: OptionCode) -> Option<&DhcpOption> {
    msg.opts().get(code)
}

#[test]
fn full_dora() {
    let mut h = Harness::new(config());
    assert_eq!(h.client.state(), State::Init);
    assert_eq!(h.client.poll_timeout(), Some(h.now));
    let sent = h.converse();
    assert_eq!(
        sent.iter().map(kind).collect::<Vec<_>>(),
        [MessageType::Discover, MessageType::Request]
    );
    let (discover, request) = (&sent[0], &sent[1]);
    assert!(discover.flags().broadcast() && request.flags().broadcast());
    assert_eq!(request.xid(), discover.xid());
    let id = DhcpOption::ClientIdentifier([&[1][..], &CLIENT_MAC[..]].concat());
    assert_eq!(opt(discover, OptionCode::ClientIdentifier), Some(&id));
    assert_eq!(
        opt(discover, OptionCode::Hostname),
        Some(&DhcpOption::Hostname("pod-a".into()))
    );
    assert_eq!(
        opt(request, OptionCode::RequestedIpAddress),
        Some(&DhcpOption::RequestedIpAddress(OFFERED))
    );
    assert_eq!(
        opt(request, OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SERVER_IP))
    );
    assert_eq!(request.ciaddr(), Ipv4Addr::UNSPECIFIED);

    let Event::Bound(lease) = h.one_event() else {
        panic!("not bound")
    };
    assert_eq!(lease.address, OFFERED);
    assert_eq!(lease.prefix_len, 24);
    assert_eq!(lease.router, Some(SERVER_IP));
    assert_eq!(lease.dns_servers, [SERVER_IP, Ipv4Addr::new(9, 9, 9, 9)]);
    assert_eq!((lease.server_id, lease.server_mac), (SERVER_IP, SERVER_MAC));
    assert_eq!(lease.lease_time, Duration::from_secs(200));
    assert_eq!(h.client.state(), State::Bound);
    assert_eq!(h.client.lease(), Some(&lease));
    assert_eq!(
        h.client.poll_timeout(),
        Some(h.start + Duration::from_secs(100))
    );
}

#[test]
fn retransmit_backoff_doubles_to_cap_with_jitter() {
    let mut h = Harness::new(config());
    let mut times = Vec::new();
    while let Some(frames) = h.next_deadline(400.0) {
        assert_eq!(frames.len(), 1);
        assert_eq!(kind(&decode_request(&frames[0]).msg), MessageType::Discover);
        times.push(h.secs());
    }
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, base) in gaps.iter().zip([4.0, 8.0, 16.0, 32.0, 64.0, 64.0, 64.0]) {
        assert!(
            (gap - base).abs() <= 1.0,
            "gap {gap} not within 1 s of {base}: {gaps:?}"
        );
    }
    assert!(gaps.len() >= 7, "{gaps:?}");
    assert!(
        gaps.iter().any(|g| g.fract() != 0.0),
        "jitter applied: {gaps:?}"
    );
    assert_eq!(h.client.state(), State::Selecting);
}

#[test]
fn short_initial_retransmit_for_probes() {
    let mut c = config();
    c.initial_retransmit = Duration::from_millis(200);
    c.max_retransmit = Duration::from_millis(800);
    let mut h = Harness::new(c);
    let mut times = Vec::new();
    while h.next_deadline(3.0).is_some() {
        times.push(h.secs());
    }
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, base) in gaps.iter().zip([0.2, 0.4, 0.8, 0.8]) {
        assert!((gap - base).abs() <= 0.05 + 1e-9, "{gaps:?}");
    }
}

#[test]
fn nak_in_requesting_goes_back_to_discover() {
    let mut h = Harness::new(config());
    h.server.nak_requests = true;
    let first = h.transmits();
    let offer = h.server.answer(&first[0]).unwrap();
    assert!(h.client.handle_frame(h.now, &offer));
    assert_eq!(h.client.state(), State::Requesting);
    let request = h.transmits();
    let old_xid = decode_request(&request[0]).msg.xid();
    assert!(h
        .client
        .handle_frame(h.now, &h.server.answer(&request[0]).unwrap()));
    assert_eq!(
        h.events(),
        [Event::Nak {
            server_id: Some(SERVER_IP),
            message: None
        }]
    );
    let again = h.transmits();
    let discover = decode_request(&again[0]).msg;
    assert_eq!(kind(&discover), MessageType::Discover);
    assert_ne!(discover.xid(), old_xid);

    // A server that NAKs every time gets a pause before the next DISCOVER, not a tight loop.
    assert!(h
        .client
        .handle_frame(h.now, &h.server.answer(&again[0]).unwrap()));
    h.converse();
    assert!(matches!(h.events().as_slice(), [Event::Nak { .. }]));
    assert!(h.transmits().is_empty());
    assert_eq!(
        h.client.poll_timeout(),
        Some(h.now + Duration::from_secs(4))
    );
}

#[test]
fn requesting_falls_back_to_discover_after_silence() {
    let mut h = Harness::new(config());
    let first = h.transmits();
    h.client
        .handle_frame(h.now, &h.server.answer(&first[0]).unwrap());
    let mut kinds = Vec::new();
    let mut frames = h.transmits();
    while kinds.len() < 6 {
        kinds.extend(frames.iter().map(|f| kind(&decode_request(f).msg)));
        frames = h.next_deadline(1000.0).unwrap();
    }
    use MessageType::{Discover, Request};
    assert_eq!(
        kinds,
        [Request, Request, Request, Request, Discover, Discover]
    );
}

#[test]
fn renew_at_t1_is_unicast_to_server_mac_and_ip() {
    let mut h = Harness::new(config());
    let lease = h.bind();
    let frames = h.next_deadline(1000.0).unwrap();
    assert_eq!(h.secs(), 100.0);
    assert_eq!(h.client.state(), State::Renewing);
    let renew = decode_request(&frames[0]);
    assert_eq!(renew.dst_mac, SERVER_MAC);
    assert_eq!((renew.src_ip, renew.dst_ip), (OFFERED, SERVER_IP));
    assert_eq!(renew.msg.ciaddr(), OFFERED);
    assert!(!renew.msg.flags().broadcast());
    assert!(opt(&renew.msg, OptionCode::RequestedIpAddress).is_none());
    assert!(opt(&renew.msg, OptionCode::ServerIdentifier).is_none());
    assert!(renew.checksums_ok);

    assert!(h
        .client
        .handle_frame(h.now, &h.server.answer(&frames[0]).unwrap()));
    let Event::Renewed(renewed) = h.one_event() else {
        panic!("not renewed")
    };
    assert!(renewed.same_configuration(&lease));
    assert_eq!(renewed.acquired_at, h.now);
    assert_eq!(h.client.state(), State::Bound);
    assert_eq!(
        h.client.poll_timeout(),
        Some(h.now + Duration::from_secs(100))
    );
}

#[test]
fn silence_renews_then_rebinds_then_loses_lease() {
    let mut h = Harness::new(config());
    let lease = h.bind();
    let mut log = Vec::new();
    while let Some(frames) = h.next_deadline(200.0) {
        for f in frames {
            log.push((h.secs(), h.client.state(), decode_request(&f)));
        }
    }
    // T1 = 100: unicast; retry after max(60 s, half of the 75 s to T2) = 160; T2 = 175: broadcast.
    let summary: Vec<(f64, State, bool)> = log
        .iter()
        .map(|(t, s, r)| (*t, *s, r.dst_mac == [0xff; 6]))
        .collect();
    assert_eq!(
        summary[..3],
        [
            (100.0, State::Renewing, false),
            (160.0, State::Renewing, false),
            (175.0, State::Rebinding, true)
        ]
    );
    let rebind = &log[2].2;
    assert_eq!(
        (rebind.src_ip, rebind.dst_ip),
        (OFFERED, Ipv4Addr::BROADCAST)
    );
    assert_eq!(rebind.msg.ciaddr(), OFFERED);
    assert!(!rebind.msg.flags().broadcast());
    // At expiry (200 s) the lease is lost and DISCOVER starts from scratch.
    let (t, state, last) = log.last().unwrap();
    assert_eq!(
        (*t, *state, kind(&last.msg)),
        (200.0, State::Selecting, MessageType::Discover)
    );
    assert_eq!(
        h.events(),
        [Event::Lost {
            lease,
            reason: LostReason::Expired
        }]
    );
    assert_eq!(h.client.lease(), None);
}

#[test]
fn changed_configuration_on_renewal() {
    let mut h = Harness::new(config());
    let old = h.bind();
    h.server.extra = vec![DhcpOption::DomainNameServer(vec![Ipv4Addr::new(
        1, 1, 1, 1,
    )])];
    let frames = h.next_deadline(1000.0).unwrap();
    h.client
        .handle_frame(h.now, &h.server.answer(&frames[0]).unwrap());
    let Event::Changed { old: o, new } = h.one_event() else {
        panic!("no change")
    };
    assert_eq!(o, old);
    assert_eq!(new.dns_servers, [Ipv4Addr::new(1, 1, 1, 1)]);

    // A new address on rebind is a change too.
    h.server.address = Ipv4Addr::new(192, 168, 30, 77);
    h.now += Duration::from_secs(176);
    let frames = h.transmits();
    assert_eq!(h.client.state(), State::Rebinding);
    h.client
        .handle_frame(h.now, &h.server.answer(&frames[0]).unwrap());
    let Event::Changed { new, .. } = h.one_event() else {
        panic!("no change")
    };
    assert_eq!(new.address, Ipv4Addr::new(192, 168, 30, 77));
}

#[test]
fn nak_while_renewing_loses_lease() {
    let mut h = Harness::new(config());
    let lease = h.bind();
    h.server.nak_requests = true;
    let frames = h.next_deadline(1000.0).unwrap();
    h.client
        .handle_frame(h.now, &h.server.answer(&frames[0]).unwrap());
    assert_eq!(
        h.events(),
        [Event::Lost {
            lease,
            reason: LostReason::Nak
        }]
    );
    let discover = h.transmits();
    assert_eq!(
        kind(&decode_request(&discover[0]).msg),
        MessageType::Discover
    );
}

#[test]
fn init_reboot_asks_for_previous_address() {
    let mut c = config();
    c.requested_ip = Some(OFFERED);
    let mut h = Harness::new(c);
    assert_eq!(h.client.state(), State::InitReboot);
    let sent = h.converse();
    assert_eq!(sent.len(), 1);
    let req = &sent[0];
    assert_eq!(kind(req), MessageType::Request);
    assert_eq!(
        opt(req, OptionCode::RequestedIpAddress),
        Some(&DhcpOption::RequestedIpAddress(OFFERED))
    );
    assert!(opt(req, OptionCode::ServerIdentifier).is_none());
    assert_eq!(req.ciaddr(), Ipv4Addr::UNSPECIFIED);
    assert!(req.flags().broadcast());
    assert!(
        matches!(h.events().as_slice(), [Event::Bound(l)] if l.address == OFFERED && l.server_id == SERVER_IP)
    );
}

#[test]
fn init_reboot_nak_falls_back_to_discover() {
    let mut c = config();
    c.requested_ip = Some(Ipv4Addr::new(10, 99, 0, 1));
    let mut h = Harness::new(c);
    h.server.nak_requests = true;
    let frames = h.transmits();
    h.client
        .handle_frame(h.now, &h.server.answer(&frames[0]).unwrap());
    assert!(matches!(h.events().as_slice(), [Event::Nak { .. }]));
    h.server.nak_requests = false;
    let sent = h.converse();
    assert_eq!(
        sent.iter().map(kind).collect::<Vec<_>>(),
        [MessageType::Discover, MessageType::Request]
    );
    assert!(matches!(h.events().as_slice(), [Event::Bound(l)] if l.address == OFFERED));
}

#[test]
fn init_reboot_silence_falls_back_to_discover() {
    let mut c = config();
    c.requested_ip = Some(OFFERED);
    let mut h = Harness::new(c);
    let mut log = vec![(0.0, kind(&decode_request(&h.transmits()[0]).msg))];
    while log.len() < 3 {
        for f in h.next_deadline(100.0).unwrap() {
            log.push((h.secs(), kind(&decode_request(&f).msg)));
        }
    }
    assert_eq!(log[1].1, MessageType::Request);
    assert_eq!(log[2].1, MessageType::Discover);
    assert!((log[2].0 - 12.0).abs() <= 2.0, "{log:?}");
}

#[test]
fn restart_reports_loss_and_reboots_into_previous_address() {
    let mut h = Harness::new(config());
    let lease = h.bind();
    h.client.restart(h.now);
    assert_eq!(
        h.events(),
        [Event::Lost {
            lease,
            reason: LostReason::Restarted
        }]
    );
    assert_eq!(h.client.state(), State::InitReboot);
    let sent = h.converse();
    assert_eq!(
        opt(&sent[0], OptionCode::RequestedIpAddress),
        Some(&DhcpOption::RequestedIpAddress(OFFERED))
    );
    assert!(matches!(h.events().as_slice(), [Event::Bound(_)]));
}

#[test]
fn release_frame_contents() {
    let mut h = Harness::new(config());
    let lease = h.bind();
    let frame = h.client.release().expect("a lease was held");
    let rel = decode_request(&frame);
    assert_eq!((rel.dst_mac, rel.src_mac), (SERVER_MAC, CLIENT_MAC));
    assert_eq!((rel.src_ip, rel.dst_ip), (lease.address, lease.server_id));
    assert_eq!(kind(&rel.msg), MessageType::Release);
    assert_eq!(rel.msg.ciaddr(), OFFERED);
    assert!(!rel.msg.flags().broadcast());
    assert_eq!(
        opt(&rel.msg, OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SERVER_IP))
    );
    assert!(opt(&rel.msg, OptionCode::ClientIdentifier).is_some());
    assert!(opt(&rel.msg, OptionCode::RequestedIpAddress).is_none());
    assert!(opt(&rel.msg, OptionCode::ParameterRequestList).is_none());
    assert!(rel.checksums_ok);
    assert_eq!(h.client.state(), State::Stopped);
    assert_eq!((h.client.poll_timeout(), h.transmits().len()), (None, 0));
    assert_eq!(h.client.release(), None, "nothing left to release");
    h.client.restart(h.now);
    assert_eq!(h.client.state(), State::InitReboot);
}

fn bound_routes(extra: Vec<DhcpOption>) -> Lease {
    let mut h = Harness::new(config());
    h.server.extra = extra;
    h.bind()
}

#[test]
fn option_121_wins_over_249() {
    let r121: ClasslessRoute = ("10.8.0.0/16".parse().unwrap(), SERVER_IP);
    let r249: ClasslessRoute = ("172.16.0.0/12".parse().unwrap(), SERVER_IP);
    let o249 = DhcpOption::Unknown(UnknownOption::new(
        249.into(),
        routes::encode_classless_routes(&[r249]),
    ));
    let both = bound_routes(vec![
        DhcpOption::ClasslessStaticRoute(vec![r121]),
        o249.clone(),
    ]);
    assert_eq!(both.classless_routes, [r121]);
    let only_249 = bound_routes(vec![o249]);
    assert_eq!(only_249.classless_routes, [r249]);
    assert_eq!(only_249.default_gateway(), None);
}

#[test]
fn malformed_option_121_is_ignored() {
    let bad = DhcpOption::Unknown(UnknownOption::new(
        OptionCode::ClasslessStaticRoute,
        vec![33, 1, 2, 3],
    ));
    let lease = bound_routes(vec![bad]);
    assert!(lease.classless_routes.is_empty());
    assert_eq!(lease.default_gateway(), Some(SERVER_IP));
    let truncated = DhcpOption::Unknown(UnknownOption::new(
        OptionCode::ClasslessStaticRoute,
        vec![24, 10, 0],
    ));
    assert!(bound_routes(vec![truncated]).classless_routes.is_empty());
}

#[test]
fn late_timer_crossing_every_deadline_goes_straight_to_discover() {
    let mut h = Harness::new(config());
    let lease = h.bind();
    h.now += Duration::from_secs(10_000);
    let frames = h.transmits();
    assert_eq!(frames.len(), 1, "no stale RENEW/REBIND frames");
    assert_eq!(kind(&decode_request(&frames[0]).msg), MessageType::Discover);
    assert_eq!(
        h.events(),
        [Event::Lost {
            lease,
            reason: LostReason::Expired
        }]
    );
}

#[test]
fn infinite_lease_schedules_nothing() {
    let mut h = Harness::new(config());
    h.server.lease_secs = u32::MAX;
    let lease = h.bind();
    assert!(lease.is_infinite());
    assert_eq!(h.client.poll_timeout(), None);
    h.now += Duration::from_secs(86_400 * 365);
    assert!(h.transmits().is_empty());
    assert_eq!(h.client.state(), State::Bound);
}
