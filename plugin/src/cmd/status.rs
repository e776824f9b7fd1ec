//! STATUS (1.1.0): is the sidecar ready to serve ADD? Ready iff it answers; unreachable → 50.
//! Sessions that are down are reported on stderr but do not make the network "not ready": a
//! runtime would stop scheduling every pod on the node because one VPN session is reconnecting.

use std::time::{Duration, Instant};

use crate::netconf::NetConf;
use crate::sidecar_client::{SidecarClient, SidecarError, SidecarStatus};
use crate::spec::Output;
use crate::spec::{CniError, ErrorCode, Version};

/// STATUS is a health probe; it should answer quickly even with a long ADD timeout.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(conf: &NetConf, client: &mut dyn SidecarClient) -> Result<Output, CniError> {
    if conf.cni_version < Version::V1_1_0 {
        return Err(CniError::incompatible_version(
            format!("STATUS is not defined for cniVersion {}", conf.cni_version),
            "STATUS needs cniVersion 1.1.0",
        ));
    }
    let deadline = Instant::now() + conf.timeout.min(STATUS_TIMEOUT);
    match client.status(deadline) {
        Ok(SidecarStatus::Ready) => Ok(Output::Nothing),
        Ok(SidecarStatus::Degraded { reason }) => {
            eprintln!("softether: the sidecar is up, but not all VPN sessions are: {reason}");
            Ok(Output::Nothing)
        }
        Err(SidecarError::Refused(e)) => Err(e),
        Err(e) => Err(CniError::new(ErrorCode::NotAvailable, e.to_string(), "")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::fake_sidecar::{Harness, Script};
    use serde_json::json;

    fn conf(version: &str) -> NetConf {
        let v = json!({"cniVersion": version, "name": "vpnnet", "type": "softether"});
        NetConf::from_stdin(v.to_string().as_bytes()).unwrap()
    }

    fn status(conf: &NetConf, script: Script) -> Result<Output, CniError> {
        let h = Harness::new(script);
        run(conf, h.connect(&conf.sidecar_socket).as_mut())
    }

    #[test]
    fn mapping() {
        let ready = Script {
            status: Some(Ok(SidecarStatus::Ready)),
            ..Script::default()
        };
        assert_eq!(status(&conf("1.1.0"), ready).unwrap(), Output::Nothing);
        let degraded = Script {
            status: Some(Ok(SidecarStatus::Degraded {
                reason: "hub DEFAULT: 1 of 3 sessions down".into(),
            })),
            ..Script::default()
        };
        assert_eq!(
            status(&conf("1.1.0"), degraded).unwrap(),
            Output::Nothing,
            "ready iff the sidecar answers"
        );
        let e = status(&conf("1.1.0"), Script::default()).unwrap_err();
        assert_eq!(e.code(), ErrorCode::NotAvailable);
        assert!(e.msg().contains("is softether-sidecar running?"));
    }

    #[test]
    fn needs_1_1_0() {
        assert_eq!(
            status(&conf("1.0.0"), Script::default())
                .unwrap_err()
                .code(),
            ErrorCode::IncompatibleVersion
        );
    }
}
