//! Establishing a SoftEther session: TCP connect, TLS, the HTTP handshake driven by the sans-IO
//! [`ClientHandshake`], and following cluster redirects with a ticket.
//!
//! This is the thin I/O driver around `softether_proto::handshake`; all protocol decisions live
//! there. Every stage has its own timeout so a silent or wrong server fails fast with a message
//! naming the stage.

use std::net::SocketAddr;
use std::time::Duration;

use softether_proto::error::{ErrorCode, RetryClass};
use softether_proto::handshake::{
    ClientHandshake, ClientInfo, Credential, Direction, HandshakeError, LoginRequest, Outcome,
    Redirect, Request, ServerHello, Welcome,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::tls::{self, PresentedCert, TlsSetupError, TlsVerify};

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
}

/// A logged-in session whose stream is now in tunnel mode.
pub struct Established {
    pub stream: TlsStream<TcpStream>,
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
    /// Set when a cluster controller redirected us to a member.
    pub redirected_to: Option<SocketAddr>,
    /// Further TCP connections joined to the session (`additional_connect`), up to the
    /// granted `max_connection`; frames are spread over all of them.
    pub additional: Vec<AdditionalConnection>,
}

/// One extra TCP connection of a session.
pub struct AdditionalConnection {
    pub stream: TlsStream<TcpStream>,
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
    #[error("server {addr} enabled compression, which this client did not request")]
    UnexpectedCompression { addr: SocketAddr },
}

impl SessionError {
    /// The SoftEther error code behind this failure, when the server sent one.
    pub fn server_code(&self) -> Option<ErrorCode> {
        match self {
            SessionError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether retrying can help.
    pub fn retry_class(&self) -> RetryClass {
        match self {
            SessionError::Server { code, .. } => code.retry_class(),
            SessionError::Tls { .. }
            | SessionError::TlsSetup(_)
            | SessionError::Unencrypted { .. }
            | SessionError::UnexpectedCompression { .. } => RetryClass::Never,
            SessionError::Handshake {
                source: HandshakeError::Server(code),
                ..
            } => code.retry_class(),
            _ => RetryClass::Normal,
        }
    }
}

const MAX_REDIRECTS: usize = 3;

/// Connects, logs in, follows redirects; returns the session in tunnel mode.
pub async fn establish(config: &SessionConfig) -> Result<Established, SessionError> {
    let mut host = config.host.clone();
    let mut port = config.port;
    let mut tls_verify = config.tls.clone();
    let mut credential = config.credential.clone();
    let mut redirected_to = None;
    for _ in 0..=MAX_REDIRECTS {
        let attempt = attempt_login(config, &host, port, &tls_verify, credential.clone()).await?;
        match attempt {
            Attempt::Welcome(mut est) => {
                est.redirected_to = redirected_to;
                crate::session_join::join_additional(config, &mut est, &host, port).await;
                return Ok(*est);
            }
            Attempt::Redirect { redirect, from } => {
                tracing::info!(
                    member = %redirect.ip,
                    ports = ?redirect.ports,
                    "cluster controller {from} redirected the session"
                );
                port = if redirect.ports.contains(&port) {
                    port
                } else {
                    redirect.ports.first().copied().unwrap_or(port)
                };
                host = redirect.ip.to_string();
                // The member must present exactly the certificate the controller announced.
                tls_verify = TlsVerify::ExactCert(redirect.cert_der.clone());
                credential = Credential::Ticket(redirect.ticket);
                redirected_to = Some(SocketAddr::new(redirect.ip.into(), port));
            }
        }
    }
    Err(SessionError::RedirectLoop {
        addr: redirected_to.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], port))),
    })
}

enum Attempt {
    Welcome(Box<Established>),
    Redirect {
        redirect: Redirect,
        from: SocketAddr,
    },
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

/// Opens TCP + TLS to `host:port`; returns the TLS stream and the presented certificate.
pub async fn connect_tls(
    host: &str,
    port: u16,
    verify: &TlsVerify,
    timeout: Duration,
) -> Result<(TlsStream<TcpStream>, Vec<u8>, SocketAddr), SessionError> {
    let addr = resolve(host, port).await?;
    let presented = PresentedCert::default();
    let config = tls::client_config(verify, presented.clone())?;
    if *verify == TlsVerify::Insecure {
        tracing::warn!(%addr, "--insecure: the server certificate is NOT verified");
    }
    let fut = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| SessionError::Connect { addr, source })?;
        // Frames are latency-sensitive and we batch ourselves.
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
                stage: "TCP/TLS connect",
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

async fn attempt_login(
    config: &SessionConfig,
    host: &str,
    port: u16,
    verify: &TlsVerify,
    credential: Credential,
) -> Result<Attempt, SessionError> {
    let (mut stream, server_cert_der, addr) =
        connect_tls(host, port, verify, config.connect_timeout).await?;
    let (local_addr, info) = connection_info(config, &stream, addr, host, port)?;
    let request = Request::Login(LoginRequest {
        hub: config.hub.clone(),
        username: config.username.clone(),
        credential,
        max_connection: config.max_connection,
        half_connection: false,
        info,
    });
    let (outcome, mut handshake) = run_handshake(
        &mut stream,
        request,
        config.seed,
        config.handshake_timeout,
        "SoftEther handshake",
        addr,
    )
    .await?;
    let hello = handshake.hello().cloned();
    let leftover = handshake.take_leftover();
    match outcome {
        Outcome::Welcome(welcome) => {
            if !welcome.use_encrypt {
                return Err(SessionError::Unencrypted { addr });
            }
            if welcome.use_compress {
                return Err(SessionError::UnexpectedCompression { addr });
            }
            let (tls_version, cipher_suite) = tls_details(&stream);
            Ok(Attempt::Welcome(Box::new(Established {
                stream,
                hello: hello.ok_or(SessionError::Disconnected {
                    addr,
                    stage: "hello",
                })?,
                welcome,
                server_cert_der,
                server_addr: addr,
                local_addr,
                tls_version,
                cipher_suite,
                leftover,
                redirected_to: None,
                additional: Vec::new(),
            })))
        }
        Outcome::Redirect(redirect) => {
            let _ = stream.shutdown().await;
            Ok(Attempt::Redirect {
                redirect,
                from: addr,
            })
        }
        Outcome::Joined { .. } => Err(SessionError::Handshake {
            addr,
            source: HandshakeError::Protocol(
                "unexpected additional-connection reply to a login".into(),
            ),
        }),
    }
}

/// Pumps bytes between the TLS stream and the sans-IO handshake until it yields an outcome.
pub async fn drive_handshake(
    stream: &mut TlsStream<TcpStream>,
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
pub(crate) fn connection_info(
    config: &SessionConfig,
    stream: &TlsStream<TcpStream>,
    addr: SocketAddr,
    host: &str,
    port: u16,
) -> Result<(SocketAddr, ClientInfo), SessionError> {
    let local_addr = stream
        .get_ref()
        .0
        .local_addr()
        .map_err(|source| SessionError::Io {
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

/// Negotiated TLS version and cipher suite, for reports and logs.
pub(crate) fn tls_details(stream: &TlsStream<TcpStream>) -> (String, String) {
    let (_, conn) = stream.get_ref();
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

/// Runs one request through a new handshake on `stream` within `timeout`.
pub(crate) async fn run_handshake(
    stream: &mut TlsStream<TcpStream>,
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
