//! Who logs in where: the network config plus per-pod overrides, resolved
//! into the attach request's [`LoginSettings`]. The password stays in
//! `passwordFile`, which only the sidecar reads.
//!
//! Precedence, lowest to highest: network config, `CNI_ARGS`
//! (`SOFTETHER_USER`, `SOFTETHER_PASSWORD_FILE`, `SOFTETHER_HUB`; Podman
//! forwards its own `CNI_ARGS`), `args.cni` (`user`, `passwordFile`, `hub`;
//! Multus `cni-args`). `args.cni` wins because it is the mechanism the CNI
//! conventions prefer and the one a cluster admin reviews in a
//! NetworkAttachmentDefinition or pod annotation.

use std::path::PathBuf;

use serde_json::{Map, Value};

use super::fields::{self, Fields};
use super::{password_refused, LoginSettings, NetConf};
use crate::spec::env::{CniArgs, ARG_HUB, ARG_PASSWORD_FILE, ARG_USER};
use crate::spec::CniError;

/// Per-pod overrides of the SoftEther account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodOverrides {
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    pub hub: Option<String>,
}

impl PodOverrides {
    /// `args.cni`; unknown keys are ignored (Multus passes all `cni-args`).
    pub fn from_args_cni(map: Map<String, Value>) -> Result<PodOverrides, CniError> {
        let mut f = Fields::new(map, "args.cni.");
        if f.contains("password") {
            return Err(password_refused("args.cni.password"));
        }
        Ok(PodOverrides {
            user: f.checked_string("user", fields::check_softether_name)?,
            password_file: f.path("passwordFile")?,
            hub: f.checked_string("hub", fields::check_softether_name)?,
        })
    }

    /// The SoftEther keys of `CNI_ARGS`, validated like their config twins
    /// but reported as environment errors (code 4).
    pub fn from_cni_args(args: &CniArgs) -> Result<PodOverrides, CniError> {
        let check =
            |key: &str, value: &Option<String>, rule: fn(&str) -> Result<(), String>| match value {
                Some(v) => rule(v).map_err(|why| {
                    CniError::invalid_env(
                        format!("CNI_ARGS {key}={v:?} is invalid"),
                        format!("expected {why}"),
                    )
                }),
                None => Ok(()),
            };
        check(ARG_USER, &args.user, fields::check_softether_name)?;
        check(
            ARG_PASSWORD_FILE,
            &args.password_file,
            fields::check_absolute_path,
        )?;
        check(ARG_HUB, &args.hub, fields::check_softether_name)?;
        Ok(PodOverrides {
            user: args.user.clone(),
            password_file: args.password_file.as_ref().map(PathBuf::from),
            hub: args.hub.clone(),
        })
    }

    /// `self` with every field `over` sets replaced.
    fn overlaid(self, over: &PodOverrides) -> PodOverrides {
        PodOverrides {
            user: over.user.clone().or(self.user),
            password_file: over.password_file.clone().or(self.password_file),
            hub: over.hub.clone().or(self.hub),
        }
    }
}

/// Applies the overrides and checks that `server`, `user` and `passwordFile`
/// are set (code 7).
pub fn resolve_login(conf: &NetConf, cni_args: &CniArgs) -> Result<LoginSettings, CniError> {
    let from_config = PodOverrides {
        user: conf.user.clone(),
        password_file: conf.password_file.clone(),
        hub: Some(conf.hub.clone()),
    };
    let merged = from_config
        .overlaid(&PodOverrides::from_cni_args(cni_args)?)
        .overlaid(&conf.pod_args);
    let missing =
        |key: &str| {
            CniError::invalid_config(
                format!("network config key \"{key}\" is missing"),
                match key {
                    "server" => {
                        "set \"server\" to the SoftEther server's host name or address".to_owned()
                    }
                    _ => format!(
                    "set \"{key}\" in the network config, in args.cni, or per pod via CNI_ARGS {}",
                    if key == "user" { ARG_USER } else { ARG_PASSWORD_FILE }
                ),
                },
            )
        };
    let server = conf.server.clone().ok_or_else(|| missing("server"))?;
    let user = merged.user.ok_or_else(|| missing("user"))?;
    let password_file = merged
        .password_file
        .ok_or_else(|| missing("passwordFile"))?;
    Ok(LoginSettings {
        server,
        port: conf.port,
        hub: merged.hub.unwrap_or_else(|| conf.hub.clone()),
        user,
        password_file,
        plain_password: conf.plain_password,
        insecure: conf.insecure,
        pin_sha256: conf.pin_sha256.clone(),
        ca_file: conf.ca_file.clone(),
        max_connections: conf.max_connections,
        proxy: conf.proxy.clone(),
        proxy_password_file: conf.proxy_password_file.clone(),
        udp_acceleration: conf.udp_acceleration,
        compress: conf.compress,
        half_connection: conf.half_connection,
    })
}
