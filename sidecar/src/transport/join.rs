//! More TCP connections for a session, and resuming a session after its connections broke:
//! both use `additional_connect` with the session key (softether-protocol.md §9), and both
//! require the server to present the certificate of the first connection.

use std::net::SocketAddr;
use std::time::Duration;

use crate::transport::connection::{
    connection_info, run_handshake, AdditionalConnection, Dialer, Established, SessionConfig,
    SessionError, SessionStream, TlsDialer,
};
use crate::transport::tls::TlsVerify;
use softether_proto::handshake::{
    Direction, HandshakeError, Outcome, Request, ServerHello, Welcome,
};

/// Above this many quick connections the server's DoS guard (16 per burst from one IP) could
/// drop us, so later joins are spaced out.
const JOIN_BURST: usize = 8;
const JOIN_SPACING: Duration = Duration::from_millis(300);

/// Opens `min(requested, granted) - 1` additional connections to the session. Failures are
/// logged and leave the session with fewer connections; they never fail the login.
pub(crate) async fn join_additional<D: Dialer>(
    dialer: &D,
    config: &SessionConfig,
    est: &mut Established<D::Stream>,
    host: &str,
    port: u16,
) {
    let wanted = config
        .max_connection
        .min(est.welcome.max_connection)
        .clamp(1, 32) as usize;
    for i in 1..wanted {
        if i >= JOIN_BURST {
            tokio::time::sleep(JOIN_SPACING).await;
        }
        match join_session_with(dialer, config, est, host, port).await {
            Ok(conn) => est.additional.push(conn),
            Err(e) => {
                tracing::warn!(
                    joined = est.additional.len() + 1,
                    wanted,
                    "cannot add another TCP connection to the session: {e}"
                );
                break;
            }
        }
    }
    if wanted > 1 {
        tracing::info!(
            connections = est.additional.len() + 1,
            granted = est.welcome.max_connection,
            "session uses several TCP connections"
        );
    }
}

/// Joins one more TCP connection to an established session (`additional_connect`, §9.1): the
/// server must present the same certificate as on the first connection.
pub async fn join_session(
    config: &SessionConfig,
    est: &Established,
    host: &str,
    port: u16,
) -> Result<AdditionalConnection, SessionError> {
    join_session_with(&TlsDialer::for_config(config), config, est, host, port).await
}

/// [`join_session`] over a connection `dialer` opens.
pub async fn join_session_with<D: Dialer>(
    dialer: &D,
    config: &SessionConfig,
    est: &Established<D::Stream>,
    host: &str,
    port: u16,
) -> Result<AdditionalConnection<D::Stream>, SessionError> {
    let verify = TlsVerify::ExactCert(est.server_cert_der.clone());
    let (mut stream, _, addr) = dialer
        .dial(host, port, &verify, config.connect_timeout)
        .await?;
    let (direction, leftover) = additional_connect(
        config,
        &mut stream,
        addr,
        &est.welcome,
        (host, port),
        "additional connection",
    )
    .await?;
    Ok(AdditionalConnection {
        stream,
        direction,
        leftover,
    })
}

/// `additional_connect` on a fresh stream: the direction the server assigned and the tunnel
/// bytes that came with its reply.
async fn additional_connect<S: SessionStream>(
    config: &SessionConfig,
    stream: &mut S,
    addr: SocketAddr,
    welcome: &Welcome,
    (host, port): (&str, u16),
    stage: &'static str,
) -> Result<(Direction, Vec<u8>), SessionError> {
    let (_, info) = connection_info(config, stream, addr, host, port)?;
    let request = Request::AdditionalConnect {
        session_key: welcome.session_key,
        info,
    };
    let seed = config.seed ^ u64::from(info_port(stream));
    let (outcome, mut handshake) =
        run_handshake(stream, request, seed, config.handshake_timeout, stage, addr).await?;
    match outcome {
        Outcome::Joined { direction } => Ok((direction, handshake.take_leftover())),
        _ => Err(SessionError::Handshake {
            addr,
            source: HandshakeError::Protocol("unexpected reply to additional_connect".into()),
        }),
    }
}

/// The local port, to vary padding seeds between connections.
fn info_port<S: SessionStream>(stream: &S) -> u16 {
    stream.local_addr().map(|a| a.port()).unwrap_or(0)
}

/// What it takes to rejoin a session after its TCP connections broke (§9.4): the server keeps
/// a session for `timeout` after its last connection closed, and `additional_connect` with the
/// session key picks it up again — no new login, no new DHCP exchange, the hub's MAC and IP
/// tables stay as they were.
#[derive(Clone)]
pub struct ResumeTicket {
    hello: ServerHello,
    welcome: Welcome,
    server_cert_der: Vec<u8>,
    server_addr: SocketAddr,
    redirected_to: Option<SocketAddr>,
}

impl ResumeTicket {
    pub fn of<S>(est: &Established<S>) -> Self {
        ResumeTicket {
            hello: est.hello.clone(),
            welcome: est.welcome.clone(),
            server_cert_der: est.server_cert_der.clone(),
            server_addr: est.server_addr,
            redirected_to: est.redirected_to,
        }
    }

    /// The session name, for logs.
    pub fn session_name(&self) -> &str {
        &self.welcome.session_name
    }
}

/// Rejoins the session of `ticket` with `additional_connect` (and re-adds the extra connections).
/// Fails with the server's error (13 ERR_SESSION_TIMEOUT when the session is gone) so the caller
/// can fall back to a full login.
pub async fn resume(
    config: &SessionConfig,
    ticket: &ResumeTicket,
) -> Result<Established, SessionError> {
    resume_with(&TlsDialer::for_config(config), config, ticket).await
}

/// [`resume`] over the connections `dialer` opens.
pub async fn resume_with<D: Dialer>(
    dialer: &D,
    config: &SessionConfig,
    ticket: &ResumeTicket,
) -> Result<Established<D::Stream>, SessionError> {
    // The address the session lives at; through a proxy that could not be resolved locally it
    // is unspecified, and the configured name goes to the proxy instead.
    let host = if ticket.server_addr.ip().is_unspecified() {
        config.host.clone()
    } else {
        ticket.server_addr.ip().to_string()
    };
    let port = ticket.server_addr.port();
    let verify = TlsVerify::ExactCert(ticket.server_cert_der.clone());
    let (mut stream, server_cert_der, addr) = dialer
        .dial(&host, port, &verify, config.connect_timeout)
        .await?;
    let (local_addr, _) = connection_info(config, &stream, addr, &host, port)?;
    let (direction, leftover) = additional_connect(
        config,
        &mut stream,
        addr,
        &ticket.welcome,
        (&host, port),
        "session resume",
    )
    .await?;
    let (tls_version, cipher_suite) = stream.tls_details();
    let mut est = Established {
        stream,
        hello: ticket.hello.clone(),
        welcome: ticket.welcome.clone(),
        server_cert_der,
        server_addr: addr,
        local_addr,
        tls_version,
        cipher_suite,
        leftover,
        direction,
        redirected_to: ticket.redirected_to,
        additional: Vec::new(),
        // The caller puts the old tunnel's UDP channel back (`join_keeping_udp`).
        udp: None,
    };
    join_additional(dialer, config, &mut est, &host, port).await;
    est.check_directions()?;
    Ok(est)
}
