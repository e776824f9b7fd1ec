//! The CNI error object and the codes this plugin returns.
//!
//! Every failure leaves the plugin as one [`CniError`], printed once by `main`
//! as `{"cniVersion", "code", "msg", "details"}` on stdout with exit status 1
//! (libcni reads errors from stdout; stderr is only for logs).
//!
//! | Code | Variant | When this plugin returns it |
//! |-----:|---------|-----------------------------|
//! | 1 | `IncompatibleVersion` | `cniVersion` unsupported or < 0.3.0; CHECK below 0.4.0; GC/STATUS below 1.1.0 |
//! | 4 | `InvalidEnv` | a `CNI_*` variable is missing or malformed (the message names it) |
//! | 5 | `Io` | reading stdin failed; the sidecar connection broke mid-request |
//! | 6 | `Decode` | stdin is not JSON (or not a JSON object) |
//! | 7 | `InvalidConfig` | a network-config key is missing, mistyped or out of range (names key and value); inline password |
//! | 11 | `TryAgainLater` | ADD/CHECK/GC: the sidecar is unreachable or did not answer before the deadline |
//! | 50 | `NotAvailable` | STATUS: the sidecar is unreachable or not ready |
//! | 51 | `LimitedConnectivity` | spec code, passed through if a sidecar sends it; STATUS itself answers 0 whenever the sidecar answers |
//! | 100 | `SoftEtherLogin` | the SoftEther server refused the login; `msg`/`details` carry the SoftEther error name (e.g. `ERR_AUTH_FAILED`) |
//! | 101 | `Dhcp` | no DHCP lease through the tunnel (timeout, NAK) |
//! | 102 | `TapNetns` | creating/configuring the TAP, addresses, routes or rules in the pod netns failed |
//! | 103 | `SidecarProtocol` | the sidecar answered something this plugin cannot understand (version skew) |

use std::fmt;

use serde_json::{json, Value};

use super::version::Version;

/// Error codes; 0–99 come from the spec, 100+ are ours (see the module table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    IncompatibleVersion,
    UnsupportedField,
    UnknownContainer,
    InvalidEnv,
    Io,
    Decode,
    InvalidConfig,
    TryAgainLater,
    NotAvailable,
    LimitedConnectivity,
    SoftEtherLogin,
    Dhcp,
    TapNetns,
    SidecarProtocol,
}

impl ErrorCode {
    pub fn as_u32(self) -> u32 {
        match self {
            ErrorCode::IncompatibleVersion => 1,
            ErrorCode::UnsupportedField => 2,
            ErrorCode::UnknownContainer => 3,
            ErrorCode::InvalidEnv => 4,
            ErrorCode::Io => 5,
            ErrorCode::Decode => 6,
            ErrorCode::InvalidConfig => 7,
            ErrorCode::TryAgainLater => 11,
            ErrorCode::NotAvailable => 50,
            ErrorCode::LimitedConnectivity => 51,
            ErrorCode::SoftEtherLogin => 100,
            ErrorCode::Dhcp => 101,
            ErrorCode::TapNetns => 102,
            ErrorCode::SidecarProtocol => 103,
        }
    }

    /// Maps a code received from the sidecar back to the enum; unknown codes
    /// are a protocol problem rather than something to forward blindly.
    pub fn from_u32(code: u32) -> Option<ErrorCode> {
        ALL_CODES.into_iter().find(|c| c.as_u32() == code)
    }
}

const ALL_CODES: [ErrorCode; 14] = [
    ErrorCode::IncompatibleVersion,
    ErrorCode::UnsupportedField,
    ErrorCode::UnknownContainer,
    ErrorCode::InvalidEnv,
    ErrorCode::Io,
    ErrorCode::Decode,
    ErrorCode::InvalidConfig,
    ErrorCode::TryAgainLater,
    ErrorCode::NotAvailable,
    ErrorCode::LimitedConnectivity,
    ErrorCode::SoftEtherLogin,
    ErrorCode::Dhcp,
    ErrorCode::TapNetns,
    ErrorCode::SidecarProtocol,
];

/// A CNI error: what the runtime sees when a command fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct CniError {
    code: ErrorCode,
    msg: String,
    details: String,
    /// The caller's `cniVersion`, filled in by the dispatcher once stdin is read.
    cni_version: Option<String>,
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CNI error {}: {}", self.code.as_u32(), self.msg)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

impl CniError {
    pub fn new(code: ErrorCode, msg: impl Into<String>, details: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: details.into(),
            cni_version: None,
        }
    }

    pub fn incompatible_version(msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self::new(ErrorCode::IncompatibleVersion, msg, details)
    }

    /// Code 4; `msg` must name the offending variables.
    pub fn invalid_env(msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidEnv, msg, details)
    }

    pub fn decode(msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self::new(ErrorCode::Decode, msg, details)
    }

    /// Code 7 naming the key; callers put the offending value in `msg`
    /// (never for secrets).
    pub fn invalid_config(msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidConfig, msg, details)
    }

    pub fn try_again_later(msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self::new(ErrorCode::TryAgainLater, msg, details)
    }

    /// Code 100: the SoftEther server refused the session. `error_name` is the
    /// server's error constant (e.g. `ERR_AUTH_FAILED`), `error_number` its number.
    pub fn softether_login(
        error_name: &str,
        error_number: u32,
        details: impl Into<String>,
    ) -> Self {
        Self::new(
            ErrorCode::SoftEtherLogin,
            format!("SoftEther login failed: {error_name} ({error_number})"),
            details,
        )
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn msg(&self) -> &str {
        &self.msg
    }

    pub fn details(&self) -> &str {
        &self.details
    }

    /// Sets the version echoed in the error object unless one is already set.
    pub fn in_version(mut self, cni_version: Option<&str>) -> Self {
        if self.cni_version.is_none() {
            self.cni_version = cni_version.map(str::to_owned);
        }
        self
    }

    /// The error object. Without a known input version we answer in the latest
    /// one; libcni reads `code`/`msg`/`details` regardless of the version.
    pub fn to_json(&self) -> Value {
        let version = self
            .cni_version
            .as_deref()
            .unwrap_or(Version::LATEST.as_str());
        let mut obj = json!({
            "cniVersion": version,
            "code": self.code.as_u32(),
            "msg": self.msg,
        });
        if !self.details.is_empty() {
            obj["details"] = Value::String(self.details.clone());
        }
        obj
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for c in ALL_CODES {
            assert_eq!(ErrorCode::from_u32(c.as_u32()), Some(c));
        }
        assert_eq!(ErrorCode::from_u32(12), None);
    }

    #[test]
    fn error_object_shape() {
        let e = CniError::invalid_config("port: 0 is out of range", "allowed 1..65535")
            .in_version(Some("1.0.0"));
        assert_eq!(
            e.to_json(),
            json!({"cniVersion":"1.0.0","code":7,"msg":"port: 0 is out of range",
                   "details":"allowed 1..65535"})
        );
    }

    #[test]
    fn error_without_version_uses_latest_and_omits_empty_details() {
        let e = CniError::invalid_env("CNI_COMMAND is not set", "");
        assert_eq!(
            e.to_json(),
            json!({"cniVersion":"1.1.0","code":4,"msg":"CNI_COMMAND is not set"})
        );
    }

    #[test]
    fn softether_login_names_the_error() {
        let e = CniError::softether_login("ERR_AUTH_FAILED", 9, "user alice on hub DEFAULT");
        assert_eq!(e.code().as_u32(), 100);
        assert!(e.msg().contains("ERR_AUTH_FAILED"));
    }
}
