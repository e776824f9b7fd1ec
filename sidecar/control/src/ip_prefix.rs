//! `ADDRESS/PREFIX` text, the form both CNI results and this protocol use for addresses and
//! route destinations.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address with prefix length, `10.8.0.23/24` or `fd00::5/64`. Host bits are kept (an
/// interface address is written this way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpPrefix {
    /// The address, host bits included.
    pub addr: IpAddr,
    /// Prefix length in bits: at most 32 for IPv4, 128 for IPv6 (checked by [`IpPrefix::new`] and
    /// the parser).
    pub len: u8,
}

impl IpPrefix {
    /// `None` when `len` is longer than the address family allows.
    pub fn new(addr: IpAddr, len: u8) -> Option<IpPrefix> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (len <= max).then_some(IpPrefix { addr, len })
    }
}

impl FromStr for IpPrefix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not ADDRESS/PREFIX"))?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{a:?} is not an IP address"))?;
        let len: u8 = l
            .parse()
            .map_err(|_| format!("{l:?} is not a prefix length"))?;
        IpPrefix::new(addr, len)
            .ok_or_else(|| format!("prefix length {len} is too long for {addr}"))
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

crate::text_serde::serde_as_text!(IpPrefix);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_checks_the_length() {
        assert_eq!(
            "10.0.0.1/8".parse::<IpPrefix>().unwrap().to_string(),
            "10.0.0.1/8"
        );
        assert_eq!("fd00::1/128".parse::<IpPrefix>().unwrap().len, 128);
        for bad in ["10.0.0.1", "10.0.0.1/33", "x/8", "10.0.0.1/x", "fd00::/129"] {
            assert!(bad.parse::<IpPrefix>().is_err(), "{bad}");
        }
    }
}
