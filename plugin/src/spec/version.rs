//! CNI spec versions this plugin speaks, and the VERSION reply.

use std::fmt;

use serde_json::{json, Value};

use super::error::CniError;

/// A CNI spec version we can read configs in and render results for.
///
/// Ordered, so feature gates read as `v >= Version::V1_1_0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

impl Version {
    /// Every version we advertise in the VERSION reply, oldest first.
    pub const SUPPORTED: [Version; 5] = [
        Version::V0_3_0,
        Version::V0_3_1,
        Version::V0_4_0,
        Version::V1_0_0,
        Version::V1_1_0,
    ];

    /// The newest spec version; used when the caller's version is unknown.
    pub const LATEST: Version = Version::V1_1_0;

    pub fn as_str(self) -> &'static str {
        match self {
            Version::V0_3_0 => "0.3.0",
            Version::V0_3_1 => "0.3.1",
            Version::V0_4_0 => "0.4.0",
            Version::V1_0_0 => "1.0.0",
            Version::V1_1_0 => "1.1.0",
        }
    }

    /// Parses a supported version; anything else (including 0.1.0/0.2.0 and
    /// versions from the future) is error code 1.
    pub fn parse(s: &str) -> Result<Version, CniError> {
        Version::SUPPORTED
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                CniError::incompatible_version(
                    format!("unsupported CNI version {s:?}"),
                    format!("this plugin supports {}", supported_list()),
                )
            })
    }

    /// 0.3.x/0.4.0 results carry `ips[].version`; 1.x removed it.
    pub fn has_ip_version_field(self) -> bool {
        self < Version::V1_0_0
    }

    /// 1.1.0 added interface `mtu`/`socketPath`/`pciID` and route `mtu`/`advmss`/`priority`/`table`/`scope`.
    pub fn has_1_1_fields(self) -> bool {
        self >= Version::V1_1_0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn supported_list() -> String {
    Version::SUPPORTED
        .iter()
        .map(|v| v.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The VERSION reply. Echoes the caller's version when we support it, otherwise
/// answers in the latest version: an unsupported echo such as "0.1.0" would make
/// libcni decode the reply with its legacy decoder.
pub fn version_reply(requested: Option<&str>) -> Value {
    let echoed = requested
        .and_then(|s| Version::parse(s).ok())
        .unwrap_or(Version::LATEST);
    json!({
        "cniVersion": echoed.as_str(),
        "supportedVersions": Version::SUPPORTED.iter().map(|v| v.as_str()).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::error::ErrorCode;

    #[test]
    fn parses_every_supported_version() {
        for v in Version::SUPPORTED {
            assert_eq!(Version::parse(v.as_str()).unwrap(), v);
        }
    }

    #[test]
    fn refuses_old_and_future_versions_with_code_1() {
        for s in ["0.1.0", "0.2.0", "1.2.0", "1.3.0", "", "1.0"] {
            let e = Version::parse(s).unwrap_err();
            assert_eq!(e.code(), ErrorCode::IncompatibleVersion, "{s}");
        }
    }

    #[test]
    fn ordering_matches_spec_history() {
        assert!(Version::V0_3_1 < Version::V0_4_0);
        assert!(Version::V0_4_0.has_ip_version_field());
        assert!(!Version::V1_0_0.has_ip_version_field());
        assert!(!Version::V1_0_0.has_1_1_fields());
        assert!(Version::V1_1_0.has_1_1_fields());
    }

    #[test]
    fn version_reply_echoes_each_supported_version() {
        for v in Version::SUPPORTED {
            let reply = version_reply(Some(v.as_str()));
            assert_eq!(
                reply,
                json!({"cniVersion": v.as_str(),
                       "supportedVersions": ["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]})
            );
        }
    }

    #[test]
    fn version_reply_falls_back_to_latest() {
        assert_eq!(version_reply(None)["cniVersion"], "1.1.0");
        assert_eq!(version_reply(Some("0.1.0"))["cniVersion"], "1.1.0");
    }
}
