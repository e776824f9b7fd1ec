//! In-process test support for the I/O layer: [`FakeNet`], a [`Dialer`] whose "server" is the
//! protocol crate's sans-IO [`FakeServer`] run by one tokio task per connection over
//! `tokio::io::duplex`. Tests use it with `#[tokio::test(start_paused = true)]`: keep-alives,
//! timeouts and backoffs run in virtual time, without root, in milliseconds.
//!
//! The fake net models one server: it can be down (dials are refused), restarted (every
//! connection drops and the sessions it held are forgotten), have its connections broken while
//! it keeps the session (a resume works), fall silent, or refuse logins with an error code.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use softether_proto::error::ErrorCode;
use softether_proto::handshake::{ClientInfo, Credential};
use softether_proto::password::hash_password;
use softether_proto::testing::{FakeAuth, FakeReply, FakeServer, FakeServerConfig, FakeUser};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::sync::{mpsc, watch};

use super::clock::now;
use super::connection::{Dialer, SessionConfig, SessionError, SessionStream};
use super::tls::TlsVerify;

pub const USER: &str = "alice";
pub const PASSWORD: &str = "secret";
pub const SERVER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)), 443);
/// The certificate the fake server "presents".
pub const CERT: &[u8] = b"fake server certificate";

/// A session configuration for [`FakeNet`].
pub fn session_config(max_connection: u32) -> SessionConfig {
    SessionConfig {
        host: SERVER.ip().to_string(),
        port: SERVER.port(),
        hub: "DEFAULT".into(),
        username: USER.into(),
        credential: Credential::HashedPassword(hash_password(USER, PASSWORD)),
        tls: TlsVerify::Insecure,
        max_connection,
        connect_timeout: Duration::from_secs(5),
        handshake_timeout: Duration::from_secs(10),
        info: ClientInfo::default(),
        seed: 1,
        proxy: None,
        udp_acceleration: None,
        compress: false,
        half_connection: false,
    }
}

/// One client end of a fake connection.
pub struct FakeStream {
    inner: DuplexStream,
    local: SocketAddr,
}

impl SessionStream for FakeStream {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

impl AsyncRead for FakeStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for FakeStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What the connection tasks watch: bumping `generation` drops every connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Control {
    generation: u32,
    /// Connections with a smaller id than this are silent.
    silent_below: u32,
}

#[derive(Debug, Default)]
struct NetState {
    down: bool,
    /// Session key of the sessions the server holds; a restart draws a new one.
    key_byte: u8,
    refuse_with: Option<ErrorCode>,
    next_port: u16,
    /// Counters for assertions.
    dials: u32,
    refused_dials: u32,
    probes: u32,
    /// New connections are accepted but never answered (a hung server).
    hang: bool,
}

/// The fake network with one fake server. Cheap to clone; clones share the server.
#[derive(Clone)]
pub struct FakeNet {
    state: Arc<Mutex<NetState>>,
    control: Arc<watch::Sender<Control>>,
    /// Frames the server received from the client, on any connection.
    frames_rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Bytes>>>,
    frames_tx: mpsc::UnboundedSender<Bytes>,
    /// Frames the server sends on its next connection task wake-up.
    to_client: Arc<Mutex<Vec<Bytes>>>,
    timeout: Duration,
    /// Capacity of each in-memory connection: small values chop every read and write.
    pipe: usize,
}

impl FakeNet {
    /// A listening server whose sessions time out after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        let (frames_tx, frames_rx) = mpsc::unbounded_channel();
        FakeNet {
            state: Arc::new(Mutex::new(NetState {
                key_byte: 1,
                next_port: 40_000,
                ..NetState::default()
            })),
            control: Arc::new(watch::channel(Control::default()).0),
            frames_rx: Arc::new(tokio::sync::Mutex::new(frames_rx)),
            frames_tx,
            to_client: Arc::default(),
            timeout,
            pipe: 64 * 1024,
        }
    }

    /// Like [`FakeNet::new`] with connections that carry at most `pipe` bytes at a time.
    pub fn with_pipe(timeout: Duration, pipe: usize) -> Self {
        FakeNet {
            pipe: pipe.max(1),
            ..FakeNet::new(timeout)
        }
    }

    /// New connections are accepted but never answered (`true`), or served again (`false`).
    pub fn hang_new_connections(&self, hang: bool) {
        self.state().hang = hang;
    }

    fn state(&self) -> std::sync::MutexGuard<'_, NetState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Kills the server: connections drop, dials are refused, sessions are forgotten.
    pub fn kill(&self) {
        {
            let mut s = self.state();
            s.down = true;
            s.key_byte = s.key_byte.wrapping_add(1);
        }
        self.control.send_modify(|c| c.generation += 1);
    }

    /// Starts the killed server again.
    pub fn start(&self) {
        self.state().down = false;
    }

    /// Breaks every connection (TCP reset) while the server keeps the sessions.
    pub fn break_connections(&self) {
        self.control.send_modify(|c| c.generation += 1);
    }

    /// The server stops sending anything on its current connections (no frames, no
    /// keep-alives); new connections work.
    pub fn silence(&self) {
        let next = u32::from(self.state().next_port) + 1;
        self.control.send_modify(|c| c.silent_below = next);
    }

    /// Logins are answered with `code` from now on (`None`: welcomed again).
    pub fn refuse_logins(&self, code: Option<ErrorCode>) {
        self.state().refuse_with = code;
    }

    /// (dials, refused dials) so far.
    pub fn dials(&self) -> (u32, u32) {
        let s = self.state();
        (s.dials, s.refused_dials)
    }

    /// Probes so far.
    pub fn probes(&self) -> u32 {
        self.state().probes
    }

    /// Sends a frame to the client on the server's connections.
    pub fn send_frame(&self, frame: &[u8]) {
        self.to_client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Bytes::copy_from_slice(frame));
        // Wake the connection tasks.
        self.control.send_modify(|_| {});
    }

    /// The next frame the server received from the client.
    pub async fn recv_frame(&self) -> Option<Bytes> {
        self.frames_rx.lock().await.recv().await
    }

    fn server_config(&self, key_byte: u8, refuse: Option<ErrorCode>) -> FakeServerConfig {
        FakeServerConfig {
            users: vec![FakeUser {
                name: USER.into(),
                auth: FakeAuth::Password(PASSWORD.into()),
            }],
            reply: refuse.map_or(FakeReply::Welcome, FakeReply::Error),
            session_key: [key_byte; 20],
            timeout: self.timeout,
            ..FakeServerConfig::default()
        }
    }
}

impl Dialer for FakeNet {
    type Stream = FakeStream;

    async fn dial(
        &self,
        _host: &str,
        _port: u16,
        _verify: &TlsVerify,
        _timeout: Duration,
    ) -> Result<(FakeStream, Vec<u8>, SocketAddr), SessionError> {
        let (config, port, hang) = {
            let mut s = self.state();
            s.dials += 1;
            if s.down {
                s.refused_dials += 1;
                return Err(SessionError::Connect {
                    addr: SERVER,
                    source: io::ErrorKind::ConnectionRefused.into(),
                });
            }
            s.next_port = s.next_port.wrapping_add(1);
            (
                self.server_config(s.key_byte, s.refuse_with),
                s.next_port,
                s.hang,
            )
        };
        let (client, server) = tokio::io::duplex(self.pipe);
        let local = SocketAddr::from(([198, 18, 0, 2], port));
        if hang {
            // Keep the server end open and silent until the client gives up.
            tokio::spawn(async move {
                let mut server = server;
                let mut sink = [0u8; 1024];
                while matches!(server.read(&mut sink).await, Ok(n) if n > 0) {}
            });
            return Ok((
                FakeStream {
                    inner: client,
                    local,
                },
                CERT.to_vec(),
                SERVER,
            ));
        }
        let task = ServerConnection {
            id: u32::from(port),
            server: FakeServer::new(config),
            control: self.control.subscribe(),
            frames: self.frames_tx.clone(),
            to_client: self.to_client.clone(),
        };
        tokio::spawn(task.run(server));
        Ok((
            FakeStream {
                inner: client,
                local,
            },
            CERT.to_vec(),
            SERVER,
        ))
    }

    async fn probe(&self, _host: &str, _port: u16, _timeout: Duration) -> bool {
        let mut s = self.state();
        s.probes += 1;
        !s.down
    }
}

/// One server-side connection: the sans-IO fake server pumped over a duplex end.
struct ServerConnection {
    id: u32,
    server: FakeServer,
    control: watch::Receiver<Control>,
    frames: mpsc::UnboundedSender<Bytes>,
    to_client: Arc<Mutex<Vec<Bytes>>>,
}

impl ServerConnection {
    async fn run(mut self, mut stream: DuplexStream) {
        let generation = self.control.borrow_and_update().generation;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let ctl = *self.control.borrow_and_update();
            if ctl.generation != generation {
                return; // dropping the stream is the reset the client sees
            }
            let silent = self.id < ctl.silent_below;
            self.server.set_silent(silent);
            if self.server.in_tunnel() && !silent {
                let frames: Vec<Bytes> =
                    std::mem::take(&mut *self.to_client.lock().unwrap_or_else(|p| p.into_inner()));
                for f in &frames {
                    self.server.send_frame(f);
                }
            }
            if self.server.advance(now()).is_err() {
                return; // the client was silent for the session timeout
            }
            while let Some(bytes) = self.server.poll_transmit() {
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            while let Some(frame) = self.server.poll_frame() {
                let _ = self.frames.send(frame);
            }
            let timer = self.server.poll_timeout();
            tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let _ = self.server.advance(now());
                        if self.server.handle_input(&buf[..n]).is_err() {
                            // What the real server does with a bad request: finish the reply
                            // (an error pack) and close.
                            while let Some(bytes) = self.server.poll_transmit() {
                                let _ = stream.write_all(&bytes).await;
                            }
                            return;
                        }
                    }
                },
                _ = sleep_until(timer) => {}
                changed = self.control.changed() => if changed.is_err() { return },
            }
        }
    }
}

async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[path = "testkit_tests.rs"]
mod tests;
