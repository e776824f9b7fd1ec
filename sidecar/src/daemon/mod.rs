//! `softether-sidecar run`: the long-lived daemon behind the CNI plugin.
//!
//! Layers, outside in:
//! - [`control_socket`]: the root-only Unix socket (stale-file removal, mode 0600,
//!   `SO_PEERCRED`), one JSON line each way, the TAP fd received with `attach` (SCM_RIGHTS,
//!   through [`sys`], the crate's only `unsafe`);
//! - the wire types and framing come from [`softether_control`], shared with the plugin;
//! - [`registry`]: attachments keyed by `(containerID, ifname)`; attach / detach / check /
//!   status / gc / list, and the startup recovery (tombstones, then re-adoption);
//! - [`state`]: attachment records and tombstones in the state directory;
//! - [`session`]: one task per attachment, a thin adapter over the `connect` engine
//!   ([`crate::engine`]: login from the sidecar's namespace, frame pump, DHCP, lease applied
//!   in the pod netns, reconnect), persisting the lease address for re-adoption.
//!
//! Drive it with [`run`] (returns on SIGTERM/SIGINT, leaving TAPs and records in place for the
//! next start) and query it with [`query_list`].

pub mod admission;
pub mod control_socket;
pub mod netns_watch;
pub mod registry;
pub mod session;
pub mod state;
mod sys;
pub mod verify;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use control_socket::{peer_allowed, peer_uid, read_request, write_reply, Incoming};
use registry::Registry;
use softether_control::{
    code, parse_reply, request_line, ListReply, Reply, WireError, MAX_REPLY_BYTES, PROTOCOL_VERSION,
};
use state::StateDir;

pub const DEFAULT_SOCKET: &str = "/run/softether-cni/sidecar.sock";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/softether-cni";
/// How long a client may take to send its request line.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub socket: PathBuf,
    pub state_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    #[error(transparent)]
    Socket(#[from] control_socket::ControlSocketError),
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error("cannot install the signal handler: {0}")]
    Signal(std::io::Error),
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
    let registry = Arc::new(Registry::new(state));
    // Recover before listening, so the first request sees re-adopted attachments.
    registry.recover().await;
    let listener = control_socket::bind(&opts.socket).await?;
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
                        let registry = registry.clone();
                        tokio::spawn(async move {
                            serve(stream, &registry, own_uid).await;
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
    let _ = std::fs::remove_file(&opts.socket);
    registry.shutdown().await;
    Ok(())
}

async fn serve(mut stream: UnixStream, registry: &Registry, own_uid: u32) {
    let reply = match peer_uid(&stream) {
        Ok(uid) if peer_allowed(uid, own_uid) => {
            match read_request(&stream, REQUEST_READ_TIMEOUT).await {
                Ok(incoming) => dispatch(incoming, registry).await,
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

fn decode<T: DeserializeOwned>(op: &str, v: Value) -> Result<T, WireError> {
    serde_json::from_value(v).map_err(|e| {
        WireError::new(
            code::DECODE,
            format!("cannot decode the {op} request"),
            e.to_string(),
        )
    })
}

async fn dispatch(incoming: Incoming, registry: &Registry) -> Reply {
    let Incoming { envelope, fds } = incoming;
    if envelope.protocol != PROTOCOL_VERSION {
        return Reply::Error(WireError::new(
            code::PROTOCOL,
            format!(
                "protocol version {} is not supported (this sidecar speaks {PROTOCOL_VERSION})",
                envelope.protocol
            ),
            "install matching versions of the plugin and softether-sidecar",
        ));
    }
    let op = envelope.op.as_str();
    let req = envelope.request;
    tracing::debug!(op, "control request");
    match op {
        "attach" => match decode(op, req) {
            Ok(r) => Reply::from_result(registry.attach(r, fds).await),
            Err(e) => Reply::Error(e),
        },
        "detach" => match decode(op, req) {
            Ok(r) => Reply::from_result(registry.detach(r).await.map(|()| Value::Null)),
            Err(e) => Reply::Error(e),
        },
        "check" => match decode(op, req) {
            Ok(r) => Reply::from_result(registry.check(r).await.map(|()| Value::Null)),
            Err(e) => Reply::Error(e),
        },
        "gc" => match decode(op, req) {
            Ok(r) => Reply::from_result(Ok(registry.gc(r).await)),
            Err(e) => Reply::Error(e),
        },
        "status" => Reply::from_result(Ok(registry.status())),
        "list" => Reply::from_result(Ok(ListReply {
            attachments: registry.list(),
        })),
        other => Reply::Error(WireError::new(
            code::PROTOCOL,
            format!("unknown op {other:?}"),
            "",
        )),
    }
}

/// Asks a running daemon for its attachments (`softether-sidecar status`).
pub async fn query_list(socket: &Path) -> Result<ListReply, String> {
    let mut stream = UnixStream::connect(socket).await.map_err(|e| {
        format!(
            "cannot connect to {}: {e}; is softether-sidecar running?",
            socket.display()
        )
    })?;
    let line = request_line("list", &serde_json::json!({})).map_err(|e| e.to_string())?;
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
