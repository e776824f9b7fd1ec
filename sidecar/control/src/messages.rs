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
    /// The CNI network name (`name` in the conflist); empty when the plugin did not send one.
    #[serde(default)]
    pub network: String,
    /// `CNI_CONTAINERID`, validated by [`crate::state_dir::validate_container_id`].
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// `CNI_IFNAME`: the TAP's name inside the pod netns.
    pub ifname: String,
}

/// Who logs in where. The password is never on the wire: the sidecar reads `passwordFile`
/// (and keeps only the path in its records).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginSettings {
    /// SoftEther server host name or address.
    pub server: String,
    /// SoftEther server TCP port (usually 443 or 5555).
    pub port: u16,
    /// Virtual hub to log in to.
    pub hub: String,
    /// User name on that hub.
    pub user: String,
    /// Read by the sidecar, never by the plugin.
    pub password_file: PathBuf,
    /// Send the password itself (auth type 2, for RADIUS/NT domain users) instead of the SHA-0
    /// challenge response.
    #[serde(default)]
    pub plain_password: bool,
    /// Accept any server certificate (no CA or pin check).
    #[serde(default)]
    pub insecure: bool,
    /// Lowercase hex SHA-256 of the server certificate's public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_sha256: Option<String>,
    /// PEM file of CAs to verify the server certificate against instead of the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// TCP connections per session, 1..=32 (the plugin checks; 0 is read as 1).
    #[serde(default = "one")]
    pub max_connections: u8,
    /// Reach the server through this proxy ([`crate::ProxyUrl`], no password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// Read by the sidecar, never by the plugin: the proxy password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_password_file: Option<PathBuf>,
    /// Whether to offer SoftEther UDP acceleration (`udpAcceleration`).
    #[serde(default, skip_serializing_if = "UdpAcceleration::is_auto")]
    pub udp_acceleration: UdpAcceleration,
    /// SoftEther data compression (`use_compress`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub compress: bool,
    /// SoftEther half-connection: each TCP connection carries one direction (needs
    /// `max_connections` ≥ 2).
    #[serde(default, skip_serializing_if = "is_false")]
    pub half_connection: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn one() -> u8 {
    1
}

/// `udpAcceleration`: `auto` (the default, like the official client) offers UDP acceleration and
/// uses it while the UDP path works; `off` keeps every frame on TCP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UdpAcceleration {
    /// Offer it; frames go over UDP while that path works, over TCP otherwise.
    #[default]
    Auto,
    /// Never: every frame over TCP.
    Off,
}

impl UdpAcceleration {
    /// Whether this is the default, [`UdpAcceleration::Auto`].
    pub fn is_auto(&self) -> bool {
        *self == UdpAcceleration::Auto
    }

    /// The CNI config spelling (`"auto"` / `"off"`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(UdpAcceleration::Auto),
            "off" => Some(UdpAcceleration::Off),
            _ => None,
        }
    }
}

/// Link-level and routing choices for the TAP in the pod netns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkSettings {
    /// MTU of the pod TAP in bytes, used when the lease carries no MTU option.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    /// MAC the plugin gave the TAP (`runtimeConfig.mac`); `None`: the sidecar reads the TAP's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<Mac>,
    /// Install the DHCP router option as the pod's default route.
    #[serde(default)]
    pub accept_default_gateway: bool,
    /// Install DHCP classless static routes (option 121/249).
    #[serde(default)]
    pub accept_static_routes: bool,
    /// Put the VPN routes into this routing table, with policy rules selecting it, instead of the
    /// main table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_route_table: Option<u32>,
    /// Mark connections that arrive through the TAP (CONNMARK) so their replies leave through it;
    /// needs `policy_route_table`.
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
    /// The pod interface this is about.
    #[serde(flatten)]
    pub attachment: AttachmentRef,
    /// The pod netns path (`CNI_NETNS`).
    pub netns: String,
    /// Where and as whom to log in.
    pub login: LoginSettings,
    /// How to configure the TAP and the routes.
    #[serde(default)]
    pub link: LinkSettings,
    /// What is left of the plugin's `timeout`; the sidecar gives up (and cleans up) before
    /// it runs out.
    pub timeout_ms: u64,
    /// Kubernetes pod namespace (`K8S_POD_NAMESPACE`), for status and hooks only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    /// Kubernetes pod name (`K8S_POD_NAME`), for status and hooks only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
}

/// What `attach` configured; the plugin turns it into the CNI result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachResult {
    /// The TAP's MAC; Podman refuses a sandbox interface without one.
    pub mac: Mac,
    /// The TAP's MTU in bytes, when one was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The leased addresses on the TAP.
    #[serde(default)]
    pub ips: Vec<AttachedIp>,
    /// The routes installed for the lease.
    #[serde(default)]
    pub routes: Vec<AttachedRoute>,
    /// DNS settings from the lease.
    #[serde(default)]
    pub dns: Dns,
}

/// An address on the pod interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedIp {
    /// The address with its prefix length.
    pub address: IpPrefix,
    /// The lease's router, if it named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

/// A route the sidecar installed in the pod netns (`table` absent: the main table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedRoute {
    /// Destination prefix.
    pub dst: IpPrefix,
    /// Next hop; absent for an on-link route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// Routing table id; absent for the main table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// Route metric; absent for the kernel default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
}

/// DNS settings, in the shape of the CNI result's `dns` object so the plugin passes them on
/// unchanged (the plugin's CNI result uses this very type).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Resolver addresses, in preference order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// The local domain name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Search domains, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// resolv.conf `options` entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    /// Whether no DNS setting is present at all.
    pub fn is_empty(&self) -> bool {
        *self == Dns::default()
    }
}

/// `detach` (DEL): end the session, release the lease, remove the TAP if the netns is still
/// there. Succeeds when nothing is left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetachRequest {
    /// The pod interface to detach.
    #[serde(flatten)]
    pub attachment: AttachmentRef,
    /// The pod netns path, if the runtime still passed one (it may be gone already).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
}

/// `check` (CHECK): is the session up and is the pod interface as ADD left it?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRequest {
    /// The pod interface to check.
    #[serde(flatten)]
    pub attachment: AttachmentRef,
    /// The pod netns path (`CNI_NETNS`).
    pub netns: String,
    /// The MAC the previous result reported, if any; the TAP must still have it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<Mac>,
    /// The addresses the previous result reported; each must still be on the TAP.
    #[serde(default)]
    pub ips: Vec<IpPrefix>,
}

/// One `{containerID, ifname}` pair: a still-valid attachment in a GC request, or one GC
/// removed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ValidAttachment {
    /// `CNI_CONTAINERID`.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
}

/// `gc` (GC): drop every attachment of `network` not listed in `valid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcRequest {
    /// The CNI network whose attachments are collected.
    pub network: String,
    /// The attachments the runtime still uses (`cni.dev/valid-attachments`).
    pub valid: Vec<ValidAttachment>,
}

/// What GC did; `errors` are attachments it could not clean up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    /// The attachments GC removed.
    #[serde(default)]
    pub removed: Vec<ValidAttachment>,
    /// One message per attachment that could not be removed.
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
    Degraded {
        /// Which sessions are down and why, for the runtime's log.
        reason: String,
    },
}

/// One attachment in the `list` answer (`softether-sidecar status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentStatus {
    /// The CNI network name.
    pub network: String,
    /// `CNI_CONTAINERID`.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// The pod netns path.
    pub netns: String,
    /// The TAP's name in the pod netns.
    pub ifname: String,
    /// The TAP's MAC, `5E:…` style.
    pub mac: String,
    /// The leased address, while one is held.
    pub address: Option<IpPrefix>,
    /// SoftEther server host.
    pub server: String,
    /// Virtual hub.
    pub hub: String,
    /// User name.
    pub user: String,
    /// `connecting`, `dhcp`, `up`, `reconnecting`, `stopped`, `failed`, `gone` (the pod's
    /// network namespace disappeared without a DEL; the session is closed, the record waits
    /// for DEL or GC).
    pub state: String,
    /// Unix seconds when `state` was entered.
    pub since: u64,
    /// Bytes received from the tunnel since the attachment started.
    pub bytes_in: u64,
    /// Bytes sent into the tunnel since the attachment started.
    pub bytes_out: u64,
    /// Sessions re-established since the attachment started.
    pub reconnects: u32,
    /// Why the last session ended or the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Seconds until the next reconnect attempt, while `reconnecting`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry_secs: Option<u64>,
    /// Unix seconds when the held lease expires (absent without a finite lease).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_expires: Option<u64>,
    /// Bytes per second over the last second, tunnel → pod.
    #[serde(default)]
    pub rate_in: u64,
    /// Bytes per second over the last second, pod → tunnel.
    #[serde(default)]
    pub rate_out: u64,
    /// UDP acceleration of the current session: `off`, `probing`, `stabilising`, `active`, `lost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_acceleration: Option<String>,
    /// The IPv6 addresses installed from the VPN's routers (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses6: Vec<IpPrefix>,
    /// The default IPv6 router (its link-local address), when one is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<IpAddr>,
}

/// The `list` answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListReply {
    /// Every attachment the sidecar holds, sorted by container id and ifname.
    pub attachments: Vec<AttachmentStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode_request, Request};
    use serde_json::json;

    #[test]
    fn udp_acceleration_defaults_to_auto_and_is_omitted_then() {
        let login = json!({"server": "198.18.0.1", "port": 443, "hub": "H", "user": "u",
                           "passwordFile": "/etc/pw"});
        let l: LoginSettings = serde_json::from_value(login.clone()).unwrap();
        assert_eq!(l.udp_acceleration, UdpAcceleration::Auto);
        assert!(serde_json::to_value(&l)
            .unwrap()
            .get("udpAcceleration")
            .is_none());
        let mut off = login;
        off["udpAcceleration"] = json!("off");
        let l: LoginSettings = serde_json::from_value(off.clone()).unwrap();
        assert_eq!(l.udp_acceleration, UdpAcceleration::Off);
        assert_eq!(serde_json::to_value(&l).unwrap()["udpAcceleration"], "off");
        assert_eq!(UdpAcceleration::parse("auto"), Some(UdpAcceleration::Auto));
        assert_eq!(UdpAcceleration::parse("on"), None);
    }

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
