//! What a test needs to know about a running lab: names, addresses, credentials, certificate pins.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::certs::{ClientCert, LabCa};

/// Address plan of the hub's virtual subnet (SecureNAT + local bridge). Fixed in every lab: each lab has its
/// own server and namespaces, so the same addresses never meet.
pub mod subnet {
    use std::net::Ipv4Addr;

    /// The hub subnet, 10.99.0.0/24.
    pub const NETWORK: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 0);
    /// Prefix length of [`NETWORK`].
    pub const PREFIX_LEN: u8 = 24;
    /// SecureNAT virtual host: default gateway, DNS server and DHCP server for clients.
    pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
    /// First address SecureNAT's DHCP server hands out.
    pub const DHCP_START: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 10);
    /// Last address SecureNAT's DHCP server hands out.
    pub const DHCP_END: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 99);
    /// The "LAN host": a static address in the lan namespace, on the hub through the local bridge.
    pub const LAN_HOST: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 200);
    /// Domain name pushed by DHCP (option 15).
    pub const DOMAIN: &str = "lab.test";
    /// Destination of the static route pushed by DHCP (option 121): 10.98.0.0/24 via [`GATEWAY`].
    pub const PUSHED_ROUTE: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 0);
    /// Prefix length of [`PUSHED_ROUTE`].
    pub const PUSHED_ROUTE_PREFIX_LEN: u8 = 24;
}

/// A password-authenticated hub user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabUser {
    /// User name on the hub.
    pub name: String,
    /// Password (test fixture, not a secret).
    pub password: String,
}

impl LabUser {
    /// Convenience constructor.
    pub fn new(name: &str, password: &str) -> Self {
        LabUser {
            name: name.to_owned(),
            password: password.to_owned(),
        }
    }
}

/// Everything about one running lab. All addresses are inside namespaces the lab created.
#[derive(Debug, Clone)]
pub struct LabFacts {
    /// `<pid>-<counter>`, embedded in every name below.
    pub id: String,
    /// Namespace running vpnserver.
    pub server_ns: String,
    /// Namespace for clients under test; reaches the server at `server_ip:port`.
    pub client_ns: String,
    /// Namespace holding the LAN host, on the hub through the server's local bridge.
    pub lan_ns: String,
    /// Server's underlay address (198.18.0.0/15, a /30 shared with `client_ip`).
    pub server_ip: Ipv4Addr,
    /// Client namespace's underlay address.
    pub client_ip: Ipv4Addr,
    /// Prefix length of the underlay link (30).
    pub underlay_prefix_len: u8,
    /// Underlay interface in the client namespace.
    pub client_if: String,
    /// Underlay interface in the server namespace.
    pub server_if: String,
    /// TCP port the server listens on (reachable from `client_ns`).
    pub port: u16,
    /// Virtual hub name.
    pub hub: String,
    /// Server administrator password (for `vpncmd`).
    pub admin_password: String,
    /// Password user, intended for hashed-password (authtype 1) logins.
    pub alice: LabUser,
    /// Password user, intended for plain-password (authtype 2) logins: the server checks the local password
    /// hash first, so a normal password user also logs in with the plain-text password method.
    pub bob: LabUser,
    /// Certificate-authenticated user (`UserCertSet` with [`LabFacts::carol_cert`]).
    pub carol: String,
    /// carol's client certificate and PKCS#8 private key.
    pub carol_cert: ClientCert,
    /// User with anonymous authentication (`UserAnonymousSet`).
    pub anonymous: String,
    /// Extra password users from [`crate::LabOptions::extra_users`].
    pub extra_users: Vec<LabUser>,
    /// The server's TLS certificate (PEM), as returned by `ServerCertGet`.
    pub server_cert_pem: PathBuf,
    /// SHA-256 of the server certificate's DER, lowercase hex (for pinning).
    pub server_cert_sha256: String,
    /// The CA that issued the server certificate, when [`crate::LabOptions::server_cert_from_lab_ca`] is
    /// set; otherwise the server keeps its default self-signed certificate.
    pub lab_ca: Option<LabCa>,
    /// DHCP lease time configured on SecureNAT, seconds.
    pub dhcp_lease_secs: u32,
    /// Hub subnet, see [`subnet`].
    pub subnet: Ipv4Addr,
    /// Hub subnet prefix length.
    pub subnet_prefix_len: u8,
    /// SecureNAT virtual host (gateway, DNS, DHCP server).
    pub gateway: Ipv4Addr,
    /// Router announced by DHCP: `gateway` unless [`crate::LabOptions::dhcp_router`] says otherwise.
    pub dhcp_router: Ipv4Addr,
    /// DHCP pool start.
    pub dhcp_start: Ipv4Addr,
    /// DHCP pool end.
    pub dhcp_end: Ipv4Addr,
    /// DNS server pushed by DHCP.
    pub dns: Ipv4Addr,
    /// Domain pushed by DHCP.
    pub domain: String,
    /// Destination network of the pushed classless static route.
    pub pushed_route: Ipv4Addr,
    /// Prefix length of the pushed route.
    pub pushed_route_prefix_len: u8,
    /// Gateway of the pushed route.
    pub pushed_route_gateway: Ipv4Addr,
    /// LAN host address (in `lan_ns`, on `lan_if`).
    pub lan_host: Ipv4Addr,
    /// LAN host's interface in `lan_ns`.
    pub lan_if: String,
    /// The server-side end of the LAN veth, bridged into the hub.
    pub bridge_if: String,
    /// Lab directory (server copy, config, logs, certificates).
    pub dir: PathBuf,
}

impl LabFacts {
    /// All facts as JSON (the format printed by `softether-lab up --json`).
    pub fn to_json(&self) -> Value {
        let user = |u: &LabUser| json!({"name": u.name, "password": u.password});
        json!({
            "id": self.id,
            "namespaces": {"server": self.server_ns, "client": self.client_ns, "lan": self.lan_ns},
            "underlay": {
                "server_ip": self.server_ip.to_string(), "client_ip": self.client_ip.to_string(),
                "prefix_len": self.underlay_prefix_len,
                "server_if": self.server_if, "client_if": self.client_if,
            },
            "port": self.port,
            "hub": self.hub,
            "admin_password": self.admin_password,
            "users": {
                "alice": user(&self.alice),
                "bob": user(&self.bob),
                "carol": {"name": self.carol, "cert": self.carol_cert.to_json()},
                "anonymous": {"name": self.anonymous},
                "extra": self.extra_users.iter().map(user).collect::<Vec<_>>(),
            },
            "server_cert": {
                "pem": self.server_cert_pem, "sha256": self.server_cert_sha256,
                "ca_pem": self.lab_ca.as_ref().map(|c| &c.ca_pem),
                "server_name": self.lab_ca.as_ref().map(|c| &c.server_name),
            },
            "hub_subnet": {
                "network": format!("{}/{}", self.subnet, self.subnet_prefix_len),
                "gateway": self.gateway.to_string(),
                "dhcp_router": self.dhcp_router.to_string(),
                "dhcp_start": self.dhcp_start.to_string(), "dhcp_end": self.dhcp_end.to_string(),
                "dhcp_lease_secs": self.dhcp_lease_secs,
                "dns": self.dns.to_string(), "domain": self.domain,
                "pushed_route": {
                    "destination": format!("{}/{}", self.pushed_route, self.pushed_route_prefix_len),
                    "gateway": self.pushed_route_gateway.to_string(),
                },
                "lan_host": self.lan_host.to_string(),
                "lan_if": self.lan_if,
                "bridge_if": self.bridge_if,
            },
            "dir": self.dir,
        })
    }
}
