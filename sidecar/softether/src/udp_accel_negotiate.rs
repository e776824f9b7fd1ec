//! UDP-acceleration negotiation (§11.1): the client's login-pack fields (`ClientUploadAuth`) and
//! the server's Welcome fields (`PackWelcome`, parsed as `ClientConnect` does).

use std::net::{IpAddr, Ipv4Addr};

use crate::pack::Pack;
use crate::udp_accel_codec::{V1_KEY_LEN, V2_KEY_LEN};

/// The client's half of the negotiation: its UDP socket and its random send keys. `Debug` never
/// prints the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct UdpAccelOffer {
    /// Secret random v1 send key (`udp_acceleration_client_key`).
    pub key_v1: [u8; V1_KEY_LEN],
    /// Secret random v2 send key (`udp_acceleration_client_key_v2`; the first 32 bytes are used).
    pub key_v2: Box<[u8; V2_KEY_LEN]>,
    /// Local UDP port (non-zero).
    pub port: u16,
    /// `udp_acceleration_client_ip`. Unspecified (the default) makes the server use the TCP
    /// source address, which is right behind NAT; the element itself is always sent, as the
    /// server disables acceleration without it.
    pub reported_ip: IpAddr,
    /// `udp_acceleration_max_version`: 2 asks for ChaCha20-Poly1305, 1 for RC4.
    pub max_version: u32,
}

impl std::fmt::Debug for UdpAccelOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpAccelOffer")
            .field("port", &self.port)
            .field("reported_ip", &self.reported_ip)
            .field("max_version", &self.max_version)
            .finish_non_exhaustive()
    }
}

impl UdpAccelOffer {
    /// An offer for a socket on `port`, keys from the caller's secure random source.
    pub fn new(port: u16, key_v1: [u8; V1_KEY_LEN], key_v2: [u8; V2_KEY_LEN]) -> Self {
        UdpAccelOffer {
            key_v1,
            key_v2: Box::new(key_v2),
            port,
            reported_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            max_version: 2,
        }
    }

    /// The login-pack elements, as `ClientUploadAuth` writes them.
    pub fn add_to(&self, p: &mut Pack) {
        p.add_bool("use_udp_acceleration", true);
        // The version the client's UDP_ACCEL starts with; the server reads only the max.
        p.add_int("udp_acceleration_version", 1);
        match self.reported_ip {
            IpAddr::V4(ip) => p.add_ipv4("udp_acceleration_client_ip", ip),
            IpAddr::V6(ip) => p.add_ipv6("udp_acceleration_client_ip", ip, 0),
        }
        p.add_int("udp_acceleration_client_port", self.port.into());
        p.add_data("udp_acceleration_client_key", &self.key_v1);
        p.add_data("udp_acceleration_client_key_v2", &self.key_v2[..]);
        p.add_bool("support_hmac_on_udp_acceleration", true);
        p.add_bool("support_udp_accel_fast_disconnect_detect", true);
        p.add_int("udp_acceleration_max_version", self.max_version);
    }
}

/// What the Welcome grants (`PackWelcome`). `Debug` never prints the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct UdpAccelGrant {
    /// 1 (RC4 + SHA-1) or 2 (ChaCha20-Poly1305).
    pub version: u32,
    /// The server's UDP bind address; `None` when it reported 0 (use the TCP peer).
    pub server_ip: Option<IpAddr>,
    /// The server's UDP port (40000–44999 on the Debian build).
    pub server_port: u16,
    /// The server's version 1 key (what it encrypts with).
    pub server_key_v1: [u8; V1_KEY_LEN],
    /// The server's version 2 key (what it encrypts with).
    pub server_key_v2: Box<[u8; V2_KEY_LEN]>,
    /// Put in every datagram we send.
    pub server_cookie: u32,
    /// Required in every datagram we receive.
    pub client_cookie: u32,
    /// false = plaintext datagrams (the session runs with `use_encrypt` = 0).
    pub use_encryption: bool,
    /// Shorter keep-alives and dead-link timeout (`udp_accel_fast_disconnect_detect`).
    pub fast_disconnect_detect: bool,
}

impl std::fmt::Debug for UdpAccelGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpAccelGrant")
            .field("version", &self.version)
            .field("server_ip", &self.server_ip)
            .field("server_port", &self.server_port)
            .field("use_encryption", &self.use_encryption)
            .field("fast_disconnect_detect", &self.fast_disconnect_detect)
            .finish_non_exhaustive()
    }
}

impl UdpAccelGrant {
    /// The Welcome's UDP fields, with the checks of `ClientConnect`: granted, an IP element
    /// present, port and both cookies non-zero. Unlike upstream (which would run with an all-zero
    /// key and never decrypt anything), a missing key for the granted version refuses the grant.
    pub fn from_welcome(p: &Pack) -> Option<Self> {
        if !p.get_bool("use_udp_acceleration") {
            return None;
        }
        let version = if p.get_int("udp_acceleration_version") == Some(2) {
            2
        } else {
            1
        };
        let server_ip = p.get_ip("udp_acceleration_server_ip")?.to_canonical();
        let server_port = u16::try_from(p.get_int("udp_acceleration_server_port")?).ok()?;
        let server_cookie = p.get_int("udp_acceleration_server_cookie").unwrap_or(0);
        let client_cookie = p.get_int("udp_acceleration_client_cookie").unwrap_or(0);
        if server_port == 0 || server_cookie == 0 || client_cookie == 0 {
            return None;
        }
        let key = |name: &str| p.get_data(name);
        let server_key_v1: [u8; V1_KEY_LEN] = match key("udp_acceleration_server_key") {
            Some(k) => k.try_into().ok()?,
            None if version == 2 => [0; V1_KEY_LEN],
            None => return None,
        };
        let server_key_v2: Box<[u8; V2_KEY_LEN]> = match key("udp_acceleration_server_key_v2") {
            Some(k) => Box::new(k.try_into().ok()?),
            None if version == 1 => Box::new([0; V2_KEY_LEN]),
            None => return None,
        };
        Some(UdpAccelGrant {
            version,
            server_ip: Some(server_ip).filter(|ip| !ip.is_unspecified()),
            server_port,
            server_key_v1,
            server_key_v2,
            server_cookie,
            client_cookie,
            use_encryption: p.get_bool("udp_acceleration_use_encryption"),
            fast_disconnect_detect: p.get_bool("udp_accel_fast_disconnect_detect"),
        })
    }

    /// The Welcome elements, as `PackWelcome` writes them (for fake servers in tests).
    pub fn add_to(&self, p: &mut Pack) {
        p.add_bool("use_udp_acceleration", true);
        p.add_int("udp_acceleration_version", self.version);
        match self.server_ip {
            Some(IpAddr::V6(ip)) => p.add_ipv6("udp_acceleration_server_ip", ip, 0),
            Some(IpAddr::V4(ip)) => p.add_ipv4("udp_acceleration_server_ip", ip),
            None => p.add_ipv4("udp_acceleration_server_ip", Ipv4Addr::UNSPECIFIED),
        }
        p.add_int("udp_acceleration_server_port", self.server_port.into());
        p.add_data("udp_acceleration_server_key", &self.server_key_v1);
        p.add_data("udp_acceleration_server_key_v2", &self.server_key_v2[..]);
        p.add_int("udp_acceleration_server_cookie", self.server_cookie);
        p.add_int("udp_acceleration_client_cookie", self.client_cookie);
        p.add_bool("udp_acceleration_use_encryption", self.use_encryption);
        p.add_bool("use_hmac_on_udp_acceleration", false);
        p.add_bool(
            "udp_accel_fast_disconnect_detect",
            self.fast_disconnect_detect,
        );
    }
}
