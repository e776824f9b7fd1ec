//! Address arithmetic for IPv6 on an Ethernet link: EUI-64 interface identifiers, link-local
//! and SLAAC addresses, multicast MAC mapping.

use std::net::Ipv6Addr;

/// All-routers link-scope multicast (RS destination).
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
/// All_DHCP_Relay_Agents_and_Servers (RFC 8415 §7.1).
pub const ALL_DHCP_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

/// Modified EUI-64 interface identifier (RFC 4291 appendix A): the MAC with ff:fe in the
/// middle and the universal/local bit flipped.
pub fn eui64_interface_id(mac: [u8; 6]) -> [u8; 8] {
    [
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ]
}

/// `fe80::/64` plus the EUI-64 identifier: the address the kernel gives the TAP (default
/// `addr_gen_mode`), which is why the client may send from it and the kernel answers the
/// neighbour solicitations for it.
pub fn link_local(mac: [u8; 6]) -> Ipv6Addr {
    with_interface_id(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), mac)
}

/// The first 64 bits of `prefix` followed by the EUI-64 identifier of `mac` (RFC 4862 §5.5.3 d).
pub fn slaac_address(prefix: Ipv6Addr, mac: [u8; 6]) -> Ipv6Addr {
    with_interface_id(prefix, mac)
}

fn with_interface_id(prefix: Ipv6Addr, mac: [u8; 6]) -> Ipv6Addr {
    let mut octets = prefix.octets();
    octets[8..].copy_from_slice(&eui64_interface_id(mac));
    Ipv6Addr::from(octets)
}

/// Ethernet destination of an IPv6 multicast address (RFC 2464 §7): 33:33 + the low 32 bits.
pub fn multicast_mac(group: Ipv6Addr) -> [u8; 6] {
    let o = group.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// `fe80::/10`.
pub fn is_link_local(ip: Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

/// Usable as a host's global or ULA address: not unspecified, loopback, multicast or
/// link-local (and not IPv4-mapped).
pub fn is_usable_unicast(ip: Ipv6Addr) -> bool {
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || is_link_local(ip)
        || ip.to_ipv4_mapped().is_some())
}

/// The first `len` bits of `ip`, the rest zeroed (`len` is clamped to 128).
pub fn truncate(ip: Ipv6Addr, len: u8) -> Ipv6Addr {
    let len = u32::from(len.min(128));
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    Ipv6Addr::from(u128::from(ip) & mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eui64_matches_the_kernel() {
        // The kernel forms fe80::5c3b:6fff:fe63:a83e for 5e:3b:6f:63:a8:3e.
        let mac = [0x5e, 0x3b, 0x6f, 0x63, 0xa8, 0x3e];
        assert_eq!(
            link_local(mac),
            "fe80::5c3b:6fff:fe63:a83e".parse::<Ipv6Addr>().unwrap()
        );
        let prefix: Ipv6Addr = "fd00:1:2:3::".parse().unwrap();
        assert_eq!(
            slaac_address(prefix, mac),
            "fd00:1:2:3:5c3b:6fff:fe63:a83e"
                .parse::<Ipv6Addr>()
                .unwrap()
        );
    }

    #[test]
    fn multicast_and_classes() {
        assert_eq!(multicast_mac(ALL_DHCP_SERVERS), [0x33, 0x33, 0, 1, 0, 2]);
        assert!(is_link_local("fe80::1".parse().unwrap()));
        assert!(!is_usable_unicast("fe80::1".parse().unwrap()));
        assert!(!is_usable_unicast("::ffff:1.2.3.4".parse().unwrap()));
        assert!(is_usable_unicast("fd12::1".parse().unwrap()));
        let ip: Ipv6Addr = "fd12:3456:789a:1:2:3:4:5".parse().unwrap();
        assert_eq!(
            truncate(ip, 64),
            "fd12:3456:789a:1::".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(truncate(ip, 0), Ipv6Addr::UNSPECIFIED);
        assert_eq!(truncate(ip, 200), ip);
    }
}
