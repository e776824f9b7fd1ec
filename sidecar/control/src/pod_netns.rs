//! Names for what an attachment installs in the pod's network namespace besides its TAP.
//!
//! The sidecar installs them; the plugin removes them itself when a DEL finds the sidecar
//! down. Both ends take the names from here so that the plugin finds exactly what the
//! sidecar made.

/// `ip rule` priority of `from <VPN_IP>/32 lookup <policyRouteTable>`.
pub const RULE_PRIORITY_FROM: u32 = 1000;
/// `ip rule` priority of `fwmark <policyRouteTable> lookup <policyRouteTable>`
/// (CONNMARK-restored replies).
pub const RULE_PRIORITY_FWMARK: u32 = 1001;

/// The id of an attachment's session engine, `<containerID>_<ifname>`. It names the
/// attachment's CONNMARK table: `netcfg::Firewall::new(netns, &attachment_engine_id(..))`
/// sanitises it into `inet softether_<id>`.
pub fn attachment_engine_id(container_id: &str, ifname: &str) -> String {
    format!("{container_id}_{ifname}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_id_joins_container_and_ifname() {
        assert_eq!(attachment_engine_id("c1", "vpn0"), "c1_vpn0");
        assert_ne!(
            attachment_engine_id("c1", "vpn0"),
            attachment_engine_id("c1", "vpn1")
        );
    }
}
