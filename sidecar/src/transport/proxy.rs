//! Reaching the server through a proxy, as the official client can: HTTP `CONNECT` (with Basic
//! authentication), SOCKS5 (RFC 1928, user/password per RFC 1929) and SOCKS4/4a.
//!
//! The exchanges are small sans-IO codecs (request bytes out, reply bytes in, "need more" or a
//! verdict) driven by [`handshake`] over any byte stream, so they are tested in process over
//! `tokio::io::duplex`; [`connect`] opens the TCP connection to the proxy and runs it. The
//! proxy password comes from a file or the environment, never from the URL (it would be in
//! argv and logs): a URL carrying one is refused, and neither `Display` nor `Debug` shows it.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use softether_control::{ProxyKind, ProxyUrl};
use softether_proto::error::RetryClass;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest HTTP reply header accepted from a proxy.
const MAX_HTTP_REPLY: usize = 16 * 1024;

/// A proxy to reach the server through: the URL and, from a file or the environment, the
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    url: ProxyUrl,
    password: Option<String>,
}

impl Proxy {
    /// Parses the URL ([`ProxyUrl`]) and pairs it with `password` (read from the password
    /// file or environment), refusing combinations that cannot work.
    pub fn parse(url: &str, password: Option<String>) -> Result<Proxy, String> {
        let url: ProxyUrl = url.parse()?;
        if password.is_some() {
            url.check_password_allowed()?;
        }
        Ok(Proxy { url, password })
    }

    /// The URL (never with a password).
    pub fn url(&self) -> &ProxyUrl {
        &self.url
    }
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.url.fmt(f)
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the password.
        write!(f, "Proxy({})", self.url)
    }
}

/// Why the proxy did not give us a connection to the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The proxy itself is unreachable.
    #[error("cannot reach the proxy: {0}")]
    Connect(#[source] std::io::Error),
    /// The proxy refused to connect to the server (HTTP status line, SOCKS reply named).
    #[error("the proxy refused to connect to the server: {0}")]
    Refused(String),
    /// The proxy wants credentials we do not have, or rejected them.
    #[error("proxy authentication failed: {0}")]
    Auth(String),
    /// Not the protocol we expected (wrong port or wrong scheme?).
    #[error("unexpected reply from the proxy: {0}")]
    Protocol(String),
    /// The connection broke during the exchange.
    #[error("I/O error talking to the proxy: {0}")]
    Io(#[source] std::io::Error),
}

impl ProxyError {
    /// Whether trying again can help: credentials and policy refusals cannot.
    pub fn retry_class(&self) -> RetryClass {
        match self {
            ProxyError::Auth(_) => RetryClass::Never,
            ProxyError::Refused(why) if why.starts_with("403") || why.contains("not allowed") => {
                RetryClass::Never
            }
            _ => RetryClass::Normal,
        }
    }
}

/// Opens a TCP connection to `proxy` and asks it for a tunnel to `host:port`. Returns the
/// stream, ready for TLS, and the proxy's address (the route to pin instead of the server's).
pub async fn connect(
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> Result<(TcpStream, SocketAddr), ProxyError> {
    let mut stream = TcpStream::connect((proxy.url.host.as_str(), proxy.url.port))
        .await
        .map_err(ProxyError::Connect)?;
    let addr = stream.peer_addr().map_err(ProxyError::Connect)?;
    let _ = stream.set_nodelay(true);
    handshake(&mut stream, proxy, host, port).await?;
    Ok((stream, addr))
}

/// Runs the proxy exchange on `stream`; afterwards the stream carries bytes to `host:port`.
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> Result<(), ProxyError> {
    match proxy.url.kind {
        ProxyKind::Http => {
            let auth = proxy
                .url
                .user
                .as_deref()
                .map(|u| (u, proxy.password.as_deref().unwrap_or("")));
            send(stream, &http_connect_request(host, port, auth)).await?;
            let mut buf = Vec::with_capacity(512);
            loop {
                // One byte at a time up to the blank line: nothing of the tunnel may be eaten.
                let mut b = [0u8; 1];
                read_exact(stream, &mut b).await?;
                buf.push(b[0]);
                if let Some(verdict) = parse_http_connect_reply(&buf)? {
                    return verdict;
                }
            }
        }
        ProxyKind::Socks5 => {
            let creds = proxy
                .url
                .user
                .as_deref()
                .map(|u| (u, proxy.password.as_deref().unwrap_or("")));
            send(stream, &socks5_greeting(creds.is_some())).await?;
            let mut choice = [0u8; 2];
            read_exact(stream, &mut choice).await?;
            match socks5_method(choice)? {
                Socks5Method::NoAuth => {}
                Socks5Method::UserPassword => {
                    let (u, p) = creds.ok_or_else(|| {
                        ProxyError::Auth("the SOCKS5 proxy wants a user name and password".into())
                    })?;
                    send(stream, &socks5_user_password(u, p)?).await?;
                    let mut reply = [0u8; 2];
                    read_exact(stream, &mut reply).await?;
                    if reply[1] != 0 {
                        return Err(ProxyError::Auth(format!(
                            "the SOCKS5 proxy rejected user {u:?} (status {})",
                            reply[1]
                        )));
                    }
                }
            }
            send(stream, &socks5_connect(host, port)?).await?;
            let mut head = [0u8; 5];
            read_exact(stream, &mut head).await?;
            let rest = socks5_reply_remaining(head)?;
            let mut tail = vec![0u8; rest];
            read_exact(stream, &mut tail).await
        }
        ProxyKind::Socks4 => {
            send(
                stream,
                &socks4_connect(host, port, proxy.url.user.as_deref())?,
            )
            .await?;
            let mut reply = [0u8; 8];
            read_exact(stream, &mut reply).await?;
            socks4_reply(reply)
        }
    }
}

async fn send<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> Result<(), ProxyError> {
    stream.write_all(bytes).await.map_err(ProxyError::Io)?;
    stream.flush().await.map_err(ProxyError::Io)
}

async fn read_exact<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut [u8],
) -> Result<(), ProxyError> {
    match stream.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ProxyError::Protocol(
            "the proxy closed the connection during the handshake".into(),
        )),
        Err(e) => Err(ProxyError::Io(e)),
    }
}

/// The `CONNECT` request, with Basic authentication when a user is given.
pub fn http_connect_request(host: &str, port: u16, auth: Option<(&str, &str)>) -> Vec<u8> {
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some((u, p)) = auth {
        req.push_str("Proxy-Authorization: Basic ");
        req.push_str(&base64(format!("{u}:{p}").as_bytes()));
        req.push_str("\r\n");
    }
    req.push_str("Proxy-Connection: Keep-Alive\r\n\r\n");
    req.into_bytes()
}

/// `None` until the reply header is complete; then `Ok` for a 2xx status, else the error that
/// names the status line.
pub fn parse_http_connect_reply(buf: &[u8]) -> Result<Option<Result<(), ProxyError>>, ProxyError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HTTP_REPLY {
            return Err(ProxyError::Protocol(format!(
                "reply header longer than {MAX_HTTP_REPLY} bytes"
            )));
        }
        if !buf.is_empty() && !b"HTTP/".starts_with(&buf[..buf.len().min(5)]) {
            return Err(ProxyError::Protocol(
                "not an HTTP reply (is this an HTTP proxy?)".into(),
            ));
        }
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let status_line = head.lines().next().unwrap_or("").trim();
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !version.starts_with("HTTP/1.") {
        return Err(ProxyError::Protocol(format!("status line {status_line:?}")));
    }
    let code: u16 = code
        .parse()
        .map_err(|_| ProxyError::Protocol(format!("status line {status_line:?}")))?;
    let shown = status_line.trim_start_matches(version).trim().to_string();
    Ok(Some(match code {
        200..=299 => Ok(()),
        // 407 is the standard answer; some proxies (tinyproxy) say 401 for the same thing.
        401 | 407 => Err(ProxyError::Auth(shown)),
        _ => Err(ProxyError::Refused(shown)),
    }))
}

/// What the SOCKS5 proxy chose in its method reply.
#[derive(Debug, PartialEq, Eq)]
pub enum Socks5Method {
    /// No authentication.
    NoAuth,
    /// RFC 1929 user name and password.
    UserPassword,
}

/// Version 5, offering no authentication and, with credentials, user/password.
pub fn socks5_greeting(with_password: bool) -> Vec<u8> {
    if with_password {
        vec![5, 2, 0, 2]
    } else {
        vec![5, 1, 0]
    }
}

/// The proxy's method choice.
pub fn socks5_method(reply: [u8; 2]) -> Result<Socks5Method, ProxyError> {
    match reply {
        [5, 0] => Ok(Socks5Method::NoAuth),
        [5, 2] => Ok(Socks5Method::UserPassword),
        [5, 0xff] => Err(ProxyError::Auth(
            "the SOCKS5 proxy accepts none of our authentication methods".into(),
        )),
        [v, m] => Err(ProxyError::Protocol(format!(
            "SOCKS5 method reply {v} {m} (is this a SOCKS5 proxy?)"
        ))),
    }
}

/// The RFC 1929 sub-negotiation.
pub fn socks5_user_password(user: &str, password: &str) -> Result<Vec<u8>, ProxyError> {
    let (u, p) = (user.as_bytes(), password.as_bytes());
    if u.len() > 255 || p.len() > 255 {
        return Err(ProxyError::Auth(
            "SOCKS5 user names and passwords are at most 255 bytes".into(),
        ));
    }
    let mut out = vec![1, u.len() as u8];
    out.extend_from_slice(u);
    out.push(p.len() as u8);
    out.extend_from_slice(p);
    Ok(out)
}

/// `CONNECT host:port`: an address type for IP literals, else the name (the proxy resolves it).
pub fn socks5_connect(host: &str, port: u16) -> Result<Vec<u8>, ProxyError> {
    let mut out = vec![5, 1, 0];
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            out.push(1);
            out.extend_from_slice(&ip.octets());
        }
        Ok(IpAddr::V6(ip)) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            let name = host.as_bytes();
            if name.is_empty() || name.len() > 255 {
                return Err(ProxyError::Protocol(format!(
                    "host name {host:?} does not fit a SOCKS5 request"
                )));
            }
            out.push(3);
            out.push(name.len() as u8);
            out.extend_from_slice(name);
        }
    }
    out.extend_from_slice(&port.to_be_bytes());
    Ok(out)
}

/// Checks the first 5 bytes of the CONNECT reply; returns how many bytes remain of it.
pub fn socks5_reply_remaining(head: [u8; 5]) -> Result<usize, ProxyError> {
    if head[0] != 5 {
        return Err(ProxyError::Protocol(format!(
            "SOCKS5 reply version {}",
            head[0]
        )));
    }
    if head[1] != 0 {
        let why = match head[1] {
            1 => "general SOCKS server failure",
            2 => "connection not allowed by ruleset",
            3 => "network unreachable",
            4 => "host unreachable",
            5 => "connection refused",
            6 => "TTL expired",
            7 => "command not supported",
            8 => "address type not supported",
            _ => "unknown error",
        };
        return Err(ProxyError::Refused(format!(
            "SOCKS5 reply {}: {why}",
            head[1]
        )));
    }
    // The rest of the bound address, then the 2-byte port.
    match head[3] {
        1 => Ok(4 - 1 + 2),
        4 => Ok(16 - 1 + 2),
        3 => Ok(usize::from(head[4]) + 2),
        t => Err(ProxyError::Protocol(format!(
            "SOCKS5 reply address type {t}"
        ))),
    }
}

/// SOCKS4 `CONNECT`: the IPv4 address, or SOCKS4a (0.0.0.1 + the name) for host names.
pub fn socks4_connect(host: &str, port: u16, user: Option<&str>) -> Result<Vec<u8>, ProxyError> {
    let mut out = vec![4, 1];
    out.extend_from_slice(&port.to_be_bytes());
    let name = match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            out.extend_from_slice(&ip.octets());
            None
        }
        Ok(IpAddr::V6(_)) => {
            return Err(ProxyError::Protocol(
                "SOCKS4 cannot reach IPv6 addresses; use socks5://".into(),
            ))
        }
        Err(_) => {
            out.extend_from_slice(&[0, 0, 0, 1]);
            Some(host)
        }
    };
    out.extend_from_slice(user.unwrap_or("").as_bytes());
    out.push(0);
    if let Some(name) = name {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
    }
    Ok(out)
}

/// The 8-byte SOCKS4 reply.
pub fn socks4_reply(reply: [u8; 8]) -> Result<(), ProxyError> {
    match (reply[0], reply[1]) {
        (0, 0x5a) => Ok(()),
        (0, 0x5b) => Err(ProxyError::Refused(
            "SOCKS4 request rejected or failed".into(),
        )),
        (0, 0x5c | 0x5d) => Err(ProxyError::Auth(
            "SOCKS4 identd check failed for the user id".into(),
        )),
        (v, c) => Err(ProxyError::Protocol(format!(
            "SOCKS4 reply {v} {c:#x} (is this a SOCKS4 proxy?)"
        ))),
    }
}

/// RFC 4648 base64 with padding (Basic authentication only needs encoding).
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
