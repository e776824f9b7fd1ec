//! What the server answers: the Hello (§3), and the reply to login / additional_connect —
//! Welcome (§7.1), error (§7.3), cluster redirect (§8), join direction (§9.1) or noop (§4.6).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::error::{ErrorCode, HandshakeError};
use crate::pack::Pack;

/// The session timeout used when the Welcome carries none (policy default, 20 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
const MIN_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// Parsed Hello pack.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerHello {
    /// e.g. `SoftEther VPN Server Developer Edition (64 bit) (Open Source)`.
    pub product: String,
    /// major*100+minor, e.g. 501.
    pub version: u32,
    /// Server build number, e.g. 9799.
    pub build: u32,
    /// Per-connection challenge for password and certificate authentication.
    pub random: [u8; 20],
}

impl std::fmt::Debug for ServerHello {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHello")
            .field("product", &self.product)
            .field("version", &self.version)
            .field("build", &self.build)
            .finish_non_exhaustive()
    }
}

/// Policy items from `policy:<Name>` elements (§7.2), in pack order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// (name, value) pairs, in pack order.
    pub items: Vec<(String, u32)>,
}

impl Policy {
    /// Value of a policy item by name (case-insensitive), e.g. `"MaxConnection"`.
    pub fn get(&self, name: &str) -> Option<u32> {
        self.items
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// `AutoDisconnect`: the client must end the session after this long (0 = never).
    pub fn auto_disconnect(&self) -> Option<Duration> {
        self.get("AutoDisconnect")
            .filter(|&s| s != 0)
            .map(|s| Duration::from_secs(s.into()))
    }

    /// `NoSavePassword`: the client must not persist the password.
    pub fn no_save_password(&self) -> bool {
        self.get("NoSavePassword").is_some_and(|v| v != 0)
    }
}

/// A successful login.
#[derive(Clone, PartialEq, Eq)]
pub struct Welcome {
    /// The session's name on the server (shown in its session list).
    pub session_name: String,
    /// This connection's name on the server.
    pub connection_name: String,
    /// Needed for `additional_connect` (a secret: not printed by Debug).
    pub session_key: [u8; 20],
    /// Granted TCP connections, clamped to 1..=32.
    pub max_connection: u32,
    /// TLS encryption stays on, as the server granted it (this client always asks for it).
    pub use_encrypt: bool,
    /// Frames are compressed, as the server granted it (this client never asks for it).
    pub use_compress: bool,
    /// Additional connections each carry one direction (§9.3).
    pub half_connection: bool,
    /// Session timeout (clamped 5..=60 s; 20 s if absent).
    pub timeout: Duration,
    /// The hub prioritises VoIP/QoS traffic for this session.
    pub qos: bool,
    /// VLAN id the hub assigns to this session; 0 = none.
    pub vlan_id: u32,
    /// The security policy applied to the session.
    pub policy: Policy,
    /// Hub welcome message (UTF-8, lossily decoded); may be empty.
    pub message: String,
    /// UDP acceleration, when the server granted it (§11.1).
    pub udp_accel: Option<Box<crate::udp_accel::UdpAccelGrant>>,
}

impl std::fmt::Debug for Welcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Welcome")
            .field("session_name", &self.session_name)
            .field("connection_name", &self.connection_name)
            .field("session_key", &"<redacted>")
            .field("max_connection", &self.max_connection)
            .field("use_encrypt", &self.use_encrypt)
            .field("use_compress", &self.use_compress)
            .field("half_connection", &self.half_connection)
            .field("timeout", &self.timeout)
            .field("qos", &self.qos)
            .field("vlan_id", &self.vlan_id)
            .field("policy", &self.policy)
            .field("message", &self.message)
            .field("udp_accel", &self.udp_accel)
            .finish()
    }
}

/// The farm controller sends the client to another member (§8). Log in there with
/// `Credential::Ticket(ticket)` and require its TLS certificate to equal `cert_der`.
#[derive(Clone, PartialEq, Eq)]
pub struct Redirect {
    /// The member server's IPv4 address.
    pub ip: Ipv4Addr,
    /// Non-empty; prefer the current port if listed, else `ports[0]`.
    pub ports: Vec<u16>,
    /// One-time ticket for `Credential::Ticket` (a secret: not printed by Debug).
    pub ticket: [u8; 20],
    /// The member's TLS certificate, DER; the next connection must present exactly this one.
    pub cert_der: Vec<u8>,
    /// Message from the controller; may be empty.
    pub message: String,
}

impl std::fmt::Debug for Redirect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redirect")
            .field("ip", &self.ip)
            .field("ports", &self.ports)
            .field("ticket", &"<redacted>")
            .field("cert_der_len", &self.cert_der.len())
            .field("message", &self.message)
            .finish()
    }
}

impl Redirect {
    /// The port to use given the port of the current connection.
    pub fn choose_port(&self, current: u16) -> u16 {
        if self.ports.contains(&current) {
            current
        } else {
            self.ports.first().copied().unwrap_or(current)
        }
    }
}

/// Which way an additional connection carries data (§9.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Data flows both ways (always the case without half connections).
    Both,
    /// The server sends on this connection; the client only receives.
    ServerToClient,
    /// The client sends on this connection; the server only receives.
    ClientToServer,
}

impl Direction {
    /// Whether the client may send frames on this connection.
    pub fn can_send(self) -> bool {
        matches!(self, Direction::Both | Direction::ClientToServer)
    }

    /// Whether frames arrive on this connection.
    pub fn can_receive(self) -> bool {
        matches!(self, Direction::Both | Direction::ServerToClient)
    }
}

/// Final result of a successful handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A new session (after `Request::Login`).
    Welcome(Welcome),
    /// The cluster controller sends the client elsewhere (after `Request::Login`).
    Redirect(Redirect),
    /// An additional connection joined its session (after `Request::AdditionalConnect`).
    Joined {
        /// Which way this connection carries data.
        direction: Direction,
    },
}

/// A reply pack classified in the order the C client checks it.
pub(crate) enum Reply {
    Noop,
    Error {
        code: ErrorCode,
        no_save_password: bool,
    },
    Final(Outcome),
}

fn protocol(msg: impl Into<String>) -> HandshakeError {
    HandshakeError::Protocol(msg.into())
}

fn data20(p: &Pack, name: &str) -> Option<[u8; 20]> {
    p.get_data(name)?.try_into().ok()
}

/// `GetHello`: `error` first, then `hello` (STR) and a 20-byte `random` are mandatory.
pub(crate) fn parse_hello(p: &Pack) -> Result<ServerHello, HandshakeError> {
    if let Some(code) = p.get_int("error").filter(|&c| c != 0) {
        return Err(HandshakeError::Server(ErrorCode(code)));
    }
    let product = p
        .get_str("hello")
        .ok_or_else(|| HandshakeError::NotVpn("hello pack has no `hello` string".into()))?;
    let random = data20(p, "random")
        .ok_or_else(|| HandshakeError::NotVpn("hello pack has no 20-byte `random`".into()))?;
    Ok(ServerHello {
        product: product.to_owned(),
        version: p.get_int("version").unwrap_or(0),
        build: p.get_int("build").unwrap_or(0),
        random,
    })
}

fn classify_common(p: &Pack) -> Option<Reply> {
    let error = p.get_int("error").unwrap_or(0);
    if error != 0 {
        return Some(Reply::Error {
            code: ErrorCode(error),
            no_save_password: p.get_bool("no_save_password"),
        });
    }
    match p.get_int("noop") {
        Some(2) | Some(1) => Some(Reply::Noop),
        _ => None,
    }
}

/// Reply to a `login` POST.
pub(crate) fn classify_login_reply(p: &Pack) -> Result<Reply, HandshakeError> {
    if let Some(r) = classify_common(p) {
        return Ok(r);
    }
    if p.get_int("Redirect").unwrap_or(0) != 0 {
        return Ok(Reply::Final(Outcome::Redirect(parse_redirect(p)?)));
    }
    Ok(Reply::Final(Outcome::Welcome(parse_welcome(p)?)))
}

/// Reply to an `additional_connect` POST.
pub(crate) fn classify_join_reply(p: &Pack) -> Result<Reply, HandshakeError> {
    if let Some(r) = classify_common(p) {
        return Ok(r);
    }
    let direction = match p.get_int("direction").unwrap_or(0) {
        0 => Direction::Both,
        1 => Direction::ServerToClient,
        2 => Direction::ClientToServer,
        other => {
            return Err(protocol(format!(
                "additional_connect reply has direction {other}"
            )))
        }
    };
    Ok(Reply::Final(Outcome::Joined { direction }))
}

fn message(p: &Pack) -> String {
    p.get_data("Msg")
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .unwrap_or_default()
}

pub(crate) fn parse_welcome(p: &Pack) -> Result<Welcome, HandshakeError> {
    let session_name = p
        .get_str("session_name")
        .ok_or_else(|| protocol("Welcome lacks session_name"))?;
    let connection_name = p
        .get_str("connection_name")
        .ok_or_else(|| protocol("Welcome lacks connection_name"))?;
    let session_key =
        data20(p, "session_key").ok_or_else(|| protocol("Welcome lacks a 20-byte session_key"))?;
    let timeout = match p.get_int("timeout") {
        Some(ms) if ms != 0 => Duration::from_millis(ms.into()).clamp(MIN_TIMEOUT, MAX_TIMEOUT),
        _ => DEFAULT_TIMEOUT,
    };
    let policy = Policy {
        items: p
            .iter()
            .filter_map(|(name, _)| {
                let item = name
                    .get(7..)
                    .filter(|_| name[..7].eq_ignore_ascii_case("policy:"))?;
                Some((item.to_owned(), p.get_int(name)?))
            })
            .collect(),
    };
    Ok(Welcome {
        session_name: session_name.to_owned(),
        connection_name: connection_name.to_owned(),
        session_key,
        max_connection: p.get_int("max_connection").unwrap_or(1).clamp(1, 32),
        use_encrypt: p.get_bool("use_encrypt"),
        use_compress: p.get_bool("use_compress"),
        half_connection: p.get_bool("half_connection"),
        timeout,
        qos: p.get_bool("qos"),
        vlan_id: p.get_int("vlan_id").unwrap_or(0),
        policy,
        message: message(p),
        udp_accel: crate::udp_accel::UdpAccelGrant::from_welcome(p).map(Box::new),
    })
}

pub(crate) fn parse_redirect(p: &Pack) -> Result<Redirect, HandshakeError> {
    let ip = match p.get_ip("Ip") {
        Some(IpAddr::V4(ip)) if !ip.is_unspecified() => ip,
        Some(other) => return Err(protocol(format!("redirect to unsupported address {other}"))),
        None => return Err(protocol("redirect lacks Ip")),
    };
    let ports: Vec<u16> = p
        .get_ints("Port")
        .into_iter()
        .filter_map(|v| u16::try_from(v).ok().filter(|&v| v != 0))
        .take(128)
        .collect();
    if ports.is_empty() {
        return Err(protocol("redirect lacks Port"));
    }
    let ticket = data20(p, "Ticket").ok_or_else(|| protocol("redirect lacks a 20-byte Ticket"))?;
    Ok(Redirect {
        ip,
        ports,
        ticket,
        cert_der: p.get_data("Cert").unwrap_or_default().to_vec(),
        message: message(p),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn welcome_pack() -> Pack {
        let mut p = Pack::new();
        p.add_str("session_name", "SID-ALICE-3");
        p.add_str("connection_name", "CID-12");
        p.add_data("session_key", &[1; 20]);
        p.add_int("max_connection", 4);
        p.add_int("use_encrypt", 1);
        p.add_int("timeout", 20_000);
        p.add_int("policy:Access", 1);
        p.add_int("policy:AutoDisconnect", 3600);
        p.add_int("policy:NoSavePassword", 1);
        p.add_data("Msg", "héllo".as_bytes());
        p
    }

    #[test]
    fn welcome_fields() {
        let w = parse_welcome(&welcome_pack()).unwrap();
        assert_eq!(w.session_name, "SID-ALICE-3");
        assert_eq!(w.session_key, [1; 20]);
        assert_eq!(w.max_connection, 4);
        assert!(w.use_encrypt && !w.use_compress);
        assert_eq!(w.timeout, Duration::from_secs(20));
        assert_eq!(w.policy.get("access"), Some(1));
        assert_eq!(w.policy.auto_disconnect(), Some(Duration::from_secs(3600)));
        assert!(w.policy.no_save_password());
        assert_eq!(w.message, "héllo");
        assert!(!format!("{w:?}").contains("[1, 1"));
    }

    #[test]
    fn welcome_timeout_is_clamped_and_required_fields_checked() {
        let mut p = welcome_pack();
        p.add_int("timeout", 100);
        assert_eq!(parse_welcome(&p).unwrap().timeout, Duration::from_secs(5));
        p.add_int("timeout", 0);
        assert_eq!(parse_welcome(&p).unwrap().timeout, DEFAULT_TIMEOUT);
        for name in ["session_name", "connection_name", "session_key"] {
            let mut q = welcome_pack();
            q.remove(name);
            assert!(
                matches!(parse_welcome(&q), Err(HandshakeError::Protocol(_))),
                "{name}"
            );
        }
    }

    #[test]
    fn classification_order() {
        let mut p = Pack::new();
        p.add_int("error", 9);
        p.add_int("noop", 2);
        assert!(matches!(
            classify_login_reply(&p),
            Ok(Reply::Error {
                code: ErrorCode(9),
                ..
            })
        ));
        let mut p = Pack::new();
        p.add_int("error", 0);
        p.add_int("noop", 1);
        assert!(matches!(classify_login_reply(&p), Ok(Reply::Noop)));
        let mut p = Pack::new();
        p.add_int("Redirect", 1);
        p.add_ipv4("Ip", Ipv4Addr::new(198, 18, 0, 9));
        p.add_values(
            "Port",
            vec![crate::pack::Value::Int(443), crate::pack::Value::Int(5555)],
        );
        p.add_data("Ticket", &[3; 20]);
        let Ok(Reply::Final(Outcome::Redirect(r))) = classify_login_reply(&p) else {
            panic!()
        };
        assert_eq!(
            (r.ip, r.ports.clone()),
            (Ipv4Addr::new(198, 18, 0, 9), vec![443, 5555])
        );
        assert_eq!((r.choose_port(5555), r.choose_port(992)), (5555, 443));
        let mut j = Pack::new();
        j.add_int("error", 0);
        j.add_int("direction", 1);
        assert!(matches!(
            classify_join_reply(&j),
            Ok(Reply::Final(Outcome::Joined {
                direction: Direction::ServerToClient
            }))
        ));
        j.add_int("direction", 7);
        assert!(classify_join_reply(&j).is_err());
    }

    #[test]
    fn hello_rules() {
        let mut p = Pack::new();
        p.add_str("hello", "SoftEther VPN Server");
        p.add_data("random", &[0; 19]);
        assert!(matches!(parse_hello(&p), Err(HandshakeError::NotVpn(_))));
        p.add_data("random", &[0; 20]);
        assert_eq!(parse_hello(&p).unwrap().product, "SoftEther VPN Server");
        p.add_int("error", 33);
        assert!(matches!(
            parse_hello(&p),
            Err(HandshakeError::Server(ErrorCode::NOT_SUPPORTED))
        ));
    }
}
