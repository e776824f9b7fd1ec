//! Compression on the UDP channel (§10.4, §11.2): with `use_compress` every frame sent over UDP is a
//! zlib stream with flag 1, and the peer inflates it; a payload that does not inflate is dropped and
//! counted. Also the buffer-reusing send path the I/O layer batches with.

use super::*;

/// A frame that compresses well (an IP packet full of a repeated pattern), `len` bytes long.
fn compressible(len: usize, n: u8) -> Vec<u8> {
    let mut f = frame(n);
    f.resize(len, 0);
    for (i, b) in f.iter_mut().enumerate().skip(14) {
        *b = (i % 13) as u8 ^ n;
    }
    f
}

/// Bytes that deflate cannot shrink.
fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed);
    let mut f = vec![0u8; len];
    rng.fill(&mut f);
    f
}

/// Opens `datagram` with the client's send key as the server would, returning the header and payload.
fn open_as_server(version: u32, datagram: &[u8]) -> (Header, Vec<u8>) {
    let peer = match version {
        1 => Codec::v1([0x33; 20], offer().key_v1, [0; 20]),
        _ => Codec::v2(&[0x44; 128], &offer().key_v2, [0; 12]),
    };
    let mut buf = datagram.to_vec();
    let (h, payload) = peer
        .open(&mut buf)
        .expect("the server opens what the client sealed");
    (h, buf[payload].to_vec())
}

#[test]
fn compressed_session_sends_zlib_with_flag_1_both_versions() {
    for version in [1, 2] {
        let mut lab = Lab::new(version, true, false);
        lab.client.set_compress(true);
        lab.run_until_active();
        for f in [compressible(1514, 3), incompressible(1514, 9), frame(1)] {
            assert!(lab.client.send_frame(lab.now, &f));
            let t = lab.client.poll_transmit().unwrap();
            let (h, payload) = open_as_server(version, &t.payload);
            assert_eq!(h.flag, 1, "v{version}: every frame of a compressed session");
            assert_eq!(
                &payload[..2],
                &[0x78, 0x9c],
                "a zlib stream as compress2 writes it"
            );
            assert_eq!(crate::compress::inflate(&payload).unwrap(), f);
        }
        assert!(
            open_as_server(version, &{
                assert!(lab.client.send_frame(lab.now, &compressible(1514, 4)));
                lab.client.poll_transmit().unwrap().payload
            })
            .1
            .len()
                < 400
        );
    }
}

#[test]
fn uncompressed_session_sends_raw_frames_with_flag_0() {
    let mut lab = Lab::new(2, true, false);
    lab.run_until_active();
    let f = compressible(1000, 1);
    assert!(lab.client.send_frame(lab.now, &f));
    let (h, payload) = open_as_server(2, &lab.client.poll_transmit().unwrap().payload);
    assert_eq!((h.flag, payload), (0, f));
}

#[test]
fn compressed_frames_round_trip_between_two_ends_in_order() {
    for (version, encryption) in [(2, true), (1, true), (1, false)] {
        let mut lab = Lab::new(version, encryption, false);
        lab.client.set_compress(true);
        lab.server.set_compress(true);
        lab.run_until_active();
        lab.run(REQUIRE_CONTINUOUS);
        let sent: Vec<Vec<u8>> = (0..200u16)
            .map(|i| match i % 3 {
                0 => compressible(60 + usize::from(i) * 7, i as u8),
                1 => incompressible(1514, u64::from(i)),
                _ => compressible(1600, i as u8),
            })
            .collect();
        for f in &sent {
            assert!(lab.client.send_frame(lab.now, f));
            assert!(lab.server.send_frame(lab.now, f));
        }
        lab.pump();
        for f in &sent {
            assert_eq!(lab.server.poll_frame().as_deref(), Some(&f[..]));
            assert_eq!(lab.client.poll_frame().as_deref(), Some(&f[..]));
        }
        let s = lab.server.stats();
        assert_eq!((s.frames_in, s.compressed_dropped, s.rejected), (200, 0, 0));
    }
}

#[test]
fn frames_that_do_not_inflate_are_dropped_and_counted_never_delivered() {
    // Hand-made server datagrams with small ticks: no link yet, so none is stale.
    let mut lab = Lab::new(2, true, false);
    let mut codec = Codec::v2(&[0x44; 128], &[0; 128], [0; 12]);
    let good = crate::compress::deflate(&frame(5));
    let oversized = crate::compress::deflate(&vec![1; crate::compress::MAX_INFLATED + 1]);
    let bad: Vec<Vec<u8>> = vec![
        b"not zlib".to_vec(),
        good[..good.len() - 4].to_vec(),
        oversized,
        crate::compress::deflate(&[]),
        vec![0x78, 0x9c],
    ];
    for (i, payload) in bad.iter().enumerate() {
        let h = Header {
            cookie: 0x1234_5678,
            my_tick: 10 + i as u64,
            your_tick: 0,
            flag: 1,
        };
        let d = codec.seal(&h, payload, 0);
        assert!(lab.client.handle_datagram(lab.now, addr(SERVER), &d));
    }
    assert!(lab.client.poll_frame().is_none());
    assert_eq!(lab.client.stats().compressed_dropped, bad.len() as u64);
    assert_eq!(lab.client.stats().frames_in, 0);
    // The link is unharmed: the next good frame arrives.
    let h = Header {
        cookie: 0x1234_5678,
        my_tick: 100,
        your_tick: 0,
        flag: 1,
    };
    assert!(lab
        .client
        .handle_datagram(lab.now, addr(SERVER), &codec.seal(&h, &good, 0)));
    assert_eq!(lab.client.poll_frame().unwrap(), frame(5));
}

#[test]
fn send_frame_into_reuses_the_buffer_and_matches_send_frame() {
    let mut a = Lab::new(2, true, false);
    let mut b = Lab::new(2, true, false);
    a.run_until_active();
    b.run_until_active();
    let mut buf = Vec::with_capacity(2048);
    let ptr = buf.as_ptr();
    for n in 0..50u8 {
        let f = compressible(1514, n);
        let dest = a.client.send_frame_into(a.now, &f, &mut buf).unwrap();
        assert!(b.client.send_frame(b.now, &f));
        let t = b.client.poll_transmit().unwrap();
        assert_eq!(
            (dest, &buf),
            (t.dest, &t.payload),
            "same datagram either way"
        );
        assert_eq!(buf.as_ptr(), ptr, "no reallocation");
    }
    assert_eq!(
        a.client.stats().datagrams_out,
        b.client.stats().datagrams_out
    );
    // Not ready: nothing sealed, the frame goes over TCP.
    let mut lab = Lab::new(2, true, false);
    assert!(lab
        .client
        .send_frame_into(lab.now, &frame(1), &mut buf)
        .is_none());
}

#[test]
fn owned_datagrams_yield_frames_without_copying() {
    let mut lab = Lab::new(2, true, false);
    lab.run_until_active();
    lab.run(REQUIRE_CONTINUOUS);
    let mut slab = BytesMut::with_capacity(8 * 2048);
    for n in 0..8u8 {
        assert!(lab.server.send_frame(lab.now, &frame(n)));
        let t = lab.server.poll_transmit().unwrap();
        slab.extend_from_slice(&t.payload);
        let d = slab.split_to(t.payload.len());
        let base = d.as_ptr() as usize;
        assert!(lab.client.handle_datagram_owned(lab.now, addr(SERVER), d));
        let got = lab.client.poll_frame().unwrap();
        assert_eq!(got, frame(n));
        let at = got.as_ptr() as usize;
        assert!(
            at > base && at < base + t.payload.len(),
            "a slice of the datagram"
        );
    }
}
