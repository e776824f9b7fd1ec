//! Whose TAP is `CNI_IFNAME` in `CNI_NETNS`? DEL follows every ADD, also one
//! refused because another attachment already had that name in that netns, so
//! with the sidecar down DEL must not remove a TAP by name alone. Two witnesses:
//!
//! - the sidecar's attachment records: one of *another* container (not
//!   already tombstoned) claiming this netns and ifname means the TAP is
//!   theirs, whatever its MAC;
//! - the MAC this attachment gave its TAP: the `mac` of our interface in
//!   `prevResult`, else the one in our own record, else the one ADD would have
//!   chosen (`runtimeConfig.mac`, then `CNI_ARGS` `MAC=`, then the MAC derived
//!   from container id and ifname). `PodTaps::delete` compares it with the MAC
//!   of the TAP it holds.
//!
//! `prevResult` also names the address our policy rule is from, when it has one.

use std::net::Ipv4Addr;

use serde_json::{Map, Value};

use netcfg::pod_netns::same_netns;
use softether_control::state_dir::{AttachmentKey, StateDir};
use softether_control::Mac;

use crate::pod_tap::derived_mac;

/// The MAC this attachment's TAP has, if it exists and is ours.
pub(super) fn expected_mac(
    conf: &Map<String, Value>,
    cni_args: &str,
    state_dir: &StateDir,
    container_id: &str,
    ifname: &str,
    netns: &str,
) -> [u8; 6] {
    prev_result_mac(conf, ifname, netns)
        .or_else(|| own_record_mac(state_dir, container_id, ifname))
        .or_else(|| runtime_config_mac(conf))
        .or_else(|| cni_args_mac(cni_args))
        .unwrap_or_else(|| derived_mac(container_id, ifname))
}

/// The container id of another live attachment whose sidecar record claims
/// `ifname` in `netns`.
pub(super) fn claimed_by_other(
    state_dir: &StateDir,
    container_id: &str,
    ifname: &str,
    netns: &str,
) -> Option<String> {
    let keys = state_dir.record_keys().ok()?;
    keys.into_iter()
        .filter(|key| key.ifname == ifname && key.container_id != container_id)
        // A tombstoned attachment is already gone as far as the runtime knows.
        .filter(|key| !state_dir.has_tombstone(key))
        .find_map(|key| {
            // Unreadable records claim nothing.
            let record = state_dir.record(&key).ok()??;
            let claims =
                record.key().ok().as_ref() == Some(&key) && same_netns(&record.netns, netns);
            claims.then_some(key.container_id)
        })
}

fn mac_of(text: Option<&Value>) -> Option<[u8; 6]> {
    text?.as_str()?.parse::<Mac>().ok().map(Mac::octets)
}

/// ADD refuses a `prevResult` that already has `ifname` in `netns`, so in the
/// final result DEL receives such an entry is the one this plugin added.
fn prev_result_mac(conf: &Map<String, Value>, ifname: &str, netns: &str) -> Option<[u8; 6]> {
    let interfaces = conf.get("prevResult")?.get("interfaces")?.as_array()?;
    interfaces
        .iter()
        .filter(|i| i.get("name").and_then(Value::as_str) == Some(ifname))
        .filter(|i| {
            i.get("sandbox")
                .and_then(Value::as_str)
                .is_some_and(|s| same_netns(s, netns))
        })
        .find_map(|i| mac_of(i.get("mac")))
}

/// The IPv4 address `prevResult` gives our interface (an `ips` entry whose `interface`
/// indexes our entry in `interfaces`): then only the policy rule from that address is ours.
pub(super) fn prev_result_address(
    conf: &Map<String, Value>,
    ifname: &str,
    netns: &str,
) -> Option<Ipv4Addr> {
    let prev = conf.get("prevResult")?;
    let interfaces = prev.get("interfaces")?.as_array()?;
    let ours = |index: &Value| {
        let entry = usize::try_from(index.as_u64()?).ok()?;
        let i = interfaces.get(entry)?;
        let sandbox = i.get("sandbox")?.as_str()?;
        Some(i.get("name")?.as_str()? == ifname && same_netns(sandbox, netns))
    };
    prev.get("ips")?
        .as_array()?
        .iter()
        .filter(|ip| ip.get("interface").and_then(ours) == Some(true))
        .find_map(|ip| {
            let (addr, _) = ip.get("address")?.as_str()?.split_once('/')?;
            addr.parse().ok()
        })
}

fn own_record_mac(state_dir: &StateDir, container_id: &str, ifname: &str) -> Option<[u8; 6]> {
    let key = AttachmentKey::new(container_id, ifname).ok()?;
    let record = state_dir.record(&key).ok()??;
    record.mac.parse::<Mac>().ok().map(Mac::octets)
}

fn runtime_config_mac(conf: &Map<String, Value>) -> Option<[u8; 6]> {
    mac_of(conf.get("runtimeConfig")?.get("mac"))
}

/// Lenient on purpose: DEL must not fail over `CNI_ARGS` that ADD checked.
fn cni_args_mac(raw: &str) -> Option<[u8; 6]> {
    let value = raw.split(';').find_map(|item| item.strip_prefix("MAC="))?;
    mac_of(Some(&Value::String(value.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;
    use serde_json::json;

    const NS: &str = "/run/netns/pod1";

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    /// A record as the sidecar writes it (same type, same writer).
    fn record(dir: &TempDir, id: &str, ifname: &str, netns: &str, mac: &str) {
        crate::test_support::sidecar_record(dir.path(), id, ifname, netns, mac);
    }

    fn view(dir: &TempDir) -> StateDir {
        StateDir::at(dir.path())
    }

    #[test]
    fn mac_falls_back_from_prev_result_to_record_to_runtime_config_to_args_to_derived() {
        let dir = TempDir::new("own-mac");
        let derived = derived_mac("c1", "vpn0");
        let m =
            |conf: Value, args: &str| expected_mac(&map(conf), args, &view(&dir), "c1", "vpn0", NS);
        assert_eq!(m(json!({}), ""), derived);
        assert_eq!(
            m(json!({}), "IgnoreUnknown=1;MAC=02:00:00:00:00:05"),
            [2, 0, 0, 0, 0, 5]
        );
        let rc = json!({"runtimeConfig": {"mac": "02-00-00-00-00-04"}});
        assert_eq!(m(rc.clone(), "MAC=02:00:00:00:00:05"), [2, 0, 0, 0, 0, 4]);
        record(&dir, "c1", "vpn0", NS, "5E:00:00:00:00:03");
        assert_eq!(m(rc, ""), [0x5e, 0, 0, 0, 0, 3]);
        let prev = json!({"runtimeConfig": {"mac": "02:00:00:00:00:04"}, "prevResult": {"interfaces": [
            {"name": "eth0", "mac": "02:00:00:00:00:09", "sandbox": NS},
            {"name": "vpn0", "mac": "02:00:00:00:00:08", "sandbox": "/run/netns/other"},
            {"name": "vpn0", "mac": "5e:00:00:00:00:02", "sandbox": NS},
        ]}});
        assert_eq!(m(prev, ""), [0x5e, 0, 0, 0, 0, 2]);
    }

    #[test]
    fn unusable_macs_are_skipped_not_fatal() {
        let dir = TempDir::new("bad-mac");
        let conf = json!({"runtimeConfig": {"mac": "not-a-mac"},
                          "prevResult": {"interfaces": [{"name": "vpn0", "mac": 7, "sandbox": NS}]}});
        assert_eq!(
            expected_mac(&map(conf), "MAC=zz", &view(&dir), "c1", "vpn0", NS),
            derived_mac("c1", "vpn0")
        );
    }

    #[test]
    fn another_containers_record_for_the_same_netns_and_ifname_claims_it() {
        let dir = TempDir::new("claims");
        assert_eq!(claimed_by_other(&view(&dir), "c2", "vpn0", NS), None);
        record(&dir, "c1", "vpn0", NS, "5E:00:00:00:00:01");
        assert_eq!(
            claimed_by_other(&view(&dir), "c2", "vpn0", NS).as_deref(),
            Some("c1")
        );
        // Our own record, another ifname or another netns claim nothing.
        assert_eq!(claimed_by_other(&view(&dir), "c1", "vpn0", NS), None);
        assert_eq!(claimed_by_other(&view(&dir), "c2", "vpn1", NS), None);
        assert_eq!(
            claimed_by_other(&view(&dir), "c2", "vpn0", "/run/netns/x"),
            None
        );
    }

    #[test]
    fn tombstoned_or_unreadable_records_claim_nothing() {
        let dir = TempDir::new("claims-dead");
        record(&dir, "c1", "vpn0", NS, "5E:00:00:00:00:01");
        std::fs::create_dir_all(dir.path().join("tombstones")).unwrap();
        dir.file("tombstones/c1:vpn0.json", "{}");
        assert_eq!(claimed_by_other(&view(&dir), "c2", "vpn0", NS), None);
        dir.file("attachments/c3:vpn0.json", "{not json");
        dir.file(
            "attachments/c4:vpn0.json",
            r#"{"containerID":"c5","ifname":"vpn0","netns":"/run/netns/pod1"}"#,
        );
        assert_eq!(claimed_by_other(&view(&dir), "c2", "vpn0", NS), None);
    }

    #[test]
    fn address_is_the_ipv4_of_our_interface_in_prev_result() {
        let prev = |ips: Value| {
            map(json!({"prevResult": {
                "interfaces": [
                    {"name": "eth0", "sandbox": NS},
                    {"name": "vpn0", "sandbox": "/run/netns/other"},
                    {"name": "vpn0", "sandbox": NS},
                ],
                "ips": ips,
            }}))
        };
        let a = |conf: &Map<String, Value>| prev_result_address(conf, "vpn0", NS);
        let ips = json!([
            {"address": "198.18.0.5/16", "interface": 0},
            {"address": "10.1.0.9/24", "interface": 1},
            {"address": "fd00::5/64", "interface": 2},
            {"address": "192.168.30.10/24", "interface": 2},
        ]);
        assert_eq!(a(&prev(ips)), Some(Ipv4Addr::new(192, 168, 30, 10)));
        let not_ours = json!([
            {"address": "198.18.0.5/16", "interface": 0},
            {"address": "10.1.0.9/24", "interface": 9},
            {"address": "10.1.0.8/24"},
            {"address": "bogus", "interface": 2},
        ]);
        assert_eq!(a(&prev(not_ours)), None);
        assert_eq!(a(&map(json!({}))), None);
    }
}
