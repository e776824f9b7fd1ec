//! The tunnel phase between a client and the fake server, in virtual time.

use super::*;

const TIMEOUT: Duration = Duration::from_secs(20);

fn pair() -> Pair {
    let config = FakeServerConfig {
        timeout: TIMEOUT,
        ..FakeServerConfig::default()
    };
    Pair::new(config, Instant::now(), 42)
}

#[test]
fn frames_flow_both_ways() {
    let mut p = pair();
    for i in 0..10u8 {
        p.client.queue_frame(&[i; 60]);
        p.server.send_frame(&[0x80 | i; 70]);
    }
    p.drive();
    assert_eq!(p.server_frames.len(), 10);
    assert_eq!(p.client_frames.len(), 10);
    assert_eq!(p.server_frames[3].as_ref(), &[3u8; 60][..]);
    assert_eq!(p.client_frames[9].as_ref(), &[0x89u8; 70][..]);
    assert_eq!(p.server.tunnel_stats().frames_in, 10);
}

#[test]
fn an_idle_session_lives_on_keepalives_sent_on_schedule() {
    let mut p = pair();
    p.advance(TIMEOUT * 10);
    assert_eq!(p.client_error, None);
    assert_eq!(p.server_error, None);
    let gaps: Vec<Duration> = p.client_sent_at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.len() >= 20,
        "{} keep-alives in 10 timeouts",
        gaps.len() + 1
    );
    // GenNextKeepAliveSpan: uniformly in [timeout/5, timeout/2).
    assert!(
        gaps.iter().all(|g| *g >= TIMEOUT / 5 && *g < TIMEOUT / 2),
        "{gaps:?}"
    );
    assert!(p.client.stats().keepalives_out as usize == p.client_sent_at.len());
    assert!(p.server.tunnel_stats().keepalives_in > 0);
}

#[test]
fn a_silent_server_times_the_client_out_after_exactly_the_session_timeout() {
    let mut p = pair();
    p.advance(Duration::from_secs(5));
    p.server.set_silent(true);
    let silent_from = p.now;
    let last_heard = p.now;
    p.advance(TIMEOUT * 2);
    let Some(TunnelError::Timeout { idle }) = p.client_error.clone() else {
        panic!("{:?}", p.client_error)
    };
    assert!(
        idle >= TIMEOUT && idle < TIMEOUT + Duration::from_secs(1),
        "{idle:?}"
    );
    // The last bytes from the server came at or before `silent_from`.
    assert!(last_heard <= silent_from);
}

#[test]
fn a_cut_link_times_out_both_sides_and_frames_sent_meanwhile_are_lost() {
    let mut p = pair();
    p.advance(Duration::from_secs(1));
    p.cut();
    p.client.queue_frame(&[7; 100]);
    p.drive();
    p.advance(TIMEOUT + Duration::from_secs(1));
    assert!(matches!(p.client_error, Some(TunnelError::Timeout { .. })));
    assert!(p
        .server_error
        .as_deref()
        .is_some_and(|e| e.contains("timed out")));
    assert!(p.server_frames.is_empty());
    // A closed server sends and accepts nothing any more.
    assert!(!p.server.in_tunnel());
    assert_eq!(p.server.poll_transmit(), None);
}

#[test]
fn a_short_cut_is_survived() {
    let mut p = pair();
    p.cut();
    p.advance(TIMEOUT / 2);
    p.restore();
    p.advance(TIMEOUT * 3);
    assert_eq!(p.client_error, None);
    assert_eq!(p.server_error, None);
}
