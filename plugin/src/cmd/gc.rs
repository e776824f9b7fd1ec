//! GC (1.1.0): tell the sidecar which attachments of this network are still
//! valid; it drops the rest, keeps going on errors and reports them.

use std::time::Instant;

use crate::logging;
use crate::netconf::{NetConf, GC_KEYS};
use crate::sidecar_client::{GcRequest, SidecarClient, SidecarError};
use crate::spec::Output;
use crate::spec::{CniError, ErrorCode, Version};

pub fn run(conf: &NetConf, client: &mut dyn SidecarClient) -> Result<Output, CniError> {
    if conf.cni_version < Version::V1_1_0 {
        return Err(CniError::incompatible_version(
            format!("GC is not defined for cniVersion {}", conf.cni_version),
            "GC needs cniVersion 1.1.0",
        ));
    }
    // An absent list would mean "delete everything"; only an explicit (maybe
    // empty) list may do that.
    let valid = conf.valid_attachments.clone().ok_or_else(|| {
        CniError::invalid_config(
            format!(
                "GC needs \"{}\" (or \"{}\") in the network config",
                GC_KEYS[0], GC_KEYS[1]
            ),
            "refusing to treat a missing list as \"no attachment is valid\"",
        )
    })?;
    let request = GcRequest {
        network: conf.name.clone(),
        valid,
    };
    let report = client
        .gc(&request, Instant::now() + conf.timeout)
        .map_err(|e| match e {
            SidecarError::Refused(err) => err,
            SidecarError::Protocol { .. } => {
                CniError::new(ErrorCode::SidecarProtocol, e.to_string(), "")
            }
            // The list comes from the runtime's config; sending it again cannot work.
            SidecarError::TooLarge { .. } => CniError::invalid_config(
                format!(
                    "\"{}\" lists {} attachments, too many for one GC request",
                    GC_KEYS[0],
                    request.valid.len()
                ),
                e.to_string(),
            ),
            _ => CniError::try_again_later(e.to_string(), ""),
        })?;
    for a in &report.removed {
        logging::debug(format_args!("GC removed {}/{}", a.container_id, a.ifname));
    }
    if report.errors.is_empty() {
        Ok(Output::Nothing)
    } else {
        Err(CniError::new(
            ErrorCode::TapNetns,
            format!(
                "GC could not remove {} stale attachment(s)",
                report.errors.len()
            ),
            report.errors.join("; "),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netconf::ValidAttachment;
    use crate::sidecar_client::GcReport;
    use crate::test_support::fake_sidecar::{Harness, Script};
    use serde_json::{json, Value};

    fn conf(extra: Value) -> NetConf {
        let mut v = json!({"cniVersion": "1.1.0", "name": "vpnnet", "type": "softether"});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        NetConf::from_stdin(v.to_string().as_bytes()).unwrap()
    }

    fn a(id: &str) -> ValidAttachment {
        ValidAttachment {
            container_id: id.into(),
            ifname: "vpn0".into(),
        }
    }

    #[test]
    fn forwards_valid_attachments_from_either_key() {
        for key in GC_KEYS {
            let c = conf(json!({ key: [{"containerID": "c1", "ifname": "vpn0"}] }));
            let h = Harness::new(Script {
                gc: Some(Ok(GcReport::default())),
                ..Script::default()
            });
            assert_eq!(
                run(&c, h.connect(&c.sidecar_socket).as_mut()).unwrap(),
                Output::Nothing
            );
            assert_eq!(
                h.seen.borrow().gc[0],
                GcRequest {
                    network: "vpnnet".into(),
                    valid: vec![a("c1")]
                }
            );
        }
    }

    #[test]
    fn missing_list_is_refused_and_empty_list_is_forwarded() {
        let h = Harness::new(Script {
            gc: Some(Ok(GcReport::default())),
            ..Script::default()
        });
        let c = conf(json!({}));
        assert_eq!(
            run(&c, h.connect(&c.sidecar_socket).as_mut())
                .unwrap_err()
                .code(),
            ErrorCode::InvalidConfig
        );
        assert!(h.seen.borrow().gc.is_empty());
        let h = Harness::new(Script {
            gc: Some(Ok(GcReport::default())),
            ..Script::default()
        });
        let c = conf(json!({"cni.dev/valid-attachments": []}));
        assert_eq!(
            run(&c, h.connect(&c.sidecar_socket).as_mut()).unwrap(),
            Output::Nothing
        );
    }

    #[test]
    fn reported_errors_fail_the_gc() {
        let report = GcReport {
            removed: vec![a("c2")],
            errors: vec!["c3/vpn0: netns busy".into()],
        };
        let h = Harness::new(Script {
            gc: Some(Ok(report)),
            ..Script::default()
        });
        let c = conf(json!({"cni.dev/valid-attachments": []}));
        let e = run(&c, h.connect(&c.sidecar_socket).as_mut()).unwrap_err();
        assert_eq!(e.code(), ErrorCode::TapNetns);
        assert!(e.details().contains("c3/vpn0"));
    }

    #[test]
    fn a_list_too_long_for_the_sidecar_is_an_invalid_config() {
        let h = Harness::new(Script {
            gc: Some(Err(SidecarError::TooLarge {
                op: "gc",
                bytes: 40 << 20,
                limit: 32 << 20,
            })),
            ..Script::default()
        });
        let c = conf(json!({"cni.dev/attachments": [{"containerID": "c1", "ifname": "vpn0"}]}));
        let e = run(&c, h.connect(&c.sidecar_socket).as_mut()).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidConfig);
        assert!(e.msg().contains("lists 1 attachments"), "{}", e.msg());
    }

    #[test]
    fn unreachable_is_try_again() {
        let h = Harness::new(Script::default());
        let c = conf(json!({"cni.dev/attachments": []}));
        assert_eq!(
            run(&c, h.connect(&c.sidecar_socket).as_mut())
                .unwrap_err()
                .code(),
            ErrorCode::TryAgainLater
        );
    }
}
