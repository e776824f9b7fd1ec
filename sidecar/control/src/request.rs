//! The request line: `{"protocol":1,"op":…,"request":…}` and a newline, one per connection.
//!
//! [`Request`] is the op and its payload as one serde-tagged enum (`op` the tag, `request` the
//! content), so the daemon matches it exhaustively and the plugin cannot send an op the daemon
//! does not know. [`request_line`] writes it, [`decode_request`] reads it, and
//! [`request_limit`] bounds how long a line may grow before it is refused.

use serde::de::{self, Deserializer, IgnoredAny, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::framing::{code, WireError, PROTOCOL_VERSION};
use crate::messages::{AttachRequest, CheckRequest, DetachRequest, GcRequest};

/// A request is well under a kilobyte; anything near this is a confused peer.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// A `gc` request lists every valid attachment of the node (`cni.dev/valid-attachments`), about
/// 110 bytes each with 64-digit container ids and at most ~175 with the longest ids the state
/// directory accepts: 32 MiB holds ~190,000 of the latter, beyond any node.
pub const MAX_GC_REQUEST_BYTES: usize = 32 << 20;

/// One control request, tagged on the wire as `"op"` with its payload under `"request"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", content = "request", rename_all = "lowercase")]
pub enum Request {
    /// ADD; the TAP fd rides on the same `sendmsg`.
    Attach(Box<AttachRequest>),
    /// DEL.
    Detach(DetachRequest),
    /// CHECK.
    Check(CheckRequest),
    /// GC.
    Gc(GcRequest),
    /// STATUS.
    Status(NoPayload),
    /// `softether-sidecar status`: every attachment.
    List(NoPayload),
}

impl Request {
    /// Every op name, as the tag spells it.
    pub const OPS: [&'static str; 6] = ["attach", "detach", "check", "gc", "status", "list"];

    /// The op name on the wire.
    pub fn op(&self) -> &'static str {
        match self {
            Request::Attach(_) => "attach",
            Request::Detach(_) => "detach",
            Request::Check(_) => "check",
            Request::Gc(_) => "gc",
            Request::Status(_) => "status",
            Request::List(_) => "list",
        }
    }
}

/// The payload of ops that take none: written as `{}`; read from anything, also from a missing
/// or `null` `"request"`, as every earlier client sent one of those.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoPayload;

impl Serialize for NoPayload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_map(Some(0))?.end()
    }
}

impl<'de> Deserialize<'de> for NoPayload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Anything;
        impl<'de> Visitor<'de> for Anything {
            type Value = NoPayload;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("no payload")
            }
            fn visit_none<E: de::Error>(self) -> Result<NoPayload, E> {
                Ok(NoPayload)
            }
            fn visit_unit<E: de::Error>(self) -> Result<NoPayload, E> {
                Ok(NoPayload)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<NoPayload, D::Error> {
                IgnoredAny::deserialize(d).map(|_| NoPayload)
            }
        }
        // `deserialize_option`: a missing "request" is then `None`, not an error.
        deserializer.deserialize_option(Anything)
    }
}

/// The whole line: the protocol version first, then the tagged request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RequestLine {
    /// The sender's [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION); the sidecar refuses any other
    /// (code 103).
    pub protocol: u32,
    /// The op and its payload, `"op":…,"request":…` on the wire.
    #[serde(flatten)]
    pub request: Request,
}

/// The request line for `request` (current protocol version), newline included.
pub fn request_line(request: &Request) -> Result<Vec<u8>, serde_json::Error> {
    #[derive(Serialize)]
    struct LineRef<'a> {
        protocol: u32,
        #[serde(flatten)]
        request: &'a Request,
    }
    let mut line = serde_json::to_vec(&LineRef {
        protocol: PROTOCOL_VERSION,
        request,
    })?;
    line.push(b'\n');
    Ok(line)
}

/// How long the line that starts with `prefix` may grow: [`MAX_GC_REQUEST_BYTES`] for a `gc`
/// request as [`request_line`] writes it (protocol, then op, first), [`MAX_REQUEST_BYTES`] for
/// anything else. Readers call it as the line grows, so only a GC may use the larger bound.
pub fn request_limit(prefix: &[u8]) -> usize {
    let gc = format!("{{\"protocol\":{PROTOCOL_VERSION},\"op\":\"gc\",");
    if prefix.starts_with(gc.as_bytes()) {
        MAX_GC_REQUEST_BYTES
    } else {
        MAX_REQUEST_BYTES
    }
}

/// Decodes a request line (without its newline). Errors are the answers to send: 103 for
/// another protocol version or an unknown op, 6 for a line or payload that does not decode.
pub fn decode_request(line: &[u8]) -> Result<Request, WireError> {
    #[derive(Deserialize)]
    struct Header {
        protocol: u32,
        #[serde(default)]
        op: Option<String>,
    }
    let header: Header = serde_json::from_slice(line).map_err(|e| {
        WireError::new(
            code::DECODE,
            "cannot decode the request line",
            e.to_string(),
        )
    })?;
    if header.protocol != PROTOCOL_VERSION {
        return Err(WireError::new(
            code::PROTOCOL,
            format!(
                "protocol version {} is not supported (this sidecar speaks {PROTOCOL_VERSION})",
                header.protocol
            ),
            "install matching versions of the plugin and softether-sidecar",
        ));
    }
    match header.op.as_deref() {
        Some(op) if Request::OPS.contains(&op) => {}
        other => {
            return Err(WireError::new(
                code::PROTOCOL,
                format!("unknown op {:?}", other.unwrap_or_default()),
                "",
            ))
        }
    }
    serde_json::from_slice::<RequestLine>(line)
        .map(|l| l.request)
        .map_err(|e| {
            WireError::new(
                code::DECODE,
                format!(
                    "cannot decode the {} request",
                    header.op.unwrap_or_default()
                ),
                e.to_string(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AttachmentRef, ValidAttachment};
    use serde_json::json;

    fn gc(n: usize) -> Request {
        Request::Gc(GcRequest {
            network: "n".into(),
            valid: (0..n)
                .map(|i| ValidAttachment {
                    container_id: format!("{i:064x}"),
                    ifname: "vpn0".into(),
                })
                .collect(),
        })
    }

    fn decode(line: &str) -> Result<Request, WireError> {
        decode_request(line.as_bytes())
    }

    #[test]
    fn lines_keep_the_protocol_op_request_shape() {
        let line = request_line(&gc(0)).unwrap();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "{\"protocol\":1,\"op\":\"gc\",\"request\":{\"network\":\"n\",\"valid\":[]}}\n"
        );
        let line = request_line(&Request::Status(NoPayload)).unwrap();
        assert_eq!(line, b"{\"protocol\":1,\"op\":\"status\",\"request\":{}}\n");
        let detach = Request::Detach(DetachRequest {
            attachment: AttachmentRef {
                network: "n".into(),
                container_id: "c".into(),
                ifname: "vpn0".into(),
            },
            netns: None,
        });
        let line = request_line(&detach).unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&line).unwrap(),
            json!({"protocol": 1, "op": "detach",
                   "request": {"network": "n", "containerID": "c", "ifname": "vpn0"}})
        );
        assert_eq!(decode_request(line.trim_ascii_end()).unwrap(), detach);
    }

    #[test]
    fn every_op_name_is_the_tag() {
        let all = [
            gc(1),
            Request::Status(NoPayload),
            Request::List(NoPayload),
            Request::Detach(DetachRequest {
                attachment: AttachmentRef {
                    network: "n".into(),
                    container_id: "c".into(),
                    ifname: "vpn0".into(),
                },
                netns: None,
            }),
        ];
        for r in all {
            let v = serde_json::to_value(RequestLine {
                protocol: 1,
                request: r.clone(),
            })
            .unwrap();
            assert_eq!(v["op"], r.op());
            assert!(Request::OPS.contains(&r.op()));
        }
    }

    #[test]
    fn payloadless_ops_accept_what_earlier_clients_sent() {
        for line in [
            r#"{"protocol":1,"op":"status"}"#,
            r#"{"protocol":1,"op":"status","request":null}"#,
            r#"{"protocol":1,"op":"status","request":{}}"#,
            r#"{"op":"status","request":{"x":1},"protocol":1}"#,
        ] {
            assert_eq!(decode(line), Ok(Request::Status(NoPayload)), "{line}");
        }
        assert_eq!(
            decode(r#"{"protocol":1,"op":"list","request":{}}"#),
            Ok(Request::List(NoPayload))
        );
    }

    #[test]
    fn errors_say_what_went_wrong_with_the_right_code() {
        let e = decode(r#"{"protocol":2,"op":"status"}"#).unwrap_err();
        assert_eq!(e.code, code::PROTOCOL);
        let e = decode(r#"{"protocol":1,"op":"reboot"}"#).unwrap_err();
        assert_eq!((e.code, &*e.msg), (code::PROTOCOL, "unknown op \"reboot\""));
        let e = decode(r#"{"protocol":1}"#).unwrap_err();
        assert_eq!(e.code, code::PROTOCOL);
        let e = decode(r#"{"protocol":1,"op":"gc","request":{"valid":7}}"#).unwrap_err();
        assert_eq!(
            (e.code, &*e.msg),
            (code::DECODE, "cannot decode the gc request")
        );
        let e = decode("{not json").unwrap_err();
        assert_eq!(e.code, code::DECODE);
    }

    #[test]
    fn only_a_gc_line_may_exceed_the_small_limit() {
        let big = request_line(&gc(10_000)).unwrap();
        assert!(big.len() > MAX_REQUEST_BYTES);
        assert_eq!(request_limit(&big), MAX_GC_REQUEST_BYTES);
        assert_eq!(request_limit(&big[..40]), MAX_GC_REQUEST_BYTES);
        let status = request_line(&Request::Status(NoPayload)).unwrap();
        assert_eq!(request_limit(&status), MAX_REQUEST_BYTES);
        assert_eq!(
            request_limit(br#"{"op":"gc","protocol":1,"#),
            MAX_REQUEST_BYTES
        );
        // 100,000 ids with 64-digit container ids fit, and decode.
        let huge = request_line(&gc(100_000)).unwrap();
        assert!(huge.len() < MAX_GC_REQUEST_BYTES, "{}", huge.len());
        let Request::Gc(decoded) = decode_request(huge.trim_ascii_end()).unwrap() else {
            panic!("not a gc")
        };
        assert_eq!(decoded.valid.len(), 100_000);
    }
}
