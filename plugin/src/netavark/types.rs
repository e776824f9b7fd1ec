//! The JSON of netavark's plugin API 1.0.0 (containers/netavark `plugin-API.md`,
//! `src/network/types.rs`), in our own types: only what this plugin reads or writes is typed,
//! everything else a network carries is kept as it came, so `create` hands Podman back every
//! field it sent (`created`, `labels`, … which netavark's own Rust types do not know).
//!
//! Field names are netavark's snake_case. Where netavark has `Option<T>` the field may be absent
//! or `null`; the fields it requires (`name`, `id`, `driver`, `container_id`, `container_name`,
//! `network`, `network_options`, `interface_name`) are required here too.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::spec::result::IpPrefix;

/// The plugin API version this plugin implements (`info`'s `api_version`).
pub const API_VERSION: &str = "1.0.0";

/// A network as Podman stores it (`<network_config_dir>/<name>.json`) and passes it to
/// `create` and, inside [`PluginExec::network`], to `setup`/`teardown`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    pub id: String,
    pub driver: String,
    /// The driver options (`podman network create -o key=value`): always strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnets: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam_options: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub dns_enabled: bool,
    #[serde(default)]
    pub ipv6_enabled: bool,
    /// Everything else (`internal`, `network_interface`, `created`, `labels`,
    /// `network_dns_servers`, …), passed through untouched.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// What `setup` and `teardown` read on stdin (netavark's `NetworkPluginExec`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginExec {
    pub container_id: String,
    pub container_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_mappings: Option<Vec<Value>>,
    pub network: Network,
    pub network_options: PerNetworkOptions,
}

/// The container's options for this one network (`--network name:interface_name=…,mac=…`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerNetworkOptions {
    pub interface_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_ips: Option<Vec<IpAddr>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aliases: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<BTreeMap<String, String>>,
}

/// `setup`'s answer: what the container got on this network (shown by `podman inspect`; Podman
/// writes `dns_server_ips`/`dns_search_domains` into the container's resolv.conf).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusBlock {
    pub dns_search_domains: Option<Vec<String>>,
    pub dns_server_ips: Option<Vec<IpAddr>>,
    /// Keyed by interface name.
    pub interfaces: Option<BTreeMap<String, NetInterface>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetInterface {
    /// Lowercase `aa:bb:cc:dd:ee:ff`.
    pub mac_address: String,
    pub subnets: Option<Vec<NetAddress>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetAddress {
    pub gateway: Option<IpAddr>,
    /// The interface's own address with the subnet's prefix length (not the network address).
    pub ipnet: IpPrefix,
}

/// `info`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Info {
    pub version: &'static str,
    pub api_version: &'static str,
}

/// Every failure: `{"error": "…"}` on stdout, exit status 1; netavark shows the message to the
/// Podman user.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorObject {
    pub error: String,
}
