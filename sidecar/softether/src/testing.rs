//! A sans-IO fake SoftEther server for tests: plays the server side of the handshake with the
//! same checks the C server applies to the client's requests (`ServerDownloadSignature`,
//! `HttpServerRecvEx`, `ServerAccept`), then the tunnel phase ([`pair`]: frames, keep-alives,
//! silence, and a client + server pair on a fake clock). Enabled in this crate's tests and by
//! feature `testing`.

#[path = "testing_pair.rs"]
pub mod pair;

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::Duration;

use ring::signature::{RsaPublicKeyComponents, RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY};

use crate::error::ErrorCode;
use crate::handshake::{ClientHandshake, HandshakeError, Outcome};
use crate::http::{self, HttpMessage, HttpParser};
use crate::pack::{Pack, Value};
use crate::password::{hash_password, secure_password};
use crate::prng::SplitMix64;

/// How a user authenticates on the fake server.
#[derive(Clone, Debug)]
pub enum FakeAuth {
    /// Accepts authtype 0.
    Anonymous,
    /// Accepts authtype 1 and 2 for this password.
    Password(String),
    /// Accepts authtype 3 for this exact certificate, verifying `sign` with (n, e).
    Certificate {
        /// The certificate the client must present, DER.
        cert_der: Vec<u8>,
        /// Its RSA modulus, big-endian.
        n: Vec<u8>,
        /// Its RSA public exponent, big-endian.
        e: Vec<u8>,
    },
    /// Accepts authtype 99 for this ticket.
    Ticket([u8; 20]),
}

/// A user account on the fake server's hub.
#[derive(Clone, Debug)]
pub struct FakeUser {
    /// User name (compared case-insensitively, as the server does).
    pub name: String,
    /// How the user may log in.
    pub auth: FakeAuth,
}

/// What the server answers to a successful authentication.
#[derive(Clone, Debug)]
pub enum FakeReply {
    /// A Welcome pack built from the [`FakeServerConfig`].
    Welcome,
    /// An error pack with this code.
    Error(ErrorCode),
    /// A cluster redirect.
    Redirect {
        /// The member server to go to.
        ip: Ipv4Addr,
        /// Its ports.
        ports: Vec<u16>,
        /// The ticket for the next login.
        ticket: [u8; 20],
        /// The member's certificate, DER.
        cert_der: Vec<u8>,
    },
}

/// What the fake server presents and accepts; [`Default`] gives a hub `DEFAULT` with no users.
#[derive(Clone, Debug)]
pub struct FakeServerConfig {
    /// The hello challenge.
    pub random: [u8; 20],
    /// The only hub that exists.
    pub hub: String,
    /// The hub's users.
    pub users: Vec<FakeUser>,
    /// The answer to a successful authentication.
    pub reply: FakeReply,
    /// Noop packs sent before the real reply, each as its own HTTP response.
    pub noops_before_reply: u32,
    /// `noop` value in those packs (2 = master, 1 = 2020 build).
    pub noop_value: u32,
    /// Session key in the Welcome; `additional_connect` must present it.
    pub session_key: [u8; 20],
    /// Session timeout announced in the Welcome; the tunnel phase drops a client silent this long.
    pub timeout: Duration,
    /// `policy:<Name>` items in the Welcome.
    pub policies: Vec<(String, u32)>,
    /// Hub message in the Welcome.
    pub message: String,
    /// Bytes appended right after the final response (tunnel data the server sends early).
    pub trailing: Vec<u8>,
    /// `direction` granted to additional connections.
    pub join_direction: u32,
    /// Seed for `pencore` padding and keep-alive jitter.
    pub seed: u64,
}

impl Default for FakeServerConfig {
    fn default() -> Self {
        FakeServerConfig {
            random: [0x5a; 20],
            hub: "DEFAULT".into(),
            users: Vec::new(),
            reply: FakeReply::Welcome,
            noops_before_reply: 0,
            noop_value: 2,
            session_key: [0x11; 20],
            timeout: Duration::from_secs(20),
            policies: vec![("Access".into(), 1), ("MaxConnection".into(), 32)],
            message: String::new(),
            trailing: Vec::new(),
            join_direction: 0,
            seed: 7,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Signature,
    Request,
    AfterRedirect,
    /// Welcomed or joined: tunnel records both ways ([`pair`]).
    Tunnel,
    Closed,
}

/// The fake server. Feed client bytes with [`handle_input`](Self::handle_input); take its
/// responses with [`poll_transmit`](Self::poll_transmit).
#[derive(Debug)]
pub struct FakeServer {
    /// The configuration it was created with.
    pub config: FakeServerConfig,
    phase: Phase,
    parser: HttpParser,
    out: VecDeque<Vec<u8>>,
    rng: SplitMix64,
    /// The login / additional_connect pack as received.
    pub request: Option<Pack>,
    /// The pack received after a redirect.
    pub post_redirect: Option<Pack>,
    /// The tunnel phase's state machine, created on the first tunnel byte or clock tick.
    tunnel: Option<crate::tunnel::Tunnel>,
    /// The last `now` given to [`FakeServer::advance`].
    clock: Option<std::time::Instant>,
    /// A silent server sends nothing in the tunnel phase (no frames, no keep-alives).
    silent: bool,
}

fn reject(msg: impl Into<String>) -> String {
    msg.into()
}

impl FakeServer {
    /// A server waiting for the signature POST.
    pub fn new(config: FakeServerConfig) -> Self {
        let rng = SplitMix64::new(config.seed);
        FakeServer {
            config,
            phase: Phase::Signature,
            parser: HttpParser::new(http::MAX_LINE * 16 + 65_536),
            out: VecDeque::new(),
            rng,
            request: None,
            post_redirect: None,
            tunnel: None,
            clock: None,
            silent: false,
        }
    }

    /// The next bytes to send: handshake responses, then (in the tunnel phase) records.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front().or_else(|| self.poll_tunnel_transmit())
    }

    /// Whether the server is done with this connection: nothing more is sent or accepted.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Errors describe why the real server would drop the connection.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<(), String> {
        if self.phase == Phase::Tunnel {
            return self.handle_tunnel_input(data);
        }
        self.parser.push(data);
        while let Some(msg) = self.parser.next_message().map_err(|e| e.to_string())? {
            match self.phase {
                Phase::Signature => self.on_signature(&msg)?,
                Phase::Request => {
                    self.on_request(&msg)?;
                    if self.phase == Phase::Tunnel {
                        // Anything after the request is already tunnel data.
                        let rest = self.parser.take_buffered();
                        return self.handle_tunnel_input(&rest);
                    }
                }
                Phase::AfterRedirect => {
                    self.post_redirect = Some(self.pack_body(&msg)?);
                    self.phase = Phase::Closed;
                }
                Phase::Tunnel | Phase::Closed => {
                    return Err(reject("data after the session was closed"))
                }
            }
        }
        Ok(())
    }

    fn respond(&mut self, mut pack: Pack) {
        let mut pad = vec![0u8; self.rng.below(1000) as usize];
        self.rng.fill(&mut pad);
        pack.add_data("pencore", &pad);
        self.out.push_back(http::response(
            200,
            "OK",
            http::CONTENT_TYPE_PACK,
            &pack.encode(),
        ));
    }

    fn on_signature(&mut self, msg: &HttpMessage) -> Result<(), String> {
        if !msg.start[0].eq_ignore_ascii_case("POST") {
            return Err(reject(format!("signature method {}", msg.start[0])));
        }
        let len = msg.body.len();
        if !(len == 10 || (1411..=3411).contains(&len)) {
            return Err(reject(format!("signature length {len}")));
        }
        if !msg.start[1].eq_ignore_ascii_case(http::TARGET_SIGNATURE)
            || msg.body != http::SIGNATURE_BODY
        {
            return Err(reject("bad signature target or body"));
        }
        let mut hello = Pack::new();
        hello.add_str(
            "hello",
            "SoftEther VPN Server Developer Edition (64 bit) (Open Source)",
        );
        hello.add_int("version", 501);
        hello.add_int("build", 9674);
        hello.add_data("random", &self.config.random);
        self.respond(hello);
        self.phase = Phase::Request;
        Ok(())
    }

    fn pack_body(&self, msg: &HttpMessage) -> Result<Pack, String> {
        let ok = msg.start[0].eq_ignore_ascii_case("POST")
            && msg.start[1] == http::TARGET_PACK
            && msg.start[2].eq_ignore_ascii_case("HTTP/1.1")
            && msg
                .header("Content-Type")
                .is_some_and(|c| c.eq_ignore_ascii_case(http::CONTENT_TYPE_PACK))
            && (1..=65_536).contains(&msg.body.len());
        if !ok {
            return Err(reject(format!("bad pack request {:?}", msg.start)));
        }
        Pack::decode(&msg.body).map_err(|e| e.to_string())
    }

    fn on_request(&mut self, msg: &HttpMessage) -> Result<(), String> {
        let pack = self.pack_body(msg)?;
        let method = pack.get_str("method").unwrap_or_default().to_owned();
        self.request = Some(pack.clone());
        let result = match method.as_str() {
            "login" => self.login(&pack),
            "additional_connect" => self.join(&pack),
            _ => Err(ErrorCode::PROTOCOL_ERROR),
        };
        for _ in 0..self.config.noops_before_reply {
            let mut noop = Pack::new();
            noop.add_int("error", 0);
            noop.add_int("noop", self.config.noop_value);
            self.respond(noop);
        }
        match result {
            Ok(reply) => {
                let redirect = reply.get_int("Redirect").unwrap_or(0) != 0;
                self.respond(reply);
                if !redirect {
                    if let Some(last) = self.out.back_mut() {
                        last.extend_from_slice(&self.config.trailing);
                    }
                }
                self.phase = if redirect {
                    Phase::AfterRedirect
                } else {
                    Phase::Tunnel
                };
            }
            Err(code) => {
                let mut err = Pack::new();
                err.add_int("error", code.0);
                err.add_bool("no_save_password", false);
                self.respond(err);
                self.phase = Phase::AfterRedirect;
            }
        }
        Ok(())
    }

    fn authenticate(&self, pack: &Pack, user: &FakeUser) -> bool {
        match (&user.auth, pack.get_int("authtype").unwrap_or(0)) {
            (FakeAuth::Anonymous, _) => true,
            (FakeAuth::Password(pw), 1) => {
                let expected = secure_password(&hash_password(&user.name, pw), &self.config.random);
                pack.get_data("secure_password") == Some(&expected[..])
            }
            (FakeAuth::Password(pw), 2) => pack.get_str("plain_password") == Some(pw.as_str()),
            (FakeAuth::Certificate { cert_der, n, e }, 3) => {
                let (Some(cert), Some(sign)) = (pack.get_data("cert"), pack.get_data("sign"))
                else {
                    return false;
                };
                cert == &cert_der[..]
                    && RsaPublicKeyComponents { n, e }
                        .verify(
                            &RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY,
                            &self.config.random,
                            sign,
                        )
                        .is_ok()
            }
            (FakeAuth::Ticket(t), 99) => pack.get_data("ticket") == Some(&t[..]),
            _ => false,
        }
    }

    fn login(&self, pack: &Pack) -> Result<Pack, ErrorCode> {
        let (Some(hub), Some(username)) = (pack.get_str("hubname"), pack.get_str("username"))
        else {
            return Err(ErrorCode::PROTOCOL_ERROR);
        };
        if !hub.eq_ignore_ascii_case(&self.config.hub) {
            return Err(ErrorCode::HUB_NOT_FOUND);
        }
        if ![0, 1, 2, 3, 99].contains(&pack.get_int("authtype").unwrap_or(0)) {
            return Err(ErrorCode::AUTHTYPE_NOT_SUPPORTED);
        }
        let client_str = pack
            .get_str("client_str")
            .unwrap_or_default()
            .to_ascii_lowercase();
        if client_str.contains("server") || client_str.contains("bridge") {
            return Err(ErrorCode::BRIDGE_MODE_DENIED);
        }
        let user = self
            .config
            .users
            .iter()
            .find(|u| u.name.eq_ignore_ascii_case(username));
        if !user.is_some_and(|u| self.authenticate(pack, u)) {
            return Err(ErrorCode::AUTH_FAILED);
        }
        match &self.config.reply {
            FakeReply::Error(code) => Err(*code),
            FakeReply::Redirect {
                ip,
                ports,
                ticket,
                cert_der,
            } => {
                let mut p = Pack::new();
                p.add_int("Redirect", 1);
                p.add_ipv4("Ip", *ip);
                p.add_values(
                    "Port",
                    ports.iter().map(|&v| Value::Int(v.into())).collect(),
                );
                p.add_data("Ticket", ticket);
                p.add_data("Cert", cert_der);
                p.add_data("Msg", self.config.message.as_bytes());
                Ok(p)
            }
            FakeReply::Welcome => {
                let mut p = Pack::new();
                p.add_str(
                    "session_name",
                    &format!("SID-{}-1", username.to_ascii_uppercase()),
                );
                p.add_str("connection_name", "CID-1");
                p.add_data("session_key", &self.config.session_key);
                p.add_int("session_key_32", 0x1234_5678);
                p.add_int(
                    "max_connection",
                    pack.get_int("max_connection").unwrap_or(1).clamp(1, 32),
                );
                p.add_bool("use_encrypt", pack.get_bool("use_encrypt"));
                p.add_bool("use_compress", pack.get_bool("use_compress"));
                p.add_bool("half_connection", pack.get_bool("half_connection"));
                p.add_int("timeout", self.config.timeout.as_millis() as u32);
                p.add_bool("qos", pack.get_bool("qos"));
                p.add_int("vlan_id", 0);
                for (name, v) in &self.config.policies {
                    p.add_int(&format!("policy:{name}"), *v);
                }
                p.add_data("Msg", self.config.message.as_bytes());
                Ok(p)
            }
        }
    }

    fn join(&self, pack: &Pack) -> Result<Pack, ErrorCode> {
        match pack.get_data("session_key") {
            Some(k) if k.len() == 20 && k == self.config.session_key => {
                let mut p = Pack::new();
                p.add_int("error", 0);
                p.add_int("direction", self.config.join_direction);
                Ok(p)
            }
            Some(k) if k.len() == 20 => Err(ErrorCode::SESSION_TIMEOUT),
            _ => Err(ErrorCode::PROTOCOL_ERROR),
        }
    }
}

/// Pumps bytes between a client handshake and the fake server in chunks of `chunk` bytes until
/// the client finishes or fails. Returns the outcome (or the client's error) plus the client's
/// leftover bytes.
pub fn run_handshake(
    client: &mut ClientHandshake,
    server: &mut FakeServer,
    chunk: usize,
) -> Result<(Outcome, Vec<u8>), HandshakeError> {
    let chunk = chunk.max(1);
    let mut outcome = None;
    for _ in 0..1_000_000 {
        let mut progressed = false;
        while let Some(bytes) = client.poll_transmit() {
            progressed = true;
            for part in bytes.chunks(chunk) {
                server
                    .handle_input(part)
                    .map_err(HandshakeError::Protocol)?;
            }
        }
        if let Some(bytes) = server.poll_transmit() {
            progressed = true;
            for part in bytes.chunks(chunk) {
                client.handle_input(part)?;
            }
        }
        if outcome.is_none() {
            outcome = client.take_outcome();
        }
        if client.is_finished() {
            if let Some(o) = outcome {
                return Ok((o, client.take_leftover()));
            }
        }
        if !progressed {
            break;
        }
    }
    Err(HandshakeError::InvalidState("fake exchange stalled"))
}
