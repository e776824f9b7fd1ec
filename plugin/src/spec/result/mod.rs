//! A version-neutral CNI result, rendered for the caller's `cniVersion`.
//!
//! The struct holds the 1.1.0 superset; [`CniResult::render`] strips what
//! older versions lack and adds `ips[].version` for 0.3.x/0.4.0. Parsing a
//! `prevResult` accepts every supported version (unknown keys such as the
//! 0.x `version` are ignored and recomputed on output).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
/// Shared with the control protocol: the sidecar reports addresses and DNS in
/// exactly the CNI result's text forms, so they pass through unchanged.
pub use softether_control::{Dns, IpPrefix};

use super::error::CniError;
use super::version::Version;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// 1.1.0 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The netns path for container interfaces; absent for host interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// 1.1.0 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_path: Option<String>,
    /// 1.1.0 only.
    #[serde(default, rename = "pciID", skip_serializing_if = "Option::is_none")]
    pub pci_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    pub address: IpPrefix,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpPrefix,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// `mtu`, `advmss`, `priority`, `table`, `scope`: 1.1.0 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

const INTERFACE_1_1_KEYS: [&str; 3] = ["mtu", "socketPath", "pciID"];
const ROUTE_1_1_KEYS: [&str; 5] = ["mtu", "advmss", "priority", "table", "scope"];

impl CniResult {
    /// Parses a `prevResult` of any supported version. Its own `cniVersion`,
    /// when present, must be one we support (code 1); shape errors are code 7.
    pub fn from_prev_result(value: &Value) -> Result<CniResult, CniError> {
        if let Some(v) = value.get("cniVersion") {
            let s = v.as_str().ok_or_else(|| {
                CniError::invalid_config(format!("prevResult.cniVersion {v} is not a string"), "")
            })?;
            Version::parse(s)?;
        }
        let result = CniResult::deserialize(value).map_err(|e| {
            CniError::invalid_config(format!("prevResult is not a CNI result: {e}"), "")
        })?;
        for (i, ip) in result.ips.iter().enumerate() {
            if let Some(idx) = ip.interface {
                if idx >= result.interfaces.len() {
                    return Err(CniError::invalid_config(
                        format!(
                            "prevResult.ips[{i}].interface {idx} points past the {} interfaces",
                            result.interfaces.len()
                        ),
                        "",
                    ));
                }
            }
        }
        Ok(result)
    }

    /// Chaining: keeps everything from `self` (the previous plugins' result)
    /// and appends `ours`, shifting our `ips[].interface` indexes past the
    /// interfaces already listed.
    pub fn chain(mut self, ours: CniResult) -> CniResult {
        let offset = self.interfaces.len();
        self.interfaces.extend(ours.interfaces);
        self.ips.extend(ours.ips.into_iter().map(|mut ip| {
            ip.interface = ip.interface.map(|i| i + offset);
            ip
        }));
        self.routes.extend(ours.routes);
        append_unique(&mut self.dns.nameservers, ours.dns.nameservers);
        if self.dns.domain.is_none() {
            self.dns.domain = ours.dns.domain;
        }
        append_unique(&mut self.dns.search, ours.dns.search);
        append_unique(&mut self.dns.options, ours.dns.options);
        self
    }

    /// The result object for `version`, including `cniVersion`.
    pub fn render(&self, version: Version) -> Value {
        let mut out = serde_json::Map::new();
        out.insert("cniVersion".into(), Value::String(version.as_str().into()));
        let Ok(Value::Object(body)) = serde_json::to_value(self) else {
            unreachable!("CniResult serializes to an object");
        };
        out.extend(body);
        if !version.has_1_1_fields() {
            strip_keys(out.get_mut("interfaces"), &INTERFACE_1_1_KEYS);
            strip_keys(out.get_mut("routes"), &ROUTE_1_1_KEYS);
        }
        if version.has_ip_version_field() {
            if let Some(Value::Array(ips)) = out.get_mut("ips") {
                for (ip, parsed) in ips.iter_mut().zip(&self.ips) {
                    let family = if parsed.address.addr.is_ipv4() {
                        "4"
                    } else {
                        "6"
                    };
                    ip["version"] = Value::String(family.into());
                }
            }
        }
        Value::Object(out)
    }
}

fn strip_keys(list: Option<&mut Value>, keys: &[&str]) {
    if let Some(Value::Array(items)) = list {
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            for k in keys {
                item.remove(*k);
            }
        }
    }
}

fn append_unique(into: &mut Vec<String>, more: Vec<String>) {
    for m in more {
        if !into.contains(&m) {
            into.push(m);
        }
    }
}

#[cfg(test)]
mod tests;
