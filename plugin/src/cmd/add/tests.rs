//! ADD against a fake sidecar.

use super::*;
use crate::sidecar_client::{AttachedIp, AttachedRoute};
use crate::spec::result::Dns;
use crate::spec::{Command, Version};
use crate::test_support::fake_sidecar::{Harness, Script};
use crate::test_support::TempDir;
use serde_json::{json, Value};

fn env(args: &str) -> Env {
    Env {
        command: Command::Add,
        container_id: Some("c1".into()),
        netns: Some("/run/netns/pod1".into()),
        ifname: Some("vpn0".into()),
        args: args.into(),
        path: vec!["/opt/cni/bin".into()],
        netns_override: false,
    }
}

fn conf(dir: &TempDir, version: &str, extra: Value) -> NetConf {
    let pass = dir.file("pw", "secret\n");
    let mut v = json!({
        "cniVersion": version, "name": "vpnnet", "type": "softether",
        "server": "198.18.0.1", "user": "alice", "passwordFile": pass.to_str().unwrap(),
        "timeout": 30
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    NetConf::from_stdin(v.to_string().as_bytes()).unwrap()
}

fn attached() -> AttachResult {
    AttachResult {
        mac: "02:AB:CD:EF:00:01".parse().unwrap(),
        mtu: Some(1400),
        ips: vec![AttachedIp {
            address: "10.8.0.23/24".parse().unwrap(),
            gateway: Some("10.8.0.1".parse().unwrap()),
        }],
        routes: vec![AttachedRoute {
            dst: "0.0.0.0/0".parse().unwrap(),
            gw: Some("10.8.0.1".parse().unwrap()),
            table: Some(100),
            priority: None,
        }],
        dns: Dns {
            nameservers: vec!["10.8.0.1".into()],
            ..Dns::default()
        },
    }
}

fn add(env: &Env, conf: &NetConf, h: &Harness) -> Result<Output, CniError> {
    run(env, conf, h.connect(&conf.sidecar_socket).as_mut(), &h.taps)
}

fn ok_script() -> Script {
    Script {
        attach: Some(Ok(attached())),
        ..Script::default()
    }
}

#[test]
fn result_for_1_1_0_and_request_contents() {
    let dir = TempDir::new("add");
    let c = conf(
        &dir,
        "1.1.0",
        json!({"mtu": 1400, "policyRouteTable": 100, "runtimeConfig": {"mac": "02:ab:cd:ef:00:01"}}),
    );
    let h = Harness::new(ok_script());
    let Output::Json(out) = add(&env("IgnoreUnknown=1;K8S_POD_NAME=web"), &c, &h).unwrap() else {
        panic!()
    };
    assert_eq!(
        out,
        json!({
            "cniVersion": "1.1.0",
            "interfaces": [{"name": "vpn0", "mac": "02:ab:cd:ef:00:01", "mtu": 1400, "sandbox": "/run/netns/pod1"}],
            "ips": [{"address": "10.8.0.23/24", "gateway": "10.8.0.1", "interface": 0}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.8.0.1", "table": 100}],
            "dns": {"nameservers": ["10.8.0.1"]}
        })
    );
    let seen = h.seen.borrow();
    let req = &seen.attach[0];
    assert!(req.login.password_file.ends_with("pw"));
    assert_eq!(req.link.mac, Some("02:AB:CD:EF:00:01".parse().unwrap()));
    assert_eq!(req.link.policy_route_table, Some(100));
    assert_eq!(req.pod_name.as_deref(), Some("web"));
    assert!(req.timeout_ms > 29_000 && req.timeout_ms <= 30_000);
}

#[test]
fn result_for_0_3_1_has_ip_versions_and_no_1_1_fields() {
    let dir = TempDir::new("add031");
    let c = conf(&dir, "0.3.1", json!({}));
    let Output::Json(out) = add(&env(""), &c, &Harness::new(ok_script())).unwrap() else {
        panic!()
    };
    assert_eq!(out["ips"][0]["version"], "4");
    assert!(out["interfaces"][0].get("mtu").is_none());
    assert_eq!(
        out["routes"][0],
        json!({"dst": "0.0.0.0/0", "gw": "10.8.0.1"})
    );
}

#[test]
fn chains_after_prev_result() {
    let dir = TempDir::new("chain");
    let prev = json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/run/netns/pod1"}],
        "ips": [{"address": "10.88.0.5/16", "gateway": "10.88.0.1", "interface": 0}]});
    let c = conf(&dir, "1.0.0", json!({ "prevResult": prev }));
    let Output::Json(out) = add(&env(""), &c, &Harness::new(ok_script())).unwrap() else {
        panic!()
    };
    assert_eq!(out["interfaces"].as_array().unwrap().len(), 2);
    assert_eq!(out["interfaces"][1]["name"], "vpn0");
    assert_eq!(out["ips"][0]["interface"], 0);
    assert_eq!(
        out["ips"][1],
        json!({"address": "10.8.0.23/24", "gateway": "10.8.0.1", "interface": 1})
    );
    assert_eq!(
        CniResult::from_prev_result(&out)
            .unwrap()
            .render(Version::V1_0_0),
        out
    );
}

#[test]
fn prev_result_already_holding_our_ifname_is_refused() {
    let dir = TempDir::new("dup");
    let prev = json!({"interfaces": [{"name": "vpn0", "sandbox": "/run/netns/pod1"}]});
    let c = conf(&dir, "1.0.0", json!({ "prevResult": prev }));
    let h = Harness::new(ok_script());
    assert_eq!(
        add(&env(""), &c, &h).unwrap_err().code(),
        ErrorCode::InvalidConfig
    );
    assert!(h.seen.borrow().attach.is_empty());
}

#[test]
fn unreachable_sidecar_is_code_11_with_hint() {
    let dir = TempDir::new("unreach");
    let c = conf(&dir, "1.0.0", json!({}));
    let e = add(&env(""), &c, &Harness::new(Script::default())).unwrap_err();
    assert_eq!(e.code(), ErrorCode::TryAgainLater);
    assert!(
        e.msg().contains("sidecar unreachable at")
            && e.msg().contains("is softether-sidecar running?")
    );
}

#[test]
fn sidecar_cni_errors_pass_through() {
    let dir = TempDir::new("login");
    let c = conf(&dir, "1.0.0", json!({}));
    let login = CniError::softether_login("ERR_AUTH_FAILED", 9, "user alice, hub DEFAULT");
    let h = Harness::new(Script {
        attach: Some(Err(SidecarError::Refused(login.clone()))),
        ..Script::default()
    });
    assert_eq!(add(&env(""), &c, &h).unwrap_err(), login);
}

#[test]
fn cni_args_mac_and_overrides_reach_the_request() {
    let dir = TempDir::new("args");
    let bob = dir.file("bob", "bobpw");
    let c = conf(&dir, "1.0.0", json!({}));
    let args = format!(
        "IgnoreUnknown=1;MAC=02-00-00-00-00-09;SOFTETHER_USER=bob;SOFTETHER_PASSWORD_FILE={}",
        bob.display()
    );
    let h = Harness::new(ok_script());
    add(&env(&args), &c, &h).unwrap();
    let seen = h.seen.borrow();
    assert_eq!(
        seen.attach[0].link.mac.map(|m| m.to_string()).as_deref(),
        Some("02:00:00:00:00:09")
    );
    assert_eq!(seen.attach[0].login.user, "bob");
    assert!(seen.attach[0].login.password_file.ends_with("bob"));
}

#[test]
fn bad_cni_args_mac_is_rejected() {
    let dir = TempDir::new("badmac");
    let c = conf(&dir, "1.0.0", json!({}));
    let e = add(
        &env("MAC=01:00:5e:00:00:01"),
        &c,
        &Harness::new(ok_script()),
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidEnv);
}

#[test]
fn own_netns_is_refused_unless_overridden() {
    let dir = TempDir::new("ownns");
    let c = conf(&dir, "1.0.0", json!({}));
    let mut e = env("");
    e.netns = Some("/proc/self/ns/net".into());
    let err = add(&e, &c, &Harness::new(ok_script())).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidEnv);
    assert!(err.msg().contains("CNI_NETNS"));
    e.netns_override = true;
    add(&e, &c, &Harness::new(ok_script())).unwrap();
}

#[test]
fn tap_is_created_with_the_mac_and_removed_when_attach_fails() {
    let dir = TempDir::new("tap");
    let c = conf(&dir, "1.0.0", json!({}));
    let h = Harness::new(ok_script());
    add(&env(""), &c, &h).unwrap();
    let created = h.taps.created.borrow().clone();
    let derived = crate::pod_tap::derived_mac("c1", "vpn0");
    assert_eq!(
        created,
        vec![("/run/netns/pod1".to_string(), "vpn0".to_string(), derived)]
    );
    assert_eq!(
        h.seen.borrow().attach[0].link.mac,
        Some(softether_control::Mac(derived))
    );
    assert!(h.taps.deleted.borrow().is_empty());

    let failing = Harness::new(Script::default()); // sidecar unreachable
    let e = add(&env(""), &c, &failing).unwrap_err();
    assert_eq!(e.code(), ErrorCode::TryAgainLater);
    assert_eq!(
        failing.taps.deleted.borrow().clone(),
        vec![("/run/netns/pod1".to_string(), "vpn0".to_string())]
    );
}

#[test]
fn tap_creation_failure_is_102_and_skips_the_sidecar() {
    let dir = TempDir::new("tapfail");
    let c = conf(&dir, "1.0.0", json!({}));
    let mut h = Harness::new(ok_script());
    h.taps.fail_create = true;
    assert_eq!(
        add(&env(""), &c, &h).unwrap_err().code(),
        ErrorCode::TapNetns
    );
    assert!(h.seen.borrow().attach.is_empty());
}

/// What the sidecar reports for a dual-stack VPN: the lease, a SLAAC address whose gateway is
/// the router's link-local address, the on-link prefix and the default route via the router.
fn dual_stack() -> AttachResult {
    let mut a = attached();
    a.ips.push(AttachedIp {
        address: "fd5e:7e4e:1:0:5c00:ff:fe00:1/64".parse().unwrap(),
        gateway: Some("fe80::1".parse().unwrap()),
    });
    a.routes.push(AttachedRoute {
        dst: "fd5e:7e4e:1::/64".parse().unwrap(),
        gw: None,
        table: None,
        priority: None,
    });
    a.routes.push(AttachedRoute {
        dst: "::/0".parse().unwrap(),
        gw: Some("fe80::1".parse().unwrap()),
        table: None,
        priority: None,
    });
    a.dns.nameservers.push("fd5e:7e4e:1::53".into());
    a
}

#[test]
fn dual_stack_results_carry_both_families_in_every_version() {
    let dir = TempDir::new("add6");
    for version in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let c = conf(&dir, version, json!({}));
        let h = Harness::new(Script {
            attach: Some(Ok(dual_stack())),
            ..Script::default()
        });
        let Output::Json(out) = add(&env(""), &c, &h).unwrap() else {
            panic!()
        };
        let old = version.starts_with("0.");
        let mut want6 = json!({"address": "fd5e:7e4e:1:0:5c00:ff:fe00:1/64",
                               "gateway": "fe80::1", "interface": 0});
        if old {
            want6["version"] = json!("6");
            assert_eq!(out["ips"][0]["version"], "4", "{version}");
        }
        assert_eq!(out["ips"][1], want6, "{version}");
        assert_eq!(
            out["routes"][1],
            json!({"dst": "fd5e:7e4e:1::/64"}),
            "{version}"
        );
        assert_eq!(
            out["routes"][2],
            json!({"dst": "::/0", "gw": "fe80::1"}),
            "{version}"
        );
        assert_eq!(
            out["dns"]["nameservers"],
            json!(["10.8.0.1", "fd5e:7e4e:1::53"]),
            "{version}"
        );
        // The request says nothing about IPv6 by default: the sidecar's default is on.
        assert_eq!(h.seen.borrow().attach[0].link.ipv6, None);
    }
}

#[test]
fn ipv6_false_reaches_the_sidecar() {
    let dir = TempDir::new("add6off");
    let c = conf(&dir, "1.0.0", json!({"ipv6": false}));
    let h = Harness::new(ok_script());
    add(&env(""), &c, &h).unwrap();
    let link = &h.seen.borrow().attach[0].link;
    assert_eq!(link.ipv6, Some(false));
    assert!(!link.ipv6_enabled());
}
