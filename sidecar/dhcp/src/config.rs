//! Client configuration and its validation.

use std::net::Ipv4Addr;
use std::time::Duration;

/// How the client identifies itself and how patiently it retransmits.
///
/// Build with [`Config::new`] and adjust the public fields; [`crate::DhcpClient::new`] validates it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Hardware address of the interface behind the tunnel (chaddr, Ethernet source).
    pub mac: [u8; 6],
    /// Option 61 bytes; `None` means `[1, mac...]` (hardware type Ethernet + MAC).
    pub client_id: Option<Vec<u8>>,
    /// Option 12, sent in DISCOVER and REQUEST.
    pub hostname: Option<String>,
    /// Address to ask for first (INIT-REBOOT), e.g. the previous lease after a reconnect.
    pub requested_ip: Option<Ipv4Addr>,
    /// First retransmit interval; doubles per attempt (RFC 2131 uses 4 s).
    pub initial_retransmit: Duration,
    /// Ceiling for the doubling (RFC 2131 uses 64 s); also the floor between RENEW/REBIND retries.
    pub max_retransmit: Duration,
    /// REQUESTs sent in REQUESTING before giving up on the offer and going back to DISCOVER.
    pub request_attempts: u32,
    /// INIT-REBOOT REQUESTs sent before falling back to DISCOVER.
    pub init_reboot_attempts: u32,
    /// Seed for transaction ids and retransmit jitter (the client has no randomness of its own).
    pub xid_seed: u64,
}

impl Config {
    /// RFC 2131 defaults: 4 s initial retransmit doubling to 64 s, 4 REQUESTs, 2 INIT-REBOOT tries.
    pub fn new(mac: [u8; 6], xid_seed: u64) -> Self {
        Self {
            mac,
            client_id: None,
            hostname: None,
            requested_ip: None,
            initial_retransmit: Duration::from_secs(4),
            max_retransmit: Duration::from_secs(64),
            request_attempts: 4,
            init_reboot_attempts: 2,
            xid_seed,
        }
    }

    /// The option 61 bytes actually sent.
    pub fn effective_client_id(&self) -> Vec<u8> {
        match &self.client_id {
            Some(id) => id.clone(),
            None => {
                let mut id = Vec::with_capacity(7);
                id.push(1);
                id.extend_from_slice(&self.mac);
                id
            }
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.mac == [0; 6] || self.mac[0] & 1 == 1 {
            return Err(ConfigError::InvalidMac { mac: self.mac });
        }
        if let Some(id) = &self.client_id {
            // RFC 2132 §9.14: at least two octets; one option cannot exceed 255.
            if !(2..=255).contains(&id.len()) {
                return Err(ConfigError::ClientIdLength { len: id.len() });
            }
        }
        if let Some(name) = &self.hostname {
            if !(1..=255).contains(&name.len()) {
                return Err(ConfigError::HostnameLength { len: name.len() });
            }
        }
        if self.initial_retransmit.is_zero() || self.initial_retransmit > self.max_retransmit {
            return Err(ConfigError::RetransmitRange {
                initial: self.initial_retransmit,
                max: self.max_retransmit,
            });
        }
        if self.request_attempts == 0 {
            return Err(ConfigError::ZeroRequestAttempts);
        }
        Ok(())
    }
}

/// Why a [`Config`] was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The MAC is all-zero or multicast.
    #[error(
        "DHCP client MAC {mac:02x?} is all-zero or multicast; the interface needs a unicast MAC"
    )]
    InvalidMac {
        /// The MAC given.
        mac: [u8; 6],
    },
    /// The client identifier is not 2..=255 bytes long.
    #[error("DHCP client-id (option 61) is {len} bytes; it must be 2..=255 bytes")]
    ClientIdLength {
        /// Its length in bytes.
        len: usize,
    },
    /// The hostname is not 1..=255 bytes long.
    #[error("DHCP hostname (option 12) is {len} bytes; it must be 1..=255 bytes")]
    HostnameLength {
        /// Its length in bytes.
        len: usize,
    },
    /// The initial retransmit interval is zero or above the maximum.
    #[error(
        "DHCP retransmit interval {initial:?} must be non-zero and at most the maximum {max:?}"
    )]
    RetransmitRange {
        /// The initial interval.
        initial: Duration,
        /// The maximum interval.
        max: Duration,
    },
    /// `request_attempts` is 0.
    #[error("DHCP request_attempts must be at least 1")]
    ZeroRequestAttempts,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x5e, 0x3b, 0x6f, 0x63, 0xa8, 0x3e];

    #[test]
    fn default_client_id_is_hardware_type_and_mac() {
        let c = Config::new(MAC, 1);
        assert_eq!(
            c.effective_client_id(),
            [1, 0x5e, 0x3b, 0x6f, 0x63, 0xa8, 0x3e]
        );
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn rejects_bad_values() {
        let mut c = Config::new([1, 0, 0, 0, 0, 1], 1);
        assert!(matches!(c.validate(), Err(ConfigError::InvalidMac { .. })));
        c.mac = MAC;
        c.client_id = Some(vec![1]);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::ClientIdLength { len: 1 })
        ));
        c.client_id = None;
        c.hostname = Some(String::new());
        assert!(matches!(
            c.validate(),
            Err(ConfigError::HostnameLength { len: 0 })
        ));
        c.hostname = None;
        c.initial_retransmit = Duration::from_secs(100);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::RetransmitRange { .. })
        ));
        c.initial_retransmit = Duration::from_secs(4);
        c.request_attempts = 0;
        assert_eq!(c.validate(), Err(ConfigError::ZeroRequestAttempts));
    }
}
