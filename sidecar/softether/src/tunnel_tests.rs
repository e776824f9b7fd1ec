use super::*;

const T: Duration = Duration::from_secs(20);

fn frame(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j) as u8).collect()
}

fn records(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = (frames.len() as u32).to_be_bytes().to_vec();
    for f in frames {
        out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

fn drain(t: &mut Tunnel) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| t.poll_frame())
        .map(|b| b.to_vec())
        .collect()
}

#[test]
fn queued_frames_form_one_batch_record() {
    let now = Instant::now();
    let mut t = Tunnel::new(now, T, 1);
    let frames: Vec<Vec<u8>> = (0..5).map(|i| frame(i, 60 + i)).collect();
    for f in &frames {
        t.queue_frame(f);
    }
    assert!(t.has_pending_frames());
    let rec = t.poll_transmit(now).unwrap();
    assert_eq!(rec.to_vec(), records(&frames));
    assert!(
        t.poll_transmit(now).is_none(),
        "no keep-alive right after sending"
    );
    assert_eq!(t.stats().frames_out, 5);
    assert_eq!(
        t.stats().bytes_out,
        frames.iter().map(|f| f.len() as u64).sum::<u64>()
    );
}

#[test]
fn large_batches_are_split_at_256k() {
    let now = Instant::now();
    let mut tx = Tunnel::new(now, T, 1);
    let mut rx = Tunnel::new(now, T, 2);
    let frames: Vec<Vec<u8>> = (0..400).map(|i| frame(i, 1514)).collect();
    for f in &frames {
        tx.queue_frame(f);
    }
    let mut n = 0;
    while let Some(rec) = tx.poll_transmit(now) {
        assert!(rec.len() <= MAX_BATCH_BYTES + 1514 + 8);
        rx.handle_input(now, &rec).unwrap();
        n += 1;
    }
    assert_eq!(n, 3);
    assert_eq!(drain(&mut rx), frames);
}

#[test]
fn oversized_and_empty_frames_are_not_sent() {
    let now = Instant::now();
    let mut t = Tunnel::new(now, T, 1);
    t.queue_frame(&[]);
    t.queue_frame(&vec![0; MAX_FRAME + 1]);
    assert!(!t.has_pending_frames());
    assert_eq!(t.stats().frames_out_dropped, 2);
}

fn mixed_stream() -> (Vec<u8>, Vec<Vec<u8>>) {
    let a: Vec<Vec<u8>> = (0..3).map(|i| frame(i, 100 + i)).collect();
    let b = vec![frame(9, 1514), frame(10, MAX_BLOCK as usize)];
    let mut s = records(&a);
    s.extend_from_slice(&[0, 0, 0, 0]); // N = 0
    s.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 5, 1, 2, 3, 4, 5]);
    s.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
    // A batch whose middle block has length 0 (skipped).
    s.extend_from_slice(&3u32.to_be_bytes());
    s.extend_from_slice(&(b[0].len() as u32).to_be_bytes());
    s.extend_from_slice(&b[0]);
    s.extend_from_slice(&0u32.to_be_bytes());
    s.extend_from_slice(&(b[1].len() as u32).to_be_bytes());
    s.extend_from_slice(&b[1]);
    (s, a.into_iter().chain(b).collect())
}

#[test]
fn any_chunking_gives_the_same_frames() {
    let (stream, expected) = mixed_stream();
    for chunk in [1, 2, 3, 5, 8, 1000, stream.len()] {
        let now = Instant::now();
        let mut t = Tunnel::new(now, T, 3);
        let mut got = Vec::new();
        for part in stream.chunks(chunk) {
            t.handle_input(now, part).unwrap();
            got.extend(drain(&mut t));
        }
        assert_eq!(got, expected, "chunk {chunk}");
        assert_eq!(t.stats().keepalives_in, 2);
        assert_eq!(t.stats().frames_in, 5);
    }
}

#[test]
fn oversize_records_kill_the_tunnel() {
    let now = Instant::now();
    let mut t = Tunnel::new(now, T, 3);
    let mut s = 1u32.to_be_bytes().to_vec();
    s.extend_from_slice(&(MAX_BLOCK + 1).to_be_bytes());
    assert_eq!(
        t.handle_input(now, &s),
        Err(TunnelError::BlockTooLarge(MAX_BLOCK + 1))
    );
    assert_eq!(
        t.handle_input(now, &[0, 0, 0, 0]),
        Err(TunnelError::BlockTooLarge(MAX_BLOCK + 1))
    );
    let mut t = Tunnel::new(now, T, 3);
    let ka = [0xff, 0xff, 0xff, 0xff, 0, 0, 2, 1];
    assert_eq!(
        t.handle_input(now, &ka),
        Err(TunnelError::KeepAliveTooLarge(513))
    );
    let mut t = Tunnel::new(now, T, 3);
    let ok = [0xff, 0xff, 0xff, 0xff, 0, 0, 2, 0];
    assert_eq!(t.handle_input(now, &ok), Ok(()));
}

#[test]
fn keepalive_schedule_in_virtual_time() {
    let t0 = Instant::now();
    for seed in 0..50 {
        let mut t = Tunnel::new(t0, T, seed);
        let due = t.poll_timeout();
        assert!(due >= t0 + T / 5 && due < t0 + T / 2, "seed {seed}");
        assert!(t.poll_transmit(due - Duration::from_millis(1)).is_none());
        let ka = t.poll_transmit(due).unwrap();
        assert_eq!(&ka[..4], &[0xff; 4]);
        let len = u32::from_be_bytes([ka[4], ka[5], ka[6], ka[7]]) as usize;
        assert!(len <= 64 && ka.len() == 8 + len);
        let next = t.poll_timeout();
        assert!(next >= due + T / 5 && next < due + T / 2);
        // Data also resets the keep-alive timer.
        t.queue_frame(&[1; 60]);
        let at = due + Duration::from_secs(1);
        t.poll_transmit(at).unwrap();
        assert!(t.poll_timeout() >= at + T / 5);
        assert_eq!(t.stats().keepalives_out, 1);
        // Our own keep-alive is accepted by a peer.
        let mut peer = Tunnel::new(t0, T, 9);
        peer.handle_input(t0, &ka).unwrap();
        assert_eq!(peer.stats().keepalives_in, 1);
    }
}

#[test]
fn timeout_detection() {
    let t0 = Instant::now();
    let mut t = Tunnel::new(t0, T, 4);
    assert!(t.poll_timeout() < t0 + T);
    assert_eq!(t.handle_timeout(t0 + T - Duration::from_millis(1)), Ok(()));
    // A keep-alive from the peer at 15 s moves the deadline.
    t.handle_input(
        t0 + Duration::from_secs(15),
        &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0],
    )
    .unwrap();
    assert_eq!(t.handle_timeout(t0 + T), Ok(()));
    let err = t.handle_timeout(t0 + Duration::from_secs(35)).unwrap_err();
    assert_eq!(err, TunnelError::Timeout { idle: T });
    assert!(err.to_string().contains("nothing received"));
    assert!(t
        .handle_input(t0 + Duration::from_secs(36), &[0; 4])
        .is_err());
}

#[test]
fn poll_timeout_is_bounded_by_receive_deadline() {
    let t0 = Instant::now();
    let mut t = Tunnel::new(t0, Duration::from_secs(5), 4);
    let mut now = t0;
    // Sending keeps happening, but with nothing received the deadline stays last_receive + T.
    for _ in 0..10 {
        now = t.poll_timeout();
        if t.handle_timeout(now).is_err() {
            break;
        }
        t.poll_transmit(now);
    }
    assert_eq!(now, t0 + Duration::from_secs(5));
}

#[test]
fn compressed_sessions_deflate_every_block_and_drop_what_does_not_inflate() {
    let now = Instant::now();
    let mut tx = Tunnel::new(now, T, 1);
    tx.set_compress(true);
    let frames: Vec<Vec<u8>> = (0..5).map(|i| vec![i as u8; 1400]).collect();
    for f in &frames {
        tx.queue_frame(f);
    }
    let record = tx.poll_transmit(now).unwrap();
    // Each block is a zlib stream, far smaller than the 1400-byte frame.
    assert!(record.len() < 5 * 100, "{}", record.len());
    assert_eq!(tx.stats().bytes_out, 5 * 1400);
    let mut rx = Tunnel::new(now, T, 2);
    rx.set_compress(true);
    rx.handle_input(now, &record).unwrap();
    assert_eq!(drain(&mut rx), frames);
    // A block that is not zlib (or inflates past 1600 bytes) is dropped and counted, and the
    // stream goes on.
    let bad = records(&[b"garbage!".to_vec(), crate::compress::deflate(&[7; 1601])]);
    rx.handle_input(now, &bad).unwrap();
    assert!(drain(&mut rx).is_empty());
    assert_eq!(rx.stats().frames_in_dropped, 2);
    rx.handle_input(now, &records(&[crate::compress::deflate(&frames[0])]))
        .unwrap();
    assert_eq!(drain(&mut rx), vec![frames[0].clone()]);
}

#[test]
fn half_connection_directions() {
    let now = Instant::now();
    // Receive-only (server→client): no keep-alives, but the receive timeout applies.
    let mut rx_only = Tunnel::new(now, T, 1);
    rx_only.set_direction(false, true);
    let later = now + T / 2;
    assert!(rx_only.poll_transmit(later).is_none());
    assert_eq!(rx_only.poll_timeout(), now + T);
    assert!(rx_only.handle_timeout(now + T).is_err());
    // Send-only (client→server): keep-alives as usual, never a receive timeout.
    let mut tx_only = Tunnel::new(now, T, 2);
    tx_only.set_direction(true, false);
    assert!(tx_only.poll_timeout() < now + T / 2);
    assert!(tx_only.poll_transmit(later).is_some());
    assert!(tx_only.handle_timeout(now + T * 10).is_ok());
}

/// Feeds `bytes` the way the driver does: straight into `recv_buffer`, in reads of `chunk`.
fn feed_in_place(t: &mut Tunnel, now: Instant, bytes: &[u8], chunk: usize) {
    for part in bytes.chunks(chunk) {
        let buf = t.recv_buffer(chunk);
        assert!(buf.capacity() - buf.len() >= chunk, "room was made");
        buf.extend_from_slice(part);
        t.handle_received(now, part.len()).unwrap();
    }
}

#[test]
fn reading_into_the_receive_buffer_decodes_like_handle_input() {
    let now = Instant::now();
    let mut t = Tunnel::new(now, T, 1);
    let frames: Vec<Vec<u8>> = (0..40).map(|i| frame(i, 60 + 37 * i)).collect();
    // Odd read sizes split length fields and frames across reads.
    feed_in_place(&mut t, now, &records(&frames), 777);
    assert_eq!(drain(&mut t), frames);
    assert_eq!(t.stats().frames_in, 40);
}

#[test]
fn an_idle_receive_buffer_shrinks_back_to_the_room_asked_for() {
    let now = Instant::now();
    let mut t = Tunnel::new(now, T, 1);
    let frames: Vec<Vec<u8>> = (0..40).map(|i| frame(i, 1514)).collect();
    feed_in_place(&mut t, now, &records(&frames), 64 * 1024);
    assert_eq!(drain(&mut t).len(), 40);
    // Everything was decoded and the frames are gone: a quiet read needs only a little room.
    let buf = t.recv_buffer(4096);
    assert!(buf.capacity() < 16 * 1024, "capacity {}", buf.capacity());
}

#[test]
fn a_broken_stream_read_in_place_keeps_failing() {
    let now = Instant::now();
    let mut t = Tunnel::new(now, T, 1);
    let mut bad = 1u32.to_be_bytes().to_vec();
    bad.extend_from_slice(&(MAX_BLOCK + 1).to_be_bytes());
    t.recv_buffer(64).extend_from_slice(&bad);
    assert!(t.handle_received(now, bad.len()).is_err());
    assert!(t.handle_received(now, 0).is_err(), "the tunnel is dead");
}
