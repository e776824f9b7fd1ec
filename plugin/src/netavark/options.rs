//! A netavark network's `options` (all strings: `podman network create -o key=value`) turned into
//! the CNI network config the rest of the plugin speaks, so `setup` and `teardown` run exactly
//! CNI ADD's and DEL's code on the same [`NetConf`] and the same validation applies.
//!
//! The keys are the CNI config's keys ([`STRING_KEYS`], [`BOOL_KEYS`], [`INTEGER_KEYS`]);
//! anything else is refused, inline passwords with the CNI config's own message. Booleans are
//! `true`/`false`, integers decimal; ranges and formats are NetConf's.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::netconf::NetConf;
use crate::spec::CniError;

/// Keys whose value is taken as the string it is.
pub const STRING_KEYS: [&str; 10] = [
    "server",
    "hub",
    "user",
    "passwordFile",
    "pinSha256",
    "caFile",
    "proxy",
    "proxyPasswordFile",
    "sidecarSocket",
    "stateDir",
];
/// Keys whose value must be `true` or `false`.
pub const BOOL_KEYS: [&str; 6] = [
    "plainPassword",
    "insecure",
    "acceptDefaultGateway",
    "acceptStaticRoutes",
    "connmark",
    "ipv6",
];
/// Keys whose value must be a decimal integer.
pub const INTEGER_KEYS: [&str; 5] = [
    "port",
    "maxConnections",
    "mtu",
    "policyRouteTable",
    "timeout",
];
/// Per-container overrides (`network_options.options`), as CNI's `args.cni`.
pub const PER_CONTAINER_KEYS: [&str; 3] = ["user", "passwordFile", "hub"];
/// The CNI version the translated config claims; only its result shape would differ, and the
/// StatusBlock is built from the version-neutral result.
const CNI_VERSION: &str = "1.0.0";

/// Why an option was refused; the message names the option.
fn refused(key: &str, why: impl std::fmt::Display) -> CniError {
    CniError::invalid_config(format!("softether network option \"{key}\": {why}"), "")
}

fn is_password_key(key: &str) -> bool {
    key.eq_ignore_ascii_case("password")
}

/// One option's CNI config value; `lenient` keeps a value that does not parse as the string it
/// is (teardown must still find the socket and state dir of a network that no longer validates).
fn option_value(key: &str, raw: &str, lenient: bool) -> Result<Value, CniError> {
    if STRING_KEYS.contains(&key) {
        return Ok(Value::String(raw.to_owned()));
    }
    let parsed = if BOOL_KEYS.contains(&key) {
        match raw {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        }
    } else if INTEGER_KEYS.contains(&key) {
        raw.parse::<u64>().ok().map(Value::from)
    } else if is_password_key(key) {
        return Err(refused(
            key,
            "inline passwords are not accepted; write the password to a file on the host \
             (mode 0600) and set -o passwordFile=PATH",
        ));
    } else {
        return Err(refused(
            key,
            format!(
                "unknown option; known: {}",
                [&STRING_KEYS[..], &BOOL_KEYS[..], &INTEGER_KEYS[..]]
                    .concat()
                    .join(", ")
            ),
        ));
    };
    match parsed {
        Some(v) => Ok(v),
        None if lenient => Ok(Value::String(raw.to_owned())),
        None if BOOL_KEYS.contains(&key) => Err(refused(
            key,
            format!("invalid value {raw:?}: expected true or false"),
        )),
        None => Err(refused(
            key,
            format!("invalid value {raw:?}: expected a decimal integer"),
        )),
    }
}

/// The CNI config for network `name` with `options`, the per-container overrides and the MAC
/// (`runtimeConfig.mac`, so DEL's ownership check knows it too). `lenient` is teardown's mode:
/// unknown keys and unparsable values do not fail (DEL then salvages what it can).
pub fn cni_config(
    name: &str,
    options: Option<&BTreeMap<String, String>>,
    per_container: Option<&BTreeMap<String, String>>,
    mac: Option<&str>,
    lenient: bool,
) -> Result<Map<String, Value>, CniError> {
    let mut conf = Map::new();
    conf.insert("cniVersion".into(), json!(CNI_VERSION));
    conf.insert("name".into(), json!(name));
    conf.insert("type".into(), json!("softether"));
    for (key, raw) in options.into_iter().flatten() {
        match option_value(key, raw, lenient) {
            Ok(v) => {
                conf.insert(key.clone(), v);
            }
            Err(e) if !lenient => return Err(e),
            Err(_) => {}
        }
    }
    let mut args = Map::new();
    for (key, raw) in per_container.into_iter().flatten() {
        if PER_CONTAINER_KEYS.contains(&key.as_str()) {
            args.insert(key.clone(), json!(raw));
        } else if !lenient {
            return Err(CniError::invalid_config(
                format!("softether per-container option \"{key}\" is not supported"),
                format!("supported: {}", PER_CONTAINER_KEYS.join(", ")),
            ));
        }
    }
    if !args.is_empty() {
        conf.insert("args".into(), json!({ "cni": args }));
    }
    if let Some(mac) = mac {
        conf.insert("runtimeConfig".into(), json!({ "mac": mac }));
    }
    Ok(conf)
}

/// The validated config of a network's options; errors name the option. `server`, `user` and
/// `passwordFile` must be set (per-container `user`/`passwordFile` may override, not replace).
pub fn validated(
    name: &str,
    options: Option<&BTreeMap<String, String>>,
    per_container: Option<&BTreeMap<String, String>>,
    mac: Option<&str>,
) -> Result<NetConf, CniError> {
    let map = cni_config(name, options, per_container, mac, false)?;
    let conf = NetConf::from_map(map).map_err(|e| {
        // NetConf speaks of "network config key"; here they are options.
        CniError::new(
            e.code(),
            e.msg()
                .replace("network config key", "softether network option"),
            e.details(),
        )
    })?;
    for (key, set) in [
        ("server", conf.server.is_some()),
        ("user", conf.user.is_some()),
        ("passwordFile", conf.password_file.is_some()),
    ] {
        if !set {
            return Err(CniError::invalid_config(
                format!("softether network option \"{key}\" is missing"),
                format!("podman network create -d softether -o {key}=… NAME"),
            ));
        }
    }
    Ok(conf)
}
