//! The UDP task against a sans-IO fake server on loopback, in paused tokio time: frames go over
//! TCP until the link is active, over UDP while it is, back to TCP when UDP is blocked, and to UDP
//! again when it returns.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use softether_proto::udp_accel::Endpoint;

use super::*;

const SERVER_KEY_V2: [u8; 128] = [0x44; 128];

struct FakeServer {
    /// Frames the server received over UDP.
    frames: mpsc::UnboundedReceiver<Bytes>,
    /// Datagrams in both directions are dropped while set.
    blocked: Arc<AtomicBool>,
    /// Frames the server sends to the client over UDP (when its side is ready).
    send: mpsc::UnboundedSender<Bytes>,
}

fn grant(port: u16) -> UdpAccelGrant {
    UdpAccelGrant {
        version: 2,
        server_ip: None,
        server_port: port,
        server_key_v1: [0x33; 20],
        server_key_v2: Box::new(SERVER_KEY_V2),
        server_cookie: 0xdead_beef,
        client_cookie: 0x1234_5678,
        use_encryption: true,
        fast_disconnect_detect: true,
    }
}

/// Runs the server end of `grant` for the client at `client` on `socket`.
fn spawn_server(
    socket: UdpSocket,
    offer: &UdpAccelOffer,
    g: &UdpAccelGrant,
    client: SocketAddr,
    compress: bool,
) -> FakeServer {
    let e = Endpoint::server_side(offer, g, client);
    let now = clock();
    let mut accel = UdpAccel::new(&e, now, now, [5; 20], 11).unwrap();
    accel.set_compress(compress);
    let (frames_tx, frames) = mpsc::unbounded_channel();
    let (send, mut to_send) = mpsc::unbounded_channel::<Bytes>();
    let blocked = Arc::new(AtomicBool::new(false));
    let is_blocked = blocked.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let now = clock();
            accel.handle_timeout(now);
            while let Some(t) = accel.poll_transmit() {
                if !is_blocked.load(Ordering::Relaxed) {
                    let _ = socket.send_to(&t.payload, t.dest).await;
                }
            }
            let deadline = tokio::time::Instant::from_std(accel.poll_timeout(now));
            tokio::select! {
                r = socket.recv_from(&mut buf) => {
                    let Ok((n, src)) = r else { return };
                    if !is_blocked.load(Ordering::Relaxed) {
                        accel.handle_datagram(clock(), src, &buf[..n]);
                    }
                    while let Some(f) = accel.poll_frame() {
                        let _ = frames_tx.send(f);
                    }
                }
                f = to_send.recv() => match f {
                    Some(f) => { accel.send_frame(clock(), &f); }
                    None => return,
                },
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    });
    FakeServer {
        frames,
        blocked,
        send,
    }
}

async fn wait_for_mode(ind: &UdpIndicator, want: UdpMode) {
    for _ in 0..600 {
        if ind.get() == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("UDP never became {want:?} (is {:?})", ind.get());
}

fn frame(n: u8) -> Bytes {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x5e, 0, 0, 0, 0, n, 0x08, 0x00]);
    f.extend(std::iter::repeat_n(n, 50));
    Bytes::from(f)
}

#[tokio::test(start_paused = true)]
async fn frames_follow_the_link_state() {
    let local: IpAddr = "127.0.0.1".parse().unwrap();
    let setup = prepare(local, 2).await.expect("udp socket");
    let client_addr = setup.socket.local_addr().unwrap();
    let server_socket = UdpSocket::bind((local, 0)).await.unwrap();
    let g = grant(server_socket.local_addr().unwrap().port());
    let mut server = spawn_server(server_socket, &setup.offer, &g, client_addr, false);
    let channel = setup
        .accept(Some(&g), SocketAddr::new(local, 443))
        .expect("granted");
    assert_eq!(channel.cipher_name(), "ChaCha20-Poly1305");

    let (caller_tx, caller_rx) = mpsc::channel(64);
    let (in_tx, mut in_rx) = mpsc::channel(64);
    let (close_tx, close_rx) = watch::channel(false);
    let (_abort_tx, abort_rx) = watch::channel(false);
    let (mut tcp_rx, running) = interpose(
        Some(channel),
        false,
        caller_rx,
        &in_tx,
        close_rx,
        abort_rx,
        64,
    );
    let running = running.expect("task");
    let ind = running.indicator.clone();

    // Not ready yet: the frame goes to the TCP driver.
    caller_tx.send(frame(1)).await.unwrap();
    assert_eq!(tcp_rx.recv().await.unwrap(), frame(1));
    assert_ne!(ind.get(), UdpMode::Active);

    // 10 s of working UDP later: over UDP, nothing on TCP; and the server's frames arrive.
    wait_for_mode(&ind, UdpMode::Active).await;
    caller_tx.send(frame(2)).await.unwrap();
    assert_eq!(server.frames.recv().await.unwrap(), frame(2));
    assert!(tcp_rx.try_recv().is_err());
    tokio::time::sleep(Duration::from_secs(11)).await; // the server decides on its own
    server.send.send(frame(3)).unwrap();
    assert_eq!(in_rx.recv().await.unwrap(), frame(3));

    // UDP blocked: lost after the fast dead-link timeout, frames back on TCP.
    server.blocked.store(true, Ordering::Relaxed);
    wait_for_mode(&ind, UdpMode::Lost).await;
    caller_tx.send(frame(4)).await.unwrap();
    assert_eq!(tcp_rx.recv().await.unwrap(), frame(4));

    // Allowed again: active again.
    server.blocked.store(false, Ordering::Relaxed);
    wait_for_mode(&ind, UdpMode::Active).await;
    caller_tx.send(frame(5)).await.unwrap();
    assert_eq!(server.frames.recv().await.unwrap(), frame(5));

    // Closing the session ends the task and hands the channel back (for a resumed session).
    close_tx.send(true).unwrap();
    let channel = running.finish().await.expect("channel back");
    assert_eq!(ind.get(), UdpMode::Off);
    assert_eq!(channel.server, SocketAddr::new(local, g.server_port));
}

#[tokio::test]
async fn no_grant_means_tcp_only() {
    let setup = prepare("127.0.0.1".parse().unwrap(), 2).await.unwrap();
    assert!(setup
        .accept(None, "127.0.0.1:443".parse().unwrap())
        .is_none());
    let (_tx, rx) = mpsc::channel::<Bytes>(1);
    let (in_tx, _in_rx) = mpsc::channel(1);
    let (_c, close) = watch::channel(false);
    let (_a, abort) = watch::channel(false);
    let (_rx, ind) = interpose(None, false, rx, &in_tx, close, abort, 1);
    assert!(ind.is_none());
}

/// A frame of `len` bytes: compressible (a repeated pattern) or not (pseudo-random).
fn big_frame(n: u16, len: usize, compressible: bool) -> Bytes {
    let mut x = u32::from(n).wrapping_mul(2_654_435_761) | 1;
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x5e, 0, 0, 0, (n >> 8) as u8, n as u8, 0x08, 0x00]);
    f.extend((14..len).map(|i| {
        if compressible {
            (i % 11) as u8
        } else {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        }
    }));
    Bytes::from(f)
}

#[tokio::test(start_paused = true)]
async fn compressed_session_moves_bursts_over_udp_whole_and_in_order() {
    let local: IpAddr = "127.0.0.1".parse().unwrap();
    let setup = prepare(local, 2).await.expect("udp socket");
    let client_addr = setup.socket.local_addr().unwrap();
    let server_socket = UdpSocket::bind((local, 0)).await.unwrap();
    let g = grant(server_socket.local_addr().unwrap().port());
    let mut server = spawn_server(server_socket, &setup.offer, &g, client_addr, true);
    let channel = setup.accept(Some(&g), SocketAddr::new(local, 443)).unwrap();
    let (caller_tx, caller_rx) = mpsc::channel(256);
    let (in_tx, mut in_rx) = mpsc::channel(256);
    let (close_tx, close_rx) = watch::channel(false);
    let (_abort_tx, abort_rx) = watch::channel(false);
    let (mut tcp_rx, running) = interpose(
        Some(channel),
        true,
        caller_rx,
        &in_tx,
        close_rx,
        abort_rx,
        256,
    );
    let running = running.unwrap();
    wait_for_mode(&running.indicator, UdpMode::Active).await;
    tokio::time::sleep(Duration::from_secs(11)).await; // the server's side becomes ready too

    // Upload: bursts larger than one send batch, mixed sizes and compressibility.
    for chunk in 0..6u16 {
        let burst: Vec<Bytes> = (0..100u16)
            .map(|i| {
                let n = chunk * 100 + i;
                big_frame(n, 60 + usize::from(n % 8) * 207, n % 3 != 0)
            })
            .collect();
        for f in &burst {
            caller_tx.send(f.clone()).await.unwrap();
        }
        for f in &burst {
            assert_eq!(&server.frames.recv().await.unwrap(), f);
        }
    }
    assert!(tcp_rx.try_recv().is_err(), "nothing fell back to TCP");

    // Download: the server's compressed frames are inflated.
    for n in 0..100u16 {
        server.send.send(big_frame(n, 1514, n % 2 == 0)).unwrap();
    }
    for n in 0..100u16 {
        assert_eq!(in_rx.recv().await.unwrap(), big_frame(n, 1514, n % 2 == 0));
    }
    close_tx.send(true).unwrap();
    assert!(running.finish().await.is_some());
}
