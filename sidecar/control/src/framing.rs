//! One JSON object per line, one request and one reply per connection.
//!
//! Request: `{"protocol":1,"op":"attach"|"detach"|"check"|"status"|"gc"|"list","request":{…}}`
//! (see `request.rs`). Reply: `{"ok":<payload>}` or `{"error":{"code":N,"msg":"…","details":"…"}}`, `N` being a CNI
//! error code (see [`code`]) the plugin hands to the runtime as is.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Bumped on any incompatible change; the sidecar refuses other versions (code 103).
pub const PROTOCOL_VERSION: u32 = 1;
/// A reply (the `list` answer being the largest) stays far below this.
pub const MAX_REPLY_BYTES: u64 = 1 << 20;

/// CNI error codes the sidecar answers with (the plugin forwards them as is).
pub mod code {
    /// Required environment missing or invalid (CNI code 4).
    pub const INVALID_ENV: u32 = 4;
    /// A request or its payload could not be decoded (CNI code 6).
    pub const DECODE: u32 = 6;
    /// The network configuration is invalid (CNI code 7).
    pub const INVALID_CONFIG: u32 = 7;
    /// Transient: the runtime should retry the operation later (CNI code 11).
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// The SoftEther server refused or failed the login.
    pub const SOFTETHER_LOGIN: u32 = 100;
    /// No DHCP lease arrived through the tunnel before the deadline.
    pub const DHCP: u32 = 101;
    /// The TAP fd or the pod netns could not be used or configured.
    pub const TAP_NETNS: u32 = 102;
    /// A control-protocol violation: wrong version, missing fd, unencodable reply.
    pub const PROTOCOL: u32 = 103;
}

/// An error answer; `code` is a CNI error code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{msg} (code {code}){}", if details.is_empty() { String::new() } else { format!(": {details}") })]
pub struct WireError {
    /// CNI error code, from [`code`]; the plugin returns it to the runtime unchanged.
    pub code: u32,
    /// One-line summary (the CNI error's `msg`).
    pub msg: String,
    /// The underlying cause (the CNI error's `details`); empty when there is nothing to add.
    #[serde(default)]
    pub details: String,
}

impl WireError {
    /// An error answer with CNI `code`, summary `msg` and `details`.
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> WireError {
        WireError {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }
}

/// The reply line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reply {
    /// `{"ok":payload}`: the op's answer as JSON.
    Ok(Value),
    /// `{"error":{…}}`: the op failed.
    Error(WireError),
}

impl Reply {
    /// The answer to a handled request; a payload that cannot be encoded becomes a code-103
    /// error rather than a broken line.
    pub fn from_result<T: Serialize>(result: Result<T, WireError>) -> Reply {
        let encoded = result.and_then(|v| {
            serde_json::to_value(v).map_err(|e| {
                WireError::new(code::PROTOCOL, "cannot encode the reply", e.to_string())
            })
        });
        match encoded {
            Ok(v) => Reply::Ok(v),
            Err(e) => Reply::Error(e),
        }
    }

    /// The reply line, newline included.
    pub fn line(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut line = serde_json::to_vec(self)?;
        line.push(b'\n');
        Ok(line)
    }
}

/// Why a reply line could not be understood.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// The peer closed the connection (or sent only whitespace) before a reply line.
    #[error("connection closed without a reply")]
    Empty,
    /// The line is not `{"ok":…}` or `{"error":{…}}`.
    #[error("bad reply: {0}")]
    Malformed(serde_json::Error),
    /// The `ok` payload does not have the shape the op answers with.
    #[error("bad payload: {0}")]
    Payload(serde_json::Error),
}

/// Decodes a reply line: the `ok` payload as `T`, or the sidecar's [`WireError`].
pub fn parse_reply<T: DeserializeOwned>(line: &str) -> Result<Result<T, WireError>, ReplyError> {
    if line.trim().is_empty() {
        return Err(ReplyError::Empty);
    }
    match serde_json::from_str::<Reply>(line).map_err(ReplyError::Malformed)? {
        Reply::Ok(payload) => serde_json::from_value(payload)
            .map(Ok)
            .map_err(ReplyError::Payload),
        Reply::Error(err) => Ok(Err(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replies_have_the_plugin_shape() {
        let ok = Reply::from_result(Ok(json!({"state": "ready"})));
        assert_eq!(ok.line().unwrap(), b"{\"ok\":{\"state\":\"ready\"}}\n");
        let err = Reply::Error(WireError::new(code::DHCP, "no lease", "after 30s"));
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            json!({"error": {"code": 101, "msg": "no lease", "details": "after 30s"}})
        );
        assert_eq!(
            WireError::new(code::DHCP, "no lease", "after 30s").to_string(),
            "no lease (code 101): after 30s"
        );
    }

    #[test]
    fn reply_lines_decode() {
        let ok: Result<u32, WireError> = parse_reply("{\"ok\":5}\n").unwrap();
        assert_eq!(ok, Ok(5));
        let err: Result<u32, WireError> =
            parse_reply(r#"{"error":{"code":100,"msg":"denied"}}"#).unwrap();
        assert_eq!(
            err,
            Err(WireError::new(code::SOFTETHER_LOGIN, "denied", ""))
        );
        assert!(matches!(parse_reply::<u32>(""), Err(ReplyError::Empty)));
        assert!(matches!(
            parse_reply::<u32>("nope"),
            Err(ReplyError::Malformed(_))
        ));
        assert!(matches!(
            parse_reply::<u32>(r#"{"ok":"x"}"#),
            Err(ReplyError::Payload(_))
        ));
    }
}
