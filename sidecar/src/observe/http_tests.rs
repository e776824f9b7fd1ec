//! The HTTP endpoint in process: routes, content negotiation, readiness and health answers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::http::{self, Endpoints, Health, ReadyFlag};
use super::metrics::Metrics;

/// One request on a fresh connection: (status code, headers + body as text).
async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    accept: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, out)
}

#[tokio::test]
async fn routes_negotiate_the_format_and_report_readiness_and_health() {
    let ready = ReadyFlag::new("re-adopting attachments");
    let listening = Arc::new(AtomicBool::new(false));
    let socket = std::env::temp_dir().join(format!("se-http-test-{}.sock", std::process::id()));
    let ready_check = ready.clone();
    let metrics = Metrics::new(Arc::new(Vec::new), true);
    metrics.count_request("attach", true);
    let endpoints = Arc::new(Endpoints {
        metrics,
        health: Health::ControlSocket {
            path: socket.clone(),
            listening: listening.clone(),
        },
        ready: Arc::new(move || ready_check.check()),
    });
    let listener = http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = http::spawn(listener, endpoints);

    let (code, text) = request(addr, "GET", "/metrics", "*/*").await;
    assert_eq!(code, 200);
    assert!(text.contains("text/plain; version=0.0.4"), "{text}");
    assert!(
        text.contains("# TYPE softether_cni_requests_total counter"),
        "{text}"
    );
    assert!(!text.contains("# EOF"), "{text}");
    let (code, text) = request(
        addr,
        "GET",
        "/metrics",
        "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
    )
    .await;
    assert_eq!(code, 200);
    assert!(
        text.contains("application/openmetrics-text") && text.contains("# EOF"),
        "{text}"
    );

    let (code, text) = request(addr, "GET", "/readyz", "*/*").await;
    assert_eq!(code, 503);
    assert!(
        text.ends_with("\r\n\r\nre-adopting attachments\n"),
        "{text}"
    );
    // Before the daemon listens, health does not ask the (absent) socket.
    assert_eq!(request(addr, "GET", "/healthz", "*/*").await.0, 200);
    ready.set_ready();
    listening.store(true, Ordering::Release);
    assert_eq!(request(addr, "GET", "/readyz", "*/*").await.0, 200);
    let (code, text) = request(addr, "GET", "/healthz", "*/*").await;
    assert_eq!(code, 503, "no control socket: {text}");
    assert!(text.contains("control socket"), "{text}");

    assert_eq!(request(addr, "GET", "/nope", "*/*").await.0, 404);
    assert_eq!(request(addr, "POST", "/metrics", "*/*").await.0, 405);
    assert_eq!(request(addr, "HEAD", "/readyz", "*/*").await.0, 200);
    server.abort();
}
