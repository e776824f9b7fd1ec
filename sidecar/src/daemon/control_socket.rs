//! The control socket: a root-only Unix stream socket speaking one JSON line each way.
//!
//! Binding removes a stale socket file (a crashed daemon leaves one behind; the `dhcp` CNI
//! daemon's classic restart bug), but refuses to steal the path from a daemon that still
//! answers. The socket file is mode 0600 and every connection's peer credentials
//! (`SO_PEERCRED`) are checked: only uid 0 or the daemon's own uid may talk to it.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::{UnixListener, UnixStream};

use crate::sys;
use softether_control::{request_limit, Reply};

/// At most this many fds may come with one request (the plugin sends one, with `attach`).
pub const MAX_REQUEST_FDS: usize = 4;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlSocketError {
    #[error("another softether-sidecar is already listening on {path}")]
    InUse { path: PathBuf },
    #[error("{path} exists and is not a socket; refusing to remove it")]
    NotASocket { path: PathBuf },
    #[error("cannot {op} control socket {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Binds the control socket at `path` (creating its directory, mode 0700 when new).
pub async fn bind(path: &Path) -> Result<UnixListener, ControlSocketError> {
    let io_err = |op| {
        move |source| ControlSocketError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    };
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io_err("create the directory of"))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io_err("set the directory mode of"))?;
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).await.is_ok() {
                return Err(ControlSocketError::InUse {
                    path: path.to_owned(),
                });
            }
            tracing::info!(path = %path.display(), "removing stale control socket");
            std::fs::remove_file(path).map_err(io_err("remove stale"))?;
        }
        Ok(_) => {
            return Err(ControlSocketError::NotASocket {
                path: path.to_owned(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("stat")(e)),
    }
    let listener = UnixListener::bind(path).map_err(io_err("bind"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io_err("chmod 0600"))?;
    Ok(listener)
}

/// Whether a peer with `peer_uid` may use a daemon running as `own_uid`.
pub fn peer_allowed(peer_uid: u32, own_uid: u32) -> bool {
    peer_uid == 0 || peer_uid == own_uid
}

/// The peer's uid from `SO_PEERCRED`.
pub fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    let creds = getsockopt(&stream.as_fd(), PeerCredentials)?;
    Ok(creds.uid())
}

/// A request as read from the socket: the line (without its newline, not yet decoded) plus
/// any fds that came with it.
#[derive(Debug)]
pub struct Incoming {
    pub line: Vec<u8>,
    pub fds: Vec<OwnedFd>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("connection closed before a complete request line")]
    Closed,
    #[error("request line longer than {limit} bytes")]
    TooLong { limit: usize },
    #[error("{0} file descriptors sent with one request; at most {MAX_REQUEST_FDS} are accepted (all were closed)")]
    TooManyFds(usize),
    #[error("no complete request within {0:?}")]
    Timeout(Duration),
    #[error("reading the request failed: {0}")]
    Io(#[from] io::Error),
}

/// Reads one request line (and the fds sent with it) within `timeout`.
pub async fn read_request(stream: &UnixStream, timeout: Duration) -> Result<Incoming, ReadError> {
    tokio::time::timeout(timeout, read_line(stream))
        .await
        .map_err(|_| ReadError::Timeout(timeout))?
}

async fn read_line(stream: &UnixStream) -> Result<Incoming, ReadError> {
    let mut line = Vec::new();
    let mut fds = Vec::new();
    // Large enough that a big GC request (megabytes) takes few reads.
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let (n, mut got) = stream
            .async_io(Interest::READABLE, || {
                sys::recv_with_fds(stream.as_fd(), &mut buf)
            })
            .await?;
        fds.append(&mut got);
        if fds.len() > MAX_REQUEST_FDS {
            // Returning drops `fds`: every received descriptor is closed.
            return Err(ReadError::TooManyFds(fds.len()));
        }
        if n == 0 {
            return Err(ReadError::Closed);
        }
        let chunk = buf.get(..n).unwrap_or_default();
        if let Some(end) = chunk.iter().position(|&b| b == b'\n') {
            line.extend_from_slice(chunk.get(..end).unwrap_or_default());
            break;
        }
        line.extend_from_slice(chunk);
        let limit = request_limit(&line);
        if line.len() > limit {
            return Err(ReadError::TooLong { limit });
        }
    }
    Ok(Incoming { line, fds })
}

/// Writes the reply line and shuts the write side down.
pub async fn write_reply(stream: &mut UnixStream, reply: &Reply) -> io::Result<()> {
    let line = reply.line().map_err(io::Error::other)?;
    stream.write_all(&line).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    use tokio::io::AsyncReadExt;

    fn temp_socket(tag: &str) -> PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::env::temp_dir().join(format!(
            "se-ctl-{tag}-{}-{n}/sidecar.sock",
            std::process::id()
        ))
    }

    #[test]
    fn only_root_or_own_uid_may_connect() {
        assert!(peer_allowed(0, 1000));
        assert!(peer_allowed(1000, 1000));
        assert!(!peer_allowed(1001, 1000));
        assert!(peer_allowed(0, 0));
        assert!(!peer_allowed(65534, 0));
    }

    #[tokio::test]
    async fn bind_replaces_stale_socket_refuses_live_one_and_is_0600() {
        let path = temp_socket("bind");
        let first = bind(&path).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(
            bind(&path).await,
            Err(ControlSocketError::InUse { .. })
        ));
        drop(first); // leaves the file behind, like a crash
        assert!(path.exists());
        let _second = bind(&path).await.unwrap();
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[tokio::test]
    async fn request_line_with_fd_and_reply() {
        let path = temp_socket("req");
        let listener = bind(&path).await.unwrap();
        let client = std::thread::spawn({
            let path = path.clone();
            move || {
                let s = std::os::unix::net::UnixStream::connect(&path).unwrap();
                let devnull = std::fs::File::open("/dev/null").unwrap();
                let line = b"{\"protocol\":1,\"op\":\"status\",\"request\":{}}\n";
                let fds = [devnull.as_raw_fd()];
                sendmsg::<()>(
                    s.as_raw_fd(),
                    &[IoSlice::new(line)],
                    &[ControlMessage::ScmRights(&fds)],
                    MsgFlags::empty(),
                    None,
                )
                .unwrap();
                let mut reply = String::new();
                std::io::Read::read_to_string(&mut &s, &mut reply).unwrap();
                reply
            }
        });
        let (mut stream, _) = listener.accept().await.unwrap();
        assert!(peer_allowed(
            peer_uid(&stream).unwrap(),
            nix::unistd::geteuid().as_raw()
        ));
        let incoming = read_request(&stream, Duration::from_secs(5)).await.unwrap();
        assert_eq!(
            softether_control::decode_request(&incoming.line),
            Ok(softether_control::Request::Status(
                softether_control::NoPayload
            ))
        );
        assert_eq!(incoming.fds.len(), 1);
        write_reply(
            &mut stream,
            &Reply::Ok(serde_json::json!({"state": "ready"})),
        )
        .await
        .unwrap();
        let reply = client.join().unwrap();
        assert_eq!(reply, "{\"ok\":{\"state\":\"ready\"}}\n");
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[tokio::test]
    async fn too_many_fds_fail_the_request_and_are_all_closed() {
        let path = temp_socket("fds");
        let listener = bind(&path).await.unwrap();
        // Non-blocking: a leaked copy makes the final read fail with EAGAIN instead of hanging.
        let (pipe_read, pipe_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK).unwrap();
        let client = std::thread::spawn({
            let path = path.clone();
            move || {
                let s = std::os::unix::net::UnixStream::connect(&path).unwrap();
                let line = b"{\"protocol\":1,\"op\":\"status\",\"request\":{}}\n";
                let fds = [pipe_write.as_raw_fd(); 8];
                sendmsg::<()>(
                    s.as_raw_fd(),
                    &[IoSlice::new(line)],
                    &[ControlMessage::ScmRights(&fds)],
                    MsgFlags::empty(),
                    None,
                )
                .unwrap();
                drop(pipe_write);
                s
            }
        });
        let (stream, _) = listener.accept().await.unwrap();
        let _client_end = client.join().unwrap();
        let err = read_request(&stream, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, ReadError::TooManyFds(8)), "{err}");
        // Every copy of the write end is closed now, ours and the 8 received: EOF.
        let mut byte = [0u8; 1];
        let n = nix::unistd::read(&pipe_read, &mut byte);
        assert_eq!(n, Ok(0), "a received descriptor is still open");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
