//! Typed extraction of network-config keys with errors that name the key and
//! the offending value (code 7). Whatever is not taken stays in the map and is
//! kept as an unknown key.

use std::ops::RangeInclusive;
use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::spec::CniError;

/// A JSON object being taken apart; `prefix` ("", "args.cni.") makes nested
/// keys show up in errors under their full path.
pub struct Fields {
    map: Map<String, Value>,
    prefix: &'static str,
}

impl Fields {
    pub fn new(map: Map<String, Value>, prefix: &'static str) -> Fields {
        Fields { map, prefix }
    }

    /// The keys nobody took.
    pub fn into_rest(self) -> Map<String, Value> {
        self.map
    }

    pub fn contains(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// Removes `key`; JSON `null` counts as absent.
    pub fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key).filter(|v| !v.is_null())
    }

    pub fn error(&self, key: &str, value: &Value, expected: &str) -> CniError {
        CniError::invalid_config(
            format!(
                "network config key \"{}{key}\": invalid value {}",
                self.prefix,
                short(value)
            ),
            format!("expected {expected}"),
        )
    }

    pub fn string(&mut self, key: &str) -> Result<Option<String>, CniError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.error(key, &other, "a string")),
        }
    }

    /// A string checked by `check`, which explains what is wrong.
    pub fn checked_string(
        &mut self,
        key: &str,
        check: impl Fn(&str) -> Result<(), String>,
    ) -> Result<Option<String>, CniError> {
        match self.string(key)? {
            None => Ok(None),
            Some(s) => match check(&s) {
                Ok(()) => Ok(Some(s)),
                Err(why) => Err(self.error(key, &Value::String(s), &why)),
            },
        }
    }

    pub fn path(&mut self, key: &str) -> Result<Option<PathBuf>, CniError> {
        Ok(self
            .checked_string(key, check_absolute_path)?
            .map(PathBuf::from))
    }

    pub fn bool(&mut self, key: &str) -> Result<Option<bool>, CniError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(other) => Err(self.error(key, &other, "true or false")),
        }
    }

    /// An integer within `range` (JSON numbers with a fraction are refused).
    pub fn uint(&mut self, key: &str, range: RangeInclusive<u64>) -> Result<Option<u64>, CniError> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if range.contains(&n) => Ok(Some(n)),
                _ => Err(self.error(
                    key,
                    &v,
                    &format!("an integer from {} to {}", range.start(), range.end()),
                )),
            },
        }
    }

    pub fn object(&mut self, key: &str) -> Result<Option<Map<String, Value>>, CniError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(other) => Err(self.error(key, &other, "an object")),
        }
    }
}

/// Values in messages are cut short so a pasted blob does not flood logs.
fn short(value: &Value) -> String {
    let s = value.to_string();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

pub fn check_absolute_path(s: &str) -> Result<(), String> {
    if s.starts_with('/') && !s.contains('\0') {
        Ok(())
    } else {
        Err("an absolute path on the node".into())
    }
}

/// User and hub names: SoftEther limits them to 255 bytes; control characters
/// and whitespace-only names can never log in.
pub fn check_softether_name(s: &str) -> Result<(), String> {
    if s.trim().is_empty() || s.len() > 255 || s.chars().any(char::is_control) {
        Err("a non-empty name of at most 255 bytes without control characters".into())
    } else {
        Ok(())
    }
}

/// A host name or IP literal, without scheme, port or path.
pub fn check_server(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '@' | '?' | '#'))
        && (s.parse::<std::net::IpAddr>().is_ok() || !s.contains(':'));
    if ok {
        Ok(())
    } else {
        Err(
            "a host name or IP address without scheme, port or path (set the port with \"port\")"
                .into(),
        )
    }
}

/// CNI network names: `[A-Za-z0-9][A-Za-z0-9_.-]*`.
pub fn check_network_name(s: &str) -> Result<(), String> {
    if softether_control::state_dir::is_cni_identifier(s) {
        Ok(())
    } else {
        Err("a name matching [A-Za-z0-9][A-Za-z0-9_.-]*".into())
    }
}

/// SHA-256 certificate pin: 64 hex digits, optionally in ':'-separated pairs.
/// Returns the lowercase hex without separators.
pub fn normalize_pin(s: &str) -> Result<String, String> {
    let hex: String = s.chars().filter(|c| *c != ':').collect();
    let pairs_ok = !s.contains(':') || s.split(':').all(|p| p.len() == 2);
    if hex.len() == 64 && pairs_ok && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(hex.to_ascii_lowercase())
    } else {
        Err("64 hex digits (a SHA-256), optionally written as 32 ':'-separated pairs".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins() {
        let plain = "AB".repeat(32);
        assert_eq!(normalize_pin(&plain).unwrap(), "ab".repeat(32));
        let colons = vec!["aB"; 32].join(":");
        assert_eq!(normalize_pin(&colons).unwrap(), "ab".repeat(32));
        for bad in [
            "",
            "ab",
            &"ab".repeat(31),
            &"zz".repeat(32),
            &format!("{}:", "ab".repeat(32)),
            &format!("a:b{}", "ab".repeat(31)),
        ] {
            assert!(normalize_pin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn servers() {
        for ok in ["vpn.example.com", "198.18.0.1", "fd00::1", "localhost"] {
            check_server(ok).unwrap();
        }
        for bad in ["", "https://vpn", "vpn:443", "vp n", "vpn/x", "user@vpn"] {
            assert!(check_server(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn network_names() {
        check_network_name("vpn-net_1.0").unwrap();
        for bad in ["", "-x", "a b", "a/b"] {
            assert!(check_network_name(bad).is_err(), "{bad}");
        }
    }
}
