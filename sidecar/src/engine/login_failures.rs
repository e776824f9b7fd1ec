//! Failed logins by reason, process-wide: the engine counts them where they happen (a login,
//! an additional connection, a resume), the metrics read them at scrape time. Kept here, not
//! per attachment, so that a deleted attachment does not take its failures out of a counter.

use std::collections::BTreeMap;
use std::sync::Mutex;

use softether_proto::error::HandshakeError;

use crate::transport::connection::SessionError;

static LOGIN_FAILURES: Mutex<BTreeMap<&'static str, u64>> = Mutex::new(BTreeMap::new());

/// Counts a failed login (or additional connection, or resume) attempt.
pub fn count(err: &SessionError) {
    let mut counts = LOGIN_FAILURES.lock().unwrap_or_else(|e| e.into_inner());
    *counts.entry(reason(err)).or_default() += 1;
}

/// Every reason seen so far with its count, in reason order.
pub fn snapshot() -> Vec<(&'static str, u64)> {
    let counts = LOGIN_FAILURES.lock().unwrap_or_else(|e| e.into_inner());
    counts.iter().map(|(reason, n)| (*reason, *n)).collect()
}

/// A bounded label value for a failed login: the server's error name (`ERR_AUTH_FAILED`, ...,
/// `ERR_UNKNOWN` for codes this build does not know), or the local stage that failed.
pub fn reason(err: &SessionError) -> &'static str {
    match err {
        SessionError::Server { code, .. } => code.name(),
        SessionError::Handshake {
            source: HandshakeError::Server(code),
            ..
        } => code.name(),
        SessionError::Handshake { .. } => "handshake",
        SessionError::Resolve { .. } | SessionError::NoAddress { .. } => "resolve",
        SessionError::Connect { .. } => "connect",
        SessionError::Timeout { .. } => "timeout",
        SessionError::Tls { .. } | SessionError::TlsSetup(_) => "tls",
        SessionError::Disconnected { .. } | SessionError::Io { .. } => "disconnected",
        _ => "protocol",
    }
}
