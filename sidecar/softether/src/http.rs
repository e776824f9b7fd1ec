//! The minimal HTTP/1.1 subset of the pre-tunnel phase (`HTTP.c`): POST requests with a
//! Content-Length body, and an incremental message parser for responses (and, for the fake
//! server, requests). Limits follow `RecvHttpHeader`: header lines ≤ 4096 bytes, ≤ 128 headers.

/// Longest accepted start/header line, excluding the line terminator.
pub const MAX_LINE: usize = 4096;
/// Most header lines accepted in one message.
pub const MAX_HEADERS: usize = 128;

/// `Content-Type` of pack requests and replies.
pub const CONTENT_TYPE_PACK: &str = "application/octet-stream";
/// `Content-Type` of the signature POST (the server checks it).
pub const CONTENT_TYPE_SIGNATURE: &str = "image/jpeg";
/// Request target of the signature POST.
pub const TARGET_SIGNATURE: &str = "/vpnsvc/connect.cgi";
/// Request target of every pack POST.
pub const TARGET_PACK: &str = "/vpnsvc/vpn.cgi";
/// Body of the signature POST: marks a native-protocol client.
pub const SIGNATURE_BODY: &[u8] = b"VPNCONNECT";
const KEEP_ALIVE: &str = "timeout=15; max=19";

/// Why a byte stream is not acceptable HTTP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// A start or header line is longer than [`MAX_LINE`] bytes.
    #[error("HTTP line longer than {MAX_LINE} bytes")]
    LineTooLong,
    /// More than [`MAX_HEADERS`] header lines.
    #[error("more than {MAX_HEADERS} HTTP header lines")]
    TooManyHeaders,
    /// The start line is not three space-separated tokens (the line, cut).
    #[error("malformed HTTP start line {0:?}")]
    BadStartLine(String),
    /// A header line without `:`, or with an empty name or value (the line, cut).
    #[error("malformed HTTP header line {0:?}")]
    BadHeader(String),
    /// `Content-Length` is not a decimal number (its value).
    #[error("invalid Content-Length {0:?}")]
    BadContentLength(String),
    /// A message with a body has no `Content-Length`.
    #[error("missing Content-Length")]
    MissingContentLength,
    /// The declared body is larger than the parser's limit.
    #[error("HTTP body of {size} bytes exceeds the limit of {limit}")]
    BodyTooLarge {
        /// The declared `Content-Length`.
        size: u64,
        /// The parser's limit in bytes.
        limit: usize,
    },
}

/// One parsed HTTP message. `start` holds the three start-line tokens: for a response
/// (version, status, reason), for a request (method, target, version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpMessage {
    /// The start line's three tokens.
    pub start: [String; 3],
    /// Header lines as (name, value), in order, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The body, exactly `Content-Length` bytes.
    pub body: Vec<u8>,
}

impl HttpMessage {
    /// First header with this name (case-insensitive), value trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
enum State {
    Head {
        start: Option<[String; 3]>,
        headers: Vec<(String, String)>,
        scanned: usize,
    },
    Body {
        start: [String; 3],
        headers: Vec<(String, String)>,
        len: usize,
    },
    Failed,
}

/// Incremental parser: feed any chunking with [`HttpParser::push`], take complete messages with
/// [`HttpParser::next_message`]. Bytes after a message stay buffered for the next one (or for
/// [`HttpParser::take_buffered`], e.g. tunnel data following the last response).
#[derive(Debug)]
pub struct HttpParser {
    buf: Vec<u8>,
    state: State,
    max_body: usize,
}

fn parse_start(line: &str) -> Result<[String; 3], HttpError> {
    let mut parts = line.trim().splitn(3, ' ').map(str::trim);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(b), Some(c)) if !a.is_empty() && !b.is_empty() => {
            Ok([a.to_owned(), b.to_owned(), c.to_owned()])
        }
        _ => Err(HttpError::BadStartLine(line.chars().take(200).collect())),
    }
}

fn parse_header(line: &str) -> Result<(String, String), HttpError> {
    let bad = || HttpError::BadHeader(line.chars().take(200).collect());
    let (name, value) = line.split_once(':').ok_or_else(bad)?;
    let (name, value) = (name.trim(), value.trim());
    // Like the C server, a header without a value invalidates the message.
    if name.is_empty() || value.is_empty() {
        return Err(bad());
    }
    Ok((name.to_owned(), value.to_owned()))
}

impl HttpParser {
    /// `max_body`: largest Content-Length accepted (checked before buffering the body).
    pub fn new(max_body: usize) -> Self {
        HttpParser {
            buf: Vec::new(),
            state: State::Head {
                start: None,
                headers: Vec::new(),
                scanned: 0,
            },
            max_body,
        }
    }

    /// Appends received bytes; call [`HttpParser::next_message`] afterwards.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Returns the next complete message, `Ok(None)` if more input is needed. After an error the
    /// parser stays failed.
    pub fn next_message(&mut self) -> Result<Option<HttpMessage>, HttpError> {
        let result = self.advance();
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn advance(&mut self) -> Result<Option<HttpMessage>, HttpError> {
        loop {
            match &mut self.state {
                State::Failed => {
                    return Err(HttpError::BadStartLine("parser failed earlier".into()))
                }
                State::Head {
                    start,
                    headers,
                    scanned,
                } => {
                    let Some(nl) = self.buf[*scanned..].iter().position(|&b| b == b'\n') else {
                        *scanned = self.buf.len();
                        if self.buf.len() > MAX_LINE + 1 {
                            return Err(HttpError::LineTooLong);
                        }
                        return Ok(None);
                    };
                    let end = *scanned + nl;
                    *scanned = 0;
                    let raw: Vec<u8> = self.buf.drain(..=end).collect();
                    let mut line = &raw[..raw.len() - 1];
                    if let [rest @ .., b'\r'] = line {
                        line = rest;
                    }
                    if line.len() > MAX_LINE {
                        return Err(HttpError::LineTooLong);
                    }
                    let line = String::from_utf8_lossy(line);
                    if line.is_empty() {
                        let Some(start) = start.take() else {
                            return Err(HttpError::BadStartLine(String::new()));
                        };
                        let headers = std::mem::take(headers);
                        let len = self.content_length(&headers)?;
                        self.state = State::Body {
                            start,
                            headers,
                            len,
                        };
                    } else if start.is_none() {
                        *start = Some(parse_start(&line)?);
                    } else {
                        if headers.len() >= MAX_HEADERS {
                            return Err(HttpError::TooManyHeaders);
                        }
                        headers.push(parse_header(&line)?);
                    }
                }
                State::Body { len, .. } => {
                    if self.buf.len() < *len {
                        return Ok(None);
                    }
                    let rest = self.buf.split_off(*len);
                    let body = std::mem::replace(&mut self.buf, rest);
                    let fresh = State::Head {
                        start: None,
                        headers: Vec::new(),
                        scanned: 0,
                    };
                    let State::Body { start, headers, .. } =
                        std::mem::replace(&mut self.state, fresh)
                    else {
                        unreachable!("state checked above");
                    };
                    return Ok(Some(HttpMessage {
                        start,
                        headers,
                        body,
                    }));
                }
            }
        }
    }

    fn content_length(&self, headers: &[(String, String)]) -> Result<usize, HttpError> {
        let raw = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v)
            .ok_or(HttpError::MissingContentLength)?;
        let size: u64 = raw
            .parse()
            .map_err(|_| HttpError::BadContentLength(raw.clone()))?;
        if size > self.max_body as u64 {
            return Err(HttpError::BodyTooLarge {
                size,
                limit: self.max_body,
            });
        }
        Ok(size as usize)
    }

    /// Everything buffered but not yet consumed as part of a message.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// A POST request as the C client sends it (header order is irrelevant to the server). The
/// `Host` header is left out when `host` is empty: the C server rejects headers without value.
pub fn post(target: &str, host: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let host = host.trim();
    let host_line = if host.is_empty() {
        String::new()
    } else {
        format!("Host: {host}\r\n")
    };
    let mut out = format!(
        "POST {target} HTTP/1.1\r\n{host_line}Content-Type: {content_type}\r\n\
         Connection: Keep-Alive\r\nKeep-Alive: {KEEP_ALIVE}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A response as `HttpServerSend` writes it (used by the fake server).
pub fn response(status: u16, reason: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nConnection: Keep-Alive\r\nContent-Length: {}\r\n\
         Content-Type: {content_type}\r\nKeep-Alive: {KEEP_ALIVE}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(bytes: &[u8], chunk: usize) -> Result<Vec<HttpMessage>, HttpError> {
        let mut p = HttpParser::new(1 << 20);
        let mut out = Vec::new();
        for part in bytes.chunks(chunk.max(1)) {
            p.push(part);
            while let Some(m) = p.next_message()? {
                out.push(m);
            }
        }
        Ok(out)
    }

    #[test]
    fn parses_responses_in_any_chunking() {
        let mut stream = response(200, "OK", CONTENT_TYPE_PACK, b"hello");
        stream.extend(response(200, "OK", CONTENT_TYPE_PACK, b"second body"));
        for chunk in [1, 2, 3, 7, 64, 10_000] {
            let msgs = parse_all(&stream, chunk).unwrap();
            assert_eq!(msgs.len(), 2);
            assert_eq!(
                msgs[0].start,
                ["HTTP/1.1".to_string(), "200".into(), "OK".into()]
            );
            assert_eq!(msgs[0].header("content-TYPE"), Some(CONTENT_TYPE_PACK));
            assert_eq!(msgs[0].body, b"hello");
            assert_eq!(msgs[1].body, b"second body");
        }
    }

    #[test]
    fn bare_lf_and_multi_word_reason() {
        let raw = b"HTTP/1.1 403 Forbidden Here\nContent-Length: 2\n\nab";
        let msgs = parse_all(raw, 1).unwrap();
        assert_eq!(msgs[0].start[2], "Forbidden Here");
        assert_eq!(msgs[0].body, b"ab");
    }

    #[test]
    fn request_round_trip_and_leftover() {
        let mut stream = post(
            TARGET_SIGNATURE,
            "198.18.0.1",
            CONTENT_TYPE_SIGNATURE,
            SIGNATURE_BODY,
        );
        stream.extend_from_slice(b"tail");
        let mut p = HttpParser::new(100);
        p.push(&stream);
        let m = p.next_message().unwrap().unwrap();
        assert_eq!(m.start[0], "POST");
        assert_eq!(m.start[1], TARGET_SIGNATURE);
        assert_eq!(m.header("content-length"), Some("10"));
        assert_eq!(m.body, SIGNATURE_BODY);
        assert_eq!(p.next_message().unwrap(), None);
        assert_eq!(p.take_buffered(), b"tail");
        let no_host = post(TARGET_PACK, " ", CONTENT_TYPE_PACK, b"x");
        assert!(!String::from_utf8_lossy(&no_host).contains("Host"));
    }

    #[test]
    fn limits_and_malformed_input() {
        let long = format!("HTTP/1.1 200 OK\r\nX: {}\r\n", "a".repeat(MAX_LINE));
        assert_eq!(parse_all(long.as_bytes(), 100), Err(HttpError::LineTooLong));
        // An unterminated line is rejected as soon as it exceeds the limit.
        assert_eq!(
            parse_all(&[b'a'; MAX_LINE + 2], 1000),
            Err(HttpError::LineTooLong)
        );
        let mut many = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("H{i}: v\r\n"));
        }
        assert_eq!(
            parse_all(many.as_bytes(), 50),
            Err(HttpError::TooManyHeaders)
        );
        assert!(matches!(
            parse_all(b"HTTP/1.1 200 OK\r\nnocolon\r\n", 3),
            Err(HttpError::BadHeader(_))
        ));
        assert!(matches!(
            parse_all(b"HTTP/1.1 200 OK\r\nX:  \r\n", 3),
            Err(HttpError::BadHeader(_))
        ));
        assert!(matches!(
            parse_all(b"HTTP/1.1\r\n", 3),
            Err(HttpError::BadStartLine(_))
        ));
        assert!(matches!(
            parse_all(b"\r\n", 3),
            Err(HttpError::BadStartLine(_))
        ));
        assert_eq!(
            parse_all(b"HTTP/1.1 200 OK\r\n\r\n", 3),
            Err(HttpError::MissingContentLength)
        );
        assert!(matches!(
            parse_all(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 3),
            Err(HttpError::BadContentLength(_))
        ));
        assert!(matches!(
            parse_all(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", 3),
            Err(HttpError::BodyTooLarge { .. })
        ));
    }
}
