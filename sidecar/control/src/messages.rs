//! The payloads of each op: what the plugin sends and what the sidecar answers.
//!
//! Optional fields are left out when empty and default when missing, so either side can add
//! one without breaking the other within a protocol version.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{IpPrefix, Mac};

/// Which pod interface a request is about, and in which CNI network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRef {
    #[serde(default)]
    pub network: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// Who logs in where. The password is never on the wire: the sidecar reads `passwordFile`
/// (and keeps only the path in its records).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginSettings {
    pub server: String,
    pub port: u16,
    pub hub: String,
    pub user: String,
    /// Read by the sidecar, never by the plugin.
    pub password_file: PathBuf,
    #[serde(default)]
    pub plain_password: bool,
    #[serde(default)]
    pub insecure: bool,
    /// Lowercase hex SHA-256 of the server certificate's public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "one")]
    pub max_connections: u8,
    /// Reach the server through this proxy ([`crate::ProxyUrl`], no password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// Read by the sidecar, never by the plugin: the proxy password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_password_file: Option<PathBuf>,
}

fn one() -> u8 {
    1
}

/// Link-level and routing choices for the TAP in the pod netns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<Mac>,
    #[serde(default)]
    pub accept_default_gateway: bool,
    #[serde(default)]
    pub accept_static_routes: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_route_table: Option<u32>,
    #[serde(default)]
    pub connmark: bool,
    /// The network's `onChange` hook: program (absolute path) and arguments, run by the
    /// sidecar (no shell) when the lease is acquired, changes, is lost or released.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_change: Vec<String>,
    /// The network's `ipv6` key: IPv6 from the VPN's routers (RA, SLAAC, DHCPv6) on the pod
    /// interface and in the result. Absent means on (see [`LinkSettings::ipv6_enabled`]);
    /// `false` turns IPv6 off on the interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<bool>,
}

impl LinkSettings {
    /// Whether IPv6 is managed on the pod interface: unless the network says `ipv6: false`.
    /// Records and requests from before the key existed mean on.
    pub fn ipv6_enabled(&self) -> bool {
        self.ipv6 != Some(false)
    }
}

/// `attach` (ADD): the plugin created the persistent TAP `ifname` in `netns` and passes its
/// fd with this request (SCM_RIGHTS); the sidecar logs in, runs DHCP and configures the netns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachRequest {
    #[serde(flatten)]
    pub attachment: AttachmentRef,
    pub netns: String,
    pub login: LoginSettings,
    #[serde(default)]
    pub link: LinkSettings,
    /// What is left of the plugin's `timeout`; the sidecar gives up (and cleans up) before
    /// it runs out.
    pub timeout_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
}

/// What `attach` configured; the plugin turns it into the CNI result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachResult {
    /// The TAP's MAC; Podman refuses a sandbox interface without one.
    pub mac: Mac,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub ips: Vec<AttachedIp>,
    #[serde(default)]
    pub routes: Vec<AttachedRoute>,
    #[serde(default)]
    pub dns: Dns,
}

/// An address on the pod interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedIp {
    pub address: IpPrefix,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

/// A route the sidecar installed in the pod netns (`table` absent: the main table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedRoute {
    pub dst: IpPrefix,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
}

/// DNS settings, in the shape of the CNI result's `dns` object so the plugin passes them on
/// unchanged (the plugin's CNI result uses this very type).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        *self == Dns::default()
    }
}

/// `detach` (DEL): end the session, release the lease, remove the TAP if the netns is still
/// there. Succeeds when nothing is left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetachRequest {
    #[serde(flatten)]
    pub attachment: AttachmentRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
}

/// `check` (CHECK): is the session up and is the pod interface as ADD left it?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRequest {
    #[serde(flatten)]
    pub attachment: AttachmentRef,
    pub netns: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<Mac>,
    #[serde(default)]
    pub ips: Vec<IpPrefix>,
}

/// One `{containerID, ifname}` pair: a still-valid attachment in a GC request, or one GC
/// removed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ValidAttachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// `gc` (GC): drop every attachment of `network` not listed in `valid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcRequest {
    pub network: String,
    pub valid: Vec<ValidAttachment>,
}

/// What GC did; `errors` are attachments it could not clean up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    #[serde(default)]
    pub removed: Vec<ValidAttachment>,
    #[serde(default)]
    pub errors: Vec<String>,
}

/// `status` (STATUS): ready, or up with some sessions down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum SidecarStatus {
    /// Ready to serve ADD.
    Ready,
    /// Up, but some sessions are down (CNI code 51).
    Degraded { reason: String },
}

/// One attachment in the `list` answer (`softether-sidecar status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentStatus {
    pub network: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub mac: String,
    pub address: Option<IpPrefix>,
    pub server: String,
    pub hub: String,
    pub user: String,
    /// `connecting`, `dhcp`, `up`, `reconnecting`, `stopped`, `failed`.
    pub state: String,
    /// Unix seconds when `state` was entered.
    pub since: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub reconnects: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Seconds until the next reconnect attempt, while `reconnecting`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry_secs: Option<u64>,
    /// Unix seconds when the held lease expires (absent without a finite lease).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_expires: Option<u64>,
    /// Bytes per second over the last second, tunnel → pod and pod → tunnel.
    #[serde(default)]
    pub rate_in: u64,
    #[serde(default)]
    pub rate_out: u64,
    /// The IPv6 addresses installed from the VPN's routers (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses6: Vec<IpPrefix>,
}

/// The `list` answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListReply {
    pub attachments: Vec<AttachmentStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode_request, Request};
    use serde_json::json;

    #[test]
    fn attach_request_from_the_plugin_decodes() {
        let line = json!({"protocol": 1, "op": "attach", "request": {
            "network": "vpnnet", "containerID": "c1", "ifname": "vpn0", "netns": "/run/netns/p",
            "login": {"server": "198.18.0.1", "port": 443, "hub": "H", "user": "u",
                      "passwordFile": "/etc/pw", "plainPassword": false, "insecure": true,
                      "maxConnections": 1},
            "link": {"mac": "5E:00:00:00:00:01", "acceptDefaultGateway": false,
                     "acceptStaticRoutes": false, "connmark": false},
            "timeoutMs": 30000, "podName": "web"}});
        let Ok(Request::Attach(req)) = decode_request(line.to_string().as_bytes()) else {
            panic!("not an attach request")
        };
        assert_eq!(req.attachment.container_id, "c1");
        assert_eq!(req.login.password_file, PathBuf::from("/etc/pw"));
        assert_eq!(req.link.mac, Some(Mac([0x5e, 0, 0, 0, 0, 1])));
        assert_eq!(req.pod_name.as_deref(), Some("web"));
        assert_eq!(serde_json::to_value(&req).unwrap(), line["request"]);
    }

    #[test]
    fn attach_result_keeps_its_shape() {
        let wire = json!({"mac": "5E:00:00:00:00:01", "mtu": 1400,
            "ips": [{"address": "10.8.0.23/24", "gateway": "10.8.0.1"}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.8.0.1", "table": 100}],
            "dns": {"nameservers": ["10.8.0.1"]}});
        let result: AttachResult = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(result.ips[0].address.len, 24);
        assert_eq!(result.routes[0].table, Some(100));
        assert_eq!(serde_json::to_value(&result).unwrap(), wire);
        let minimal: AttachResult =
            serde_json::from_value(json!({"mac": "02:00:00:00:00:01"})).unwrap();
        assert!(minimal.ips.is_empty() && minimal.dns.is_empty());
    }

    #[test]
    fn optional_request_fields_stay_off_the_wire() {
        let attachment = AttachmentRef {
            network: "n".into(),
            container_id: "c".into(),
            ifname: "vpn0".into(),
        };
        let detach = DetachRequest {
            attachment: attachment.clone(),
            netns: None,
        };
        assert_eq!(
            serde_json::to_value(detach).unwrap(),
            json!({"network": "n", "containerID": "c", "ifname": "vpn0"})
        );
        let check = CheckRequest {
            attachment,
            netns: "/run/netns/p".into(),
            mac: None,
            ips: vec!["10.8.0.23/24".parse().unwrap()],
        };
        assert_eq!(
            serde_json::to_value(check).unwrap(),
            json!({"network": "n", "containerID": "c", "ifname": "vpn0",
                   "netns": "/run/netns/p", "ips": ["10.8.0.23/24"]})
        );
        let status = serde_json::to_value(SidecarStatus::Degraded { reason: "x".into() }).unwrap();
        assert_eq!(status, json!({"state": "degraded", "reason": "x"}));
    }
}
