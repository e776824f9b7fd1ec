//! The engine's reconnect loop in process: the real supervisor, bridge and tunnel driver over
//! the fake net ([`crate::transport::testkit`]) and a channel-backed TAP, in virtual time.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use softether_proto::error::ErrorCode;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::*;
use crate::engine::fake_tap::{fake_tap, fake_tap_with, FakeTap, Pod};
use crate::engine::mac::Mac;
use crate::engine::reconnect::PROBE_INTERVAL;
use crate::engine::recovery::RecoveryGate;
use crate::engine::status::{status_channel, EngineStatus, Phase, StopMode};
use crate::transport::testkit::{session_config, FakeNet};

const TIMEOUT: Duration = Duration::from_secs(20);

struct Engine {
    net: FakeNet,
    pod: Pod,
    status: watch::Receiver<EngineStatus>,
    stop: watch::Sender<Option<StopMode>>,
    task: JoinHandle<Result<StopMode, EngineError>>,
}

fn config(reconnect_delay: Duration) -> EngineConfig {
    EngineConfig {
        session: session_config(1),
        mac: Mac([2, 0, 0, 0, 0, 1]),
        dhcp_hostname: None,
        net: Default::default(),
        pin_server_route: false,
        mtu: None,
        offload: true,
        ack_thinning: true,
        reconnect_delay,
        seed: 5,
        id: "test".into(),
        requested_ip: None,
        adopt_address: None,
        on_error: StopMode::Teardown,
        recovery: RecoveryGate::new(1),
    }
}

fn start(net: &FakeNet, config: EngineConfig, tap_depth: usize) -> Engine {
    start_on(net, config, fake_tap(tap_depth))
}

fn start_on(net: &FakeNet, config: EngineConfig, (tap, pod): (FakeTap, Pod)) -> Engine {
    let (status_tx, status) = status_channel();
    let (stop, mut stop_rx) = watch::channel(None);
    let dialer = net.clone();
    let task = tokio::spawn(async move {
        let supervisor = Supervisor::new(
            &config,
            dialer,
            Arc::new(tap),
            None,
            None,
            None,
            &mut stop_rx,
            &status_tx,
            now(),
        );
        match supervisor.run().await {
            Exit::Stop(mode) => Ok(mode),
            Exit::Failed(e) => Err(e),
        }
    });
    Engine {
        net: net.clone(),
        pod,
        status,
        stop,
        task,
    }
}

impl Engine {
    /// Waits (virtual time, bounded) until the session is up again; returns how long it took.
    async fn up(&mut self) -> Duration {
        let since = Instant::now();
        let wait = self.status.wait_for(|s| s.phase == Phase::LoggedIn);
        tokio::time::timeout(Duration::from_secs(600), wait)
            .await
            .expect("the engine never came up")
            .expect("status channel");
        since.elapsed()
    }

    async fn down(&mut self) {
        let wait = self
            .status
            .wait_for(|s| matches!(s.phase, Phase::Reconnecting { .. }));
        tokio::time::timeout(Duration::from_secs(600), wait)
            .await
            .expect("the engine never noticed")
            .expect("status channel");
    }

    /// Whether a frame the pod sends reaches the server within a second.
    async fn uplink_works(&mut self, byte: u8) -> bool {
        let frame = Bytes::from(vec![byte; 60]);
        self.pod.send.send(frame.clone()).await.unwrap();
        let arrived = async { while self.net.recv_frame().await.unwrap() != frame {} };
        tokio::time::timeout(Duration::from_secs(1), arrived)
            .await
            .is_ok()
    }

    /// A frame from the pod reaches the server and one from the server reaches the pod.
    async fn traffic_flows(&mut self) {
        assert!(self.uplink_works(0x42).await, "pod → server");
        self.net.send_frame(&[0x24; 70]);
        let got = tokio::time::timeout(Duration::from_secs(1), self.pod.recv.recv());
        assert_eq!(got.await.expect("server → pod").unwrap().len(), 70);
    }

    async fn stop(self, mode: StopMode) -> Result<StopMode, EngineError> {
        let _ = self.stop.send(Some(mode));
        self.task.await.unwrap()
    }
}

#[tokio::test(start_paused = true)]
async fn traffic_is_back_within_a_probe_interval_whatever_the_outage() {
    let net = FakeNet::new(TIMEOUT);
    let mut engine = start(&net, config(Duration::from_secs(5)), 64);
    engine.up().await;
    engine.traffic_flows().await;
    for outage in [3, 10, 40, 300].map(Duration::from_secs) {
        net.kill();
        engine.down().await;
        tokio::time::sleep(outage).await;
        let probes = net.probes();
        net.start();
        let took = engine.up().await;
        assert!(
            took <= PROBE_INTERVAL + Duration::from_millis(50),
            "{outage:?} outage: up {took:?} after the server listened again"
        );
        engine.traffic_flows().await;
        assert!(net.probes() > probes, "the wait was not probed");
    }
    // Probes, not logins, ran during the outages: at most a handful of refused dials each.
    let (_, refused) = net.dials();
    assert!(refused <= 4 * 4, "{refused} refused logins");
    assert!(engine.stop(StopMode::Teardown).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_broken_connection_is_resumed_without_a_reconnect() {
    let net = FakeNet::new(TIMEOUT);
    let mut engine = start(&net, config(Duration::from_secs(5)), 64);
    engine.up().await;
    net.break_connections();
    // The resume is one more dial; no backoff, no reconnect counted.
    let wait = async {
        while net.dials().0 < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(1), wait)
        .await
        .expect("no resume");
    engine.traffic_flows().await;
    assert_eq!(engine.status.borrow().reconnects, 0);
    assert_eq!(
        engine.stop(StopMode::Detach).await.unwrap(),
        StopMode::Detach
    );
}

#[tokio::test(start_paused = true)]
async fn a_server_restarted_at_once_is_logged_into_again_at_once() {
    let net = FakeNet::new(TIMEOUT);
    let mut engine = start(&net, config(Duration::from_secs(5)), 64);
    engine.up().await;
    // Restarted before the engine could even try to resume: the resume is refused with
    // "no such session", and the login follows without a backoff.
    net.kill();
    net.start();
    let since = Instant::now();
    let relogged = async {
        while net.dials().0 < 3 || engine.status.borrow().phase != Phase::LoggedIn {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(1), relogged)
        .await
        .expect("no login right after the failed resume");
    assert!(
        since.elapsed() <= Duration::from_millis(100),
        "{:?}",
        since.elapsed()
    );
    engine.traffic_flows().await;
    assert_eq!(net.dials(), (3, 0), "login, resume, login");
    engine.stop(StopMode::Teardown).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_silent_server_is_left_after_its_timeout_and_logged_into_again() {
    let net = FakeNet::new(TIMEOUT);
    let mut engine = start(&net, config(Duration::from_secs(1)), 64);
    engine.up().await;
    let since = Instant::now();
    net.silence();
    engine.down().await;
    let noticed = since.elapsed();
    assert!(
        noticed >= TIMEOUT && noticed <= TIMEOUT + Duration::from_secs(1),
        "{noticed:?}"
    );
    engine.up().await;
    engine.traffic_flows().await;
    // The server was up all along: one probe at most, then the (short) backoff.
    assert!(net.probes() <= 1, "{}", net.probes());
    assert_eq!(engine.status.borrow().reconnects, 1);
    engine.stop(StopMode::Teardown).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_busy_server_is_retried_after_a_minute_without_probing() {
    let net = FakeNet::new(TIMEOUT);
    net.refuse_logins(Some(ErrorCode::HUB_IS_BUSY));
    let mut engine = start(&net, config(Duration::from_secs(1)), 64);
    engine.down().await;
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert_eq!(net.dials().0, 1, "retried before a minute");
    net.refuse_logins(None);
    let took = engine.up().await;
    assert!(took <= Duration::from_secs(8), "{took:?}");
    assert_eq!(net.probes(), 0);
    engine.traffic_flows().await;
    engine.stop(StopMode::Teardown).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn refused_credentials_stop_the_engine() {
    let net = FakeNet::new(TIMEOUT);
    net.refuse_logins(Some(ErrorCode::AUTH_FAILED));
    let engine = start(&net, config(Duration::from_secs(1)), 64);
    let result = tokio::time::timeout(Duration::from_secs(5), engine.task)
        .await
        .expect("the engine kept retrying")
        .unwrap();
    let Err(EngineError::Session(e)) = result else {
        panic!("{result:?}")
    };
    assert_eq!(e.server_code(), Some(ErrorCode::AUTH_FAILED));
    assert_eq!(net.dials().0, 1);
}

#[tokio::test(start_paused = true)]
async fn a_pod_that_stops_reading_neither_stalls_the_session_nor_buffers_without_bound() {
    let net = FakeNet::new(TIMEOUT);
    let mut engine = start(&net, config(Duration::from_secs(1)), 4);
    engine.up().await;
    // The pod reads nothing while the server floods it.
    for i in 0..3000u32 {
        net.send_frame(&i.to_be_bytes().repeat(20));
        if i % 100 == 0 {
            tokio::task::yield_now().await;
        }
    }
    tokio::time::sleep(TIMEOUT * 3).await;
    assert_eq!(
        engine.status.borrow().phase,
        Phase::LoggedIn,
        "keep-alives kept flowing"
    );
    assert_eq!(engine.status.borrow().reconnects, 0);
    // The other direction still works while the downlink is blocked.
    assert!(
        engine.uplink_works(0x77).await,
        "uplink blocked by a stalled downlink"
    );
    // A stop is honoured while the downlink waits for the pod.
    let _ = engine.stop.send(Some(StopMode::Detach));
    let stopped = tokio::time::timeout(Duration::from_secs(1), &mut engine.task).await;
    assert!(
        matches!(stopped, Ok(Ok(Ok(StopMode::Detach)))),
        "stop not honoured while the pod stalls: {stopped:?}"
    );
    // What waited for the pod is bounded by the queues, the rest was dropped like a NIC does.
    let mut held = 0;
    while let Ok(Some(_)) =
        tokio::time::timeout(Duration::from_millis(100), engine.pod.recv.recv()).await
    {
        held += 1;
    }
    assert!(held > 0 && held < 1000, "{held} frames held for the pod");
}

/// One TSO super-frame from an offload TAP reaches the server as ordinary frames of at most
/// 1514 bytes carrying the same bytes; a plain TAP's frames pass unchanged (the other tests).
#[tokio::test(start_paused = true)]
async fn an_offload_tap_super_frame_reaches_the_server_as_wire_frames() {
    use crate::engine::tap_offload::tcp_segment;
    use netcfg::offload::{Coalescer, VNET_HDR_LEN};
    let net = FakeNet::new(TIMEOUT);
    let tap = fake_tap_with(64, netcfg::TapOffload::Offload);
    let mut engine = start_on(&net, config(Duration::from_secs(5)), tap);
    engine.up().await;
    let segments: Vec<Vec<u8>> = (0..30).map(|i| tcp_segment(i * 1448, 1448)).collect();
    let mut super_frames = Vec::new();
    let mut coalescer = Coalescer::new();
    let mut arena = Vec::new();
    for seg in &segments {
        coalescer.push(&mut arena, seg, |f| {
            super_frames.push(Bytes::copy_from_slice(f))
        });
    }
    coalescer.flush(&mut arena, |f| super_frames.push(Bytes::copy_from_slice(f)));
    assert_eq!(super_frames.len(), 1);
    assert!(super_frames[0].len() > 40_000 + VNET_HDR_LEN);
    engine
        .pod
        .send
        .send(super_frames.pop().unwrap())
        .await
        .unwrap();
    for sent in &segments {
        let got = tokio::time::timeout(Duration::from_secs(1), engine.net.recv_frame())
            .await
            .expect("a segment")
            .unwrap();
        assert!(got.len() <= 1514);
        assert_eq!(got[54..], sent[54..]);
        assert_eq!(got[38..42], sent[38..42], "sequence number");
    }
    engine.stop(StopMode::Teardown).await.unwrap();
}

/// In-order segments from the server reach an offload TAP in fewer writes than frames, each
/// behind its `virtio_net_hdr`, with every byte in order.
#[tokio::test(start_paused = true)]
async fn server_segments_reach_an_offload_tap_coalesced() {
    use crate::engine::tap_offload::tcp_segment;
    use netcfg::offload::{VnetHdr, GSO_TCPV4, VNET_HDR_LEN};
    let net = FakeNet::new(TIMEOUT);
    let tap = fake_tap_with(64, netcfg::TapOffload::Offload);
    let mut engine = start_on(&net, config(Duration::from_secs(5)), tap);
    engine.up().await;
    let segments: Vec<Vec<u8>> = (0..30).map(|i| tcp_segment(i * 1448, 1448)).collect();
    for seg in &segments {
        engine.net.send_frame(seg);
    }
    let (mut payload, mut writes, mut gso) = (Vec::new(), 0, 0);
    while payload.len() < 30 * 1448 {
        let got = tokio::time::timeout(Duration::from_secs(1), engine.pod.recv.recv())
            .await
            .expect("a write")
            .unwrap();
        let hdr = VnetHdr::parse(&got).unwrap();
        gso += usize::from(hdr.gso_type == GSO_TCPV4);
        payload.extend_from_slice(&got[VNET_HDR_LEN + 54..]);
        writes += 1;
    }
    let sent: Vec<u8> = segments.iter().flat_map(|s| s[54..].to_vec()).collect();
    assert_eq!(payload, sent);
    assert!(
        writes < 30 && gso > 0,
        "{writes} writes, {gso} super-frames"
    );
    engine.stop(StopMode::Teardown).await.unwrap();
}
