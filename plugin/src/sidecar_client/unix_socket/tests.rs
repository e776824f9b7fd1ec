//! `UnixSidecarClient` against a scripted one-shot server on a temp socket.

use super::*;
use crate::spec::ErrorCode;
use crate::test_support::TempDir;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

/// Accepts one connection, returns the request line it got after replying
/// with `reply` (or with nothing when `None`, after `hold` time).
fn serve_once(path: &Path, reply: Option<&'static str>, hold: Duration) -> JoinHandle<String> {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).unwrap();
        match reply {
            Some(r) => (&stream).write_all(r.as_bytes()).unwrap(),
            None => std::thread::sleep(hold),
        }
        line
    })
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

#[test]
fn unreachable_names_the_path() {
    let dir = TempDir::new("unreach");
    let path = dir.path().join("nobody.sock");
    let mut c = UnixSidecarClient::new(&path);
    let e = c.status(soon()).unwrap_err();
    assert!(matches!(e, SidecarError::Unreachable { .. }));
    let text = e.to_string();
    assert!(
        text.contains(path.to_str().unwrap()) && text.contains("is softether-sidecar running?"),
        "{text}"
    );
}

#[test]
fn status_ready_and_request_shape() {
    let dir = TempDir::new("status");
    let path = dir.path().join("s.sock");
    let server = serve_once(
        &path,
        Some("{\"ok\":{\"state\":\"ready\"}}\n"),
        Duration::ZERO,
    );
    let status = UnixSidecarClient::new(&path).status(soon()).unwrap();
    assert_eq!(status, SidecarStatus::Ready);
    let sent: Value = serde_json::from_str(&server.join().unwrap()).unwrap();
    assert_eq!(sent, json!({"protocol": 1, "op": "status", "request": {}}));
}

#[test]
fn status_degraded() {
    let dir = TempDir::new("degraded");
    let path = dir.path().join("s.sock");
    let _server = serve_once(
        &path,
        Some("{\"ok\":{\"state\":\"degraded\",\"reason\":\"2 sessions down\"}}\n"),
        Duration::ZERO,
    );
    let status = UnixSidecarClient::new(&path).status(soon()).unwrap();
    assert_eq!(
        status,
        SidecarStatus::Degraded {
            reason: "2 sessions down".into()
        }
    );
}

#[test]
fn sidecar_errors_pass_through_with_their_code() {
    let dir = TempDir::new("refused");
    let path = dir.path().join("s.sock");
    let _server = serve_once(
        &path,
        Some("{\"error\":{\"code\":100,\"msg\":\"SoftEther login failed: ERR_AUTH_FAILED (9)\",\"details\":\"user alice\"}}\n"),
        Duration::ZERO,
    );
    let req = GcRequest {
        network: "n".into(),
        valid: vec![],
    };
    match UnixSidecarClient::new(&path).gc(&req, soon()).unwrap_err() {
        SidecarError::Refused(e) => {
            assert_eq!(e.code(), ErrorCode::SoftEtherLogin);
            assert!(e.msg().contains("ERR_AUTH_FAILED"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn garbage_and_unknown_codes_are_protocol_errors() {
    for reply in [
        "not json\n",
        "{\"error\":{\"code\":77,\"msg\":\"x\"}}\n",
        "{\"ok\":{\"state\":\"weird\"}}\n",
        "\n",
    ] {
        let dir = TempDir::new("garbage");
        let path = dir.path().join("s.sock");
        let _server = serve_once(&path, Some(reply), Duration::ZERO);
        let e = UnixSidecarClient::new(&path).status(soon()).unwrap_err();
        assert!(
            matches!(e, SidecarError::Protocol { .. }),
            "{reply:?}: {e:?}"
        );
    }
}

#[test]
fn silent_sidecar_hits_the_deadline() {
    let dir = TempDir::new("silent");
    let path = dir.path().join("s.sock");
    let server = serve_once(&path, None, Duration::from_millis(800));
    let started = Instant::now();
    let e = UnixSidecarClient::new(&path)
        .status(Instant::now() + Duration::from_millis(200))
        .unwrap_err();
    assert!(matches!(e, SidecarError::Timeout { .. }), "{e:?}");
    assert!(started.elapsed() < Duration::from_millis(700));
    server.join().unwrap();
}
