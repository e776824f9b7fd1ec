//! Complete, valid values of the contract's types for tests on either side (the plugin's DEL
//! tests, the sidecar's session tests, this crate's own), so a new field is added in one place.

use std::path::PathBuf;

use crate::state_dir::{AttachmentRecord, RECORD_VERSION};
use crate::{LinkSettings, LoginSettings};

/// Login settings for user `u` on hub `H` at 198.18.0.1:443, reading `password_file`.
pub fn login(password_file: impl Into<PathBuf>) -> LoginSettings {
    LoginSettings {
        server: "198.18.0.1".into(),
        port: 443,
        hub: "H".into(),
        user: "u".into(),
        password_file: password_file.into(),
        plain_password: false,
        insecure: true,
        pin_sha256: None,
        ca_file: None,
        max_connections: 1,
        proxy: None,
        proxy_password_file: None,
        udp_acceleration: Default::default(),
        compress: false,
        half_connection: false,
    }
}

/// A record of network `vpnnet` as the sidecar writes it, without lease or pod names.
pub fn record(container_id: &str, ifname: &str, netns: &str, mac: &str) -> AttachmentRecord {
    AttachmentRecord {
        version: RECORD_VERSION,
        network: "vpnnet".into(),
        container_id: container_id.into(),
        ifname: ifname.into(),
        netns: netns.into(),
        mac: mac.into(),
        login: login("/etc/softether/pw"),
        link: LinkSettings::default(),
        last_address: None,
        pod_namespace: None,
        pod_name: None,
        created_at: 1,
    }
}
