//! SoftEther error codes (`ERR_*` in Cedar.h) as seen by a native client, with the retry policy
//! recommended in softether-protocol.md §7.3.

use std::fmt;

use crate::pack::{PackError, MAX_REQUEST_PACK};
use crate::rsa::SignError;

/// A numeric SoftEther error code, as carried in the `error` INT of a server pack or used by
/// the client for its own failures (connect failed, not a VPN server, ...).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ErrorCode(pub u32);

/// How a client should react to a failed connection attempt with this code.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum RetryClass {
    /// Configuration or credential problem: retrying cannot help.
    Never,
    /// Transient: retry with the normal backoff.
    Normal,
    /// Server-side capacity or state problem: retry, but slowly (the official client waits 60 s).
    Slow,
}

macro_rules! error_codes {
    ($( $konst:ident = $code:literal, $name:literal, $desc:literal, $retry:ident; )*) => {
        impl ErrorCode {
            $(
                #[doc = concat!("`", $name, "` (", stringify!($code), "): ", $desc)]
                pub const $konst: ErrorCode = ErrorCode($code);
            )*

            /// The upstream constant name, e.g. `"ERR_AUTH_FAILED"`; `"ERR_UNKNOWN"` otherwise.
            pub fn name(self) -> &'static str {
                match self.0 { $( $code => $name, )* _ => "ERR_UNKNOWN" }
            }

            /// A short human-readable description.
            pub fn description(self) -> &'static str {
                match self.0 { $( $code => $desc, )* _ => "unknown error" }
            }

            /// Recommended reaction (§7.3): stop, retry normally, or retry slowly.
            pub fn retry_class(self) -> RetryClass {
                match self.0 { $( $code => RetryClass::$retry, )* _ => RetryClass::Normal }
            }

            /// Every code this crate knows by name.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode($code), )* ];
        }
    };
}

error_codes! {
    NO_ERROR = 0, "ERR_NO_ERROR", "no error", Normal;
    CONNECT_FAILED = 1, "ERR_CONNECT_FAILED", "connection to the server failed", Normal;
    SERVER_IS_NOT_VPN = 2, "ERR_SERVER_IS_NOT_VPN", "the destination is not a SoftEther VPN server", Normal;
    DISCONNECTED = 3, "ERR_DISCONNECTED", "the connection was closed during the handshake", Normal;
    PROTOCOL_ERROR = 4, "ERR_PROTOCOL_ERROR", "protocol error", Never;
    CLIENT_IS_NOT_VPN = 5, "ERR_CLIENT_IS_NOT_VPN", "the client is not a SoftEther VPN client", Normal;
    USER_CANCEL = 6, "ERR_USER_CANCEL", "cancelled by the user", Never;
    AUTHTYPE_NOT_SUPPORTED = 7, "ERR_AUTHTYPE_NOT_SUPPORTED", "authentication type not supported", Never;
    HUB_NOT_FOUND = 8, "ERR_HUB_NOT_FOUND", "virtual hub not found", Never;
    AUTH_FAILED = 9, "ERR_AUTH_FAILED", "authentication failed", Never;
    HUB_STOPPING = 10, "ERR_HUB_STOPPING", "virtual hub is stopped", Slow;
    SESSION_REMOVED = 11, "ERR_SESSION_REMOVED", "session was removed", Normal;
    ACCESS_DENIED = 12, "ERR_ACCESS_DENIED", "access denied", Never;
    SESSION_TIMEOUT = 13, "ERR_SESSION_TIMEOUT", "session timed out", Normal;
    INVALID_PROTOCOL = 14, "ERR_INVALID_PROTOCOL", "invalid protocol for this session", Normal;
    TOO_MANY_CONNECTION = 15, "ERR_TOO_MANY_CONNECTION", "too many connections for this session", Normal;
    HUB_IS_BUSY = 16, "ERR_HUB_IS_BUSY", "virtual hub has reached its session limit", Slow;
    PROXY_CONNECT_FAILED = 17, "ERR_PROXY_CONNECT_FAILED", "connection to the proxy failed", Normal;
    PROXY_ERROR = 18, "ERR_PROXY_ERROR", "proxy error", Normal;
    PROXY_AUTH_FAILED = 19, "ERR_PROXY_AUTH_FAILED", "proxy authentication failed", Never;
    TOO_MANY_USER_SESSION = 20, "ERR_TOO_MANY_USER_SESSION", "too many concurrent sessions for this user", Slow;
    LICENSE_ERROR = 21, "ERR_LICENSE_ERROR", "server license error", Slow;
    DEVICE_DRIVER_ERROR = 22, "ERR_DEVICE_DRIVER_ERROR", "device driver error", Normal;
    INTERNAL_ERROR = 23, "ERR_INTERNAL_ERROR", "internal error", Normal;
    NOT_SUPPORTED = 33, "ERR_NOT_SUPPORTED", "not supported by the server (is it a VPN Bridge?)", Never;
    COULD_NOT_HOST_HUB_ON_FARM = 49, "ERR_COULD_NOT_HOST_HUB_ON_FARM", "the server farm could not host the virtual hub", Normal;
    NULL_PASSWORD_LOCAL_ONLY = 51, "ERR_NULL_PASSWORD_LOCAL_ONLY", "empty passwords are only allowed from localhost", Never;
    NOT_ENOUGH_RIGHT = 52, "ERR_NOT_ENOUGH_RIGHT", "not enough rights", Never;
    TOO_MANY_USER = 63, "ERR_TOO_MANY_USER", "too many user objects on the server", Slow;
    USER_AUTHTYPE_NOT_PASSWORD = 68, "ERR_USER_AUTHTYPE_NOT_PASSWORD", "the user is not a password user", Never;
    OLD_PASSWORD_WRONG = 69, "ERR_OLD_PASSWORD_WRONG", "old password is wrong", Never;
    CERT_NOT_TRUSTED = 85, "ERR_CERT_NOT_TRUSTED", "server certificate is not trusted", Never;
    VERSION_INVALID = 87, "ERR_VERSION_INVALID", "client version rejected by the server", Never;
    SERVER_CANT_ACCEPT = 105, "ERR_SERVER_CANT_ACCEPT", "server cannot accept connections now", Slow;
    SERVER_CERT_EXPIRES = 106, "ERR_SERVER_CERT_EXPIRES", "server certificate has expired", Never;
    MONITOR_MODE_DENIED = 107, "ERR_MONITOR_MODE_DENIED", "monitor mode denied", Never;
    BRIDGE_MODE_DENIED = 108, "ERR_BRIDGE_MODE_DENIED", "bridge/routing mode denied", Never;
    IP_ADDRESS_DENIED = 109, "ERR_IP_ADDRESS_DENIED", "client IP address denied by the virtual hub", Never;
    BRANDED_C_TO_S = 124, "ERR_BRANDED_C_TO_S", "branded client rejected", Never;
    BRANDED_C_FROM_S = 125, "ERR_BRANDED_C_FROM_S", "branded server rejected", Never;
    AUTO_DISCONNECTED = 126, "ERR_AUTO_DISCONNECTED", "disconnected by the AutoDisconnect policy", Never;
    CLIENT_ID_REQUIRED = 127, "ERR_CLIENT_ID_REQUIRED", "the virtual hub requires a specific client ID", Never;
    HOSTNAME_MISMATCH = 149, "ERR_HOSTNAME_MISMATCH", "server certificate hostname mismatch", Never;
    SSL_PROTOCOL_VERSION = 150, "ERR_SSL_PROTOCOL_VERSION", "no common TLS protocol version", Never;
    SSL_SHARED_CIPHER = 151, "ERR_SSL_SHARED_CIPHER", "no common TLS cipher", Never;
    SSL_HANDSHAKE = 152, "ERR_SSL_HANDSHAKE", "TLS handshake failed", Never;
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}, {})", self.description(), self.name(), self.0)
    }
}

impl std::error::Error for ErrorCode {}

impl From<u32> for ErrorCode {
    fn from(code: u32) -> Self {
        ErrorCode(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_format() {
        assert_eq!(
            ErrorCode::AUTH_FAILED.to_string(),
            "authentication failed (ERR_AUTH_FAILED, 9)"
        );
        assert_eq!(
            ErrorCode(9999).to_string(),
            "unknown error (ERR_UNKNOWN, 9999)"
        );
        assert_eq!(ErrorCode(8).name(), "ERR_HUB_NOT_FOUND");
        assert_eq!(ErrorCode::AUTH_FAILED, ErrorCode(9));
    }

    #[test]
    fn retry_classes_follow_recommended_policy() {
        let never = [4, 7, 8, 9, 12, 33, 51, 87, 107, 108, 109, 127, 85, 106, 149];
        let slow = [10, 16, 20, 21, 63, 105];
        for c in never {
            assert_eq!(ErrorCode(c).retry_class(), RetryClass::Never, "{c}");
        }
        for c in slow {
            assert_eq!(ErrorCode(c).retry_class(), RetryClass::Slow, "{c}");
        }
        for c in [1, 2, 3, 11, 13, 14, 23, 49, 4242] {
            assert_eq!(ErrorCode(c).retry_class(), RetryClass::Normal, "{c}");
        }
    }

    #[test]
    fn table_has_unique_codes_and_names() {
        let mut codes: Vec<u32> = ErrorCode::ALL.iter().map(|c| c.0).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ErrorCode::ALL.len());
        for c in ErrorCode::ALL {
            assert!(c.name().starts_with("ERR_"));
            assert_ne!(c.description(), "unknown error");
        }
    }
}

/// Why the handshake failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The server answered with an error pack.
    #[error("server refused the connection: {0}")]
    Server(ErrorCode),
    /// Wrong HTTP status/content type/hello: probably not a SoftEther server (or wrong port).
    #[error("server is not a SoftEther VPN server: {0}")]
    NotVpn(String),
    /// The server's reply was well-formed HTTP but not a valid protocol message.
    #[error("protocol error in server reply: {0}")]
    Protocol(String),
    /// The server's reply pack could not be decoded.
    #[error("malformed pack from server: {0}")]
    Pack(#[from] PackError),
    /// A method was called in a state that does not allow it (a caller bug).
    #[error("handshake API misuse: {0}")]
    InvalidState(&'static str),
    /// The request pack is larger than the server accepts (its size in bytes).
    #[error("request pack of {0} bytes exceeds the server's limit of {MAX_REQUEST_PACK} bytes")]
    RequestTooLarge(usize),
    /// The certificate signer failed.
    #[error("could not sign the certificate login: {0}")]
    Sign(#[from] SignError),
}

impl HandshakeError {
    /// The SoftEther error code closest to this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            HandshakeError::Server(c) => *c,
            HandshakeError::NotVpn(_) => ErrorCode::SERVER_IS_NOT_VPN,
            HandshakeError::Protocol(_) | HandshakeError::Pack(_) => ErrorCode::PROTOCOL_ERROR,
            HandshakeError::InvalidState(_) => ErrorCode::INTERNAL_ERROR,
            HandshakeError::RequestTooLarge(_) | HandshakeError::Sign(_) => {
                ErrorCode::INTERNAL_ERROR
            }
        }
    }

    /// Whether reconnecting can help. Garbled server replies are treated as transient.
    pub fn retry_class(&self) -> RetryClass {
        match self {
            HandshakeError::Server(c) => c.retry_class(),
            HandshakeError::NotVpn(_) | HandshakeError::Protocol(_) | HandshakeError::Pack(_) => {
                RetryClass::Normal
            }
            HandshakeError::InvalidState(_)
            | HandshakeError::RequestTooLarge(_)
            | HandshakeError::Sign(_) => RetryClass::Never,
        }
    }
}
