//! DEL: best-effort teardown that always succeeds when there is nothing (left)
//! to do — without netns, without prevResult, repeated, sidecar down.
//!
//! With the sidecar down the plugin removes the TAP in the netns itself (the
//! kernel drops its addresses and routes with it), then the policy rules of
//! `policyRouteTable` and the CONNMARK nft table — through `netcfg::pod_netns`,
//! the code the sidecar runs — and leaves a tombstone,
//! `STATE_DIR/tombstones/<id>:<ifname>.json` (`softether_control::state_dir`), so
//! the sidecar forgets the attachment when it comes back. Only a TAP that is this
//! attachment's (see `ownership`) is removed, and only then its rules and
//! table; another attachment's TAP of the same name (this DEL may follow an ADD
//! refused for that very reason), or a link of that name that is no TAP at all,
//! is left alone, with everything else, and gets no tombstone, which would make
//! the sidecar remove it. Each step is best effort: a failure is logged and the
//! next step still runs. A container id longer than ADD accepts has nothing to
//! remove.
//!
//! The config is parsed leniently: a version we cannot speak or stdin that is
//! not JSON is still an error (the runtime is broken), but a config that fails
//! validation only produces a warning, because the attachment it created must
//! still be removable.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::logging;
use crate::netconf::{self, NetConf, DEFAULT_SIDECAR_SOCKET, DEFAULT_STATE_DIR, DEFAULT_TIMEOUT};
use crate::pod_tap::{PodRouting, PodTaps, TapRemoval};
use crate::sidecar_client::{AttachmentRef, Connect, DetachRequest, SidecarError};
use crate::spec::env::container_id_only_too_long;
use crate::spec::{CniError, Env, ErrorCode, Output};
use netcfg::pod_netns::engine_id;
use softether_control::state_dir::{self, StateDir, StateError, Tombstone, MAX_CONTAINER_ID_LEN};
use softether_control::Mac;

pub fn run(
    env: &Env,
    stdin: &[u8],
    connect: Connect<'_>,
    taps: &dyn PodTaps,
) -> Result<Output, CniError> {
    let container_id = env.required_container_id()?;
    let ifname = env.required_ifname()?;
    if container_id_only_too_long(container_id) {
        logging::warn(format_args!(
            "DEL: CNI_CONTAINERID of {} bytes is longer than ADD accepts ({MAX_CONTAINER_ID_LEN}); \
             nothing can exist for it",
            container_id.len()
        ));
        return Ok(Output::Nothing);
    }
    let map = netconf::parse_stdin(stdin)?;
    let target = match NetConf::from_map(map.clone()) {
        Ok(conf) => Target {
            network: conf.name,
            socket: conf.sidecar_socket,
            state_dir: StateDir::at(conf.state_dir),
            timeout: conf.timeout,
            policy_table: conf.policy_route_table,
            connmark: conf.connmark,
        },
        Err(e) if e.code() == ErrorCode::IncompatibleVersion => return Err(e),
        Err(e) => {
            logging::warn(format_args!(
                "DEL {container_id}/{ifname}: config does not validate ({e}); cleaning up anyway"
            ));
            Target::salvage(&map)
        }
    };
    let request = DetachRequest {
        attachment: AttachmentRef {
            network: target.network,
            container_id: container_id.to_owned(),
            ifname: ifname.to_owned(),
        },
        netns: env.netns.clone(),
    };
    let deadline = Instant::now() + target.timeout;
    match connect(&target.socket).detach(&request, deadline) {
        Ok(()) => Ok(Output::Nothing),
        // The sidecar reports a real failure (e.g. netlink refused to delete
        // the TAP); the runtime retries DEL.
        Err(SidecarError::Refused(e)) => Err(e),
        Err(e) => {
            logging::warn(format_args!(
                "DEL {container_id}/{ifname}: {e}; removing this attachment's TAP, rules and nft table here and leaving a tombstone"
            ));
            let netns = env.netns.as_deref().filter(|n| !n.is_empty());
            if let Some(netns) = netns {
                let ours = remove_own_tap(
                    taps,
                    &map,
                    &env.args,
                    &target.state_dir,
                    netns,
                    container_id,
                    ifname,
                );
                if !ours {
                    return Ok(Output::Nothing);
                }
                let leftovers = PodRouting {
                    policy_table: target.policy_table,
                    address: target
                        .policy_table
                        .and_then(|_| ownership::prev_result_address(&map, ifname, netns)),
                    connmark_id: target.connmark.then(|| engine_id(container_id, ifname)),
                };
                if !leftovers.is_empty() {
                    for e in taps.remove_leftovers(netns, &leftovers) {
                        logging::warn(format_args!("DEL {container_id}/{ifname}: {e}"));
                    }
                }
            }
            if let Err(e) = write_tombstone(&target.state_dir, &request) {
                logging::warn(format_args!(
                    "DEL {container_id}/{ifname}: cannot write the tombstone: {e}"
                ));
            }
            Ok(Output::Nothing)
        }
    }
}

/// Removes `CNI_IFNAME` in `netns` if it is this attachment's. `false` when it
/// belongs to another attachment: then it stays, and so must its record.
fn remove_own_tap(
    taps: &dyn PodTaps,
    conf: &Map<String, Value>,
    cni_args: &str,
    state_dir: &StateDir,
    netns: &str,
    container_id: &str,
    ifname: &str,
) -> bool {
    if let Some(other) = ownership::claimed_by_other(state_dir, container_id, ifname, netns) {
        logging::warn(format_args!(
            "DEL {container_id}/{ifname}: {ifname} in {netns} belongs to attachment \
             {other}/{ifname}; leaving it and writing no tombstone"
        ));
        return false;
    }
    let mac = ownership::expected_mac(conf, cni_args, state_dir, container_id, ifname, netns);
    match taps.delete(netns, ifname, mac) {
        Ok(TapRemoval::NotOurs { mac: found }) => {
            logging::warn(format_args!(
                "DEL {container_id}/{ifname}: {ifname} in {netns} has MAC {}, not this \
                 attachment's {}; leaving it and writing no tombstone",
                Mac(found),
                Mac(mac)
            ));
            false
        }
        Ok(TapRemoval::NotATap { kind }) => {
            logging::warn(format_args!(
                "DEL {container_id}/{ifname}: {ifname} in {netns} is not a TAP ({}); leaving it \
                 and writing no tombstone",
                kind.as_deref().unwrap_or("no link kind")
            ));
            false
        }
        Ok(TapRemoval::Removed | TapRemoval::Absent) => true,
        Err(e) => {
            logging::warn(format_args!("DEL {container_id}/{ifname}: {e}"));
            true
        }
    }
}

/// Records the DEL for the sidecar (atomically). Only written when the sidecar state
/// directory exists, i.e. a sidecar ran here.
fn write_tombstone(dir: &StateDir, req: &DetachRequest) -> Result<(), StateError> {
    if !dir.exists() {
        return Ok(());
    }
    let a = &req.attachment;
    dir.write_tombstone(&Tombstone {
        container_id: a.container_id.clone(),
        ifname: a.ifname.clone(),
        network: a.network.clone(),
        netns: req.netns.clone(),
        deleted_at: state_dir::unix_now(),
    })
}

struct Target {
    network: String,
    socket: PathBuf,
    state_dir: StateDir,
    timeout: Duration,
    /// `policyRouteTable` and `connmark`: what to remove besides the TAP.
    policy_table: Option<u32>,
    connmark: bool,
}

impl Target {
    /// The little DEL needs, taken from a config that did not validate.
    fn salvage(map: &Map<String, Value>) -> Target {
        let string = |k: &str| map.get(k).and_then(Value::as_str);
        Target {
            network: string("name").unwrap_or_default().to_owned(),
            socket: PathBuf::from(
                string("sidecarSocket")
                    .filter(|s| s.starts_with('/'))
                    .unwrap_or(DEFAULT_SIDECAR_SOCKET),
            ),
            state_dir: StateDir::at(
                string("stateDir")
                    .filter(|s| s.starts_with('/'))
                    .unwrap_or(DEFAULT_STATE_DIR),
            ),
            timeout: map
                .get("timeout")
                .and_then(Value::as_u64)
                .filter(|t| (1..=netconf::MAX_TIMEOUT_SECS).contains(t))
                .map_or(DEFAULT_TIMEOUT, Duration::from_secs),
            policy_table: map
                .get("policyRouteTable")
                .and_then(Value::as_u64)
                .and_then(|t| u32::try_from(t).ok())
                .filter(|t| *t != 0 && !(253..=255).contains(t)),
            connmark: map.get("connmark").and_then(Value::as_bool) == Some(true),
        }
    }
}

mod ownership;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Command;
    use crate::test_support::fake_sidecar::{Harness, Script};
    use serde_json::json;

    fn env(netns: Option<&str>) -> Env {
        Env {
            command: Command::Del,
            container_id: Some("c1".into()),
            netns: netns.map(str::to_owned),
            ifname: Some("vpn0".into()),
            args: String::new(),
            path: vec![],
            netns_override: false,
        }
    }

    fn conf() -> Value {
        json!({"cniVersion": "1.0.0", "name": "vpnnet", "type": "softether", "sidecarSocket": "/tmp/x.sock"})
    }

    fn del(env: &Env, conf: &Value, h: &Harness) -> Result<Output, CniError> {
        run(env, conf.to_string().as_bytes(), &|p| h.connect(p), &h.taps)
    }

    #[test]
    fn nothing_to_do_succeeds_repeatedly_without_netns_or_sidecar() {
        let h = Harness::new(Script::default());
        for _ in 0..2 {
            assert_eq!(del(&env(None), &conf(), &h).unwrap(), Output::Nothing);
        }
        assert_eq!(h.seen.borrow().detach.len(), 2);
        assert_eq!(h.seen.borrow().detach[0].netns, None);
    }

    #[test]
    fn detach_request_carries_the_attachment() {
        let h = Harness::new(Script {
            detach: Some(Ok(())),
            ..Script::default()
        });
        assert_eq!(
            del(&env(Some("/run/netns/p")), &conf(), &h).unwrap(),
            Output::Nothing
        );
        let seen = h.seen.borrow();
        let req = &seen.detach[0];
        assert_eq!(req.attachment.network, "vpnnet");
        assert_eq!(req.attachment.container_id, "c1");
        assert_eq!(req.attachment.ifname, "vpn0");
        assert_eq!(req.netns.as_deref(), Some("/run/netns/p"));
        assert_eq!(h.sockets.borrow()[0], PathBuf::from("/tmp/x.sock"));
    }

    #[test]
    fn invalid_config_still_cleans_up_with_salvaged_socket() {
        let mut c = conf();
        c["port"] = json!(0);
        c["password"] = json!("x");
        let h = Harness::new(Script {
            detach: Some(Ok(())),
            ..Script::default()
        });
        assert_eq!(del(&env(None), &c, &h).unwrap(), Output::Nothing);
        assert_eq!(h.seen.borrow().detach.len(), 1);
        assert_eq!(h.sockets.borrow()[0], PathBuf::from("/tmp/x.sock"));
    }

    #[test]
    fn sidecar_down_removes_the_tap_and_leaves_a_tombstone() {
        let dir = crate::test_support::TempDir::new("tomb");
        let mut c = conf();
        c["stateDir"] = json!(dir.path().to_str().unwrap());
        let h = Harness::new(Script::default());
        assert_eq!(
            del(&env(Some("/run/netns/p")), &c, &h).unwrap(),
            Output::Nothing
        );
        assert_eq!(
            h.taps.deleted.borrow().clone(),
            vec![("/run/netns/p".to_string(), "vpn0".to_string())]
        );
        // The sidecar reads it with its own reader and type (softether_control::state_dir).
        let tombs = StateDir::open(dir.path())
            .unwrap()
            .tombstones_list()
            .unwrap();
        let [Ok(t)] = &tombs[..] else {
            panic!("one readable tombstone: {tombs:?}")
        };
        assert_eq!(
            (
                &*t.container_id,
                &*t.ifname,
                &*t.network,
                t.netns.as_deref()
            ),
            ("c1", "vpn0", "vpnnet", Some("/run/netns/p"))
        );
        assert!(t.deleted_at > 0);
        // No netns: nothing to delete, still a tombstone, still success.
        let h = Harness::new(Script::default());
        assert_eq!(del(&env(None), &c, &h).unwrap(), Output::Nothing);
        assert!(h.taps.deleted.borrow().is_empty());
    }

    #[test]
    fn sidecar_down_leaves_a_tap_with_another_mac_and_writes_no_tombstone() {
        let dir = crate::test_support::TempDir::new("foreign-mac");
        let mut c = conf();
        c["stateDir"] = json!(dir.path().to_str().unwrap());
        let mut h = Harness::new(Script::default());
        h.taps.existing_mac = Some([0x5e, 1, 2, 3, 4, 5]);
        assert_eq!(
            del(&env(Some("/run/netns/p")), &c, &h).unwrap(),
            Output::Nothing
        );
        assert!(h.taps.deleted.borrow().is_empty());
        let derived = crate::pod_tap::derived_mac("c1", "vpn0");
        assert_eq!(
            h.taps.refused.borrow().clone(),
            vec![("/run/netns/p".to_string(), "vpn0".to_string(), derived)]
        );
        assert!(!dir.path().join("tombstones/c1:vpn0.json").exists());
    }

    /// Issue 14: a link of that name that is no TAP used to count as ours (its removal failed,
    /// and DEL went on to write a tombstone).
    #[test]
    fn sidecar_down_leaves_a_link_that_is_no_tap_and_writes_no_tombstone() {
        let dir = crate::test_support::TempDir::new("not-a-tap");
        let mut c = policy_conf(&dir);
        c.as_object_mut().unwrap().remove("prevResult");
        let mut h = Harness::new(Script::default());
        h.taps.not_a_tap = true;
        assert_eq!(
            del(&env(Some("/run/netns/p")), &c, &h).unwrap(),
            Output::Nothing
        );
        assert!(h.taps.deleted.borrow().is_empty());
        assert!(
            h.taps.cleaned.borrow().is_empty(),
            "its rules are not ours either"
        );
        assert!(!dir.path().join("tombstones/c1:vpn0.json").exists());
    }

    #[test]
    fn sidecar_down_compares_with_the_mac_the_attachment_had() {
        let ours = [2, 0, 0, 0, 0, 7];
        let cases = [
            (json!({"runtimeConfig": {"mac": "02:00:00:00:00:07"}}), ""),
            (json!({}), "IgnoreUnknown=1;MAC=02:00:00:00:00:07"),
            (
                json!({"prevResult": {"interfaces": [
                    {"name": "vpn0", "mac": "02:00:00:00:00:07", "sandbox": "/run/netns/p"}]}}),
                "",
            ),
        ];
        let dir = crate::test_support::TempDir::new("own-mac");
        for (extra, args) in cases {
            let mut c = conf();
            c["stateDir"] = json!(dir.path().to_str().unwrap());
            for (k, v) in extra.as_object().unwrap() {
                c[k] = v.clone();
            }
            let mut e = env(Some("/run/netns/p"));
            e.args = args.into();
            let mut h = Harness::new(Script::default());
            h.taps.existing_mac = Some(ours);
            assert_eq!(del(&e, &c, &h).unwrap(), Output::Nothing);
            assert_eq!(h.taps.deleted.borrow().len(), 1, "{extra} {args}");
            // The derived MAC is not this attachment's when it had another one.
            let mut h = Harness::new(Script::default());
            h.taps.existing_mac = Some(crate::pod_tap::derived_mac("c1", "vpn0"));
            assert_eq!(del(&e, &c, &h).unwrap(), Output::Nothing);
            assert!(h.taps.deleted.borrow().is_empty(), "{extra} {args}");
        }
    }

    #[test]
    fn sidecar_down_leaves_a_tap_another_attachment_records_even_with_our_mac() {
        let dir = crate::test_support::TempDir::new("foreign-record");
        crate::test_support::sidecar_record(
            dir.path(),
            "c0",
            "vpn0",
            "/run/netns/p",
            "02:00:00:00:00:07",
        );
        let mut c = conf();
        c["stateDir"] = json!(dir.path().to_str().unwrap());
        c["runtimeConfig"] = json!({"mac": "02:00:00:00:00:07"});
        let h = Harness::new(Script::default());
        assert_eq!(
            del(&env(Some("/run/netns/p")), &c, &h).unwrap(),
            Output::Nothing
        );
        assert!(h.taps.deleted.borrow().is_empty());
        assert!(h.taps.refused.borrow().is_empty(), "not even attached to");
        assert!(!dir.path().join("tombstones/c1:vpn0.json").exists());
        // In another netns the record claims nothing.
        let h = Harness::new(Script::default());
        del(&env(Some("/run/netns/q")), &c, &h).unwrap();
        assert_eq!(h.taps.deleted.borrow().len(), 1);
        assert!(dir.path().join("tombstones/c1:vpn0.json").exists());
    }

    fn policy_conf(dir: &crate::test_support::TempDir) -> Value {
        let mut c = conf();
        c["stateDir"] = json!(dir.path().to_str().unwrap());
        c["policyRouteTable"] = json!(100);
        c["connmark"] = json!(true);
        c["prevResult"] = json!({
            "interfaces": [{"name": "eth0", "sandbox": "/run/netns/p"},
                           {"name": "vpn0", "sandbox": "/run/netns/p"}],
            "ips": [{"address": "198.18.0.5/16", "interface": 0},
                    {"address": "192.168.30.10/24", "interface": 1}],
        });
        c
    }

    #[test]
    fn sidecar_down_removes_rules_and_nft_table_with_our_tap() {
        let dir = crate::test_support::TempDir::new("leftovers");
        let mut c = policy_conf(&dir);
        let h = Harness::new(Script::default());
        assert_eq!(
            del(&env(Some("/run/netns/p")), &c, &h).unwrap(),
            Output::Nothing
        );
        let want = PodRouting {
            policy_table: Some(100),
            address: Some([192, 168, 30, 10].into()),
            connmark_id: Some("c1_vpn0".into()),
        };
        assert_eq!(
            h.taps.cleaned.borrow().clone(),
            vec![("/run/netns/p".to_string(), want)]
        );
        assert!(dir.path().join("tombstones/c1:vpn0.json").exists());
        // A config that no longer validates still names the table; no prevResult, no
        // address; without connmark, no nft table.
        c.as_object_mut().unwrap().remove("prevResult");
        c["connmark"] = json!(false);
        c["port"] = json!(0);
        let h = Harness::new(Script::default());
        del(&env(Some("/run/netns/p")), &c, &h).unwrap();
        let want = PodRouting {
            policy_table: Some(100),
            ..PodRouting::default()
        };
        assert_eq!(h.taps.cleaned.borrow()[0].1, want);
    }

    #[test]
    fn rules_and_table_stay_when_not_ours_or_nothing_to_remove() {
        let dir = crate::test_support::TempDir::new("leftovers-stay");
        // Another attachment's TAP: its rules and table are left too.
        let mut h = Harness::new(Script::default());
        h.taps.existing_mac = Some([0x5e, 1, 2, 3, 4, 5]);
        let mut c = policy_conf(&dir);
        c.as_object_mut().unwrap().remove("prevResult");
        del(&env(Some("/run/netns/p")), &c, &h).unwrap();
        assert!(h.taps.cleaned.borrow().is_empty());
        // The sidecar answered: it removed them.
        let h = Harness::new(Script {
            detach: Some(Ok(())),
            ..Script::default()
        });
        del(&env(Some("/run/netns/p")), &c, &h).unwrap();
        assert!(h.taps.cleaned.borrow().is_empty());
        // Neither policy routing nor connmark configured, or no netns: nothing to clean.
        let h = Harness::new(Script::default());
        del(&env(Some("/run/netns/p")), &conf(), &h).unwrap();
        del(&env(None), &c, &h).unwrap();
        assert!(h.taps.cleaned.borrow().is_empty());
    }

    #[test]
    fn over_long_container_id_succeeds_with_nothing_to_do() {
        let mut e = env(Some("/run/netns/p"));
        e.container_id = Some("a".repeat(300));
        let h = Harness::new(Script::default());
        assert_eq!(del(&e, &conf(), &h).unwrap(), Output::Nothing);
        assert!(h.seen.borrow().detach.is_empty(), "no sidecar call");
        assert!(h.taps.deleted.borrow().is_empty() && h.taps.refused.borrow().is_empty());
    }

    #[test]
    fn no_tombstone_without_a_state_dir() {
        let mut c = conf();
        c["stateDir"] = json!("/nonexistent/softether-state");
        let h = Harness::new(Script::default());
        assert_eq!(del(&env(None), &c, &h).unwrap(), Output::Nothing);
        assert!(!std::path::Path::new("/nonexistent/softether-state").exists());
    }

    #[test]
    fn sidecar_reported_failure_is_returned() {
        let e = CniError::new(ErrorCode::TapNetns, "cannot delete vpn0", "");
        let h = Harness::new(Script {
            detach: Some(Err(SidecarError::Refused(e.clone()))),
            ..Script::default()
        });
        assert_eq!(del(&env(None), &conf(), &h).unwrap_err(), e);
    }

    #[test]
    fn version_and_decode_errors_still_fail() {
        let h = Harness::new(Script::default());
        let mut c = conf();
        c["cniVersion"] = json!("0.2.0");
        assert_eq!(
            del(&env(None), &c, &h).unwrap_err().code(),
            ErrorCode::IncompatibleVersion
        );
        let e = run(&env(None), b"{not json", &|p| h.connect(p), &h.taps).unwrap_err();
        assert_eq!(e.code(), ErrorCode::Decode);
    }
}
