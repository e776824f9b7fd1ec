//! Golden rendering and chaining tests for `result.rs`.

use super::*;
use crate::spec::error::ErrorCode;
use serde_json::json;

fn sample() -> CniResult {
    CniResult {
        interfaces: vec![Interface {
            name: "vpn0".into(),
            mac: Some("02:a1:b2:c3:d4:e5".into()),
            mtu: Some(1400),
            sandbox: Some("/run/netns/pod1".into()),
            ..Interface::default()
        }],
        ips: vec![IpConfig {
            address: "10.8.0.23/24".parse().unwrap(),
            gateway: Some("10.8.0.1".parse().unwrap()),
            interface: Some(0),
        }],
        routes: vec![
            Route {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: Some("10.8.0.1".parse().unwrap()),
                mtu: None,
                advmss: None,
                priority: None,
                table: Some(100),
                scope: None,
            },
            Route {
                dst: "192.168.50.0/24".parse().unwrap(),
                gw: Some("10.8.0.1".parse().unwrap()),
                mtu: None,
                advmss: None,
                priority: Some(50),
                table: None,
                scope: None,
            },
        ],
        dns: Dns {
            nameservers: vec!["10.8.0.1".into()],
            domain: Some("vpn.example".into()),
            search: vec!["vpn.example".into()],
            options: vec![],
        },
    }
}

fn golden_pre_1_1(version: &str, with_ip_version: bool) -> Value {
    let mut ip = json!({"address": "10.8.0.23/24", "gateway": "10.8.0.1", "interface": 0});
    if with_ip_version {
        ip["version"] = json!("4");
    }
    json!({
        "cniVersion": version,
        "interfaces": [{"name": "vpn0", "mac": "02:a1:b2:c3:d4:e5", "sandbox": "/run/netns/pod1"}],
        "ips": [ip],
        "routes": [
            {"dst": "0.0.0.0/0", "gw": "10.8.0.1"},
            {"dst": "192.168.50.0/24", "gw": "10.8.0.1"}
        ],
        "dns": {"nameservers": ["10.8.0.1"], "domain": "vpn.example", "search": ["vpn.example"]}
    })
}

#[test]
fn golden_1_1_0() {
    assert_eq!(
        sample().render(Version::V1_1_0),
        json!({
            "cniVersion": "1.1.0",
            "interfaces": [{"name": "vpn0", "mac": "02:a1:b2:c3:d4:e5", "mtu": 1400,
                            "sandbox": "/run/netns/pod1"}],
            "ips": [{"address": "10.8.0.23/24", "gateway": "10.8.0.1", "interface": 0}],
            "routes": [
                {"dst": "0.0.0.0/0", "gw": "10.8.0.1", "table": 100},
                {"dst": "192.168.50.0/24", "gw": "10.8.0.1", "priority": 50}
            ],
            "dns": {"nameservers": ["10.8.0.1"], "domain": "vpn.example", "search": ["vpn.example"]}
        })
    );
}

#[test]
fn golden_1_0_0() {
    assert_eq!(
        sample().render(Version::V1_0_0),
        golden_pre_1_1("1.0.0", false)
    );
}

#[test]
fn golden_0_4_0() {
    assert_eq!(
        sample().render(Version::V0_4_0),
        golden_pre_1_1("0.4.0", true)
    );
}

#[test]
fn golden_0_3_1_and_0_3_0() {
    assert_eq!(
        sample().render(Version::V0_3_1),
        golden_pre_1_1("0.3.1", true)
    );
    assert_eq!(
        sample().render(Version::V0_3_0),
        golden_pre_1_1("0.3.0", true)
    );
}

#[test]
fn ipv6_addresses_get_version_6() {
    let r = CniResult {
        ips: vec![IpConfig {
            address: "fd00::5/64".parse().unwrap(),
            gateway: None,
            interface: None,
        }],
        ..CniResult::default()
    };
    assert_eq!(r.render(Version::V0_4_0)["ips"][0]["version"], "6");
    assert!(r.render(Version::V1_0_0)["ips"][0].get("version").is_none());
}

#[test]
fn empty_result_is_just_the_version() {
    assert_eq!(
        CniResult::default().render(Version::V1_0_0),
        json!({"cniVersion": "1.0.0"})
    );
}

#[test]
fn render_then_parse_round_trips_every_version() {
    for v in Version::SUPPORTED {
        let parsed = CniResult::from_prev_result(&sample().render(v)).unwrap();
        assert_eq!(parsed.render(v), sample().render(v), "{v}");
    }
}

fn bridge_prev_result_0_4_0() -> Value {
    json!({
        "cniVersion": "0.4.0",
        "interfaces": [
            {"name": "cni0", "mac": "aa:bb:cc:dd:ee:01"},
            {"name": "veth1", "mac": "aa:bb:cc:dd:ee:02"},
            {"name": "eth0", "mac": "aa:bb:cc:dd:ee:03", "sandbox": "/run/netns/pod1"}
        ],
        "ips": [{"version": "4", "address": "10.88.0.5/16", "gateway": "10.88.0.1", "interface": 2}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {"nameservers": ["10.88.0.1"]}
    })
}

#[test]
fn chaining_keeps_prev_and_reindexes_ours() {
    let prev = CniResult::from_prev_result(&bridge_prev_result_0_4_0()).unwrap();
    let chained = prev.chain(sample());
    assert_eq!(chained.interfaces.len(), 4);
    assert_eq!(chained.interfaces[3].name, "vpn0");
    assert_eq!(chained.ips[0].interface, Some(2));
    assert_eq!(chained.ips[1].interface, Some(3));
    assert_eq!(chained.routes.len(), 3);
    assert_eq!(chained.dns.nameservers, vec!["10.88.0.1", "10.8.0.1"]);
    assert_eq!(chained.dns.domain.as_deref(), Some("vpn.example"));
    let out = chained.render(Version::V0_4_0);
    assert_eq!(
        out["ips"][0],
        json!({"version":"4","address":"10.88.0.5/16","gateway":"10.88.0.1","interface":2})
    );
    assert_eq!(out["ips"][1]["interface"], 3);
}

#[test]
fn prev_result_with_unsupported_version_is_code_1() {
    let mut prev = bridge_prev_result_0_4_0();
    prev["cniVersion"] = json!("0.2.0");
    assert_eq!(
        CniResult::from_prev_result(&prev).unwrap_err().code(),
        ErrorCode::IncompatibleVersion
    );
}

#[test]
fn prev_result_shape_errors_are_code_7() {
    for bad in [
        json!({"ips": [{"address": "10.0.0.1"}]}),
        json!({"ips": [{"address": "10.0.0.1/33"}]}),
        json!({"interfaces": "eth0"}),
        json!({"ips": [{"address": "10.0.0.1/24", "interface": 0}]}),
    ] {
        let e = CniResult::from_prev_result(&bad).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidConfig, "{bad}");
        assert!(e.msg().contains("prevResult"));
    }
}
