//! `softether-sidecar run`: the long-lived daemon behind the CNI plugin.
//!
//! Layers, outside in:
//! - [`control_socket`]: the root-only Unix socket (stale-file removal, mode 0600,
//!   `SO_PEERCRED`), one JSON line each way, the TAP fd received with `attach` (SCM_RIGHTS,
//!   through `sys`, the crate's only `unsafe`);
//! - the wire types and framing come from [`softether_control`], shared with the plugin;
//! - [`registry`]: attachments keyed by `(containerID, ifname)`; attach / detach / check /
//!   status / gc / list, and the startup recovery (tombstones, then re-adoption);
//! - the state directory's layout, records and tombstones come from
//!   [`softether_control::state_dir`], shared with the plugin's DEL;
//! - [`session`]: one task per attachment, a thin adapter over the `connect` engine
//!   ([`crate::engine`]: login from the sidecar's namespace, frame pump, DHCP, lease applied
//!   in the pod netns, reconnect), persisting the lease address for re-adoption.
//!
//! Drive it with [`run`] (returns on SIGTERM/SIGINT, leaving TAPs and records in place for the
//! next start) and query it with [`query_list`].

pub mod admission;
pub mod control_socket;
pub mod ipv6;
pub mod netns_watch;
pub mod observer;
pub mod registry;
pub mod session;
pub mod verify;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use control_socket::{peer_allowed, peer_uid, read_request, write_reply, Incoming};
use registry::Registry;
use softether_control::state_dir::{self, StateDir};
use softether_control::{
    code, decode_request, parse_reply, request_line, ListReply, NoPayload, Reply, Request,
    WireError, MAX_REPLY_BYTES,
};

use observer::DaemonObserver;

pub const DEFAULT_SOCKET: &str = "/run/softether-cni/sidecar.sock";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/softether-cni";
/// How long a client may take to send its request line.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    /// `--metrics-addr`: serve /metrics, /healthz and /readyz there.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// `--hooks-dir`: where `onChange` programs may come from.
    pub hooks_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    #[error(transparent)]
    Socket(#[from] control_socket::ControlSocketError),
    #[error(transparent)]
    State(#[from] state_dir::StateError),
    #[error("cannot install the signal handler: {0}")]
    Signal(std::io::Error),
    #[error("cannot listen on --metrics-addr {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(opts: &DaemonOptions) -> Result<(), DaemonError> {
    use tokio::signal::unix::{signal, SignalKind};
    match admission::raise_nofile_limit() {
        Ok((old, new)) if old != new => tracing::info!(old, new, "raised the open-files limit"),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise the open-files limit: {e}"),
    }
    let state = StateDir::open(&opts.state_dir)?;
    ipv6::daemon_hubs().load(&state);
    let registry = Arc::new(Registry::new(state).with_hooks_dir(opts.hooks_dir.clone()));
    // The metrics endpoint comes up first so /readyz can say "not yet" during re-adoption.
    let observer = match opts.metrics_addr {
        Some(addr) => Some(Arc::new(
            DaemonObserver::start(addr, &opts.socket, registry.clone())
                .await
                .map_err(|source| DaemonError::Metrics { addr, source })?,
        )),
        None => None,
    };
    if let Some(delay) = observer::test_readopt_delay() {
        tracing::warn!(?delay, "test knob: delaying re-adoption");
        tokio::time::sleep(delay).await;
    }
    // Recover before listening, so the first request sees re-adopted attachments.
    registry.recover().await;
    let listener = control_socket::bind(&opts.socket).await?;
    if let Some(o) = &observer {
        o.serving();
    }
    tracing::info!(socket = %opts.socket.display(), state_dir = %opts.state_dir.display(), "softether-sidecar ready");
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
    let own_uid = nix::unistd::geteuid().as_raw();
    let mut admission = admission::Admission::default();
    let mut backoff = admission::AcceptBackoff::default();
    // Only signals end the loop: a failed accept (EMFILE, ...) is retried after a pause.
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    backoff.reset();
                    if let Some((stream, permit)) = admission.admit(stream) {
                        let (registry, observer) = (registry.clone(), observer.clone());
                        tokio::spawn(async move {
                            serve(stream, &registry, own_uid, observer.as_deref()).await;
                            drop(permit);
                        });
                    }
                }
                Err(e) => {
                    let pause = backoff.failed(&e);
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = term.recv() => break,
                        _ = int.recv() => break,
                    }
                }
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("shutting down; attachments stay in place for the next start");
    if let Some(o) = &observer {
        o.stopping();
    }
    let _ = std::fs::remove_file(&opts.socket);
    registry.shutdown().await;
    Ok(())
}

async fn serve(
    mut stream: UnixStream,
    registry: &Registry,
    own_uid: u32,
    observer: Option<&DaemonObserver>,
) {
    let reply = match peer_uid(&stream) {
        Ok(uid) if peer_allowed(uid, own_uid) => {
            match read_request(&stream, REQUEST_READ_TIMEOUT).await {
                Ok(incoming) => {
                    let started = std::time::Instant::now();
                    let (op, reply) = dispatch(incoming, registry).await;
                    if let Some(o) = observer {
                        o.count_request(op, matches!(reply, Reply::Ok(_)), started.elapsed());
                    }
                    reply
                }
                Err(e) => Reply::Error(WireError::new(code::DECODE, e.to_string(), "")),
            }
        }
        Ok(uid) => {
            tracing::warn!(uid, "refusing a control connection from a non-root peer");
            Reply::Error(WireError::new(
                code::TRY_AGAIN_LATER,
                format!("uid {uid} may not use the softether-sidecar control socket"),
                "only root (or the daemon's own user) may",
            ))
        }
        Err(e) => Reply::Error(WireError::new(
            code::TRY_AGAIN_LATER,
            format!("cannot read the peer's credentials: {e}"),
            "",
        )),
    };
    if let Err(e) = write_reply(&mut stream, &reply).await {
        tracing::debug!("cannot send the reply: {e}");
    }
}

/// Decodes and runs one request; returns its op name (for the metrics) and the reply.
async fn dispatch(incoming: Incoming, registry: &Registry) -> (&'static str, Reply) {
    let Incoming { line, fds } = incoming;
    let request = match decode_request(&line) {
        Ok(request) => request,
        Err(e) => return ("unknown", Reply::Error(e)),
    };
    let op = request.op();
    tracing::debug!(op, "control request");
    let reply = match request {
        Request::Attach(r) => Reply::from_result(registry.attach(*r, fds).await),
        Request::Detach(r) => Reply::from_result(registry.detach(r).await.map(|()| Value::Null)),
        Request::Check(r) => Reply::from_result(registry.check(r).await.map(|()| Value::Null)),
        Request::Gc(r) => Reply::from_result(Ok(registry.gc(r).await)),
        Request::Status(NoPayload) => Reply::from_result(Ok(registry.status())),
        Request::List(NoPayload) => Reply::from_result(Ok(ListReply {
            attachments: registry.list(),
        })),
    };
    (op, reply)
}

/// Asks a running daemon for its attachments (`softether-sidecar status`).
pub async fn query_list(socket: &Path) -> Result<ListReply, String> {
    let mut stream = UnixStream::connect(socket).await.map_err(|e| {
        format!(
            "cannot connect to {}: {e}; is softether-sidecar running?",
            socket.display()
        )
    })?;
    let line = request_line(&Request::List(NoPayload)).map_err(|e| e.to_string())?;
    stream.write_all(&line).await.map_err(|e| e.to_string())?;
    let mut reply = String::new();
    tokio::time::timeout(
        REQUEST_READ_TIMEOUT,
        BufReader::new((&mut stream).take(MAX_REPLY_BYTES)).read_line(&mut reply),
    )
    .await
    .map_err(|_| "no reply within 10s".to_string())?
    .map_err(|e| e.to_string())?;
    parse_reply::<ListReply>(&reply)
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}
