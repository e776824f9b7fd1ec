//! Deterministic mutation fuzzing: malformed network input must produce errors, never panics.

use std::time::{Duration, Instant};

use crate::handshake::{ClientHandshake, ClientInfo, Credential, LoginRequest, Request};
use crate::http::{self, HttpParser};
use crate::pack::{Pack, Value};
use crate::prng::SplitMix64;
use crate::testing::{FakeAuth, FakeServer, FakeServerConfig, FakeUser};
use crate::tunnel::Tunnel;

const ITERATIONS: usize = 10_000;

pub(crate) fn mutate(rng: &mut SplitMix64, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..=rng.below(4) {
        let pos = rng.below(v.len() as u64 + 1) as usize;
        match rng.below(6) {
            0 if pos < v.len() => v[pos] ^= 1 << rng.below(8),
            1 if pos < v.len() => v[pos] = rng.next_u64() as u8,
            2 => v.truncate(pos),
            3 => v.insert(pos.min(v.len()), rng.next_u64() as u8),
            4 if pos + 4 <= v.len() => {
                let special = [
                    0u32,
                    1,
                    0x7fff_ffff,
                    0xffff_ffff,
                    3200,
                    3201,
                    512,
                    513,
                    65_536,
                ];
                let val = special[rng.below(special.len() as u64) as usize];
                v[pos..pos + 4].copy_from_slice(&val.to_be_bytes());
            }
            _ if pos < v.len() => {
                v.remove(pos);
            }
            _ => {}
        }
    }
    v
}

fn sample_pack() -> Pack {
    let mut p = Pack::new();
    p.add_str("hello", "SoftEther VPN Server");
    p.add_int("version", 501);
    p.add_int64("big", 1 << 40);
    p.add_unistr("u", "ü");
    p.add_data("random", &[7; 20]);
    p.add_values("Port", vec![Value::Int(443), Value::Int(992)]);
    p.add_ipv4("Ip", "198.18.0.1".parse().unwrap());
    p
}

#[test]
fn pack_decode_never_panics() {
    let mut rng = SplitMix64::new(0xfeed);
    let valid = sample_pack().encode();
    for _ in 0..ITERATIONS {
        let input = mutate(&mut rng, &valid);
        if let Ok(p) = Pack::decode(&input) {
            // Whatever decodes must re-encode to something that decodes identically.
            assert_eq!(Pack::decode(&p.encode()).unwrap(), p);
        }
    }
}

#[test]
fn http_parser_never_panics() {
    let mut rng = SplitMix64::new(0xbeef);
    let mut valid = http::response(200, "OK", http::CONTENT_TYPE_PACK, &sample_pack().encode());
    valid.extend(http::post(
        http::TARGET_PACK,
        "h",
        http::CONTENT_TYPE_PACK,
        b"body",
    ));
    for _ in 0..ITERATIONS {
        let input = mutate(&mut rng, &valid);
        let mut p = HttpParser::new(1 << 16);
        let chunk = 1 + rng.below(64) as usize;
        'feed: for part in input.chunks(chunk) {
            p.push(part);
            loop {
                match p.next_message() {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
        }
    }
}

/// Records the server's responses of one successful run, to mutate them.
fn server_transcript() -> Vec<u8> {
    let mut s = FakeServer::new(FakeServerConfig {
        users: vec![FakeUser {
            name: "a".into(),
            auth: FakeAuth::Password("pw".into()),
        }],
        noops_before_reply: 1,
        trailing: vec![0, 0, 0, 0],
        ..Default::default()
    });
    let mut c = ClientHandshake::new(request(), 5);
    let mut transcript = Vec::new();
    for _ in 0..10 {
        while let Some(b) = c.poll_transmit() {
            s.handle_input(&b).unwrap();
        }
        while let Some(b) = s.poll_transmit() {
            transcript.extend_from_slice(&b);
            c.handle_input(&b).unwrap();
        }
    }
    assert!(c.take_outcome().is_some());
    transcript
}

fn request() -> Request {
    Request::Login(LoginRequest {
        hub: "DEFAULT".into(),
        username: "a".into(),
        credential: Credential::PlainPassword("pw".into()),
        max_connection: 1,
        half_connection: false,
        use_compress: false,
        udp_accel: None,
        info: ClientInfo::default(),
    })
}

#[test]
fn handshake_never_panics() {
    let mut rng = SplitMix64::new(0xcafe);
    let valid = server_transcript();
    for _ in 0..ITERATIONS / 4 {
        let input = mutate(&mut rng, &valid);
        let mut c = ClientHandshake::new(request(), rng.next_u64());
        let chunk = 1 + rng.below(512) as usize;
        for part in input.chunks(chunk) {
            while c.poll_transmit().is_some() {}
            if c.handle_input(part).is_err() {
                break;
            }
        }
        let _ = c.take_outcome();
        let _ = c.take_leftover();
    }
}

#[test]
fn compressed_tunnel_decoder_never_panics() {
    let mut rng = SplitMix64::new(0xc0de);
    let now = Instant::now();
    let mut tx = Tunnel::new(now, Duration::from_secs(20), 1);
    tx.set_compress(true);
    for i in 0..20 {
        tx.queue_frame(&vec![i as u8; 14 + i * 70]);
    }
    let valid = tx.poll_transmit(now).unwrap().to_vec();
    for _ in 0..ITERATIONS / 4 {
        let input = mutate(&mut rng, &valid);
        let mut t = Tunnel::new(now, Duration::from_secs(20), 2);
        t.set_compress(true);
        if t.handle_input(now, &input).is_ok() {
            while let Some(f) = t.poll_frame() {
                assert!(!f.is_empty() && f.len() <= crate::compress::MAX_INFLATED);
            }
        }
    }
}

#[test]
fn tunnel_decoder_never_panics() {
    let mut rng = SplitMix64::new(0xd00d);
    let now = Instant::now();
    let mut tx = Tunnel::new(now, Duration::from_secs(20), 1);
    for i in 0..20 {
        tx.queue_frame(&vec![i as u8; 14 + i * 50]);
    }
    let mut valid = tx.poll_transmit(now).unwrap().to_vec();
    valid.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 0]);
    for _ in 0..ITERATIONS {
        let input = mutate(&mut rng, &valid);
        let mut t = Tunnel::new(now, Duration::from_secs(20), 2);
        let chunk = 1 + rng.below(300) as usize;
        for part in input.chunks(chunk) {
            if t.handle_input(now, part).is_err() {
                break;
            }
            while t.poll_frame().is_some() {}
        }
    }
}
