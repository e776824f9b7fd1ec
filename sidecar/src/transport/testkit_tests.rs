//! The transport over in-memory connections to the fake server, in virtual time.

use super::*;
use crate::transport::driver::{spawn_tunnel, TunnelExit};
use crate::transport::establish::establish_with;
use crate::transport::join::{resume_with, ResumeTicket};
use softether_proto::error::RetryClass;
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_secs(20);

#[tokio::test(start_paused = true)]
async fn login_over_an_in_memory_connection() {
    let net = FakeNet::new(TIMEOUT);
    let est = establish_with(&net, &session_config(1)).await.unwrap();
    assert_eq!(est.welcome.session_name, "SID-ALICE-1");
    assert_eq!(est.server_addr, SERVER);
    assert_eq!(est.server_cert_der, CERT);
    assert_eq!(est.welcome.timeout, TIMEOUT);
    assert!(est.additional.is_empty());
    assert_eq!(net.dials(), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn additional_connections_join_and_carry_frames() {
    let net = FakeNet::new(TIMEOUT);
    let est = establish_with(&net, &session_config(4)).await.unwrap();
    assert_eq!(est.additional.len(), 3);
    assert_eq!(net.dials(), (4, 0));
    let mut tunnel = spawn_tunnel(est, 7);
    assert_eq!(tunnel.connections(), 4);
    for i in 0..20u8 {
        tunnel
            .outgoing
            .send(Bytes::from(vec![i; 64]))
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..20 {
        got.push(net.recv_frame().await.unwrap()[0]);
    }
    got.sort();
    assert_eq!(
        got,
        (0..20).collect::<Vec<u8>>(),
        "every frame arrives once"
    );
    net.send_frame(&[0xaa; 90]);
    let frame = tunnel.incoming.recv().await.unwrap();
    assert_eq!(frame.as_ref(), &[0xaa; 90][..]);
    let (result, stats) = tunnel.close().await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(stats.tunnel.frames_out, 20);
}

#[tokio::test(start_paused = true)]
async fn an_idle_session_is_kept_alive_on_schedule() {
    let net = FakeNet::new(TIMEOUT);
    let est = establish_with(&net, &session_config(1)).await.unwrap();
    let tunnel = spawn_tunnel(est, 3);
    tokio::time::sleep(TIMEOUT * 10).await;
    assert!(
        !tunnel.is_finished(),
        "an idle session must survive on keep-alives"
    );
    let stats = tunnel.stats();
    // One keep-alive every [timeout/5, timeout/2): 20..50 in ten timeouts.
    let sent = stats.tunnel.keepalives_out;
    assert!((20..=50).contains(&sent), "{sent} keep-alives sent");
    assert!(stats.tunnel.keepalives_in >= 20, "{stats:?}");
}

#[tokio::test(start_paused = true)]
async fn a_silent_server_times_the_session_out_after_its_timeout() {
    let net = FakeNet::new(TIMEOUT);
    let est = establish_with(&net, &session_config(1)).await.unwrap();
    let tunnel = spawn_tunnel(est, 3);
    net.silence();
    let silent_since = Instant::now();
    let (result, _) = tunnel.join().await;
    let waited = silent_since.elapsed();
    let Err(TunnelExit::Timeout { idle, .. }) = result else {
        panic!("{result:?}")
    };
    assert!(idle >= TIMEOUT, "{idle:?}");
    assert!(waited <= TIMEOUT + Duration::from_secs(1), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn a_broken_connection_is_resumed_and_a_restarted_server_refuses_the_old_session() {
    let net = FakeNet::new(TIMEOUT);
    let config = session_config(2);
    let est = establish_with(&net, &config).await.unwrap();
    let ticket = ResumeTicket::of(&est);
    let tunnel = spawn_tunnel(est, 3);
    net.break_connections();
    let (result, _) = tunnel.join().await;
    assert!(
        matches!(result, Err(TunnelExit::ServerClosed { .. })),
        "{result:?}"
    );
    // The server kept the session: rejoin it, extra connection included.
    let est = resume_with(&net, &config, &ticket).await.unwrap();
    assert_eq!(est.additional.len(), 1);
    let tunnel = spawn_tunnel(est, 4);
    net.kill();
    let (result, _) = tunnel.join().await;
    assert!(
        matches!(result, Err(TunnelExit::ServerClosed { .. })),
        "{result:?}"
    );
    let down = resume_with(&net, &config, &ticket).await.err().unwrap();
    assert!(down.is_unreachable(), "{down}");
    net.start();
    let gone = resume_with(&net, &config, &ticket).await.err().unwrap();
    assert_eq!(
        gone.server_code(),
        Some(ErrorCode::SESSION_TIMEOUT),
        "{gone}"
    );
    assert!(!gone.is_unreachable());
    assert!(establish_with(&net, &config).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn refusals_have_their_retry_classes() {
    let net = FakeNet::new(TIMEOUT);
    let config = session_config(1);
    let cases = [
        (ErrorCode::HUB_IS_BUSY, RetryClass::Slow),
        (ErrorCode::TOO_MANY_USER_SESSION, RetryClass::Slow),
        (ErrorCode::AUTH_FAILED, RetryClass::Never),
        (ErrorCode::INTERNAL_ERROR, RetryClass::Normal),
    ];
    for (code, class) in cases {
        net.refuse_logins(Some(code));
        let e = establish_with(&net, &config).await.err().unwrap();
        assert_eq!(e.server_code(), Some(code), "{e}");
        assert_eq!(e.retry_class(), class, "{e}");
        assert!(!e.is_unreachable());
    }
    net.refuse_logins(None);
    net.kill();
    let e = establish_with(&net, &config).await.err().unwrap();
    assert!(
        e.is_unreachable() && e.retry_class() == RetryClass::Normal,
        "{e}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_reader_behind_slows_the_server_down_instead_of_losing_frames() {
    let net = FakeNet::new(TIMEOUT);
    let est = establish_with(&net, &session_config(1)).await.unwrap();
    let mut tunnel = spawn_tunnel(est, 3);
    // Eight times what the queue to the TAP holds, while nobody reads it.
    const FRAMES: u32 = 2048;
    for i in 0..FRAMES {
        let mut frame = vec![0u8; 200];
        frame[..4].copy_from_slice(&i.to_be_bytes());
        net.send_frame(&frame);
    }
    for i in 0..FRAMES {
        let frame = tunnel.incoming.recv().await.unwrap();
        assert_eq!(frame[..4], i.to_be_bytes(), "frames in order, none lost");
    }
    let (result, stats) = tunnel.close().await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(stats.frames_dropped_in, 0);
}

#[tokio::test(start_paused = true)]
async fn a_reader_stuck_for_longer_than_the_timeout_loses_frames_not_the_session() {
    let net = FakeNet::new(TIMEOUT);
    let est = establish_with(&net, &session_config(1)).await.unwrap();
    let mut tunnel = spawn_tunnel(est, 4);
    for _ in 0..1000 {
        net.send_frame(&[1; 300]);
    }
    tokio::time::sleep(TIMEOUT * 2).await;
    assert!(!tunnel.is_finished(), "keep-alives were still read");
    while tunnel.incoming.try_recv().is_ok() {}
    net.send_frame(&[2; 300]);
    loop {
        let frame = tunnel.incoming.recv().await.unwrap();
        if frame[0] == 2 {
            break;
        }
    }
    let (result, stats) = tunnel.close().await;
    assert!(result.is_ok(), "{result:?}");
    assert!(stats.frames_dropped_in > 0);
}

#[tokio::test(start_paused = true)]
async fn login_and_frames_survive_a_connection_carrying_seven_bytes_at_a_time() {
    let net = FakeNet::with_pipe(TIMEOUT, 7);
    let est = establish_with(&net, &session_config(2)).await.unwrap();
    assert_eq!(est.additional.len(), 1);
    let mut tunnel = spawn_tunnel(est, 9);
    tunnel
        .outgoing
        .send(Bytes::from(vec![5; 1500]))
        .await
        .unwrap();
    assert_eq!(net.recv_frame().await.unwrap().len(), 1500);
    net.send_frame(&[6; 1514]);
    assert_eq!(tunnel.incoming.recv().await.unwrap().len(), 1514);
    tokio::time::sleep(TIMEOUT * 3).await;
    assert!(!tunnel.is_finished());
}

#[tokio::test(start_paused = true)]
async fn a_server_that_accepts_but_never_answers_fails_the_login_at_the_handshake_timeout() {
    let net = FakeNet::new(TIMEOUT);
    net.hang_new_connections(true);
    let config = session_config(1);
    let since = Instant::now();
    let e = establish_with(&net, &config).await.err().unwrap();
    assert!(
        matches!(e, SessionError::Timeout { stage: "SoftEther handshake", after, .. } if after == config.handshake_timeout),
        "{e}"
    );
    assert_eq!(since.elapsed(), config.handshake_timeout);
    // It accepted the connection: not "unreachable", so the engine backs off without probing.
    assert!(!e.is_unreachable());
    assert_eq!(e.retry_class(), RetryClass::Normal);
}
