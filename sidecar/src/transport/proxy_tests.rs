use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;

fn proxy(url: &str, password: Option<&str>) -> Proxy {
    Proxy::parse(url, password.map(str::to_string)).unwrap()
}

#[test]
fn the_password_is_never_shown_and_must_fit_the_url() {
    let p = proxy("http://alice@proxy.example:3128", Some("s3cret"));
    assert_eq!(p.to_string(), "http://alice@proxy.example:3128");
    assert!(!format!("{p:?}").contains("s3cret"));
    assert_eq!(p.url().kind, ProxyKind::Http);
    for (url, pw, needle) in [
        ("socks4://u@h:1", Some("pw"), "SOCKS4 has no passwords"),
        ("http://h:1", Some("pw"), "needs a user name"),
        ("http://alice:pw@h:1", None, "must not carry a password"),
    ] {
        let err = Proxy::parse(url, pw.map(str::to_string)).unwrap_err();
        assert!(err.contains(needle), "{url}: {err}");
    }
}

#[test]
fn base64_matches_rfc4648() {
    for (i, o) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(i.as_bytes()), o);
    }
}

#[test]
fn http_connect_request_and_replies() {
    let req = String::from_utf8(http_connect_request(
        "vpn.example",
        443,
        Some(("Aladdin", "open sesame")),
    ))
    .unwrap();
    assert!(req.starts_with("CONNECT vpn.example:443 HTTP/1.1\r\nHost: vpn.example:443\r\n"));
    assert!(req.contains("Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n"));
    assert!(req.ends_with("\r\n\r\n"));
    let v6 = String::from_utf8(http_connect_request("fd00::5", 992, None)).unwrap();
    assert!(v6.starts_with("CONNECT [fd00::5]:992 HTTP/1.1"));
    assert!(!v6.contains("Authorization"));

    assert!(parse_http_connect_reply(b"HTTP/1.1 200 Conn")
        .unwrap()
        .is_none());
    assert!(matches!(
        parse_http_connect_reply(b"HTTP/1.0 200 Connection established\r\n\r\n").unwrap(),
        Some(Ok(()))
    ));
    let r = parse_http_connect_reply(b"HTTP/1.1 407 Proxy Authentication Required\r\nX: y\r\n\r\n");
    let e = r.unwrap().unwrap().unwrap_err();
    assert!(matches!(e, ProxyError::Auth(_)));
    assert_eq!(e.retry_class(), RetryClass::Never);
    assert!(e.to_string().contains("407 Proxy Authentication Required"));
    let e = parse_http_connect_reply(b"HTTP/1.1 401 Unauthorized\r\n\r\n")
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(e, ProxyError::Auth(_)),
        "tinyproxy's answer to bad credentials"
    );
    let e = parse_http_connect_reply(b"HTTP/1.1 403 Forbidden\r\n\r\n")
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("403 Forbidden"));
    assert_eq!(e.retry_class(), RetryClass::Never);
    let e = parse_http_connect_reply(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(e.retry_class(), RetryClass::Normal);
    assert!(parse_http_connect_reply(b"SSH-2.0-OpenSSH\r\n").is_err());
    assert!(parse_http_connect_reply(b"HTTP/2 200\r\n\r\n").is_err());
    assert!(parse_http_connect_reply(b"H").unwrap().is_none());
    let mut long = b"HTTP/1.1 200 OK\r\n".to_vec();
    long.resize(MAX_HTTP_REPLY + 10, b'a');
    assert!(parse_http_connect_reply(&long).is_err());
}

#[test]
fn socks_codecs() {
    assert_eq!(socks5_greeting(false), vec![5, 1, 0]);
    assert_eq!(socks5_greeting(true), vec![5, 2, 0, 2]);
    assert_eq!(socks5_method([5, 2]).unwrap(), Socks5Method::UserPassword);
    assert!(matches!(socks5_method([5, 0xff]), Err(ProxyError::Auth(_))));
    assert!(matches!(
        socks5_method([4, 0]),
        Err(ProxyError::Protocol(_))
    ));
    assert_eq!(
        socks5_user_password("u", "pw").unwrap(),
        vec![1, 1, b'u', 2, b'p', b'w']
    );
    assert!(socks5_user_password(&"x".repeat(256), "p").is_err());
    assert_eq!(
        socks5_connect("198.18.0.1", 443).unwrap(),
        vec![5, 1, 0, 1, 198, 18, 0, 1, 1, 187]
    );
    let name = socks5_connect("vpn.example", 992).unwrap();
    assert_eq!(&name[..5], &[5, 1, 0, 3, 11]);
    assert_eq!(&name[5..16], b"vpn.example");
    assert_eq!(socks5_connect("fd00::1", 1).unwrap()[3], 4);
    assert_eq!(socks5_reply_remaining([5, 0, 0, 1, 9]).unwrap(), 5);
    assert_eq!(socks5_reply_remaining([5, 0, 0, 4, 9]).unwrap(), 17);
    assert_eq!(socks5_reply_remaining([5, 0, 0, 3, 7]).unwrap(), 9);
    let e = socks5_reply_remaining([5, 2, 0, 1, 0]).unwrap_err();
    assert!(e.to_string().contains("not allowed by ruleset"));
    assert_eq!(e.retry_class(), RetryClass::Never);
    assert_eq!(
        socks5_reply_remaining([5, 5, 0, 1, 0])
            .unwrap_err()
            .retry_class(),
        RetryClass::Normal
    );

    assert_eq!(
        socks4_connect("198.18.0.1", 443, Some("bob")).unwrap(),
        vec![4, 1, 1, 187, 198, 18, 0, 1, b'b', b'o', b'b', 0]
    );
    let a = socks4_connect("vpn", 443, None).unwrap();
    assert_eq!(a, vec![4, 1, 1, 187, 0, 0, 0, 1, 0, b'v', b'p', b'n', 0]);
    assert!(socks4_connect("fd00::1", 1, None).is_err());
    assert!(socks4_reply([0, 0x5a, 0, 0, 0, 0, 0, 0]).is_ok());
    assert!(matches!(
        socks4_reply([0, 0x5b, 0, 0, 0, 0, 0, 0]),
        Err(ProxyError::Refused(_))
    ));
    assert!(matches!(
        socks4_reply([0, 0x5d, 0, 0, 0, 0, 0, 0]),
        Err(ProxyError::Auth(_))
    ));
}

/// A scripted proxy on the far end of a duplex pipe: expects `request` (in whatever chunks),
/// answers `reply`, then echoes one message to prove the tunnel is clean.
async fn scripted(mut far: DuplexStream, exchanges: Vec<(Vec<u8>, Vec<u8>)>) {
    for (expect, reply) in exchanges {
        let mut got = vec![0u8; expect.len()];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(got, expect);
        far.write_all(&reply).await.unwrap();
    }
    let mut msg = [0u8; 5];
    if far.read_exact(&mut msg).await.is_ok() {
        far.write_all(&msg).await.unwrap();
    }
}

async fn run(p: &Proxy, exchanges: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), ProxyError> {
    let (mut near, far) = duplex(1024);
    let server = tokio::spawn(scripted(far, exchanges));
    let r = handshake(&mut near, p, "vpn.example", 443).await;
    if r.is_ok() {
        near.write_all(b"hello").await.unwrap();
        let mut back = [0u8; 5];
        near.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"hello", "nothing of the tunnel was eaten");
    }
    drop(near);
    server.await.unwrap();
    r
}

#[tokio::test]
async fn http_connect_over_a_stream() {
    let p = proxy("http://u@p:1", Some("pw"));
    let req = http_connect_request("vpn.example", 443, Some(("u", "pw")));
    run(
        &p,
        vec![(req.clone(), b"HTTP/1.1 200 OK\r\nVia: x\r\n\r\n".to_vec())],
    )
    .await
    .unwrap();
    let err = run(
        &p,
        vec![(req, b"HTTP/1.1 502 Bad Gateway\r\n\r\n".to_vec())],
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("502 Bad Gateway"), "{err}");
}

#[tokio::test]
async fn socks5_with_password_over_a_stream() {
    let p = proxy("socks5://u@p:1", Some("pw"));
    run(
        &p,
        vec![
            (vec![5, 2, 0, 2], vec![5, 2]),
            (vec![1, 1, b'u', 2, b'p', b'w'], vec![1, 0]),
            (
                socks5_connect("vpn.example", 443).unwrap(),
                vec![5, 0, 0, 3, 3, b'a', b'b', b'c', 1, 187],
            ),
        ],
    )
    .await
    .unwrap();
    let err = run(
        &p,
        vec![
            (vec![5, 2, 0, 2], vec![5, 2]),
            (vec![1, 1, b'u', 2, b'p', b'w'], vec![1, 1]),
        ],
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ProxyError::Auth(_)), "{err}");
    let anon = proxy("socks5://p:1", None);
    let err = run(&anon, vec![(vec![5, 1, 0], vec![5, 2])])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("wants a user name"), "{err}");
}

#[tokio::test]
async fn socks4a_over_a_stream_and_a_proxy_that_hangs_up() {
    let p = proxy("socks4://p:1", None);
    run(
        &p,
        vec![(
            socks4_connect("vpn.example", 443, None).unwrap(),
            vec![0, 0x5a, 0, 0, 0, 0, 0, 0],
        )],
    )
    .await
    .unwrap();
    let (mut near, far) = duplex(64);
    drop(far);
    let err = handshake(&mut near, &p, "vpn.example", 443)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProxyError::Protocol(_) | ProxyError::Io(_)),
        "{err}"
    );
}
