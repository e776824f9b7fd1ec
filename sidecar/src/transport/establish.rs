//! Logging in: the first connection of a session, following cluster redirects with a ticket,
//! then joining the additional connections the server granted.

use std::net::SocketAddr;

use softether_proto::handshake::{
    Direction, HandshakeError, LoginRequest, Outcome, Redirect, Request,
};
use tokio::io::AsyncWriteExt;

use super::connection::{
    connection_info, run_handshake, Dialer, Established, SessionConfig, SessionError,
    SessionStream, TlsDialer,
};
use super::join::join_additional;
use super::tls::TlsVerify;
use super::udp_accel;
use softether_proto::handshake::Credential;

const MAX_REDIRECTS: usize = 3;

/// Connects, logs in, follows redirects; returns the session in tunnel mode.
pub async fn establish(config: &SessionConfig) -> Result<Established, SessionError> {
    establish_with(&TlsDialer::for_config(config), config).await
}

/// [`establish`] over the connections `dialer` opens.
pub async fn establish_with<D: Dialer>(
    dialer: &D,
    config: &SessionConfig,
) -> Result<Established<D::Stream>, SessionError> {
    let mut host = config.host.clone();
    let mut port = config.port;
    let mut tls_verify = config.tls.clone();
    let mut credential = config.credential.clone();
    let mut redirected_to = None;
    for _ in 0..=MAX_REDIRECTS {
        let attempt =
            attempt_login(dialer, config, &host, port, &tls_verify, credential.clone()).await?;
        match attempt {
            Attempt::Welcome(mut est) => {
                est.redirected_to = redirected_to;
                join_additional(dialer, config, &mut est, &host, port).await;
                est.check_directions()?;
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

enum Attempt<S> {
    Welcome(Box<Established<S>>),
    Redirect {
        redirect: Redirect,
        from: SocketAddr,
    },
}

async fn attempt_login<D: Dialer>(
    dialer: &D,
    config: &SessionConfig,
    host: &str,
    port: u16,
    verify: &TlsVerify,
    credential: Credential,
) -> Result<Attempt<D::Stream>, SessionError> {
    let (mut stream, server_cert_der, addr) = dialer
        .dial(host, port, verify, config.connect_timeout)
        .await?;
    let (local_addr, info) = connection_info(config, &stream, addr, host, port)?;
    // As upstream: no UDP acceleration through a proxy (the server could not reach us).
    let udp = match (config.udp_acceleration, &config.proxy) {
        (Some(max_version), None) => udp_accel::prepare(local_addr.ip(), max_version).await,
        _ => None,
    };
    let request = Request::Login(LoginRequest {
        hub: config.hub.clone(),
        username: config.username.clone(),
        credential,
        max_connection: config.max_connection,
        half_connection: config.half_connection,
        use_compress: config.compress,
        udp_accel: udp.as_ref().map(|u| u.offer.clone()),
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
            let (tls_version, cipher_suite) = stream.tls_details();
            let udp = udp.and_then(|u| u.accept(welcome.udp_accel.as_deref(), addr));
            // Both sides set the first connection to client→server (`ClientConnect`).
            let direction = if welcome.half_connection {
                Direction::ClientToServer
            } else {
                Direction::Both
            };
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
                direction,
                redirected_to: None,
                additional: Vec::new(),
                udp,
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
