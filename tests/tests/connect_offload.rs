//! The TAP offloads through the real server: a large TCP transfer each way between the client
//! namespace (behind `connect`, offloads on) and a host bridged into the hub arrives intact,
//! also over four connections with flows spread over them and redundant ACKs thinned, and
//! `--no-offload` falls back to plain frames.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::connect::connect;
use common::observe::{http_get, sample};
use softether_lab::{netns, Lab, LabOptions};

/// Bytes sent each way.
const TRANSFER: u64 = 200 * 1000 * 1000;
/// Bound of one direction, far above what a debug build needs on a busy machine.
const TRANSFER_DEADLINE: Duration = Duration::from_secs(240);
const PORT: u16 = 5399;
const CHUNK: usize = 64 * 1024;

/// A deterministic byte stream (xorshift64*), so the receiver checks every byte it gets.
struct Stream(u64);

impl Stream {
    fn fill(&mut self, buf: &mut [u8]) {
        for word in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            word.copy_from_slice(&v[..word.len()]);
        }
    }
}

/// FNV-1a over everything fed, the "hash of the bytes" both ends report.
#[derive(Default)]
struct Digest(u64);

impl Digest {
    fn feed(&mut self, data: &[u8]) {
        if self.0 == 0 {
            self.0 = 0xcbf2_9ce4_8422_2325;
        }
        for &b in data {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
}

fn send_all(mut sock: TcpStream, seed: u64) -> u64 {
    let (mut stream, mut digest, mut buf) = (Stream(seed), Digest::default(), vec![0; CHUNK]);
    let deadline = Instant::now() + TRANSFER_DEADLINE;
    let mut sent = 0;
    while sent < TRANSFER {
        assert!(
            Instant::now() < deadline,
            "sending took too long ({sent} bytes)"
        );
        let n = (TRANSFER - sent).min(CHUNK as u64) as usize;
        stream.fill(&mut buf[..n]);
        sock.write_all(&buf[..n]).expect("send");
        digest.feed(&buf[..n]);
        sent += n as u64;
    }
    sock.shutdown(std::net::Shutdown::Write).expect("shutdown");
    digest.0
}

/// Reads to EOF; returns (bytes, digest, offset of the first byte that differs from the
/// sender's stream).
fn receive_all(mut sock: TcpStream, seed: u64) -> (u64, u64, Option<u64>) {
    let (mut expected, mut digest) = (Stream(seed), Digest::default());
    let (mut buf, mut want) = (vec![0; CHUNK], vec![0; CHUNK]);
    let (mut got, mut first_bad) = (0u64, None);
    let deadline = Instant::now() + TRANSFER_DEADLINE;
    loop {
        assert!(
            Instant::now() < deadline,
            "receiving took too long ({got} bytes)"
        );
        // Whole chunks, so the expected stream stays aligned with what arrives.
        let mut filled = 0;
        while filled < CHUNK {
            match sock.read(&mut buf[filled..]).expect("receive") {
                0 => break,
                n => filled += n,
            }
        }
        if filled == 0 {
            return (got, digest.0, first_bad);
        }
        expected.fill(&mut want[..filled]);
        if first_bad.is_none() && buf[..filled] != want[..filled] {
            let at = buf.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(0);
            first_bad = Some(got + at as u64);
        }
        digest.feed(&buf[..filled]);
        got += filled as u64;
        if filled < CHUNK {
            return (got, digest.0, first_bad);
        }
    }
}

fn timeouts(sock: &TcpStream) {
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    sock.set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
}

/// One direction: `upload` sends from the client namespace to the lan host.
fn transfer(lab: &Lab, upload: bool) {
    let f = &lab.facts;
    let addr = SocketAddr::from((f.lan_host, PORT));
    let listener = netns::run_in(&f.lan_ns, move || TcpListener::bind(addr))
        .expect("lan netns")
        .expect("listen on the lan host");
    let dial = netns::run_in(&f.client_ns, move || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(10))
    })
    .expect("client netns");
    let client = dial.expect("connect through the tunnel");
    let (server, _) = listener.accept().expect("accept");
    timeouts(&client);
    timeouts(&server);
    let (sender, receiver) = if upload {
        (client, server)
    } else {
        (server, client)
    };
    let seed = if upload { 0x5eed_0001 } else { 0x5eed_0002 };
    let started = Instant::now();
    let sending = std::thread::spawn(move || send_all(sender, seed));
    let (got, received_digest, first_bad) = receive_all(receiver, seed);
    let sent_digest = sending.join().expect("sender");
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}: {got} bytes in {secs:.1} s ({:.0} Mbit/s, debug build)",
        if upload { "upload" } else { "download" },
        got as f64 * 8.0 / secs / 1e6
    );
    assert_eq!(first_bad, None, "first corrupted byte");
    assert_eq!(got, TRANSFER);
    assert_eq!(received_digest, sent_digest);
}

#[test]
fn a_large_transfer_each_way_arrives_intact_with_offloads_on() {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let mut client = connect(&lab, &[]);
    client.wait_log("lease acquired", Duration::from_secs(60));
    assert!(
        client.log_text().contains("offload=Offload"),
        "the TAP runs with offloads:\n{}",
        client.log_text()
    );
    transfer(&lab, true);
    transfer(&lab, false);
}

#[test]
fn four_connections_carry_large_transfers_intact_with_acks_thinned() {
    const METRICS: &str = "127.0.0.1:9571";
    let lab = Lab::start(LabOptions::default()).expect("lab");
    // TCP only, so that every frame crosses the connections under test.
    let mut client = connect(
        &lab,
        &[
            "--max-connections",
            "4",
            "--udp-acceleration",
            "off",
            "--metrics-addr",
            METRICS,
        ],
    );
    client.wait_log("lease acquired", Duration::from_secs(60));
    transfer(&lab, true);
    transfer(&lab, false);
    let (code, text) = http_get(&lab.facts.client_ns, &format!("http://{METRICS}/metrics"));
    assert_eq!(code, 200, "{text}");
    assert_eq!(
        sample(&text, "softether_attachment_tcp_connections", &[]),
        Some(4.0),
        "{text}"
    );
    // The upload's ACKs come back from the lan host in batches: most of them are superseded.
    let thinned = sample(
        &text,
        "softether_attachment_thinned_acks_total",
        &[r#"direction="in""#],
    );
    assert!(thinned.is_some_and(|n| n > 0.0), "{text}");
    let dropped = sample(
        &text,
        "softether_attachment_dropped_frames_total",
        &[r#"direction="in""#],
    );
    assert_eq!(
        dropped,
        Some(0.0),
        "TCP never drops for a slow reader: {text}"
    );
}

#[test]
fn no_offload_uses_plain_frames_and_still_carries_traffic() {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let mut client = connect(&lab, &["--no-offload"]);
    client.wait_log("lease acquired", Duration::from_secs(60));
    assert!(
        client.log_text().contains("offload=Plain"),
        "{}",
        client.log_text()
    );
    let f = &lab.facts;
    let host = f.lan_host.to_string();
    let out = netns::exec_in(&f.client_ns, &["ping", "-c", "3", "-W", "5", &host]).unwrap();
    assert!(out.status.success(), "ping through the tunnel");
}
