//! More TCP connections for a session, and resuming a session after its connections broke:
//! both use `additional_connect` with the session key (softether-protocol.md §9), and both
//! require the server to present the certificate of the first connection.

use std::net::SocketAddr;
use std::time::Duration;

use softether_proto::handshake::{
    ClientHandshake, HandshakeError, Outcome, Request, ServerHello, Welcome,
};

use crate::establish::{
    connect_tls, drive_handshake, AdditionalConnection, Established, SessionConfig, SessionError,
};
use crate::tls::TlsVerify;

/// Above this many quick connections the server's DoS guard (16 per burst from one IP) could
/// drop us, so later joins are spaced out.
const JOIN_BURST: usize = 8;
const JOIN_SPACING: Duration = Duration::from_millis(300);

/// Opens `min(requested, granted) - 1` additional connections to the session. Failures are
/// logged and leave the session with fewer connections; they never fail the login.
pub(crate) async fn join_additional(
    config: &SessionConfig,
    est: &mut Established,
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
        match join_session(config, est, host, port).await {
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
    let verify = TlsVerify::ExactCert(est.server_cert_der.clone());
    let (mut stream, _, addr) = connect_tls(host, port, &verify, config.connect_timeout).await?;
    let mut info = config.info.clone();
    if let SocketAddr::V4(local) = est.local_addr {
        info.client_ip = *local.ip();
    }
    info.server_host = host.to_string();
    info.server_port = port;
    let request = Request::AdditionalConnect {
        session_key: est.welcome.session_key,
        info,
    };
    let mut handshake = ClientHandshake::new(request, config.seed ^ u64::from(port));
    let outcome = tokio::time::timeout(
        config.handshake_timeout,
        drive_handshake(&mut stream, &mut handshake, addr),
    )
    .await
    .map_err(|_| SessionError::Timeout {
        stage: "additional connection",
        addr,
        after: config.handshake_timeout,
    })??;
    match outcome {
        Outcome::Joined { direction } => Ok(AdditionalConnection {
            stream,
            direction,
            leftover: handshake.take_leftover(),
        }),
        _ => Err(SessionError::Handshake {
            addr,
            source: HandshakeError::Protocol("unexpected reply to additional_connect".into()),
        }),
    }
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
    pub fn of(est: &Established) -> Self {
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
    let host = ticket.server_addr.ip().to_string();
    let port = ticket.server_addr.port();
    let verify = TlsVerify::ExactCert(ticket.server_cert_der.clone());
    let (stream, server_cert_der, addr) =
        connect_tls(&host, port, &verify, config.connect_timeout).await?;
    let local_addr = stream
        .get_ref()
        .0
        .local_addr()
        .map_err(|source| SessionError::Io {
            addr,
            stage: "local address",
            source,
        })?;
    let (tls_version, cipher_suite) = {
        let (_, conn) = stream.get_ref();
        (
            conn.protocol_version()
                .map(|v| format!("{v:?}"))
                .unwrap_or_default(),
            conn.negotiated_cipher_suite()
                .map(|c| format!("{:?}", c.suite()))
                .unwrap_or_default(),
        )
    };
    let mut est = Established {
        stream,
        hello: ticket.hello.clone(),
        welcome: ticket.welcome.clone(),
        server_cert_der,
        server_addr: addr,
        local_addr,
        tls_version,
        cipher_suite,
        leftover: Vec::new(),
        redirected_to: ticket.redirected_to,
        additional: Vec::new(),
    };
    let joined = join_on(config, &mut est, &host, port).await?;
    est.leftover = joined;
    join_additional(config, &mut est, &host, port).await;
    Ok(est)
}

/// Runs `additional_connect` on the primary stream of `est` itself (a resumed session has no
/// login connection); returns the tunnel bytes that came with the reply.
async fn join_on(
    config: &SessionConfig,
    est: &mut Established,
    host: &str,
    port: u16,
) -> Result<Vec<u8>, SessionError> {
    let addr = est.server_addr;
    let mut info = config.info.clone();
    if let SocketAddr::V4(local) = est.local_addr {
        info.client_ip = *local.ip();
    }
    info.client_port = est.local_addr.port();
    info.server_host = host.to_string();
    info.server_port = port;
    let request = Request::AdditionalConnect {
        session_key: est.welcome.session_key,
        info,
    };
    let mut handshake = ClientHandshake::new(request, config.seed.rotate_left(7));
    let outcome = tokio::time::timeout(
        config.handshake_timeout,
        drive_handshake(&mut est.stream, &mut handshake, addr),
    )
    .await
    .map_err(|_| SessionError::Timeout {
        stage: "session resume",
        addr,
        after: config.handshake_timeout,
    })??;
    match outcome {
        Outcome::Joined { .. } => Ok(handshake.take_leftover()),
        _ => Err(SessionError::Handshake {
            addr,
            source: HandshakeError::Protocol("unexpected reply to additional_connect".into()),
        }),
    }
}
