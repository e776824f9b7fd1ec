use crate::error::{ErrorCode, RetryClass};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::password::hash_password;
use crate::rsa::test_keys;
use crate::testing::{run_handshake, FakeAuth, FakeReply, FakeServer, FakeServerConfig, FakeUser};

const CHUNKS: [usize; 4] = [1, 3, 17, 100_000];

fn login(username: &str, credential: Credential) -> Request {
    Request::Login(LoginRequest {
        hub: "DEFAULT".into(),
        username: username.into(),
        credential,
        max_connection: 1,
        half_connection: false,
        use_compress: false,
        udp_accel: None,
        info: ClientInfo {
            server_host: "198.18.0.1".into(),
            ..Default::default()
        },
    })
}

fn server(users: Vec<FakeUser>) -> FakeServer {
    FakeServer::new(FakeServerConfig {
        users,
        ..Default::default()
    })
}

fn alice_pw() -> FakeUser {
    FakeUser {
        name: "alice".into(),
        auth: FakeAuth::Password("s3cret".into()),
    }
}

fn run(
    request: Request,
    cfg: FakeServerConfig,
    chunk: usize,
) -> Result<(Outcome, Vec<u8>), HandshakeError> {
    let mut c = ClientHandshake::new(request, 42);
    let mut s = FakeServer::new(cfg);
    run_handshake(&mut c, &mut s, chunk)
}

fn expect_welcome(r: Result<(Outcome, Vec<u8>), HandshakeError>) -> Welcome {
    match r {
        Ok((Outcome::Welcome(w), _)) => w,
        other => panic!("expected Welcome, got {other:?}"),
    }
}

#[test]
fn hashed_password_login_in_any_chunking() {
    for chunk in CHUNKS {
        let mut c = ClientHandshake::new(
            login(
                "Alice",
                Credential::HashedPassword(hash_password("alice", "s3cret")),
            ),
            1,
        );
        let mut s = server(vec![alice_pw()]);
        let (outcome, leftover) = run_handshake(&mut c, &mut s, chunk).unwrap();
        let Outcome::Welcome(w) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(w.session_name, "SID-ALICE-1");
        assert_eq!(w.session_key, [0x11; 20]);
        assert!(w.use_encrypt && !w.use_compress);
        assert_eq!(w.timeout, Duration::from_secs(20));
        assert_eq!(w.policy.get("MaxConnection"), Some(32));
        assert!(leftover.is_empty());
        assert_eq!(c.hello().unwrap().build, 9674);
        assert!(c.is_finished());
        assert!(c.take_outcome().is_none(), "outcome is returned once");
        let req = s.request.as_ref().unwrap();
        assert_eq!(req.get_int("authtype"), Some(1));
        assert!(req.get_data("pencore").is_some());
    }
}

#[test]
fn wrong_password_is_a_readable_server_error() {
    let err = run(
        login(
            "alice",
            Credential::HashedPassword(hash_password("alice", "wrong")),
        ),
        FakeServerConfig {
            users: vec![alice_pw()],
            ..Default::default()
        },
        7,
    )
    .unwrap_err();
    assert!(matches!(
        err,
        HandshakeError::Server(ErrorCode::AUTH_FAILED)
    ));
    assert_eq!(
        err.to_string(),
        "server refused the connection: authentication failed (ERR_AUTH_FAILED, 9)"
    );
    assert_eq!(err.retry_class(), RetryClass::Never);
}

#[test]
fn plain_password_anonymous_and_ticket_logins() {
    let cfg = |users| FakeServerConfig {
        users,
        ..Default::default()
    };
    expect_welcome(run(
        login("alice", Credential::PlainPassword("s3cret".into())),
        cfg(vec![alice_pw()]),
        5,
    ));
    let anon = FakeUser {
        name: "guest".into(),
        auth: FakeAuth::Anonymous,
    };
    expect_welcome(run(
        login("guest", Credential::Anonymous),
        cfg(vec![anon]),
        5,
    ));
    let t = FakeUser {
        name: "bob".into(),
        auth: FakeAuth::Ticket([4; 20]),
    };
    expect_welcome(run(
        login("bob", Credential::Ticket([4; 20])),
        cfg(vec![t.clone()]),
        5,
    ));
    let err = run(login("bob", Credential::Ticket([5; 20])), cfg(vec![t]), 5).unwrap_err();
    assert_eq!(err.code(), ErrorCode::AUTH_FAILED);
}

#[test]
fn certificate_login() {
    let key = RsaPrivateKey::from_der(test_keys::RSA_2048_PKCS8_DER).unwrap();
    let (n, e) = key.public_components();
    let user = FakeUser {
        name: "carol".into(),
        auth: FakeAuth::Certificate {
            cert_der: test_keys::RSA_2048_CERT_DER.to_vec(),
            n: n.to_vec(),
            e: e.to_vec(),
        },
    };
    let cred = Credential::Certificate {
        cert_der: test_keys::RSA_2048_CERT_DER.to_vec(),
        key: Arc::new(key),
    };
    assert!(!format!("{cred:?}").contains("RsaPrivateKey"));
    expect_welcome(run(
        login("carol", cred),
        FakeServerConfig {
            users: vec![user.clone()],
            ..Default::default()
        },
        64,
    ));
    // A different key signs something the server cannot verify.
    let other = RsaPrivateKey::from_der(test_keys::RSA_1024_PKCS1_DER).unwrap();
    let cred = Credential::Certificate {
        cert_der: test_keys::RSA_2048_CERT_DER.to_vec(),
        key: Arc::new(other),
    };
    let err = run(
        login("carol", cred),
        FakeServerConfig {
            users: vec![user],
            ..Default::default()
        },
        64,
    );
    assert_eq!(err.unwrap_err().code(), ErrorCode::AUTH_FAILED);
}

#[test]
fn configured_error_and_unknown_hub() {
    let cfg = FakeServerConfig {
        users: vec![alice_pw()],
        reply: FakeReply::Error(ErrorCode::HUB_IS_BUSY),
        ..Default::default()
    };
    let err = run(
        login("alice", Credential::PlainPassword("s3cret".into())),
        cfg,
        9,
    )
    .unwrap_err();
    assert_eq!(err.retry_class(), RetryClass::Slow);
    let cfg = FakeServerConfig {
        users: vec![alice_pw()],
        hub: "OTHER".into(),
        ..Default::default()
    };
    let err = run(
        login("alice", Credential::PlainPassword("s3cret".into())),
        cfg,
        9,
    )
    .unwrap_err();
    assert!(matches!(
        err,
        HandshakeError::Server(ErrorCode::HUB_NOT_FOUND)
    ));
}

#[test]
fn noop_packs_are_skipped() {
    for noop_value in [1, 2] {
        let cfg = FakeServerConfig {
            users: vec![alice_pw()],
            noops_before_reply: 40,
            noop_value,
            ..Default::default()
        };
        expect_welcome(run(
            login("alice", Credential::PlainPassword("s3cret".into())),
            cfg,
            13,
        ));
    }
}

#[test]
fn redirect_flow_sends_one_more_pack() {
    let cfg = FakeServerConfig {
        users: vec![alice_pw()],
        reply: FakeReply::Redirect {
            ip: Ipv4Addr::new(198, 18, 0, 7),
            ports: vec![443, 5555],
            ticket: [8; 20],
            cert_der: vec![1, 2, 3],
        },
        message: "moved".into(),
        ..Default::default()
    };
    for chunk in CHUNKS {
        let mut c = ClientHandshake::new(
            login("alice", Credential::PlainPassword("s3cret".into())),
            3,
        );
        let mut s = FakeServer::new(cfg.clone());
        let (outcome, _) = run_handshake(&mut c, &mut s, chunk).unwrap();
        let Outcome::Redirect(r) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(
            (r.ip, r.ports.clone(), r.ticket),
            (Ipv4Addr::new(198, 18, 0, 7), vec![443, 5555], [8; 20])
        );
        assert_eq!(
            (r.cert_der.clone(), r.message.as_str()),
            (vec![1, 2, 3], "moved")
        );
        let empty = s
            .post_redirect
            .as_ref()
            .expect("client sent the post-redirect pack");
        assert!(empty.iter().all(|(name, _)| name == "pencore"));
        assert!(s.is_closed() && c.is_finished());
    }
}

#[test]
fn leftover_bytes_after_welcome_are_kept() {
    let trailing: Vec<u8> = vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 2, 9, 9, 0, 0, 0, 0];
    for chunk in CHUNKS {
        let cfg = FakeServerConfig {
            users: vec![alice_pw()],
            trailing: trailing.clone(),
            ..Default::default()
        };
        let (outcome, leftover) = run(
            login("alice", Credential::PlainPassword("s3cret".into())),
            cfg,
            chunk,
        )
        .unwrap();
        assert!(matches!(outcome, Outcome::Welcome(_)));
        assert_eq!(leftover, trailing, "chunk {chunk}");
    }
}

#[test]
fn additional_connect_joins_or_fails() {
    let join = |key| Request::AdditionalConnect {
        session_key: key,
        info: ClientInfo::default(),
    };
    for (dir, expected) in [
        (0, Direction::Both),
        (1, Direction::ServerToClient),
        (2, Direction::ClientToServer),
    ] {
        let cfg = FakeServerConfig {
            join_direction: dir,
            ..Default::default()
        };
        let (o, _) = run(join([0x11; 20]), cfg, 11).unwrap();
        assert_eq!(
            o,
            Outcome::Joined {
                direction: expected
            }
        );
    }
    let err = run(join([0x12; 20]), FakeServerConfig::default(), 11).unwrap_err();
    assert!(matches!(
        err,
        HandshakeError::Server(ErrorCode::SESSION_TIMEOUT)
    ));
}

fn fed(responses: &[u8]) -> Result<ClientHandshake, HandshakeError> {
    let mut c = ClientHandshake::new(login("a", Credential::Anonymous), 0);
    while c.poll_transmit().is_some() {}
    c.handle_input(responses)?;
    Ok(c)
}

#[test]
fn non_vpn_responses_are_rejected() {
    let html = http::response(200, "OK", "text/html", b"<html>");
    assert!(matches!(fed(&html), Err(HandshakeError::NotVpn(_))));
    let forbidden = http::response(403, "Forbidden", http::CONTENT_TYPE_PACK, b"x");
    let err = fed(&forbidden).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("server is not a SoftEther VPN server: HTTP status 403"),
        "{err}"
    );
    let v10 =
        b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1\r\n\r\nx";
    assert!(matches!(fed(v10), Err(HandshakeError::NotVpn(_))));
    let garbage = http::response(200, "OK", http::CONTENT_TYPE_PACK, b"\x00\x00\x00\x09");
    assert!(matches!(fed(&garbage), Err(HandshakeError::NotVpn(_))));
    let huge = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
        MAX_RESPONSE_BODY + 1
    );
    assert!(matches!(
        fed(huge.as_bytes()),
        Err(HandshakeError::NotVpn(_))
    ));
    let mut hello_err = Pack::new();
    hello_err.add_int("error", 33);
    let resp = http::response(200, "OK", http::CONTENT_TYPE_PACK, &hello_err.encode());
    assert!(matches!(
        fed(&resp),
        Err(HandshakeError::Server(ErrorCode::NOT_SUPPORTED))
    ));
}

#[test]
fn failed_handshake_stays_failed() {
    let mut c = ClientHandshake::new(login("a", Credential::Anonymous), 0);
    assert!(c
        .handle_input(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n")
        .is_err());
    assert!(c.is_failed() && !c.is_finished());
    assert!(c.poll_transmit().is_none());
    assert!(matches!(
        c.handle_input(b"x"),
        Err(HandshakeError::InvalidState(_))
    ));
}

#[test]
fn requests_follow_the_wire_rules() {
    let mut c = ClientHandshake::new(login("alice", Credential::Anonymous), 0);
    let sig = c.poll_transmit().unwrap();
    let text = String::from_utf8(sig).unwrap();
    assert!(text.starts_with("POST /vpnsvc/connect.cgi HTTP/1.1\r\n"));
    assert!(
        text.contains("Content-Type: image/jpeg\r\n") && text.contains("Content-Length: 10\r\n")
    );
    assert!(text.ends_with("\r\n\r\nVPNCONNECT"));
    assert!(c.poll_transmit().is_none(), "login waits for the hello");
}
