//! The HTTP endpoint of `--metrics-addr`: `/metrics`, `/healthz`, `/readyz`, on the process's
//! tokio runtime (hyper, HTTP/1.1 only).
//!
//! Anyone who can reach the address may ask, so the server bounds what a client can hold:
//! a few connections at once, headers within a deadline, a connection's whole life.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::metrics::Metrics;

/// Connections served at once; more wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 16;
/// A client must send its request headers within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// No connection lives longer (keep-alive included).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
/// How long `/healthz` waits for the control socket's answer.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

/// What `/healthz` checks besides the runtime answering HTTP.
#[derive(Debug, Clone)]
pub enum Health {
    /// Nothing else (`connect`).
    Runtime,
    /// The daemon's control socket answers a `status` request, once it listens (`listening`
    /// is set when the daemon has bound it; before that, during re-adoption, it is not asked).
    ControlSocket {
        path: PathBuf,
        listening: Arc<AtomicBool>,
    },
}

/// Readiness: `Ok` when ready, else the one-line reason `/readyz` answers with 503.
pub type Readiness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// A readiness flag set by the daemon as it starts.
#[derive(Debug)]
pub struct ReadyFlag(Mutex<Option<String>>);

impl ReadyFlag {
    /// Not ready yet, for `reason`.
    pub fn new(reason: &str) -> Arc<ReadyFlag> {
        Arc::new(ReadyFlag(Mutex::new(Some(reason.to_owned()))))
    }

    pub fn set_not_ready(&self, reason: &str) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.to_owned());
    }

    pub fn set_ready(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub fn check(&self) -> Result<(), String> {
        match &*self.0.lock().unwrap_or_else(|p| p.into_inner()) {
            None => Ok(()),
            Some(reason) => Err(reason.clone()),
        }
    }
}

/// Everything the endpoint serves.
pub struct Endpoints {
    pub metrics: Metrics,
    pub health: Health,
    pub ready: Readiness,
}

/// Binds `addr` (so a bad address fails the start, not the first scrape).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `listener` until the runtime stops.
pub fn spawn(listener: TcpListener, endpoints: Arc<Endpoints>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("metrics endpoint: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let endpoints = endpoints.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let endpoints = endpoints.clone();
                    async move { Ok::<_, Infallible>(route(&endpoints, &req).await) }
                });
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                let mut conn = std::pin::pin!(conn);
                let ended = tokio::select! {
                    ended = conn.as_mut() => Some(ended),
                    _ = tokio::time::sleep(CONNECTION_LIFETIME) => None,
                };
                // At the end of its life a connection finishes the request in flight, then
                // closes (bounded again, for a client that never reads).
                let ended = match ended {
                    Some(ended) => ended,
                    None => {
                        conn.as_mut().graceful_shutdown();
                        tokio::time::timeout(HEADER_TIMEOUT, conn)
                            .await
                            .unwrap_or(Ok(()))
                    }
                };
                if let Err(e) = ended {
                    tracing::debug!("metrics endpoint: connection ended: {e}");
                }
                drop(permit);
            });
        }
    })
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

const TEXT: &str = "text/plain; charset=utf-8";

async fn route(endpoints: &Endpoints, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "only GET and HEAD\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => {
            let openmetrics = req
                .headers()
                .get(ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("application/openmetrics-text"));
            if openmetrics {
                reply(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    endpoints.metrics.render_openmetrics(),
                )
            } else {
                reply(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    endpoints.metrics.render_text(),
                )
            }
        }
        "/healthz" => match check_health(&endpoints.health).await {
            Ok(()) => reply(StatusCode::OK, TEXT, "ok\n".into()),
            Err(reason) => reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, format!("{reason}\n")),
        },
        "/readyz" => match (endpoints.ready)() {
            Ok(()) => reply(StatusCode::OK, TEXT, "ready\n".into()),
            Err(reason) => reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, format!("{reason}\n")),
        },
        _ => reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found; try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}

async fn check_health(health: &Health) -> Result<(), String> {
    match health {
        Health::Runtime => Ok(()),
        Health::ControlSocket { path, listening } => {
            if !listening.load(Ordering::Acquire) {
                return Ok(());
            }
            tokio::time::timeout(HEALTH_TIMEOUT, ask_status(path))
                .await
                .map_err(|_| {
                    format!(
                        "control socket {} did not answer within {HEALTH_TIMEOUT:?}",
                        path.display()
                    )
                })?
                .map_err(|e| format!("control socket {}: {e}", path.display()))
        }
    }
}

/// One `status` request over the control socket, as the plugin's STATUS sends it.
async fn ask_status(path: &std::path::Path) -> Result<(), String> {
    let mut stream = UnixStream::connect(path)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let line = softether_control::request_line(&softether_control::Request::Status(
        softether_control::NoPayload,
    ))
    .map_err(|e| e.to_string())?;
    stream.write_all(&line).await.map_err(|e| e.to_string())?;
    let mut reply = String::new();
    BufReader::new((&mut stream).take(softether_control::MAX_REPLY_BYTES))
        .read_line(&mut reply)
        .await
        .map_err(|e| e.to_string())?;
    softether_control::parse_reply::<serde_json::Value>(&reply)
        .map_err(|e| e.to_string())?
        .map(|_| ())
        .map_err(|e| e.to_string())
}
