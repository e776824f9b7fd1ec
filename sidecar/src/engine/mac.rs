//! The TAP's MAC address: given on the command line, or derived from the login so the same
//! user on the same hub always gets the same MAC (and so, with DHCP, the same address).
//!
//! The [`Mac`] type itself is the control protocol's (`softether-control`), so `--mac`, the
//! daemon's records and the plugin all parse and print MACs the same way.

pub use softether_control::Mac;

/// SoftEther-style `5E:xx:xx:xx:xx:xx` (locally administered, unicast) from a SHA-256 of
/// host, user and hub. Stable across runs and machines; never random.
pub fn stable_mac(host: &str, user: &str, hub: &str) -> Mac {
    let mut input = Vec::with_capacity(host.len() + user.len() + hub.len() + 32);
    input.extend_from_slice(b"softether-sidecar mac\0");
    for part in [host, user, hub] {
        input.extend_from_slice(part.to_ascii_lowercase().as_bytes());
        input.push(0);
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, &input);
    let h = digest.as_ref();
    // A SHA-256 digest is always 32 bytes.
    Mac([0x5e, h[0], h[1], h[2], h[3], h[4]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_mac_is_deterministic_5e_and_unicast() {
        let a = stable_mac("vpn.example.com", "alice", "DEFAULT");
        assert_eq!(a, stable_mac("VPN.example.com", "alice", "default"));
        assert_ne!(a, stable_mac("vpn.example.com", "bob", "DEFAULT"));
        assert_ne!(a, stable_mac("vpn.example.com", "alic", "eDEFAULT"));
        assert_eq!(a.0[0], 0x5e);
        assert!(a.is_unicast());
    }

    #[test]
    fn command_line_form_parses() {
        let m: Mac = "5E:3B:6F:63:A8:3E".parse().unwrap();
        assert_eq!(m.0, [0x5e, 0x3b, 0x6f, 0x63, 0xa8, 0x3e]);
        assert_eq!("5e-3b-6f-63-a8-3e".parse::<Mac>().unwrap(), m);
        assert!("01:00:5e:00:00:01".parse::<Mac>().is_err());
    }
}
