//! softether-proto: the Pack codec, the HTTP response parser, the interpretation of the
//! server's Hello / Welcome / redirect / error packs, and the tunnel byte stream.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use softether_proto::handshake::{
    ClientHandshake, ClientInfo, Credential, LoginRequest, Request, MAX_RESPONSE_BODY,
};
use softether_proto::http::{self, HttpParser};
use softether_proto::pack::Pack;
use softether_proto::tunnel::{Tunnel, MAX_FRAME};
use softether_proto::welcome::Outcome;

/// Input: a serialized Pack. Whatever decodes must re-encode to a pack that decodes equal, and
/// every typed getter must cope with every element.
pub fn pack_decode(data: &[u8]) {
    let Ok(pack) = Pack::decode(data) else {
        return;
    };
    let again = Pack::decode(&pack.encode()).expect("a re-encoded pack decodes");
    assert_eq!(again, pack, "Pack round trip changed the pack");
    for (name, _) in pack.iter() {
        let _ = (
            pack.get_int(name),
            pack.get_int64(name),
            pack.get_bool(name),
        );
        let _ = (
            pack.get_str(name),
            pack.get_unistr(name),
            pack.get_data(name),
        );
        let _ = (pack.get_ip(name), pack.get_ints(name));
    }
}

/// Input: one byte choosing the chunk size (1..=256), then the byte stream a server sends.
/// The parser keeps being fed after an error, which must stay an error.
pub fn http_response(data: &[u8]) {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let mut parser = HttpParser::new(MAX_RESPONSE_BODY);
    let mut failed = false;
    for part in stream.chunks(usize::from(chunk) + 1) {
        parser.push(part);
        loop {
            match parser.next_message() {
                Ok(Some(msg)) => {
                    assert!(!failed, "a message after an error");
                    let _ = (msg.header("Content-Length"), msg.header("content-type"));
                }
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
    }
    let _ = parser.take_buffered();
}

/// Input: one mode byte, then a Pack the server answers with (wrapped in a 200 response).
/// Mode bit 0: a login (0) or an additional connection (1). Bit 1: the pack is the Hello (0),
/// or a valid Hello comes first and the pack is the reply (1). Bits 2-3: the reply is sent
/// 1-4 times (noop packs repeat).
pub fn handshake_reply(data: &[u8]) {
    let Some((&mode, pack)) = data.split_first() else {
        return;
    };
    let mut hs = ClientHandshake::new(request(mode & 1 == 1), u64::from(mode));
    while hs.poll_transmit().is_some() {}
    let response = http::response(200, "OK", http::CONTENT_TYPE_PACK, pack);
    if mode & 2 == 0 {
        let _ = hs.handle_input(&response);
    } else {
        hs.handle_input(valid_hello())
            .expect("the harness's Hello is accepted");
        for _ in 0..=(mode >> 2) & 3 {
            while hs.poll_transmit().is_some() {}
            if hs.handle_input(&response).is_err() {
                assert!(hs.is_failed(), "an error leaves the handshake failed");
                break;
            }
        }
    }
    while hs.poll_transmit().is_some() {}
    let _ = format!(
        "{:?} {:?}",
        hs.hello(),
        hs.server_requested_no_save_password()
    );
    match hs.take_outcome() {
        Some(Outcome::Welcome(w)) => {
            assert!((1..=32).contains(&w.max_connection));
            let _ = (w.policy.auto_disconnect(), w.policy.no_save_password());
            let _ = format!("{w:?}");
        }
        Some(Outcome::Redirect(r)) => {
            let _ = (r.choose_port(443), format!("{r:?}"));
        }
        Some(Outcome::Joined { direction }) => {
            let _ = (direction.can_send(), direction.can_receive());
        }
        None => {}
    }
    let _ = hs.take_leftover();
}

fn request(additional: bool) -> Request {
    let info = ClientInfo {
        server_host: "198.18.0.1".into(),
        ..Default::default()
    };
    if additional {
        Request::AdditionalConnect {
            session_key: [0x11; 20],
            info,
        }
    } else {
        Request::Login(LoginRequest {
            hub: "DEFAULT".into(),
            username: "alice".into(),
            credential: Credential::HashedPassword([0x42; 20]),
            max_connection: 2,
            half_connection: false,
            use_compress: false,
            udp_accel: None,
            info,
        })
    }
}

/// The Hello of a SoftEther 4.x server, as a complete HTTP response.
pub fn valid_hello() -> &'static [u8] {
    static HELLO: OnceLock<Vec<u8>> = OnceLock::new();
    HELLO.get_or_init(|| {
        let mut p = Pack::new();
        p.add_str("hello", "SoftEther VPN Server Developer Edition (64 bit)");
        p.add_int("version", 438);
        p.add_int("build", 9760);
        p.add_data("random", &[0x5a; 20]);
        http::response(200, "OK", http::CONTENT_TYPE_PACK, &p.encode())
    })
}

/// Input: one byte choosing the chunk size (1..=256), then the tunnel byte stream (records,
/// keep-alives). Received frames are queued back out; re-encoded and decoded by a second
/// tunnel they must arrive unchanged.
pub fn tunnel_stream(data: &[u8]) {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let start = Instant::now();
    let mut rx = Tunnel::new(start, Duration::from_secs(20), 1);
    let mut frames = Vec::new();
    let mut now = start;
    for part in stream.chunks(usize::from(chunk) + 1) {
        now += Duration::from_millis(250);
        if rx.handle_input(now, part).is_err() {
            assert!(rx.handle_input(now, b"").is_err(), "an error is final");
            break;
        }
        while let Some(frame) = rx.poll_frame() {
            frames.push(frame);
        }
        while rx.poll_transmit(now).is_some() {}
        if now >= rx.poll_timeout() {
            let _ = rx.handle_timeout(now);
        }
    }
    let _ = rx.stats();

    let mut tx = Tunnel::new(now, Duration::from_secs(20), 2);
    let mut echo = Tunnel::new(now, Duration::from_secs(20), 3);
    let sent: Vec<_> = frames
        .iter()
        .filter(|f| !f.is_empty() && f.len() <= MAX_FRAME)
        .collect();
    for frame in &sent {
        tx.queue_frame(frame);
    }
    while let Some(record) = tx.poll_transmit(now) {
        echo.handle_input(now, &record)
            .expect("the tunnel's own records decode");
    }
    let mut got = Vec::new();
    while let Some(frame) = echo.poll_frame() {
        got.push(frame);
    }
    assert_eq!(got.len(), sent.len(), "re-encoded frames were lost");
    assert!(got.iter().zip(&sent).all(|(a, b)| a == *b));
}
