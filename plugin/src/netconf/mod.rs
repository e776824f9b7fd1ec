//! The network configuration on stdin: every key of the `softether` plugin,
//! validated up front (code 7 naming key and value), unknown keys kept.
//!
//! Keys (defaults in parentheses): `server`, `port` (443), `hub` ("DEFAULT"),
//! `user`, `passwordFile`, `plainPassword` (false), `insecure` (false),
//! `pinSha256`, `caFile`, `maxConnections` (1, 1..=32), `udpAcceleration`
//! ("auto", or "off"), `compress` (false), `halfConnection` (false, needs
//! `maxConnections` ≥ 2), `mtu` (sidecar's
//! choice, 576..=9000), `acceptDefaultGateway` (false), `acceptStaticRoutes`
//! (false), `policyRouteTable` (off), `connmark` (false, needs
//! `policyRouteTable`), `timeout` (60 s, < 120), `sidecarSocket`
//! (`/run/softether-cni/sidecar.sock`), `stateDir` (`/var/lib/softether-cni`), `proxy`,
//! `proxyPasswordFile`, `onChange` (off; argv list, absolute program path first), `ipv6`
//! (true: IPv6 from the VPN's routers on the interface and in the result),
//! `runtimeConfig.mac`, `args.cni.{user,
//! passwordFile, hub}`, `prevResult`, and for GC `cni.dev/valid-attachments`
//! (or the 1.1.0-tag spelling `cni.dev/attachments`).

mod fields;
mod login;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::spec::{CniError, Version};
use fields::Fields;
pub use login::{resolve_login, PodOverrides};
pub use softether_control::{LoginSettings, UdpAcceleration, ValidAttachment};
use softether_control::{Mac, ProxyUrl};

pub const DEFAULT_PORT: u16 = 443;
pub const DEFAULT_HUB: &str = "DEFAULT";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_SIDECAR_SOCKET: &str = "/run/softether-cni/sidecar.sock";
/// Where the sidecar keeps its records; DEL leaves tombstones here when it is down.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/softether-cni";
/// kubelet gives the whole sandbox setup two minutes; ADD must fit inside.
pub const MAX_TIMEOUT_SECS: u64 = 119;
/// What a MAC in the config or `CNI_ARGS` must look like (the "expected …" of the error).
pub const MAC_EXPECTED: &str = "a unicast MAC address such as 02:00:5e:10:00:01";

/// The GC keys: libcni ≥ 1.2.3 sends both spellings (spec tag 1.1.0 had the
/// second one).
pub const GC_KEYS: [&str; 2] = ["cni.dev/valid-attachments", "cni.dev/attachments"];

/// A validated network configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub cni_version: Version,
    pub cni_versions: Vec<String>,
    pub name: String,
    pub plugin_type: Option<String>,
    pub server: Option<String>,
    pub port: u16,
    pub hub: String,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    pub plain_password: bool,
    pub insecure: bool,
    /// Lowercase hex, no separators.
    pub pin_sha256: Option<String>,
    pub ca_file: Option<PathBuf>,
    /// Proxy URL (checked with [`ProxyUrl`]; never carries a password).
    pub proxy: Option<String>,
    /// The proxy password's file on the node, read by the sidecar.
    pub proxy_password_file: Option<PathBuf>,
    pub max_connections: u8,
    pub udp_acceleration: UdpAcceleration,
    pub compress: bool,
    pub half_connection: bool,
    pub mtu: Option<u16>,
    pub accept_default_gateway: bool,
    pub accept_static_routes: bool,
    pub policy_route_table: Option<u32>,
    pub connmark: bool,
    /// `onChange`: the sidecar's lease hook, program and arguments.
    pub on_change: Vec<String>,
    /// `ipv6`: configure IPv6 from the VPN's routers (default true); false turns IPv6 off on
    /// the interface.
    pub ipv6: bool,
    pub timeout: Duration,
    pub sidecar_socket: PathBuf,
    /// The sidecar's `--state-dir` (tombstones for a DEL while it is down).
    pub state_dir: PathBuf,
    /// `runtimeConfig.mac` (capability `mac`), normalized.
    pub runtime_mac: Option<Mac>,
    /// `args.cni` per-pod overrides (Multus `cni-args`).
    pub pod_args: PodOverrides,
    pub prev_result: Option<Value>,
    /// Union of both GC keys; `None` when neither is present.
    pub valid_attachments: Option<Vec<ValidAttachment>>,
    /// Keys this plugin does not know, untouched.
    pub unknown: Map<String, Value>,
}

/// Parses stdin as a JSON object: anything else is a decode failure (6).
pub fn parse_stdin(stdin: &[u8]) -> Result<Map<String, Value>, CniError> {
    match serde_json::from_slice::<Value>(stdin) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(CniError::decode(
            "network config on stdin is not a JSON object",
            format!("got {}", json_kind(&other)),
        )),
        Err(e) => Err(CniError::decode(
            "cannot decode the network config on stdin as JSON",
            e.to_string(),
        )),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn password_refused(key: &str) -> CniError {
    CniError::invalid_config(
        format!("network config key \"{key}\" is refused: inline passwords are not accepted"),
        "write the password to a file on the node (mode 0600) and set \"passwordFile\" to its path",
    )
}

impl NetConf {
    pub fn from_map(map: Map<String, Value>) -> Result<NetConf, CniError> {
        let mut f = Fields::new(map, "");
        let cni_version = match f.take("cniVersion") {
            Some(Value::String(s)) => Version::parse(&s)?,
            Some(other) => {
                return Err(CniError::incompatible_version(
                    format!("cniVersion {other} is not a version string"),
                    "",
                ))
            }
            None => {
                return Err(CniError::incompatible_version(
                    "network config has no \"cniVersion\"",
                    "",
                ))
            }
        };
        if f.contains("password") {
            return Err(password_refused("password"));
        }
        let cni_versions = match f.take("cniVersions") {
            None => Vec::new(),
            Some(v) => match v
                .as_array()
                .map(|a| a.iter().map(|x| x.as_str().map(str::to_owned)).collect())
            {
                Some(Some(list)) => list,
                _ => return Err(f.error("cniVersions", &v, "a list of version strings")),
            },
        };
        let name = f
            .checked_string("name", fields::check_network_name)?
            .ok_or_else(|| {
                CniError::invalid_config("network config key \"name\" is missing", "")
            })?;
        let plugin_type = f.string("type")?;
        let server = f.checked_string("server", fields::check_server)?;
        let port = f
            .uint("port", 1..=65535)?
            .map_or(DEFAULT_PORT, |p| p as u16);
        let hub = f
            .checked_string("hub", fields::check_softether_name)?
            .unwrap_or_else(|| DEFAULT_HUB.to_owned());
        let user = f.checked_string("user", fields::check_softether_name)?;
        let password_file = f.path("passwordFile")?;
        let plain_password = f.bool("plainPassword")?.unwrap_or(false);
        let insecure = f.bool("insecure")?.unwrap_or(false);
        let pin_sha256 = match f.string("pinSha256")? {
            None => None,
            Some(s) => Some(
                fields::normalize_pin(&s)
                    .map_err(|why| f.error("pinSha256", &Value::String(s), &why))?,
            ),
        };
        let ca_file = f.path("caFile")?;
        let (proxy, proxy_password_file) = proxy_settings(&mut f)?;
        let max_connections = f.uint("maxConnections", 1..=32)?.map_or(1, |n| n as u8);
        let udp_acceleration = match f.string("udpAcceleration")? {
            None => UdpAcceleration::Auto,
            Some(s) => UdpAcceleration::parse(&s).ok_or_else(|| {
                f.error("udpAcceleration", &Value::String(s), "\"auto\" or \"off\"")
            })?,
        };
        let compress = f.bool("compress")?.unwrap_or(false);
        let half_connection = f.bool("halfConnection")?.unwrap_or(false);
        if half_connection && max_connections < 2 {
            return Err(CniError::invalid_config(
                "network config key \"halfConnection\": true requires \"maxConnections\" of at least 2",
                "each TCP connection carries one direction under half-connection; set \"maxConnections\" to 2 or more or remove \"halfConnection\"",
            ));
        }
        let mtu = f.uint("mtu", 576..=9000)?.map(|n| n as u16);
        let accept_default_gateway = f.bool("acceptDefaultGateway")?.unwrap_or(false);
        let accept_static_routes = f.bool("acceptStaticRoutes")?.unwrap_or(false);
        let policy_route_table = match f.take("policyRouteTable") {
            None => None,
            Some(v) => match v.as_u64() {
                Some(n @ 1..=0xFFFF_FFFF) if !(253..=255).contains(&n) => Some(n as u32),
                _ => {
                    return Err(f.error(
                        "policyRouteTable",
                        &v,
                        "a routing table id from 1 to 4294967295, except 253 (default), 254 (main) and 255 (local)",
                    ))
                }
            },
        };
        let connmark = f.bool("connmark")?.unwrap_or(false);
        if connmark && policy_route_table.is_none() {
            return Err(CniError::invalid_config(
                "network config key \"connmark\": true requires \"policyRouteTable\"",
                "CONNMARK steers DNAT replies into the policy routing table; set \"policyRouteTable\" (e.g. 100) or remove \"connmark\"",
            ));
        }
        let on_change = match f.take("onChange") {
            None => Vec::new(),
            Some(v) => match serde_json::from_value::<Vec<String>>(v.clone()) {
                Ok(argv)
                    if argv
                        .first()
                        .is_some_and(|p| fields::check_absolute_path(p).is_ok()) =>
                {
                    argv
                }
                _ => {
                    return Err(f.error(
                        "onChange",
                        &v,
                        "a list of strings: the hook's absolute path, then its arguments",
                    ))
                }
            },
        };
        let ipv6 = f.bool("ipv6")?.unwrap_or(true);
        let timeout = f
            .uint("timeout", 1..=MAX_TIMEOUT_SECS)?
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
        let sidecar_socket = f
            .path("sidecarSocket")?
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SIDECAR_SOCKET));
        let state_dir = f
            .path("stateDir")?
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        let runtime_mac = match f.object("runtimeConfig")? {
            None => None,
            Some(rc) => {
                let mut rc = Fields::new(rc, "runtimeConfig.");
                match rc.string("mac")? {
                    None => None,
                    Some(s) => Some(
                        s.parse::<Mac>()
                            .map_err(|_| rc.error("mac", &Value::String(s), MAC_EXPECTED))?,
                    ),
                }
            }
        };
        let pod_args = match f.object("args")? {
            None => PodOverrides::default(),
            Some(args) => match Fields::new(args, "args.").object("cni")? {
                None => PodOverrides::default(),
                Some(cni) => PodOverrides::from_args_cni(cni)?,
            },
        };
        let prev_result = f.take("prevResult");
        let mut valid_attachments: Option<Vec<ValidAttachment>> = None;
        let mut seen = std::collections::HashSet::new();
        for key in GC_KEYS {
            if let Some(v) = f.take(key) {
                let list: Vec<ValidAttachment> =
                    serde_json::from_value(v.clone()).map_err(|_| {
                        f.error(key, &v, "a list of {\"containerID\", \"ifname\"} objects")
                    })?;
                // Both spellings usually carry the same list: keep the first of each, in
                // order, in linear time (a node may list 100,000 attachments).
                let all = valid_attachments.get_or_insert_with(Vec::new);
                for a in list {
                    if seen.insert((a.container_id.clone(), a.ifname.clone())) {
                        all.push(a);
                    }
                }
            }
        }
        Ok(NetConf {
            cni_version,
            cni_versions,
            name,
            plugin_type,
            server,
            port,
            hub,
            user,
            password_file,
            plain_password,
            insecure,
            pin_sha256,
            ca_file,
            proxy,
            proxy_password_file,
            max_connections,
            udp_acceleration,
            compress,
            half_connection,
            mtu,
            accept_default_gateway,
            accept_static_routes,
            policy_route_table,
            connmark,
            on_change,
            ipv6,
            timeout,
            sidecar_socket,
            state_dir,
            runtime_mac,
            pod_args,
            prev_result,
            valid_attachments,
            unknown: f.into_rest(),
        })
    }

    /// Parses stdin bytes end to end (tests and simple callers).
    pub fn from_stdin(stdin: &[u8]) -> Result<NetConf, CniError> {
        NetConf::from_map(parse_stdin(stdin)?)
    }
}

/// `proxy` and `proxyPasswordFile`. A bad URL is named without echoing it: it may hold a
/// password someone put there by mistake.
fn proxy_settings(f: &mut Fields) -> Result<(Option<String>, Option<PathBuf>), CniError> {
    let proxy = match f.take("proxy") {
        None => None,
        Some(Value::String(url)) => {
            let parsed: ProxyUrl = url.parse().map_err(|why: String| {
                CniError::invalid_config(
                    format!("network config key \"proxy\": {why}"),
                    "e.g. \"http://proxy.example:3128\", \"socks5://user@proxy.example:1080\" with \"proxyPasswordFile\"",
                )
            })?;
            Some((url, parsed))
        }
        Some(other) => return Err(f.error("proxy", &other, "a proxy URL string")),
    };
    let password_file = f.path("proxyPasswordFile")?;
    match (&proxy, &password_file) {
        (None, Some(_)) => Err(CniError::invalid_config(
            "network config key \"proxyPasswordFile\" requires \"proxy\"",
            "",
        )),
        (Some((_, url)), Some(_)) => url
            .check_password_allowed()
            .map(|()| (proxy.map(|(s, _)| s), password_file))
            .map_err(|why| {
                CniError::invalid_config(
                    format!("network config key \"proxyPasswordFile\": {why}"),
                    "",
                )
            }),
        _ => Ok((proxy.map(|(s, _)| s), password_file)),
    }
}

#[cfg(test)]
mod tests;
