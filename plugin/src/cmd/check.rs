//! CHECK: the interface ADD reported must still be there and its session up.
//! Runtimes rarely call it; it is cheap to keep correct.

use std::time::Instant;

use crate::netconf::NetConf;
use crate::sidecar_client::{AttachmentRef, CheckRequest, SidecarClient, SidecarError};
use crate::spec::Output;
use crate::spec::{CniError, CniResult, Env, ErrorCode, Version};
use softether_control::Mac;

pub fn run(env: &Env, conf: &NetConf, client: &mut dyn SidecarClient) -> Result<Output, CniError> {
    if conf.cni_version < Version::V0_4_0 {
        return Err(CniError::incompatible_version(
            format!("CHECK is not defined for cniVersion {}", conf.cni_version),
            "CHECK needs cniVersion 0.4.0 or later",
        ));
    }
    let container_id = env.required_container_id()?;
    let ifname = env.required_ifname()?;
    let netns = env.required_netns()?;
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        CniError::invalid_config("CHECK needs \"prevResult\" in the network config", "")
    })?;
    let prev = CniResult::from_prev_result(prev)?;
    let index = prev
        .interfaces
        .iter()
        .position(|i| i.name == ifname && i.sandbox.as_deref() == Some(netns))
        .ok_or_else(|| {
            CniError::invalid_config(
                format!("prevResult has no interface {ifname:?} in {netns}"),
                "",
            )
        })?;
    let mac = match prev.interfaces.get(index).and_then(|i| i.mac.as_deref()) {
        None => None,
        Some(text) => Some(text.parse::<Mac>().map_err(|e| {
            CniError::invalid_config(
                format!("prevResult has a bad MAC for {ifname} in {netns}"),
                e.to_string(),
            )
        })?),
    };
    let request = CheckRequest {
        attachment: AttachmentRef {
            network: conf.name.clone(),
            container_id: container_id.to_owned(),
            ifname: ifname.to_owned(),
        },
        netns: netns.to_owned(),
        mac,
        ips: prev
            .ips
            .iter()
            .filter(|ip| ip.interface == Some(index))
            .map(|ip| ip.address)
            .collect(),
    };
    client
        .check(&request, Instant::now() + conf.timeout)
        .map(|()| Output::Nothing)
        .map_err(|e| match e {
            SidecarError::Refused(err) => err,
            SidecarError::Protocol { .. } => {
                CniError::new(ErrorCode::SidecarProtocol, e.to_string(), "")
            }
            _ => CniError::try_again_later(
                e.to_string(),
                "CHECK needs the sidecar: it holds the VPN session",
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Command;
    use crate::test_support::fake_sidecar::{Harness, Script};
    use serde_json::{json, Value};

    fn env() -> Env {
        Env {
            command: Command::Check,
            container_id: Some("c1".into()),
            netns: Some("/run/netns/p".into()),
            ifname: Some("vpn0".into()),
            args: String::new(),
            path: vec!["/opt/cni/bin".into()],
            netns_override: false,
        }
    }

    fn conf(version: &str, prev: Option<Value>) -> NetConf {
        let mut v = json!({"cniVersion": version, "name": "vpnnet", "type": "softether"});
        if let Some(p) = prev {
            v["prevResult"] = p;
        }
        NetConf::from_stdin(v.to_string().as_bytes()).unwrap()
    }

    fn prev() -> Value {
        json!({"cniVersion": "1.0.0",
               "interfaces": [{"name": "eth0", "sandbox": "/run/netns/p"},
                              {"name": "vpn0", "mac": "02:00:00:00:00:01", "sandbox": "/run/netns/p"}],
               "ips": [{"address": "10.88.0.2/16", "interface": 0},
                       {"address": "10.8.0.23/24", "interface": 1}]})
    }

    fn check(conf: &NetConf, h: &Harness) -> Result<Output, CniError> {
        run(&env(), conf, h.connect(&conf.sidecar_socket).as_mut())
    }

    #[test]
    fn asks_the_sidecar_about_our_interface_only() {
        let h = Harness::new(Script {
            check: Some(Ok(())),
            ..Script::default()
        });
        assert_eq!(
            check(&conf("1.0.0", Some(prev())), &h).unwrap(),
            Output::Nothing
        );
        let seen = h.seen.borrow();
        assert_eq!(seen.check[0].ips, vec!["10.8.0.23/24".parse().unwrap()]);
        assert_eq!(
            seen.check[0].mac,
            Some("02:00:00:00:00:01".parse().unwrap())
        );
    }

    #[test]
    fn refuses_old_versions_and_missing_prev_result() {
        let h = Harness::new(Script::default());
        assert_eq!(
            check(&conf("0.3.1", Some(prev())), &h).unwrap_err().code(),
            ErrorCode::IncompatibleVersion
        );
        assert_eq!(
            check(&conf("1.0.0", None), &h).unwrap_err().code(),
            ErrorCode::InvalidConfig
        );
        let mut p = prev();
        p["interfaces"][1]["name"] = json!("other");
        assert!(check(&conf("1.0.0", Some(p)), &h)
            .unwrap_err()
            .msg()
            .contains("vpn0"));
    }

    #[test]
    fn unreachable_sidecar_is_try_again() {
        let h = Harness::new(Script::default());
        assert_eq!(
            check(&conf("1.1.0", Some(prev())), &h).unwrap_err().code(),
            ErrorCode::TryAgainLater
        );
    }
}
