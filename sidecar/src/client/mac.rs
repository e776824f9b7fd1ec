//! The TAP's MAC address: given on the command line, or derived from the login so the same
//! user on the same hub always gets the same MAC (and so, with DHCP, the same address).

use std::fmt;
use std::str::FromStr;

/// An Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// SoftEther-style `5E:xx:xx:xx:xx:xx` (locally administered, unicast) from a SHA-256 of
    /// host, user and hub. Stable across runs and machines; never random.
    pub fn stable(host: &str, user: &str, hub: &str) -> Mac {
        let mut input = Vec::with_capacity(host.len() + user.len() + hub.len() + 32);
        input.extend_from_slice(b"softether-sidecar mac\0");
        for part in [host, user, hub] {
            input.extend_from_slice(part.to_ascii_lowercase().as_bytes());
            input.push(0);
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, &input);
        let h = digest.as_ref();
        Mac([0x5e, h[0], h[1], h[2], h[3], h[4]])
    }

    /// A MAC an interface can use: not multicast, not all-zero.
    pub fn is_unicast(&self) -> bool {
        self.0[0] & 1 == 0 && self.0 != [0; 6]
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a `--mac` value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{input:?} is not a unicast MAC address like 5E:3B:6F:63:A8:3E ({why})")]
pub struct MacParseError {
    input: String,
    why: &'static str,
}

impl FromStr for Mac {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Mac, MacParseError> {
        let fail = |why| MacParseError {
            input: s.to_owned(),
            why,
        };
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(fail("need six hex octets"));
        }
        let mut mac = [0u8; 6];
        for (slot, part) in mac.iter_mut().zip(&parts) {
            if part.len() != 2 {
                return Err(fail("each octet is two hex digits"));
            }
            *slot = u8::from_str_radix(part, 16).map_err(|_| fail("not hex"))?;
        }
        let mac = Mac(mac);
        if !mac.is_unicast() {
            return Err(fail("multicast or all-zero"));
        }
        Ok(mac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_mac_is_deterministic_5e_and_unicast() {
        let a = Mac::stable("vpn.example.com", "alice", "DEFAULT");
        assert_eq!(a, Mac::stable("VPN.example.com", "alice", "default"));
        assert_ne!(a, Mac::stable("vpn.example.com", "bob", "DEFAULT"));
        assert_ne!(a, Mac::stable("vpn.example.com", "alic", "eDEFAULT"));
        assert_eq!(a.0[0], 0x5e);
        assert!(a.is_unicast());
    }

    #[test]
    fn parses_and_prints() {
        let m: Mac = "5E:3B:6F:63:A8:3E".parse().unwrap();
        assert_eq!(m.0, [0x5e, 0x3b, 0x6f, 0x63, 0xa8, 0x3e]);
        assert_eq!(m.to_string(), "5e:3b:6f:63:a8:3e");
        assert_eq!("5e-3b-6f-63-a8-3e".parse::<Mac>().unwrap(), m);
        assert!("01:00:5e:00:00:01".parse::<Mac>().is_err());
        assert!("00:00:00:00:00:00".parse::<Mac>().is_err());
        assert!("5e:3b:6f:63:a8".parse::<Mac>().is_err());
        assert!("5e:3b:6f:63:a8:zz".parse::<Mac>().is_err());
        assert!("5e:3b:6f:63:a8:3e3".parse::<Mac>().is_err());
    }
}
