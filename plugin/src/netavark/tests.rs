//! The plugin API's JSON, option validation and the StatusBlock, against a fake sidecar.

use super::types::PluginExec;
use super::*;
use crate::pod_tap::derived_mac;
use crate::sidecar_client::{AttachResult, AttachedIp, AttachedRoute, SidecarError};
use crate::spec::result::Dns;
use crate::spec::{CniResult, ErrorCode};
use crate::test_support::fake_sidecar::{Harness, Script};
use crate::test_support::TempDir;
use serde_json::json;
use softether_control::Mac;

const ID: &str = "3c5e1f0d6a2b4e8f9c7d1a0b2e4f6a8c0d2e4f6a8b0c2d4e6f8a0b2c4d6e8f0a";

fn args(list: &[&str]) -> Option<Invocation> {
    Invocation::from_args(list.iter().map(OsString::from))
}

#[test]
fn first_argument_selects_the_netavark_mode() {
    assert_eq!(args(&["softether"]), None, "no argument: CNI");
    assert_eq!(args(&["softether", "ADD"]), None);
    assert_eq!(args(&["softether", "info"]), Some(Invocation::Info));
    assert_eq!(args(&["softether", "create"]), Some(Invocation::Create));
    assert_eq!(
        args(&["softether", "setup", "/run/netns/x"]),
        Some(Invocation::Setup {
            netns: "/run/netns/x".into()
        })
    );
    assert_eq!(
        args(&["softether", "teardown", "/run/netns/x"]),
        Some(Invocation::Teardown {
            netns: "/run/netns/x".into()
        })
    );
    use std::os::unix::ffi::OsStringExt;
    let not_utf8 = [
        OsString::from("softether"),
        OsString::from("setup"),
        OsString::from_vec(vec![b'/', 0xff]),
    ];
    assert_eq!(
        Invocation::from_args(not_utf8.into_iter()),
        Some(Invocation::MissingNetns { command: "setup" })
    );
    let not_utf8_command = [OsString::from("softether"), OsString::from_vec(vec![0xff])];
    assert_eq!(Invocation::from_args(not_utf8_command.into_iter()), None);
    for cmd in ["setup", "teardown"] {
        let inv = args(&["softether", cmd]).unwrap();
        let h = Harness::new(Script::default());
        let err = run(&inv, b"{}", &|p| h.connect(p), &h.taps).unwrap_err();
        assert!(err.contains("netns path argument is missing"), "{err}");
    }
}

#[test]
fn info_reports_version_and_api_version() {
    let h = Harness::new(Script::default());
    let out = run(&Invocation::Info, b"", &|p| h.connect(p), &h.taps).unwrap();
    assert_eq!(
        out,
        Some(json!({"version": env!("CARGO_PKG_VERSION"), "api_version": "1.0.0"}))
    );
}

/// What Podman sends for `podman network create -d softether -o … vpn` (Go field names; the
/// fields netavark's Rust types lack, `created` and `labels`, must come back unchanged).
fn podman_network(options: Value) -> Value {
    json!({
        "name": "vpn", "id": ID, "driver": "softether",
        "created": "2026-01-02T03:04:05.123456789Z",
        "ipv6_enabled": false, "internal": false, "dns_enabled": true,
        "labels": {"team": "net"},
        "options": options,
        "ipam_options": {}
    })
}

fn good_options(pass: &std::path::Path) -> Value {
    json!({
        "server": "vpn.example.com", "port": "5555", "hub": "LAB", "user": "alice",
        "passwordFile": pass, "insecure": "true", "maxConnections": "4", "mtu": "1400",
        "acceptDefaultGateway": "false", "policyRouteTable": "100", "connmark": "true",
        "timeout": "30", "sidecarSocket": "/run/se.sock", "stateDir": "/var/lib/se"
    })
}

fn create(input: &Value) -> Result<Value, String> {
    let h = Harness::new(Script::default());
    run(
        &Invocation::Create,
        input.to_string().as_bytes(),
        &|p| h.connect(p),
        &h.taps,
    )
    .map(Option::unwrap)
}

#[test]
fn create_returns_the_network_without_subnets_ipam_or_dns() {
    let dir = TempDir::new("nv-create");
    let pass = dir.file("pw", "x\n");
    let input = podman_network(good_options(&pass));
    let out = create(&input).unwrap();
    let mut want = input.clone();
    want["subnets"] = json!([]);
    want["ipam_options"] = json!({"driver": "none"});
    want["dns_enabled"] = json!(false);
    assert_eq!(out, want);
    // Minimal input: only what Podman always sends.
    let min = json!({"name": "v", "id": ID, "driver": "softether",
        "options": {"server": "198.18.0.1", "user": "a", "passwordFile": "/p"}});
    assert_eq!(create(&min).unwrap()["options"], min["options"]);
}

#[test]
fn create_refuses_bad_options_naming_the_key() {
    let dir = TempDir::new("nv-refuse");
    let pass = dir.file("pw", "x\n");
    let cases: &[(&str, &str, &str)] = &[
        ("colour", "blue", "\"colour\": unknown option"),
        (
            "password",
            "hunter2",
            "\"password\": inline passwords are not accepted",
        ),
        ("Password", "hunter2", "inline passwords"),
        (
            "insecure",
            "yes",
            "\"insecure\": invalid value \"yes\": expected true or false",
        ),
        ("port", "https", "\"port\": invalid value \"https\""),
        ("port", "70000", "\"port\": invalid value 70000"),
        ("mtu", "100", "\"mtu\""),
        ("maxConnections", "0", "\"maxConnections\""),
        ("policyRouteTable", "254", "\"policyRouteTable\""),
        ("timeout", "-1", "\"timeout\""),
        ("server", "https://vpn", "\"server\""),
        ("passwordFile", "relative/pw", "\"passwordFile\""),
        ("pinSha256", "abc", "\"pinSha256\""),
        ("sidecarSocket", "sock", "\"sidecarSocket\""),
    ];
    for (key, value, expected) in cases {
        let mut options = good_options(&pass);
        options[*key] = json!(value);
        let err = create(&podman_network(options)).unwrap_err();
        assert!(err.contains(expected), "{key}={value}: {err}");
        assert!(err.contains("softether network option"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
    let mut options = good_options(&pass);
    options.as_object_mut().unwrap().remove("connmark");
    options.as_object_mut().unwrap().remove("policyRouteTable");
    options["connmark"] = json!("true");
    let err = create(&podman_network(options)).unwrap_err();
    assert!(err.contains("\"connmark\""), "{err}");
    for missing in ["server", "user", "passwordFile"] {
        let mut options = good_options(&pass);
        options.as_object_mut().unwrap().remove(missing);
        let err = create(&podman_network(options)).unwrap_err();
        assert!(err.contains(&format!("\"{missing}\" is missing")), "{err}");
    }
    let err = create(&podman_network(Value::Null)).unwrap_err();
    assert!(err.contains("\"server\" is missing"), "{err}");
}

#[test]
fn create_refuses_addressing_podman_would_do_itself() {
    let dir = TempDir::new("nv-subnet");
    let pass = dir.file("pw", "x\n");
    let cases = [
        (
            "subnets",
            json!([{"subnet": "10.1.0.0/24", "gateway": "10.1.0.1"}]),
            "--subnet",
        ),
        (
            "routes",
            json!([{"destination": "10.2.0.0/16", "gateway": "10.1.0.1"}]),
            "--route",
        ),
        ("ipv6_enabled", json!(true), "--ipv6"),
        ("internal", json!(true), "--internal"),
        (
            "ipam_options",
            json!({"driver": "host-local"}),
            "--ipam-driver",
        ),
    ];
    for (key, value, flag) in cases {
        let mut input = podman_network(good_options(&pass));
        input[key] = value;
        let err = create(&input).unwrap_err();
        assert!(err.contains(flag), "{key}: {err}");
    }
    let mut input = podman_network(good_options(&pass));
    input["ipam_options"] = json!({"driver": "none"});
    input["subnets"] = json!([]);
    create(&input).unwrap();
    let err = create(&json!({"name": "v", "driver": "softether"})).unwrap_err();
    assert!(
        err.contains("cannot decode the network") && err.contains("id"),
        "{err}"
    );
}

/// What netavark sends to `setup`/`teardown` for `podman run --network vpn:interface_name=vpn0`.
fn plugin_exec(dir: &TempDir, per_network: Value) -> Value {
    let pass = dir.file("pw", "x\n");
    let mut network = podman_network(json!({
        "server": "198.18.0.1", "user": "alice", "passwordFile": pass,
        "sidecarSocket": "/run/se.sock", "stateDir": dir.path(), "timeout": "20"
    }));
    network["subnets"] = json!([]);
    network["ipam_options"] = json!({"driver": "none"});
    let mut network_options = json!({"interface_name": "vpn0", "aliases": ["c0ffee"]});
    for (k, v) in per_network.as_object().unwrap() {
        network_options[k] = v.clone();
    }
    json!({
        "container_id": "c0ffee00", "container_name": "web",
        "port_mappings": [{"container_port": 80, "host_ip": "", "host_port": 8080,
                           "protocol": "tcp", "range": 1}],
        "network": network,
        "network_options": network_options
    })
}

fn leased() -> AttachResult {
    AttachResult {
        mac: "5E:01:02:03:04:05".parse().unwrap(),
        mtu: Some(1400),
        ips: vec![AttachedIp {
            address: "10.99.0.23/24".parse().unwrap(),
            gateway: Some("10.99.0.1".parse().unwrap()),
        }],
        routes: vec![AttachedRoute {
            dst: "10.98.0.0/16".parse().unwrap(),
            gw: Some("10.99.0.1".parse().unwrap()),
            table: None,
            priority: None,
        }],
        dns: Dns {
            nameservers: vec!["10.99.0.1".into(), "not-an-ip".into()],
            domain: Some("vpn.lan".into()),
            ..Dns::default()
        },
    }
}

/// `run` on `input` for the pod netns `/run/netns/pod1`.
fn call(
    command: fn(String) -> Invocation,
    input: &Value,
    h: &Harness,
) -> Result<Option<Value>, String> {
    let inv = command("/run/netns/pod1".into());
    run(
        &inv,
        input.to_string().as_bytes(),
        &|p| h.connect(p),
        &h.taps,
    )
}

fn setup(input: &Value, h: &Harness) -> Result<Option<Value>, String> {
    call(|netns| Invocation::Setup { netns }, input, h)
}

#[test]
fn setup_is_cni_add_and_prints_the_status_block() {
    let dir = TempDir::new("nv-setup");
    let h = Harness::new(Script {
        attach: Some(Ok(leased())),
        ..Script::default()
    });
    let out = setup(&plugin_exec(&dir, json!({})), &h).unwrap().unwrap();
    assert_eq!(
        out,
        json!({
            "dns_search_domains": ["vpn.lan"],
            "dns_server_ips": ["10.99.0.1"],
            "interfaces": {"vpn0": {
                "mac_address": "5e:01:02:03:04:05",
                "subnets": [{"gateway": "10.99.0.1", "ipnet": "10.99.0.23/24"}]
            }}
        })
    );
    let seen = h.seen.borrow();
    let req = &seen.attach[0];
    assert_eq!(req.attachment.network, "vpn");
    assert_eq!(req.attachment.container_id, "c0ffee00");
    assert_eq!(req.attachment.ifname, "vpn0");
    assert_eq!(req.netns, "/run/netns/pod1");
    assert_eq!(req.login.user, "alice");
    assert_eq!(req.link.mac, Some(Mac(derived_mac("c0ffee00", "vpn0"))));
    assert_eq!(h.sockets.borrow()[0], Path::new("/run/se.sock"));
    assert_eq!(
        h.taps.created.borrow()[0],
        (
            "/run/netns/pod1".to_string(),
            "vpn0".to_string(),
            derived_mac("c0ffee00", "vpn0")
        )
    );
    assert!(h.taps.deleted.borrow().is_empty());
}

#[test]
fn setup_honours_static_mac_and_per_container_account() {
    let dir = TempDir::new("nv-mac");
    let h = Harness::new(Script {
        attach: Some(Ok(leased())),
        ..Script::default()
    });
    let per = json!({"static_mac": "02:aa:bb:cc:dd:ee",
                     "options": {"user": "bob", "passwordFile": "/etc/bob.pass"}});
    setup(&plugin_exec(&dir, per), &h).unwrap();
    let seen = h.seen.borrow();
    let req = &seen.attach[0];
    assert_eq!(req.link.mac, Some(Mac([2, 0xaa, 0xbb, 0xcc, 0xdd, 0xee])));
    assert_eq!(req.login.user, "bob");
    assert_eq!(req.login.password_file, Path::new("/etc/bob.pass"));
    assert_eq!(
        h.taps.created.borrow()[0].2,
        [2, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]
    );
}

#[test]
fn setup_errors_leave_nothing_behind() {
    let dir = TempDir::new("nv-fail");
    let cases = [
        (json!({"static_ips": ["10.99.0.50"]}), "remove --ip"),
        (
            json!({"static_mac": "01:00:5e:00:00:01"}),
            "static_mac \"01:00:5e:00:00:01\"",
        ),
        (
            json!({"options": {"colour": "blue"}}),
            "per-container option \"colour\"",
        ),
        (json!({"interface_name": ""}), "must not be empty"),
    ];
    for (per, expected) in cases {
        let h = Harness::new(Script::default());
        let err = setup(&plugin_exec(&dir, per.clone()), &h).unwrap_err();
        assert!(err.contains(expected), "{per}: {err}");
        assert!(h.taps.created.borrow().is_empty(), "{per}");
        assert!(h.seen.borrow().attach.is_empty(), "{per}");
    }
    // The sidecar refuses the login: the TAP made for it is removed again.
    let refusal = CniError::new(
        ErrorCode::SoftEtherLogin,
        "SoftEther login failed: ERR_AUTH_FAILED",
        "user alice",
    );
    let h = Harness::new(Script {
        attach: Some(Err(SidecarError::Refused(refusal))),
        ..Script::default()
    });
    let err = setup(&plugin_exec(&dir, json!({})), &h).unwrap_err();
    assert_eq!(err, "SoftEther login failed: ERR_AUTH_FAILED (user alice)");
    assert_eq!(h.taps.created.borrow().len(), 1);
    assert_eq!(h.taps.deleted.borrow().len(), 1);
    // Unreachable sidecar: the same.
    let h = Harness::new(Script::default());
    let err = setup(&plugin_exec(&dir, json!({})), &h).unwrap_err();
    assert!(err.contains("is softether-sidecar running?"), "{err}");
    assert_eq!(h.taps.deleted.borrow().len(), 1);
    let err = setup(&json!({"container_id": "x"}), &h).unwrap_err();
    assert!(err.starts_with("cannot decode the setup input"), "{err}");
}

fn teardown(input: &Value, h: &Harness) -> Result<Option<Value>, String> {
    call(|netns| Invocation::Teardown { netns }, input, h)
}

#[test]
fn teardown_is_cni_del() {
    let dir = TempDir::new("nv-teardown");
    let h = Harness::new(Script {
        detach: Some(Ok(())),
        ..Script::default()
    });
    assert_eq!(teardown(&plugin_exec(&dir, json!({})), &h), Ok(None));
    let seen = h.seen.borrow();
    let req = &seen.detach[0];
    assert_eq!(req.attachment.network, "vpn");
    assert_eq!(req.attachment.container_id, "c0ffee00");
    assert_eq!(req.attachment.ifname, "vpn0");
    assert_eq!(req.netns.as_deref(), Some("/run/netns/pod1"));
    assert!(h.taps.deleted.borrow().is_empty(), "the sidecar removed it");
}

#[test]
fn teardown_with_the_sidecar_down_removes_our_tap_and_leaves_a_tombstone_twice() {
    let dir = TempDir::new("nv-offline");
    for _ in 0..2 {
        let mut h = Harness::new(Script::default());
        h.taps.existing_mac = Some([2, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]);
        let input = plugin_exec(&dir, json!({"static_mac": "02:AA:BB:CC:DD:EE"}));
        assert_eq!(teardown(&input, &h), Ok(None));
        assert_eq!(h.taps.deleted.borrow().len(), 1);
        assert!(dir.path().join("tombstones/c0ffee00:vpn0.json").exists());
    }
    // Another container's TAP of that name (another MAC) stays.
    let mut h = Harness::new(Script::default());
    h.taps.existing_mac = Some([2, 1, 1, 1, 1, 1]);
    assert_eq!(teardown(&plugin_exec(&dir, json!({})), &h), Ok(None));
    assert!(h.taps.deleted.borrow().is_empty());
}

#[test]
fn teardown_still_works_when_the_options_no_longer_validate() {
    let dir = TempDir::new("nv-lenient");
    let mut input = plugin_exec(&dir, json!({"options": {"colour": "blue"}}));
    input["network"]["options"]["port"] = json!("https");
    input["network"]["options"]["colour"] = json!("blue");
    let h = Harness::new(Script {
        detach: Some(Ok(())),
        ..Script::default()
    });
    assert_eq!(teardown(&input, &h), Ok(None));
    assert_eq!(h.sockets.borrow()[0], Path::new("/run/se.sock"));
    assert_eq!(h.seen.borrow().detach.len(), 1);
}

#[test]
fn status_block_keeps_only_our_interface_and_prefers_the_search_list() {
    let result = CniResult {
        interfaces: vec![
            crate::spec::result::Interface {
                name: "eth0".into(),
                mac: Some("0A:58:00:00:00:01".into()),
                ..Default::default()
            },
            crate::spec::result::Interface {
                name: "vpn0".into(),
                mac: Some("5E:00:00:00:00:02".into()),
                ..Default::default()
            },
        ],
        ips: vec![
            crate::spec::result::IpConfig {
                address: "198.18.0.5/16".parse().unwrap(),
                gateway: None,
                interface: Some(0),
            },
            crate::spec::result::IpConfig {
                address: "10.99.0.9/24".parse().unwrap(),
                gateway: None,
                interface: Some(1),
            },
        ],
        routes: vec![],
        dns: Dns {
            domain: Some("ignored.lan".into()),
            search: vec!["a.lan".into(), "b.lan".into()],
            ..Dns::default()
        },
    };
    let block = serde_json::to_value(commands::status_block(&result, "vpn0")).unwrap();
    assert_eq!(
        block,
        json!({
            "dns_search_domains": ["a.lan", "b.lan"],
            "dns_server_ips": [],
            "interfaces": {"vpn0": {"mac_address": "5e:00:00:00:00:02",
                                    "subnets": [{"gateway": null, "ipnet": "10.99.0.9/24"}]}}
        })
    );
    let parsed: PluginExec =
        serde_json::from_value(plugin_exec(&TempDir::new("nv-parse"), json!({}))).unwrap();
    assert_eq!(parsed.network.rest["labels"], json!({"team": "net"}));
}

#[test]
fn error_text_is_message_then_details() {
    let e = CniError::invalid_config("m", "");
    assert_eq!(text(e), "m");
    let e = CniError::invalid_config("m", "d");
    assert_eq!(text(e), "m (d)");
}

#[test]
fn setup_lists_the_ipv6_subnet_and_servers_and_takes_the_ipv6_option() {
    let dir = TempDir::new("nv-ipv6");
    let mut dual = leased();
    dual.ips.push(AttachedIp {
        address: "fd5e:7e4e:1:0:5c01:2ff:fe03:405/64".parse().unwrap(),
        gateway: Some("fe80::1".parse().unwrap()),
    });
    dual.dns.nameservers.push("fd5e:7e4e:1::53".into());
    dual.dns.search = vec!["vpn.lan".into(), "lab6.test".into()];
    let h = Harness::new(Script {
        attach: Some(Ok(dual)),
        ..Script::default()
    });
    let out = setup(&plugin_exec(&dir, json!({})), &h).unwrap().unwrap();
    assert_eq!(
        out["interfaces"]["vpn0"]["subnets"],
        json!([{"gateway": "10.99.0.1", "ipnet": "10.99.0.23/24"},
               {"gateway": "fe80::1", "ipnet": "fd5e:7e4e:1:0:5c01:2ff:fe03:405/64"}])
    );
    assert_eq!(
        out["dns_server_ips"],
        json!(["10.99.0.1", "fd5e:7e4e:1::53"])
    );
    assert_eq!(out["dns_search_domains"], json!(["vpn.lan", "lab6.test"]));
    assert_eq!(h.seen.borrow().attach[0].link.ipv6, None);

    let h = Harness::new(Script {
        attach: Some(Ok(leased())),
        ..Script::default()
    });
    let mut input = plugin_exec(&dir, json!({}));
    input["network"]["options"]["ipv6"] = json!("false");
    setup(&input, &h).unwrap();
    assert_eq!(h.seen.borrow().attach[0].link.ipv6, Some(false));
    input["network"]["options"]["ipv6"] = json!("no");
    let err = setup(&input, &h).unwrap_err();
    assert!(err.contains("\"ipv6\""), "{err}");
}
