//! Network-config validation tests.

use super::*;
use crate::spec::env::CniArgs;
use crate::spec::ErrorCode;
use crate::test_support::TempDir;
use serde_json::json;

fn base() -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": "vpnnet",
        "type": "softether",
        "server": "vpn.example.com",
        "user": "alice",
        "passwordFile": "/etc/softether-cni/alice.pass"
    })
}

fn parse(v: Value) -> Result<NetConf, CniError> {
    NetConf::from_stdin(v.to_string().as_bytes())
}

fn with(key: &str, value: Value) -> Value {
    let mut v = base();
    v[key] = value;
    v
}

#[test]
fn defaults() {
    let c = parse(base()).unwrap();
    assert_eq!(c.cni_version, Version::V1_0_0);
    assert_eq!(c.port, 443);
    assert_eq!(c.hub, "DEFAULT");
    assert_eq!(c.max_connections, 1);
    assert_eq!(c.udp_acceleration, UdpAcceleration::Auto);
    assert_eq!(c.mtu, None);
    assert_eq!(c.timeout, Duration::from_secs(60));
    assert_eq!(
        c.sidecar_socket,
        PathBuf::from("/run/softether-cni/sidecar.sock")
    );
    assert!(!c.accept_default_gateway && !c.accept_static_routes && !c.connmark);
    assert!(!c.plain_password && !c.insecure);
    assert_eq!(c.policy_route_table, None);
    assert_eq!(c.plugin_type.as_deref(), Some("softether"));
}

#[test]
fn every_key_parses() {
    let pin = vec!["AB"; 32].join(":");
    let c = parse(json!({
        "cniVersion": "1.1.0",
        "cniVersions": ["0.4.0", "1.0.0", "1.1.0"],
        "name": "vpnnet",
        "type": "softether",
        "server": "198.18.0.1",
        "port": 992,
        "hub": "VPN",
        "user": "bob",
        "passwordFile": "/etc/p",
        "plainPassword": true,
        "insecure": true,
        "pinSha256": pin,
        "caFile": "/etc/ca.pem",
        "maxConnections": 32,
        "udpAcceleration": "off",
        "compress": true,
        "halfConnection": true,
        "mtu": 1400,
        "acceptDefaultGateway": true,
        "acceptStaticRoutes": true,
        "policyRouteTable": 100,
        "connmark": true,
        "timeout": 119,
        "sidecarSocket": "/tmp/s.sock",
        "runtimeConfig": {"mac": "02:AA:BB:CC:DD:EE", "portMappings": []},
        "args": {"cni": {"user": "carol", "hub": "H2", "passwordFile": "/etc/c", "other": 1}},
        "prevResult": {"cniVersion": "1.1.0"},
        "capabilities": {"mac": true},
        "ipam": {}
    }))
    .unwrap();
    assert_eq!(c.cni_versions, vec!["0.4.0", "1.0.0", "1.1.0"]);
    assert_eq!(c.port, 992);
    assert_eq!(c.pin_sha256.as_deref(), Some("ab".repeat(32).as_str()));
    assert_eq!(c.max_connections, 32);
    assert_eq!(c.udp_acceleration, UdpAcceleration::Off);
    assert!(c.compress && c.half_connection);
    assert_eq!(c.mtu, Some(1400));
    assert_eq!(c.policy_route_table, Some(100));
    assert!(c.connmark && c.plain_password && c.insecure);
    assert_eq!(c.timeout, Duration::from_secs(119));
    assert_eq!(c.runtime_mac, Some("02:aa:bb:cc:dd:ee".parse().unwrap()));
    assert_eq!(c.pod_args.user.as_deref(), Some("carol"));
    assert_eq!(c.pod_args.hub.as_deref(), Some("H2"));
    assert!(c.prev_result.is_some());
    let unknown: Vec<&String> = c.unknown.keys().collect();
    assert_eq!(unknown, vec!["capabilities", "ipam"]);
}

#[test]
fn each_rule_is_code_7_naming_key_and_value() {
    let cases: Vec<(&str, Value)> = vec![
        ("name", json!("bad name")),
        ("name", json!(5)),
        ("server", json!("https://vpn.example.com")),
        ("server", json!("")),
        ("port", json!(0)),
        ("port", json!(65536)),
        ("port", json!("443")),
        ("hub", json!("")),
        ("user", json!(42)),
        ("passwordFile", json!("relative/path")),
        ("plainPassword", json!("yes")),
        ("insecure", json!(1)),
        ("pinSha256", json!("abcd")),
        ("caFile", json!("ca.pem")),
        ("maxConnections", json!(0)),
        ("maxConnections", json!(33)),
        ("udpAcceleration", json!("on")),
        ("udpAcceleration", json!(false)),
        ("compress", json!("yes")),
        ("halfConnection", json!(1)),
        ("mtu", json!(575)),
        ("mtu", json!(9001)),
        ("mtu", json!(1400.5)),
        ("acceptDefaultGateway", json!("true")),
        ("acceptStaticRoutes", json!("no")),
        ("policyRouteTable", json!(0)),
        ("policyRouteTable", json!(253)),
        ("policyRouteTable", json!(254)),
        ("policyRouteTable", json!(255)),
        ("policyRouteTable", json!(4294967296u64)),
        ("policyRouteTable", json!(-1)),
        ("timeout", json!(0)),
        ("timeout", json!(120)),
        ("timeout", json!(600)),
        ("sidecarSocket", json!("sidecar.sock")),
        ("cniVersions", json!("1.0.0")),
        ("runtimeConfig", json!("mac")),
        ("args", json!([])),
    ];
    for (key, value) in cases {
        let e = parse(with(key, value.clone())).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidConfig, "{key}={value}: {e}");
        assert!(
            e.msg().contains(&format!("\"{key}\"")),
            "{key}: {}",
            e.msg()
        );
        assert!(
            e.msg().contains(&value.to_string()),
            "{key}: value missing in {}",
            e.msg()
        );
    }
}

#[test]
fn nested_keys_are_named_with_their_path() {
    let e = parse(with("runtimeConfig", json!({"mac": "01:00:5e:00:00:01"}))).unwrap_err();
    assert!(e.msg().contains("\"runtimeConfig.mac\""), "{}", e.msg());
    let e = parse(with("args", json!({"cni": {"user": ""}}))).unwrap_err();
    assert!(e.msg().contains("\"args.cni.user\""), "{}", e.msg());
    let e = parse(with("args", json!({"cni": {"passwordFile": "x"}}))).unwrap_err();
    assert!(e.msg().contains("\"args.cni.passwordFile\""), "{}", e.msg());
    let e = parse(with("args", json!({"cni": 3}))).unwrap_err();
    assert!(e.msg().contains("\"args.cni\""), "{}", e.msg());
}

#[test]
fn connmark_requires_policy_route_table() {
    let e = parse(with("connmark", json!(true))).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidConfig);
    assert!(e.msg().contains("connmark") && e.msg().contains("policyRouteTable"));
    let mut ok = with("connmark", json!(true));
    ok["policyRouteTable"] = json!(4294967295u64);
    assert!(parse(ok).unwrap().connmark);
    parse(with("connmark", json!(false))).unwrap();
}

#[test]
fn inline_passwords_are_refused_without_echoing_them() {
    for v in [
        with("password", json!("hunter2")),
        with("args", json!({"cni": {"password": "hunter2"}})),
    ] {
        let e = parse(v).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidConfig);
        assert!(e.msg().contains("password"));
        assert!(e.details().contains("passwordFile"));
        assert!(!e.to_json().to_string().contains("hunter2"));
    }
}

#[test]
fn version_problems_are_code_1() {
    for v in [json!("0.2.0"), json!("2.0.0"), json!(1)] {
        assert_eq!(
            parse(with("cniVersion", v)).unwrap_err().code(),
            ErrorCode::IncompatibleVersion
        );
    }
    let mut v = base();
    v.as_object_mut().unwrap().remove("cniVersion");
    assert_eq!(parse(v).unwrap_err().code(), ErrorCode::IncompatibleVersion);
}

#[test]
fn missing_name_is_code_7() {
    let mut v = base();
    v.as_object_mut().unwrap().remove("name");
    let e = parse(v).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidConfig);
    assert!(e.msg().contains("\"name\""));
}

#[test]
fn bad_json_is_code_6() {
    for bad in [
        "",
        "{",
        "not json",
        "[1,2]",
        "\"str\"",
        "{\"cniVersion\": \"1.0.0\",}",
    ] {
        let e = NetConf::from_stdin(bad.as_bytes()).unwrap_err();
        assert_eq!(e.code(), ErrorCode::Decode, "{bad:?}");
    }
}

#[test]
fn gc_accepts_both_key_spellings_and_merges_them() {
    let a = json!([{"containerID": "c1", "ifname": "vpn0"}]);
    let b =
        json!([{"containerID": "c1", "ifname": "vpn0"}, {"containerID": "c2", "ifname": "vpn0"}]);
    let c = parse(with("cni.dev/valid-attachments", a.clone())).unwrap();
    assert_eq!(c.valid_attachments.unwrap().len(), 1);
    let c = parse(with("cni.dev/attachments", b.clone())).unwrap();
    assert_eq!(c.valid_attachments.unwrap().len(), 2);
    let mut both = with("cni.dev/valid-attachments", a);
    both["cni.dev/attachments"] = b;
    let c = parse(both).unwrap();
    let list = c.valid_attachments.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(
        list[1],
        ValidAttachment {
            container_id: "c2".into(),
            ifname: "vpn0".into()
        }
    );
    assert!(c.unknown.is_empty());
    assert_eq!(parse(base()).unwrap().valid_attachments, None);
    let e = parse(with("cni.dev/attachments", json!([{"id": 1}]))).unwrap_err();
    assert!(e.msg().contains("cni.dev/attachments"));
}

/// Issue 14: merging the two spellings was quadratic (80,000 ids: 26 s). Now one pass, first
/// occurrence first (20,000 here to keep the unit tests quick; the CNI e2e GC sends 10,000).
#[test]
fn gc_merges_twenty_thousand_ids_in_order() {
    let ids: Vec<Value> = (0..20_000)
        .map(|i| json!({"containerID": format!("{i:064x}"), "ifname": "vpn0"}))
        .collect();
    let mut both = with("cni.dev/valid-attachments", json!(ids));
    let mut reversed = ids.clone();
    reversed.reverse();
    both["cni.dev/attachments"] = json!(reversed);
    let list = parse(both).unwrap().valid_attachments.unwrap();
    assert_eq!(list.len(), 20_000);
    assert_eq!(list[0].container_id, format!("{:064x}", 0));
    assert_eq!(list[19_999].container_id, format!("{:064x}", 19_999));
}

fn conf_with_password(dir: &TempDir, extra: Value) -> NetConf {
    let pass = dir.file("alice.pass", "s3cret\n");
    let mut v = base();
    v["passwordFile"] = json!(pass.to_str().unwrap());
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    parse(v).unwrap()
}

#[test]
fn login_from_config_passes_the_password_file_path_only() {
    let dir = TempDir::new("login");
    let c = conf_with_password(&dir, json!({}));
    let login = resolve_login(&c, &CniArgs::default()).unwrap();
    assert_eq!(login.user, "alice");
    assert_eq!(login.hub, "DEFAULT");
    assert_eq!(login.password_file, c.password_file.clone().unwrap());
    let wire = serde_json::to_string(&login).unwrap();
    assert!(
        !wire.contains("s3cret") && wire.contains("passwordFile"),
        "{wire}"
    );
}

#[test]
fn cni_args_override_config_and_args_cni_overrides_both() {
    let dir = TempDir::new("override");
    let bob = dir.file("bob.pass", "bobpw");
    let carol = dir.file("carol.pass", "carolpw\r\n");
    let c = conf_with_password(&dir, json!({}));
    let args = CniArgs {
        user: Some("bob".into()),
        password_file: Some(bob.to_str().unwrap().into()),
        hub: Some("HUB_B".into()),
        ..CniArgs::default()
    };
    let login = resolve_login(&c, &args).unwrap();
    assert_eq!((login.user.as_str(), login.hub.as_str()), ("bob", "HUB_B"));
    assert_eq!(login.password_file, bob);

    let c = conf_with_password(
        &dir,
        json!({"args": {"cni": {"user": "carol", "passwordFile": carol.to_str().unwrap()}}}),
    );
    let login = resolve_login(&c, &args).unwrap();
    assert_eq!(login.user, "carol");
    assert_eq!(login.password_file, carol);
    assert_eq!(
        login.hub, "HUB_B",
        "hub not set in args.cni, so CNI_ARGS still applies"
    );
}

#[test]
fn bad_cni_args_override_is_code_4() {
    let dir = TempDir::new("badargs");
    let c = conf_with_password(&dir, json!({}));
    let args = CniArgs {
        password_file: Some("relative".into()),
        ..CniArgs::default()
    };
    let e = resolve_login(&c, &args).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidEnv);
    assert!(e.msg().contains("SOFTETHER_PASSWORD_FILE"));
}

#[test]
fn missing_login_keys_are_code_7() {
    for key in ["server", "user", "passwordFile"] {
        let mut v = base();
        v.as_object_mut().unwrap().remove(key);
        let e = resolve_login(&parse(v).unwrap(), &CniArgs::default()).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidConfig);
        assert!(e.msg().contains(&format!("\"{key}\"")), "{}", e.msg());
    }
}

#[test]
fn on_change_is_an_argv_list_with_an_absolute_program() {
    assert!(parse(base()).unwrap().on_change.is_empty());
    let c = parse(with(
        "onChange",
        json!(["/usr/local/bin/dnat-update", "--table", "vpn"]),
    ))
    .unwrap();
    assert_eq!(
        c.on_change,
        ["/usr/local/bin/dnat-update", "--table", "vpn"]
    );
    for bad in [
        json!("/bin/hook"),
        json!([]),
        json!(["relative/hook"]),
        json!([1]),
    ] {
        let e = parse(with("onChange", bad)).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidConfig);
        assert!(e.to_string().contains("onChange"), "{e}");
    }
}

#[test]
fn ipv6_is_on_unless_the_network_says_false() {
    assert!(parse(base()).unwrap().ipv6);
    assert!(!parse(with("ipv6", json!(false))).unwrap().ipv6);
    let e = parse(with("ipv6", json!("no"))).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidConfig);
    assert!(e.to_string().contains("\"ipv6\""), "{e}");
}
