//! What the client asks for (login / additional_connect) and how it becomes a pack
//! (`ClientUploadAuth`, `ClientUploadAuth2`, `CreateNodeInfo` in Cedar; §5, §9.1).

use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::pack::Pack;
use crate::password::secure_password;
use crate::prng::SplitMix64;
use crate::rsa::{CertSigner, SignError};
use crate::sha0::Sha0;

pub use crate::pack::MAX_REQUEST_PACK;
/// `pencore` padding is 0..=999 random bytes (`HTTP_PACK_RAND_SIZE_MAX`).
const MAX_PENCORE: usize = 999;

/// Wire values of `authtype`.
pub mod authtype {
    /// No credential: the hub user must allow anonymous login.
    pub const ANONYMOUS: u32 = 0;
    /// SHA-0 challenge response to the hello random.
    pub const PASSWORD: u32 = 1;
    /// Password in clear (inside TLS), for RADIUS / NT-domain users.
    pub const PLAIN_PASSWORD: u32 = 2;
    /// Client certificate with a signature over the hello random.
    pub const CERT: u32 = 3;
    /// One-time ticket after a cluster redirect.
    pub const TICKET: u32 = 99;
}

/// How the client authenticates. `Debug` never prints secrets.
#[derive(Clone)]
pub enum Credential {
    /// authtype 0: the user object must be an anonymous user.
    Anonymous,
    /// authtype 1: `hash_password(username, password)`; the challenge response is computed from
    /// the hello random.
    HashedPassword([u8; 20]),
    /// authtype 2: password sent in clear (inside TLS) for RADIUS / NT-domain users.
    PlainPassword(String),
    /// authtype 3: DER certificate plus a signer for SHA-1 PKCS#1 v1.5 over the hello random.
    /// Use [`crate::rsa::RsaPrivateKey`] for a key in a DER file.
    Certificate {
        /// The client certificate, DER.
        cert_der: Vec<u8>,
        /// Signs the hello random with the certificate's private key.
        key: Arc<dyn CertSigner>,
    },
    /// authtype 99: one-time ticket from a cluster redirect.
    Ticket([u8; 20]),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Anonymous => f.write_str("Anonymous"),
            Credential::HashedPassword(_) => f.write_str("HashedPassword(<redacted>)"),
            Credential::PlainPassword(_) => f.write_str("PlainPassword(<redacted>)"),
            Credential::Certificate { cert_der, .. } => f
                .debug_struct("Certificate")
                .field("cert_der_len", &cert_der.len())
                .field("key", &"<redacted>")
                .finish(),
            Credential::Ticket(_) => f.write_str("Ticket(<redacted>)"),
        }
    }
}

impl Credential {
    /// The wire `authtype` of this credential (see [`authtype`]).
    pub fn authtype(&self) -> u32 {
        match self {
            Credential::Anonymous => authtype::ANONYMOUS,
            Credential::HashedPassword(_) => authtype::PASSWORD,
            Credential::PlainPassword(_) => authtype::PLAIN_PASSWORD,
            Credential::Certificate { .. } => authtype::CERT,
            Credential::Ticket(_) => authtype::TICKET,
        }
    }
}

/// Client identity and node information sent with every login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    /// Product string; must not contain "server" or "bridge" (that forces bridge mode, §12.1).
    pub client_str: String,
    /// Client version, major*100+minor (e.g. 501).
    pub client_ver: u32,
    /// ≥ 6560 so that 2020-era servers do not reject the client (§12.2).
    pub client_build: u32,
    /// Hub option `RequiredClientId`; 0 = none.
    pub client_id: u32,
    /// `unique_id`: stable per installation (see [`ClientInfo::derive_ids`]).
    pub unique_id: [u8; 20],
    /// Node-info `UniqueId`: stable, non-zero per installation (MultiLogins accounting).
    pub node_unique_id: [u8; 16],
    /// This host's name, for the server's session list.
    pub hostname: String,
    /// Local IPv4 of the TCP connection (0 marks the session "IPv6 only").
    pub client_ip: Ipv4Addr,
    /// Local TCP port of the connection.
    pub client_port: u16,
    /// Server name or IP as configured; used for the `Host` header and node info.
    pub server_host: String,
    /// Server TCP port, for node info.
    pub server_port: u16,
}

impl Default for ClientInfo {
    fn default() -> Self {
        ClientInfo {
            client_str: "softether-cni VPN Client".into(),
            client_ver: 501,
            client_build: 9674,
            client_id: 0,
            unique_id: [0; 20],
            node_unique_id: [0; 16],
            hostname: "localhost".into(),
            client_ip: Ipv4Addr::UNSPECIFIED,
            client_port: 0,
            server_host: String::new(),
            server_port: 443,
        }
    }
}

impl ClientInfo {
    /// Fills `unique_id` and `node_unique_id` deterministically from a stable per-installation
    /// secret (e.g. random bytes stored once), so they survive restarts.
    pub fn derive_ids(&mut self, installation_secret: &[u8]) {
        let mut h = Sha0::new();
        h.update(b"softether-cni unique_id\0");
        h.update(installation_secret);
        self.unique_id = h.finalize();
        let mut h = Sha0::new();
        h.update(b"softether-cni node UniqueId\0");
        h.update(installation_secret);
        self.node_unique_id.copy_from_slice(&h.finalize()[..16]);
    }
}

/// A full login on the first connection.
#[derive(Clone, Debug)]
pub struct LoginRequest {
    /// Virtual hub to join.
    pub hub: String,
    /// User name on that hub.
    pub username: String,
    /// How to authenticate.
    pub credential: Credential,
    /// Requested TCP connections (1..=32).
    pub max_connection: u32,
    /// Ask for half-duplex additional connections (each carries one direction, §9.3).
    pub half_connection: bool,
    /// `use_compress`: zlib per block in both directions (§10.4).
    pub use_compress: bool,
    /// UDP acceleration offer (§11.1); `None` = TCP only.
    pub udp_accel: Option<crate::udp_accel::UdpAccelOffer>,
    /// Client identity and node information.
    pub info: ClientInfo,
}

/// What a connection is for.
#[derive(Clone, Debug)]
pub enum Request {
    /// A full login that creates a session (ends in `Outcome::Welcome` or `Outcome::Redirect`).
    Login(LoginRequest),
    /// Join an existing session with the `session_key` from its Welcome (§9.1).
    AdditionalConnect {
        /// The `session_key` from the session's [`Welcome`](crate::welcome::Welcome) (a secret).
        session_key: [u8; 20],
        /// Client identity, as sent with the login.
        info: ClientInfo,
    },
}

impl Request {
    /// The client information sent with this request.
    pub fn info(&self) -> &ClientInfo {
        match self {
            Request::Login(l) => &l.info,
            Request::AdditionalConnect { info, .. } => info,
        }
    }
}

fn add_version(p: &mut Pack, info: &ClientInfo) {
    p.add_str("client_str", &info.client_str);
    p.add_int("client_ver", info.client_ver);
    p.add_int("client_build", info.client_build);
}

/// Node information (`OutRpcNodeInfo`). The C client stores the numeric fields byte-swapped.
fn add_node_info(p: &mut Pack, req: &LoginRequest, hello: &crate::welcome::ServerHello) {
    let info = &req.info;
    p.add_str("ClientProductName", &info.client_str);
    p.add_str("ServerProductName", &hello.product);
    p.add_str("ClientOsName", "Linux");
    p.add_str("ClientOsVer", "");
    p.add_str("ClientOsProductId", "");
    p.add_str("ClientHostname", &info.hostname);
    p.add_str("ServerHostname", &info.server_host);
    p.add_str("ProxyHostname", "");
    p.add_str("HubName", &req.hub);
    p.add_data("UniqueId", &info.node_unique_id);
    p.add_int("ClientProductVer", info.client_ver.swap_bytes());
    p.add_int("ClientProductBuild", info.client_build.swap_bytes());
    p.add_int("ServerProductVer", hello.version.swap_bytes());
    p.add_int("ServerProductBuild", hello.build.swap_bytes());
    p.add_int("ClientPort", u32::from(info.client_port).swap_bytes());
    p.add_int("ServerPort2", u32::from(info.server_port).swap_bytes());
    p.add_int("ProxyPort", 0);
    p.add_ipv4("ClientIpAddress", info.client_ip);
    let server_ip = info.server_host.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
    p.add_ipv4("ServerIpAddress", server_ip);
    p.add_ipv4("ProxyIpAddress", Ipv4Addr::UNSPECIFIED);
    for name in ["ClientIpAddress6", "ServerIpAddress6", "ProxyIpAddress6"] {
        p.add_data(name, &[0; 16]);
    }
    p.add_bool("V_IsWindows", false);
}

/// The `login` pack for the hello received on this connection (without `pencore`).
pub fn login_pack(
    req: &LoginRequest,
    hello: &crate::welcome::ServerHello,
) -> Result<Pack, SignError> {
    let mut p = Pack::new();
    p.add_str("method", "login");
    p.add_str("hubname", &req.hub);
    p.add_str("username", &req.username);
    p.add_int("authtype", req.credential.authtype());
    match &req.credential {
        Credential::Anonymous => {}
        Credential::HashedPassword(hashed) => {
            p.add_data("secure_password", &secure_password(hashed, &hello.random));
        }
        Credential::PlainPassword(pw) => p.add_str("plain_password", pw),
        Credential::Certificate { cert_der, key } => {
            p.add_data("cert", cert_der);
            p.add_data("sign", &key.sign_pkcs1_sha1(&hello.random)?);
        }
        Credential::Ticket(ticket) => p.add_data("ticket", ticket),
    }
    let info = &req.info;
    add_version(&mut p, info);
    p.add_str("hello", &info.client_str);
    p.add_int("version", info.client_ver);
    p.add_int("build", info.client_build);
    p.add_int("protocol", 0);
    p.add_int("client_id", info.client_id);
    p.add_int("max_connection", req.max_connection.clamp(1, 32));
    p.add_bool("use_encrypt", true);
    p.add_bool("use_compress", req.use_compress);
    p.add_bool("half_connection", req.half_connection);
    p.add_bool("require_bridge_routing_mode", false);
    p.add_bool("require_monitor_mode", false);
    p.add_bool("qos", false);
    p.add_data("unique_id", &info.unique_id);
    if let Some(offer) = &req.udp_accel {
        offer.add_to(&mut p);
    }
    add_node_info(&mut p, req, hello);
    Ok(p)
}

/// The `additional_connect` pack (without `pencore`).
pub fn additional_connect_pack(session_key: &[u8; 20], info: &ClientInfo) -> Pack {
    let mut p = Pack::new();
    p.add_str("method", "additional_connect");
    p.add_data("session_key", session_key);
    add_version(&mut p, info);
    p
}

/// Adds 0..=999 random `pencore` bytes (`CreateDummyValue`) and encodes, keeping the body within
/// the server's 64 KiB limit. Returns `None` if the pack alone is already too large.
pub(crate) fn encode_with_pencore(mut pack: Pack, rng: &mut SplitMix64) -> Option<Vec<u8>> {
    // "pencore" element overhead: name len + name + type + count + size.
    const OVERHEAD: usize = 4 + 7 + 4 + 4 + 4;
    let base = pack.encode().len();
    let room = MAX_REQUEST_PACK.checked_sub(base + OVERHEAD)?;
    let len = (rng.below(MAX_PENCORE as u64 + 1) as usize).min(room);
    let mut pad = vec![0u8; len];
    rng.fill(&mut pad);
    pack.add_data("pencore", &pad);
    let out = pack.encode();
    debug_assert!(out.len() <= MAX_REQUEST_PACK);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::welcome::ServerHello;

    fn hello() -> ServerHello {
        ServerHello {
            product: "SoftEther VPN Server".into(),
            version: 501,
            build: 9674,
            random: [7; 20],
        }
    }

    fn request(credential: Credential) -> LoginRequest {
        LoginRequest {
            hub: "HUB".into(),
            username: "alice".into(),
            credential,
            max_connection: 1,
            half_connection: false,
            use_compress: false,
            udp_accel: None,
            info: ClientInfo {
                client_ip: Ipv4Addr::new(192, 168, 1, 10),
                ..Default::default()
            },
        }
    }

    #[test]
    fn login_pack_has_required_fields() {
        let hashed = crate::password::hash_password("alice", "pw");
        let p = login_pack(&request(Credential::HashedPassword(hashed)), &hello()).unwrap();
        assert_eq!(p.get_str("method"), Some("login"));
        assert_eq!(p.get_str("hubname"), Some("HUB"));
        assert_eq!(p.get_int("authtype"), Some(1));
        assert_eq!(
            p.get_data("secure_password"),
            Some(&secure_password(&hashed, &[7; 20])[..])
        );
        assert!(p.get_bool("use_encrypt"));
        assert_eq!(p.get_int("qos"), Some(0));
        assert_eq!(p.get_int("use_compress"), Some(0));
        assert_eq!(p.get_int("max_connection"), Some(1));
        assert_eq!(p.get_int("client_build"), Some(9674));
        assert_eq!(p.get_int("ClientProductVer"), Some(0xf501_0000));
        assert_eq!(p.get_str("hello"), p.get_str("client_str"));
        assert_eq!(
            p.get_ip("ClientIpAddress"),
            Some("192.168.1.10".parse().unwrap())
        );
        assert_eq!(p.get_data("unique_id").unwrap().len(), 20);
        assert_eq!(p.get_data("UniqueId").unwrap().len(), 16);
        let cs = p.get_str("client_str").unwrap().to_ascii_lowercase();
        assert!(!cs.contains("server") && !cs.contains("bridge"));
    }

    #[test]
    fn credential_fields_per_authtype() {
        let p = login_pack(&request(Credential::Anonymous), &hello()).unwrap();
        assert_eq!(p.get_int("authtype"), Some(0));
        assert!(!p.contains("secure_password") && !p.contains("plain_password"));
        let p = login_pack(&request(Credential::PlainPassword("pw".into())), &hello()).unwrap();
        assert_eq!(
            (p.get_int("authtype"), p.get_str("plain_password")),
            (Some(2), Some("pw"))
        );
        let p = login_pack(&request(Credential::Ticket([9; 20])), &hello()).unwrap();
        assert_eq!(
            (p.get_int("authtype"), p.get_data("ticket")),
            (Some(99), Some(&[9u8; 20][..]))
        );
    }

    #[test]
    fn debug_redacts_credentials() {
        let r = request(Credential::PlainPassword("hunter2".into()));
        assert!(!format!("{r:?}").contains("hunter2"));
        let r = request(Credential::HashedPassword([0xab; 20]));
        assert!(!format!("{r:?}").contains("171"));
    }

    #[test]
    fn pencore_respects_the_64k_limit() {
        let mut rng = SplitMix64::new(1);
        let mut p = Pack::new();
        p.add_data("big", &vec![0; MAX_REQUEST_PACK - 100]);
        for _ in 0..50 {
            let out = encode_with_pencore(p.clone(), &mut rng).unwrap();
            assert!(out.len() <= MAX_REQUEST_PACK);
        }
        p.add_data("big", &vec![0; MAX_REQUEST_PACK]);
        assert!(encode_with_pencore(p, &mut rng).is_none());
        let small = encode_with_pencore(
            additional_connect_pack(&[1; 20], &ClientInfo::default()),
            &mut rng,
        )
        .unwrap();
        assert!(
            Pack::decode(&small)
                .unwrap()
                .get_data("pencore")
                .unwrap()
                .len()
                <= MAX_PENCORE
        );
    }

    #[test]
    fn derived_ids_are_stable_and_nonzero() {
        let mut a = ClientInfo::default();
        a.derive_ids(b"secret");
        let mut b = ClientInfo::default();
        b.derive_ids(b"secret");
        assert_eq!(a, b);
        assert_ne!(a.node_unique_id, [0; 16]);
        b.derive_ids(b"other");
        assert_ne!(a.unique_id, b.unique_id);
    }
}
