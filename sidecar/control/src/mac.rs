//! An Ethernet address as the plugin and the sidecar write it: `5E:00:0A:FF:01:02`.

use std::fmt;
use std::str::FromStr;

/// A MAC address. Text form: six two-digit hex octets, uppercase, `:`-separated (what goes on
/// the wire); `{:x}` gives the lowercase form CNI results use. Parsing accepts `:` or `-` and
/// any case, and only addresses an interface can use (unicast, not all-zero), so a parsed
/// [`Mac`] never needs checking again.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// Not multicast and not all-zero.
    pub fn is_unicast(&self) -> bool {
        self.0[0] & 1 == 0 && self.0 != [0; 6]
    }

    /// The six octets, in wire order.
    pub fn octets(self) -> [u8; 6] {
        self.0
    }
}

impl From<[u8; 6]> for Mac {
    fn from(octets: [u8; 6]) -> Mac {
        Mac(octets)
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02X}:{b:02X}:{c:02X}:{d:02X}:{e:02X}:{g:02X}")
    }
}

impl fmt::LowerHex for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a text is not a usable MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
        let mut octets = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for slot in &mut octets {
            let part = parts.next().ok_or_else(|| fail("need six hex octets"))?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(fail("each octet is two hex digits"));
            }
            *slot = u8::from_str_radix(part, 16).map_err(|_| fail("not hex"))?;
        }
        if parts.next().is_some() {
            return Err(fail("need six hex octets"));
        }
        let mac = Mac(octets);
        if !mac.is_unicast() {
            return Err(fail("multicast or all-zero"));
        }
        Ok(mac)
    }
}

crate::text_serde::serde_as_text!(Mac);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_upper_on_the_wire_and_lower_with_x() {
        let m = Mac([0x5e, 0, 0xab, 1, 2, 0xff]);
        assert_eq!(m.to_string(), "5E:00:AB:01:02:FF");
        assert_eq!(format!("{m:x}"), "5e:00:ab:01:02:ff");
        assert_eq!(format!("{m:?}"), "5E:00:AB:01:02:FF");
    }

    #[test]
    fn parses_either_separator_and_any_case() {
        let m = Mac([0x5e, 0, 0x0a, 0xff, 1, 2]);
        assert_eq!("5e:00:0a:ff:01:02".parse::<Mac>(), Ok(m));
        assert_eq!("5E-00-0A-FF-01-02".parse::<Mac>(), Ok(m));
        assert_eq!(m.to_string().parse::<Mac>(), Ok(m));
    }

    #[test]
    fn refuses_what_an_interface_cannot_use() {
        for bad in [
            "",
            "5e:00:0a:ff:01",
            "5e:00:0a:ff:01:02:03",
            "zz:00:0a:ff:01:02",
            "5e:00:0a:ff:01:023",
            "5:00:0a:ff:01:02",
            "+5:00:0a:ff:01:02",
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }

    #[test]
    fn serde_is_the_text_form() {
        let m = Mac([0x02, 0xaa, 0xbb, 0, 0, 1]);
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"02:AA:BB:00:00:01\"");
        assert_eq!(
            serde_json::from_str::<Mac>("\"02-aa-bb-00-00-01\"").unwrap(),
            m
        );
        assert!(serde_json::from_str::<Mac>("\"01:00:5e:00:00:01\"").is_err());
    }
}
