//! One SoftEther connection: what a session is configured with, what a logged-in connection
//! holds, why it failed, and the primitives every connection uses — TCP + TLS
//! ([`connect_tls`]) and one HTTP handshake run over it (`run_handshake`).
//!
//! Both the first login ([`super::establish`]) and every joined or resumed connection
//! ([`super::join`]) build on this module; it imports neither, so they do not import each other.
//! All protocol decisions live in `softether_proto::handshake`; every stage has its own timeout so
//! a silent or wrong server fails fast with a message naming the stage.

use std::net::SocketAddr;
use std::time::Duration;

use softether_proto::error::{ErrorCode, RetryClass};
use softether_proto::handshake::{
    ClientHandshake, ClientInfo, Credential, Direction, HandshakeError, Outcome, Request,
    ServerHello, Welcome,
};
use std::future::Future;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::proxy::{self, Proxy, ProxyError};
use super::proxy_lookup::ProxyLookups;
use super::tls::{self, PresentedCert, TlsSetupError, TlsVerify};

/// What to connect to and how to authenticate.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub host: String,
    pub port: u16,
    pub hub: String,
    pub username: String,
    pub credential: Credential,
    pub tls: TlsVerify,
    pub max_connection: u32,
    /// Budget for TCP connect + TLS handshake.
    pub connect_timeout: Duration,
    /// Budget for the HTTP handshake (signature, hello, login) after TLS is up.
    pub handshake_timeout: Duration,
    /// Identity fields of the login pack; `client_ip`/`client_port`/`server_*` are filled in here.
    pub info: ClientInfo,
    /// Seed for protocol padding randomness.
    pub seed: u64,
    /// Reach the server through this HTTP or SOCKS proxy.
    pub proxy: Option<Proxy>,
    /// Offer UDP acceleration in the login up to this version (2 = ChaCha20-Poly1305, as the
    /// official client; 1 = RC4 only); `None` = TCP only (`--udp-acceleration off`).
    pub udp_acceleration: Option<u32>,
    /// Ask for `use_compress`: zlib per block, both directions (`--compress`).
    pub compress: bool,
    /// Ask for half-connection: each TCP connection carries one direction (needs
    /// `max_connection` ≥ 2; `--half-connection`).
    pub half_connection: bool,
}

/// A byte stream a session runs over: TLS over TCP in production, an in-memory duplex in the
/// in-process tests.
pub trait SessionStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The local address, sent in the login pack.
    fn local_addr(&self) -> std::io::Result<SocketAddr>;
    /// Negotiated TLS version and cipher suite, for reports and logs.
    fn tls_details(&self) -> (String, String) {
        (String::new(), String::new())
    }
}

impl SessionStream for TlsStream<TcpStream> {
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.get_ref().0.local_addr()
    }

    fn tls_details(&self) -> (String, String) {
        let (_, conn) = self.get_ref();
        let version = conn
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default();
        let cipher = conn
            .negotiated_cipher_suite()
            .map(|c| format!("{:?}", c.suite()))
            .unwrap_or_default();
        (version, cipher)
    }
}

/// Opens the connections of a session: [`TlsDialer`] in production, an in-memory fake server in
/// the in-process tests.
pub trait Dialer: Send + Sync {
    type Stream: SessionStream;
    /// Connects to `host:port` within `timeout`, checking the server with `verify`; returns the
    /// stream, the certificate the server presented, and the server's address.
    fn dial(
        &self,
        host: &str,
        port: u16,
        verify: &TlsVerify,
        timeout: Duration,
    ) -> impl Future<Output = Result<(Self::Stream, Vec<u8>, SocketAddr), SessionError>> + Send;

    /// Whether `host:port` accepts connections: a TCP connect, no TLS, no login
    /// ([`tcp_probe`]).
    fn probe(&self, host: &str, port: u16, timeout: Duration) -> impl Future<Output = bool> + Send {
        let host = host.to_owned();
        async move { tcp_probe(&host, port, timeout).await }
    }
}

/// TCP + TLS ([`connect_tls`]), through the session's proxy when it has one. One dialer serves
/// a session's connections and reconnects: through a proxy it keeps the local lookup of the
/// server's name ([`ProxyLookups`]).
#[derive(Debug, Clone, Default)]
pub struct TlsDialer {
    proxy: Option<Proxy>,
    lookups: ProxyLookups,
}

impl TlsDialer {
    /// The dialer for `config`'s server (and proxy).
    pub fn for_config(config: &SessionConfig) -> TlsDialer {
        TlsDialer {
            proxy: config.proxy.clone(),
            lookups: ProxyLookups::default(),
        }
    }
}

impl Dialer for TlsDialer {
    type Stream = TlsStream<TcpStream>;
    async fn dial(
        &self,
        host: &str,
        port: u16,
        verify: &TlsVerify,
        timeout: Duration,
    ) -> Result<(Self::Stream, Vec<u8>, SocketAddr), SessionError> {
        let via = self.proxy.as_ref().map(|p| (p, &self.lookups));
        let dialed = connect_tls(host, port, verify, timeout, via).await;
        if dialed.is_err() && via.is_some() {
            self.lookups.connection_failed(host, port).await;
        }
        dialed
    }

    /// Without a proxy a TCP connect; through one, the proxy's tunnel request (no TLS, no
    /// login): proxies answer it only when the server accepts.
    fn probe(&self, host: &str, port: u16, timeout: Duration) -> impl Future<Output = bool> + Send {
        let (host, proxy) = (host.to_owned(), self.proxy.clone());
        async move {
            match proxy {
                None => tcp_probe(&host, port, timeout).await,
                Some(p) => matches!(
                    tokio::time::timeout(timeout, proxy::connect(&p, &host, port)).await,
                    Ok(Ok(_))
                ),
            }
        }
    }
}

/// A logged-in session whose stream is now in tunnel mode.
pub struct Established<S = TlsStream<TcpStream>> {
    pub stream: S,
    pub hello: ServerHello,
    pub welcome: Welcome,
    /// DER of the certificate the (final) server presented.
    pub server_cert_der: Vec<u8>,
    pub server_addr: SocketAddr,
    pub local_addr: SocketAddr,
    pub tls_version: String,
    pub cipher_suite: String,
    /// Tunnel bytes that arrived together with the Welcome.
    pub leftover: Vec<u8>,
    /// What the first connection carries: both directions, or client→server under
    /// half-connection (after a resume, what the server assigned).
    pub direction: Direction,
    /// Set when a cluster controller redirected us to a member.
    pub redirected_to: Option<SocketAddr>,
    /// Further TCP connections joined to the session (`additional_connect`), up to the
    /// granted `max_connection`; frames are spread over all of them.
    pub additional: Vec<AdditionalConnection<S>>,
    /// The UDP acceleration channel, when offered and granted (not after a resume).
    pub udp: Option<super::udp_accel::UdpChannel>,
}

impl<S> Established<S> {
    /// Under half-connection a session needs a connection each way; with fewer joined than asked
    /// for it may have only one and could never receive (or send).
    pub(crate) fn check_directions(&self) -> Result<(), SessionError> {
        let dirs =
            || std::iter::once(self.direction).chain(self.additional.iter().map(|c| c.direction));
        if dirs().any(Direction::can_send) && dirs().any(Direction::can_receive) {
            return Ok(());
        }
        Err(SessionError::Handshake {
            addr: self.server_addr,
            source: HandshakeError::Protocol(format!(
                "half-connection with {} connection(s) has no {} connection",
                self.additional.len() + 1,
                if dirs().any(Direction::can_send) {
                    "receiving"
                } else {
                    "sending"
                }
            )),
        })
    }
}

/// One extra TCP connection of a session.
pub struct AdditionalConnection<S = TlsStream<TcpStream>> {
    pub stream: S,
    pub direction: Direction,
    /// Tunnel bytes that arrived together with the join reply.
    pub leftover: Vec<u8>,
}

/// Why a session could not be established.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{host} resolved to no address")]
    NoAddress { host: String },
    #[error("TCP connect to {addr} failed: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("timed out after {after:?} during {stage} with {addr}")]
    Timeout {
        stage: &'static str,
        addr: SocketAddr,
        after: Duration,
    },
    #[error(transparent)]
    TlsSetup(#[from] TlsSetupError),
    #[error("through proxy {proxy}: {source}")]
    Proxy {
        /// The proxy URL without password.
        proxy: String,
        #[source]
        source: ProxyError,
    },
    #[error("TLS handshake with {addr} failed: {detail}{}", hint.as_deref().map(|h| format!("; {h}")).unwrap_or_default())]
    Tls {
        addr: SocketAddr,
        detail: String,
        hint: Option<String>,
        /// SHA-256 of the certificate the server presented, if it got that far.
        presented_sha256: Option<String>,
    },
    #[error("server {addr} refused the login: {code}")]
    Server { addr: SocketAddr, code: ErrorCode },
    #[error("handshake with {addr} failed: {source}")]
    Handshake {
        addr: SocketAddr,
        #[source]
        source: HandshakeError,
    },
    #[error("connection to {addr} closed by the server during {stage}")]
    Disconnected {
        addr: SocketAddr,
        stage: &'static str,
    },
    #[error("I/O error with {addr} during {stage}: {source}")]
    Io {
        addr: SocketAddr,
        stage: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("too many cluster redirects (last to {addr})")]
    RedirectLoop { addr: SocketAddr },
    #[error(
        "server {addr} granted an unencrypted tunnel, which this client never requests or accepts"
    )]
    Unencrypted { addr: SocketAddr },
}

impl SessionError {
    /// The SoftEther error code behind this failure, when the server sent one.
    pub fn server_code(&self) -> Option<ErrorCode> {
        match self {
            SessionError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether the server could not even be reached: name resolution or the TCP connect failed
    /// or timed out. A server that accepted the connection and then failed us is not
    /// unreachable; the reconnect policy probes only unreachable ones.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            SessionError::Resolve { .. }
                | SessionError::NoAddress { .. }
                | SessionError::Connect { .. }
                | SessionError::Proxy {
                    source: ProxyError::Connect(_) | ProxyError::Refused(_),
                    ..
                }
                | SessionError::Timeout {
                    stage: CONNECT_STAGE,
                    ..
                }
        )
    }

    /// Whether retrying can help.
    pub fn retry_class(&self) -> RetryClass {
        match self {
            SessionError::Server { code, .. } => code.retry_class(),
            SessionError::Proxy { source, .. } => source.retry_class(),
            SessionError::Tls { .. }
            | SessionError::TlsSetup(_)
            | SessionError::Unencrypted { .. } => RetryClass::Never,
            SessionError::Handshake {
                source: HandshakeError::Server(code),
                ..
            } => code.retry_class(),
            _ => RetryClass::Normal,
        }
    }
}

/// The stage name of a timed-out TCP + TLS connect.
const CONNECT_STAGE: &str = "TCP/TLS connect";

/// A cheap liveness check: whether `host:port` accepts a TCP connection within `timeout`. No
/// TLS and no login; the connection is closed at once.
pub async fn tcp_probe(host: &str, port: u16, timeout: Duration) -> bool {
    let connect = async {
        let addr = resolve(host, port).await.ok()?;
        TcpStream::connect(addr).await.ok()
    };
    matches!(tokio::time::timeout(timeout, connect).await, Ok(Some(_)))
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, SessionError> {
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| SessionError::Resolve {
            host: host.to_string(),
            source,
        })?;
    addrs.next().ok_or_else(|| SessionError::NoAddress {
        host: host.to_string(),
    })
}

/// Opens TCP + TLS to `host:port`, through a proxy when given (with the session's lookups);
/// returns the TLS stream, the presented certificate and the server's address (through a proxy:
/// resolved locally when that works, else unspecified with the port — the proxy resolves the
/// name).
pub async fn connect_tls(
    host: &str,
    port: u16,
    verify: &TlsVerify,
    timeout: Duration,
    via: Option<(&Proxy, &ProxyLookups)>,
) -> Result<(TlsStream<TcpStream>, Vec<u8>, SocketAddr), SessionError> {
    let proxy = via.map(|(p, _)| p);
    let addr = match via {
        None => resolve(host, port).await?,
        Some((_, lookups)) => {
            let lookup = || async { resolve(host, port).await.ok() };
            lookups.server_addr(host, port, lookup).await
        }
    };
    let presented = PresentedCert::default();
    let config = tls::client_config_async(verify, presented.clone()).await?;
    if *verify == TlsVerify::Insecure {
        tracing::warn!(%addr, "--insecure: the server certificate is NOT verified");
    }
    let fut = async {
        let tcp = match proxy {
            None => TcpStream::connect(addr)
                .await
                .map_err(|source| SessionError::Connect { addr, source })?,
            Some(p) => {
                let (tcp, via) =
                    proxy::connect(p, host, port)
                        .await
                        .map_err(|source| SessionError::Proxy {
                            proxy: p.to_string(),
                            source,
                        })?;
                tracing::debug!(proxy = %p, %via, "proxy tunnel to {host}:{port} open");
                tcp
            }
        };
        // Frames are latency-sensitive and we batch ourselves. Measured with Nagle instead
        // (same lab, three alternating rounds): upload 830–1062 vs 1662–1797 Mbit/s.
        let _ = tcp.set_nodelay(true);
        TlsConnector::from(config)
            .connect(tls::server_name(host), tcp)
            .await
            .map_err(|e| tls_error(addr, &e, presented.get()))
    };
    let stream =
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| SessionError::Timeout {
                stage: CONNECT_STAGE,
                addr,
                after: timeout,
            })??;
    let der = presented.get().unwrap_or_default();
    Ok((stream, der, addr))
}

fn tls_error(addr: SocketAddr, err: &std::io::Error, presented: Option<Vec<u8>>) -> SessionError {
    let presented_sha256 = presented.as_deref().map(tls::cert_sha256_hex);
    let rustls_err = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let hint = match rustls_err {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure)) => {
            Some(format!(
                "the server certificate does not match --pin-sha256 (server presented sha256 {})",
                presented_sha256.as_deref().unwrap_or("?")
            ))
        }
        Some(rustls::Error::InvalidCertificate(_)) => Some(format!(
            "the server certificate is not trusted (SoftEther's default self-signed certificate never is); \
             pin it with --pin-sha256 {} after checking it out of band",
            presented_sha256.as_deref().unwrap_or("<sha256>")
        )),
        Some(rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure))
        | Some(rustls::Error::PeerIncompatible(_)) => Some(
            "no common TLS cipher: the server must allow an ECDHE + AEAD cipher (e.g. ECDHE-RSA-AES128-GCM-SHA256); \
             legacy SoftEther 4.x settings such as RC4-MD5 or AES128-SHA are not supported"
                .to_string(),
        ),
        _ => None,
    };
    SessionError::Tls {
        addr,
        detail: err.to_string(),
        hint,
        presented_sha256,
    }
}

/// Pumps bytes between the TLS stream and the sans-IO handshake until it yields an outcome.
pub async fn drive_handshake<S: AsyncRead + AsyncWrite + Unpin + Send>(
    stream: &mut S,
    handshake: &mut ClientHandshake,
    addr: SocketAddr,
) -> Result<Outcome, SessionError> {
    let io_err = |stage: &'static str| {
        move |source| SessionError::Io {
            addr,
            stage,
            source,
        }
    };
    let mut buf = vec![0u8; 16 * 1024];
    let mut pending: Option<Outcome> = None;
    loop {
        let mut wrote = false;
        while let Some(out) = handshake.poll_transmit() {
            stream
                .write_all(&out)
                .await
                .map_err(io_err("handshake write"))?;
            wrote = true;
        }
        if wrote {
            stream.flush().await.map_err(io_err("handshake flush"))?;
        }
        if pending.is_none() {
            pending = handshake.take_outcome();
        }
        if let Some(outcome) = pending.take() {
            return Ok(outcome);
        }
        let n = stream
            .read(&mut buf)
            .await
            .map_err(io_err("handshake read"))?;
        if n == 0 {
            return Err(SessionError::Disconnected {
                addr,
                stage: if handshake.hello().is_some() {
                    "login"
                } else {
                    "signature/hello"
                },
            });
        }
        handshake
            .handle_input(&buf[..n])
            .map_err(|source| match source {
                HandshakeError::Server(code) => SessionError::Server { addr, code },
                source => SessionError::Handshake { addr, source },
            })?;
    }
}

/// The local address of a fresh connection and the login identity filled in for it.
pub(crate) fn connection_info<S: SessionStream>(
    config: &SessionConfig,
    stream: &S,
    addr: SocketAddr,
    host: &str,
    port: u16,
) -> Result<(SocketAddr, ClientInfo), SessionError> {
    let local_addr = stream.local_addr().map_err(|source| SessionError::Io {
        addr,
        stage: "local address",
        source,
    })?;
    let mut info = config.info.clone();
    if let std::net::IpAddr::V4(ip) = local_addr.ip() {
        info.client_ip = ip;
    }
    info.client_port = local_addr.port();
    info.server_host = host.to_string();
    info.server_port = port;
    Ok((local_addr, info))
}

/// Runs one request through a new handshake on `stream` within `timeout`.
pub(crate) async fn run_handshake<S: AsyncRead + AsyncWrite + Unpin + Send>(
    stream: &mut S,
    request: Request,
    seed: u64,
    timeout: Duration,
    stage: &'static str,
    addr: SocketAddr,
) -> Result<(Outcome, ClientHandshake), SessionError> {
    let mut handshake = ClientHandshake::new(request, seed);
    let outcome = tokio::time::timeout(timeout, drive_handshake(stream, &mut handshake, addr))
        .await
        .map_err(|_| SessionError::Timeout {
            stage,
            addr,
            after: timeout,
        })??;
    Ok((outcome, handshake))
}
