//! The lab's links: the routed underlay between client and server namespaces, and the LAN veth whose
//! server end is bridged into the hub.

use std::net::Ipv4Addr;

use anyhow::{bail, Result};

use crate::command::run_argv;
use crate::facts::subnet;
use crate::netns;

/// Interface names; fixed because each is created directly inside its own namespace.
// Interface names are fixed: each is created directly inside its own namespace, so labs never clash.
/// Underlay interface in the server namespace.
pub const SERVER_IF: &str = "to-cli";
/// Underlay interface in the client namespace.
pub const CLIENT_IF: &str = "to-srv";
/// Server end of the LAN veth, bridged into the hub by SoftEther's local bridge.
pub const BRIDGE_IF: &str = "lan-br";
/// LAN host's interface in the lan namespace.
pub const LAN_IF: &str = "eth0";

/// Picks the /30 for a lab inside 198.18.0.0/15 from pid and counter. Each lab's link lives only in its own
/// two namespaces, so a collision would be harmless; distinct subnets just make captures easier to read.
pub fn underlay_pair(pid: u32, n: u32) -> (Ipv4Addr, Ipv4Addr) {
    const SLOTS: u32 = (1 << 17) / 4; // /15 split into /30s
    let slot = (pid.wrapping_mul(97).wrapping_add(n)) % SLOTS;
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + slot * 4;
    (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
}

/// The `k`-th /30 a test may add inside one lab (an extra link between namespaces, or an address beyond
/// the hub), as (`.1`, `.2`). Derived from the lab's own underlay address so that it can never meet it:
/// the underlay /30 moved to the other half of 198.18.0.0/15 (198.18.x.y <-> 198.19.x.y), then `k` /30s
/// further on, wrapping inside that half. Distinct `k` below 16384 give distinct /30s; since the underlay
/// is unique per lab (pid and counter, see [`underlay_pair`]), so are these.
pub fn side_pair(underlay: Ipv4Addr, k: u16) -> (Ipv4Addr, Ipv4Addr) {
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
    let lab = u32::from(underlay);
    let half = (lab & (1 << 16)) ^ (1 << 16);
    let offset = ((lab & 0xfffc) + 4 * u32::from(k)) & 0xfffc;
    let net = base | half | offset;
    (Ipv4Addr::from(net + 1), Ipv4Addr::from(net + 2))
}

/// Netmask for a prefix length (vpncmd wants dotted masks).
pub fn prefix_to_mask(len: u8) -> Ipv4Addr {
    Ipv4Addr::from(
        u32::MAX
            .checked_shl(32 - u32::from(len.min(32)))
            .unwrap_or(0),
    )
}

pub fn wire_underlay(
    server_ns: &str,
    client_ns: &str,
    server_ip: Ipv4Addr,
    client_ip: Ipv4Addr,
) -> Result<()> {
    run_argv(&[
        "ip", "-n", server_ns, "link", "add", SERVER_IF, "type", "veth", "peer", "name", CLIENT_IF,
        "netns", client_ns,
    ])?;
    run_argv(&[
        "ip",
        "-n",
        server_ns,
        "addr",
        "add",
        &format!("{server_ip}/30"),
        "dev",
        SERVER_IF,
    ])?;
    run_argv(&[
        "ip",
        "-n",
        client_ns,
        "addr",
        "add",
        &format!("{client_ip}/30"),
        "dev",
        CLIENT_IF,
    ])?;
    run_argv(&["ip", "-n", server_ns, "link", "set", SERVER_IF, "up"])?;
    run_argv(&["ip", "-n", client_ns, "link", "set", CLIENT_IF, "up"])?;
    Ok(())
}

pub fn wire_lan(server_ns: &str, lan_ns: &str) -> Result<()> {
    run_argv(&[
        "ip", "-n", server_ns, "link", "add", BRIDGE_IF, "type", "veth", "peer", "name", LAN_IF,
        "netns", lan_ns,
    ])?;
    // The local bridge reads frames with a packet socket: offloaded (partial) checksums and GSO super-frames
    // would enter the hub as-is, so both ends must produce finished, MTU-sized frames.
    disable_offloads(server_ns, BRIDGE_IF)?;
    disable_offloads(lan_ns, LAN_IF)?;
    let lan_addr = format!("{}/{}", subnet::LAN_HOST, subnet::PREFIX_LEN);
    run_argv(&["ip", "-n", lan_ns, "addr", "add", &lan_addr, "dev", LAN_IF])?;
    run_argv(&["ip", "-n", server_ns, "link", "set", BRIDGE_IF, "up"])?;
    run_argv(&["ip", "-n", lan_ns, "link", "set", LAN_IF, "up"])?;
    Ok(())
}

/// Turns off checksum and segmentation offloads on `dev` in `ns`, then verifies tx checksumming is off.
pub fn disable_offloads(ns: &str, dev: &str) -> Result<()> {
    // ethtool exits non-zero when some feature is fixed; the check below is what matters.
    let _ = netns::exec_in(
        ns,
        &[
            "ethtool", "-K", dev, "rx", "off", "tx", "off", "sg", "off", "tso", "off", "gso",
            "off", "gro", "off",
        ],
    );
    let features = netns::exec_in_ok(ns, &["ethtool", "-k", dev])?;
    if !features.lines().any(|l| l.trim() == "tx-checksumming: off") {
        bail!("could not turn off tx checksum offload on {dev} in {ns}:\n{features}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn underlay_is_a_30_in_198_18_slash_15() {
        for (pid, n) in [(0, 0), (1, 5), (u32::MAX, u32::MAX), (123_456, 7)] {
            let (s, c) = underlay_pair(pid, n);
            let (s, c) = (u32::from(s), u32::from(c));
            assert_eq!(s & !3, c & !3, "same /30");
            assert_eq!(s & 3, 1);
            assert_eq!(c & 3, 2);
            assert_eq!(s >> 17, u32::from(Ipv4Addr::new(198, 18, 0, 0)) >> 17);
        }
        assert_ne!(underlay_pair(10, 0), underlay_pair(10, 1));
    }

    #[test]
    fn side_pairs_stay_in_198_18_slash_15_and_never_meet_the_underlay() {
        let slash15 = u32::from(Ipv4Addr::new(198, 18, 0, 0)) >> 17;
        for (pid, n) in [(0, 0), (1, 5), (u32::MAX, u32::MAX), (123_456, 7), (40, 9)] {
            let (_, client) = underlay_pair(pid, n);
            let mut seen = std::collections::HashSet::new();
            for k in [0, 1, 2, 16383] {
                let (a, b) = side_pair(client, k);
                let (a, b) = (u32::from(a), u32::from(b));
                assert_eq!((a & 3, b & 3, a & !3), (1, 2, b & !3), "a /30");
                assert_eq!(a >> 17, slash15);
                assert_ne!(a & !3, u32::from(client) & !3, "not the underlay /30");
                assert!(seen.insert(a & !3), "distinct per k");
            }
        }
        assert_eq!(
            side_pair(Ipv4Addr::new(198, 18, 255, 254), 1),
            (Ipv4Addr::new(198, 19, 0, 1), Ipv4Addr::new(198, 19, 0, 2))
        );
        assert_eq!(
            side_pair(Ipv4Addr::new(198, 19, 0, 6), 0),
            (Ipv4Addr::new(198, 18, 0, 5), Ipv4Addr::new(198, 18, 0, 6))
        );
    }

    #[test]
    fn masks() {
        assert_eq!(prefix_to_mask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(prefix_to_mask(0), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(prefix_to_mask(32), Ipv4Addr::new(255, 255, 255, 255));
    }
}
