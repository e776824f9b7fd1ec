//! The pre-tunnel exchange on one TLS stream, as a sans-IO state machine (§2–§9).
//!
//! ```text
//! client                                  server
//!   POST /vpnsvc/connect.cgi "VPNCONNECT" ->
//!                                         <- 200, Hello pack (random)
//!   POST /vpnsvc/vpn.cgi login | additional_connect ->
//!                                         <- 200, [noop packs...] Welcome | error | Redirect | join
//!   (after a Redirect only) POST /vpnsvc/vpn.cgi {pencore} ->
//! ```

use std::collections::VecDeque;

use crate::http::{self, HttpError, HttpMessage, HttpParser};
use crate::login::{additional_connect_pack, encode_with_pencore, login_pack};
use crate::pack::Pack;
use crate::prng::SplitMix64;
use crate::welcome::{classify_join_reply, classify_login_reply, parse_hello, Reply};

pub use crate::error::HandshakeError;
pub use crate::login::{ClientInfo, Credential, LoginRequest, Request};
pub use crate::rsa::{CertSigner, RsaPrivateKey};
pub use crate::welcome::{Direction, Outcome, Policy, Redirect, ServerHello, Welcome};

/// Largest response body accepted from the server (the C client allows 512 MiB; no legitimate
/// reply comes close to this).
pub const MAX_RESPONSE_BODY: usize = 16 * 1024 * 1024;
/// Consecutive noop packs tolerated while waiting for the reply (the C client allows 30).
pub const MAX_NOOPS: u32 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitHello,
    AwaitReply,
    Done,
    Failed,
}

/// Client side of the handshake on one connection.
///
/// Drive it like this (any I/O chunking works):
/// 1. write every buffer from [`poll_transmit`](Self::poll_transmit) to the TLS stream;
/// 2. feed everything read from the stream to [`handle_input`](Self::handle_input);
/// 3. repeat until [`take_outcome`](Self::take_outcome) yields the result and
///    [`is_finished`](Self::is_finished) is true (after a redirect one more request must be
///    written first); then [`take_leftover`](Self::take_leftover) returns bytes that already
///    belong to the tunnel.
///
/// An error from `handle_input` is final: close the connection.
#[derive(Debug)]
pub struct ClientHandshake {
    request: Request,
    rng: SplitMix64,
    phase: Phase,
    parser: HttpParser,
    transmit: VecDeque<Vec<u8>>,
    hello: Option<ServerHello>,
    outcome: Option<Outcome>,
    leftover: Vec<u8>,
    noops: u32,
    no_save_password: bool,
}

impl ClientHandshake {
    /// `seed` only drives padding (`pencore`), never anything secret.
    pub fn new(request: Request, seed: u64) -> Self {
        let host = request.info().server_host.clone();
        let signature = http::post(
            http::TARGET_SIGNATURE,
            &host,
            http::CONTENT_TYPE_SIGNATURE,
            http::SIGNATURE_BODY,
        );
        ClientHandshake {
            request,
            rng: SplitMix64::new(seed),
            phase: Phase::AwaitHello,
            parser: HttpParser::new(MAX_RESPONSE_BODY),
            transmit: VecDeque::from([signature]),
            hello: None,
            outcome: None,
            leftover: Vec::new(),
            noops: 0,
            no_save_password: false,
        }
    }

    /// Next bytes to write to the stream, in order.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// Feeds bytes read from the stream.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<(), HandshakeError> {
        match self.phase {
            Phase::Failed => return Err(HandshakeError::InvalidState("handshake already failed")),
            Phase::Done => {
                self.leftover.extend_from_slice(data);
                return Ok(());
            }
            Phase::AwaitHello | Phase::AwaitReply => {}
        }
        self.parser.push(data);
        let result = self.process();
        if result.is_err() {
            self.phase = Phase::Failed;
            self.transmit.clear();
        }
        result
    }

    fn process(&mut self) -> Result<(), HandshakeError> {
        while matches!(self.phase, Phase::AwaitHello | Phase::AwaitReply) {
            let Some(msg) = self.parser.next_message().map_err(not_vpn_http)? else {
                return Ok(());
            };
            if self.phase == Phase::AwaitHello {
                let pack = response_pack(&msg).map_err(|e| match e {
                    HandshakeError::Pack(e) => {
                        HandshakeError::NotVpn(format!("invalid hello: {e}"))
                    }
                    other => other,
                })?;
                self.on_hello(&pack)?;
            } else {
                self.on_reply(&response_pack(&msg)?)?;
            }
        }
        Ok(())
    }

    fn on_hello(&mut self, pack: &Pack) -> Result<(), HandshakeError> {
        let hello = parse_hello(pack)?;
        let request = match &self.request {
            Request::Login(login) => login_pack(login, &hello)?,
            Request::AdditionalConnect { session_key, info } => {
                additional_connect_pack(session_key, info)
            }
        };
        self.hello = Some(hello);
        self.queue_pack(request)?;
        self.phase = Phase::AwaitReply;
        Ok(())
    }

    fn on_reply(&mut self, pack: &Pack) -> Result<(), HandshakeError> {
        let reply = match self.request {
            Request::Login(_) => classify_login_reply(pack)?,
            Request::AdditionalConnect { .. } => classify_join_reply(pack)?,
        };
        match reply {
            Reply::Noop => {
                self.noops += 1;
                if self.noops > MAX_NOOPS {
                    return Err(HandshakeError::Protocol(format!(
                        "more than {MAX_NOOPS} noop packs"
                    )));
                }
            }
            Reply::Error {
                code,
                no_save_password,
            } => {
                self.no_save_password = no_save_password;
                return Err(HandshakeError::Server(code));
            }
            Reply::Final(outcome) => {
                if matches!(outcome, Outcome::Redirect(_)) {
                    // The controller blocks reading one more pack before it closes (§8 step 2).
                    self.queue_pack(Pack::new())?;
                }
                self.outcome = Some(outcome);
                self.phase = Phase::Done;
                self.leftover = self.parser.take_buffered();
            }
        }
        Ok(())
    }

    fn queue_pack(&mut self, pack: Pack) -> Result<(), HandshakeError> {
        let body = encode_with_pencore(pack.clone(), &mut self.rng)
            .ok_or_else(|| HandshakeError::RequestTooLarge(pack.encode().len()))?;
        let host = &self.request.info().server_host;
        self.transmit.push_back(http::post(
            http::TARGET_PACK,
            host,
            http::CONTENT_TYPE_PACK,
            &body,
        ));
        Ok(())
    }

    /// The server's Hello, once received.
    pub fn hello(&self) -> Option<&ServerHello> {
        self.hello.as_ref()
    }

    /// The result, once the final reply was parsed (returned once).
    pub fn take_outcome(&mut self) -> Option<Outcome> {
        self.outcome.take()
    }

    /// True once the final reply was parsed and nothing remains to be written.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Done && self.transmit.is_empty()
    }

    /// True after `handle_input` returned an error.
    pub fn is_failed(&self) -> bool {
        self.phase == Phase::Failed
    }

    /// Whether an error pack asked the client not to remember the password.
    pub fn server_requested_no_save_password(&self) -> bool {
        self.no_save_password
    }

    /// Bytes received after the final HTTP response: the start of the tunnel stream.
    pub fn take_leftover(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.leftover)
    }
}

fn not_vpn_http(e: HttpError) -> HandshakeError {
    HandshakeError::NotVpn(format!("invalid HTTP response: {e}"))
}

/// Applies the checks of `HttpClientRecv` and decodes the body.
fn response_pack(msg: &HttpMessage) -> Result<Pack, HandshakeError> {
    let [version, status, reason] = &msg.start;
    if !version.eq_ignore_ascii_case("HTTP/1.1") {
        return Err(HandshakeError::NotVpn(format!(
            "unexpected HTTP version {version:?}"
        )));
    }
    if status != "200" {
        return Err(HandshakeError::NotVpn(format!(
            "HTTP status {status} {reason}"
        )));
    }
    match msg.header("Content-Type") {
        Some(ct) if ct.eq_ignore_ascii_case(http::CONTENT_TYPE_PACK) => {}
        other => {
            return Err(HandshakeError::NotVpn(format!(
                "unexpected Content-Type {other:?}"
            )));
        }
    }
    if msg.body.is_empty() {
        return Err(HandshakeError::NotVpn("empty HTTP body".into()));
    }
    Pack::decode(&msg.body).map_err(HandshakeError::Pack)
}

#[cfg(test)]
#[path = "handshake_tests.rs"]
mod tests;
