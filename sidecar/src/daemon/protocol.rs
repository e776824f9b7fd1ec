//! The control-socket wire format shared with the CNI plugin (protocol version 1).
//!
//! One connection per call. The client writes one JSON line
//! `{"protocol":1,"op":"attach"|"detach"|"check"|"status"|"gc"|"list","request":{…}}` (for
//! `attach`, the TAP fd travels with it as SCM_RIGHTS) and reads one line back: `{"ok":…}` or
//! `{"error":{"code":N,"msg":"…","details":"…"}}`, `N` being a CNI error code. The plugin side
//! of these types is `plugin/src/sidecar_client.rs`; `list` is only used by
//! `softether-sidecar status`.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const PROTOCOL_VERSION: u32 = 1;

/// CNI error codes the sidecar answers with (the plugin forwards them as is).
pub mod code {
    pub const INVALID_ENV: u32 = 4;
    pub const DECODE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const SOFTETHER_LOGIN: u32 = 100;
    pub const DHCP: u32 = 101;
    pub const TAP_NETNS: u32 = 102;
    pub const PROTOCOL: u32 = 103;
}

/// The request line, before the op-specific payload is decoded.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Envelope {
    pub protocol: u32,
    pub op: String,
    #[serde(default)]
    pub request: Value,
}

/// An error answer; `code` is a CNI error code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{msg} (code {code}){}", if details.is_empty() { String::new() } else { format!(": {details}") })]
pub struct WireError {
    pub code: u32,
    pub msg: String,
    #[serde(default)]
    pub details: String,
}

impl WireError {
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> WireError {
        WireError {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }
}

/// The reply line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reply {
    Ok(Value),
    Error(WireError),
}

/// Which pod interface a request is about, and in which CNI network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRef {
    #[serde(default)]
    pub network: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// Who logs in where. The password is never on the wire: the sidecar reads `passwordFile`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginSettings {
    pub server: String,
    pub port: u16,
    pub hub: String,
    pub user: String,
    pub password_file: PathBuf,
    #[serde(default)]
    pub plain_password: bool,
    #[serde(default)]
    pub insecure: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "one")]
    pub max_connections: u8,
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
    pub mac: Option<String>,
    #[serde(default)]
    pub accept_default_gateway: bool,
    #[serde(default)]
    pub accept_static_routes: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_route_table: Option<u32>,
    #[serde(default)]
    pub connmark: bool,
}

/// `attach`: the plugin created the persistent TAP `ifname` in `netns` and passes its fd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachRequest {
    #[serde(flatten)]
    pub attachment: AttachmentRef,
    pub netns: String,
    pub login: LoginSettings,
    #[serde(default)]
    pub link: LinkSettings,
    pub timeout_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
}

/// What `attach` configured; the plugin turns it into the CNI result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachResult {
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    pub ips: Vec<AttachedIp>,
    pub routes: Vec<AttachedRoute>,
    pub dns: Dns,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedIp {
    pub address: Ipv4Net,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedRoute {
    pub dst: Ipv4Net,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

/// `detach`: end the session, release the lease, remove the TAP; succeeds when nothing is left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetachRequest {
    #[serde(flatten)]
    pub attachment: AttachmentRef,
    #[serde(default)]
    pub netns: Option<String>,
}

/// `check`: is the session up and the interface as ADD left it?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRequest {
    #[serde(flatten)]
    pub attachment: AttachmentRef,
    pub netns: String,
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub ips: Vec<String>,
}

/// One `{containerID, ifname}` pair of a GC request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ValidAttachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// `gc`: drop every attachment of `network` not in `valid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcRequest {
    pub network: String,
    pub valid: Vec<ValidAttachment>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    pub removed: Vec<ValidAttachment>,
    pub errors: Vec<String>,
}

/// `status` (the plugin's STATUS): ready, or up with some sessions down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum SidecarStatus {
    Ready,
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
    pub address: Option<Ipv4Net>,
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
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListReply {
    pub attachments: Vec<AttachmentStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let env: Envelope = serde_json::from_value(line).unwrap();
        assert_eq!(env.op, "attach");
        let req: AttachRequest = serde_json::from_value(env.request).unwrap();
        assert_eq!(req.attachment.container_id, "c1");
        assert_eq!(req.login.password_file, PathBuf::from("/etc/pw"));
        assert_eq!(req.link.mac.as_deref(), Some("5E:00:00:00:00:01"));
        assert_eq!(req.pod_name.as_deref(), Some("web"));
    }

    #[test]
    fn replies_have_the_plugin_shape() {
        let ok = serde_json::to_value(Reply::Ok(json!({"state": "ready"}))).unwrap();
        assert_eq!(ok, json!({"ok": {"state": "ready"}}));
        let err = Reply::Error(WireError::new(code::DHCP, "no lease", "after 30s"));
        assert_eq!(
            serde_json::to_value(err).unwrap(),
            json!({"error": {"code": 101, "msg": "no lease", "details": "after 30s"}})
        );
        let status = serde_json::to_value(SidecarStatus::Degraded { reason: "x".into() }).unwrap();
        assert_eq!(status, json!({"state": "degraded", "reason": "x"}));
    }
}
