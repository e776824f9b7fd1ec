//! `UnixSidecarClient` against a scripted one-shot server on a temp socket.

use super::*;
use crate::spec::ErrorCode;
use crate::test_support::TempDir;
use serde_json::json;
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

fn gc_request(n: usize) -> GcRequest {
    GcRequest {
        network: "vpnnet".into(),
        valid: (0..n)
            .map(|i| softether_control::ValidAttachment {
                container_id: format!("{i:064x}"),
                ifname: "vpn0".into(),
            })
            .collect(),
    }
}

/// Issue 14: ~750 ids made the line exceed the 64 KiB control limit (code 6 or 11).
#[test]
fn gc_with_ten_thousand_ids_is_one_line() {
    let dir = TempDir::new("gc-big");
    let path = dir.path().join("s.sock");
    let server = serve_once(
        &path,
        Some("{\"ok\":{\"removed\":[],\"errors\":[]}}\n"),
        Duration::ZERO,
    );
    let req = gc_request(10_000);
    let report = UnixSidecarClient::new(&path).gc(&req, soon()).unwrap();
    assert_eq!(report, GcReport::default());
    let sent = server.join().unwrap();
    assert!(sent.len() > softether_control::MAX_REQUEST_BYTES);
    assert_eq!(
        softether_control::decode_request(sent.trim_end().as_bytes()),
        Ok(Request::Gc(req))
    );
}

#[test]
fn a_gc_beyond_the_limit_is_refused_before_connecting() {
    let dir = TempDir::new("gc-huge");
    let path = dir.path().join("nobody.sock");
    let mut req = gc_request(1);
    req.valid[0].container_id = "a".repeat(softether_control::MAX_GC_REQUEST_BYTES);
    let e = UnixSidecarClient::new(&path).gc(&req, soon()).unwrap_err();
    assert!(
        matches!(e, SidecarError::TooLarge { op: "gc", limit, .. }
            if limit == softether_control::MAX_GC_REQUEST_BYTES),
        "{e}"
    );
}
