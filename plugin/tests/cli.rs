//! Runs the built `softether` binary the way libcni does: `CNI_*` env, the
//! network config on stdin, then checks the exit status and the stdout JSON.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fake_sidecar, run_plugin, Outcome, TempDir, TestNetns};
use serde_json::{json, Value};

/// Runs the plugin with exactly `env` (no inherited CNI_* variables).
fn exec(env: &[(&str, &str)], stdin: &str) -> Outcome {
    run_plugin(&[], env, stdin)
}

fn container_env<'a>(command: &'a str, netns: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", "4f2a9c1e77b0"),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "vpn0"),
        ("CNI_PATH", "/opt/cni/bin"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web",
        ),
    ]
}

/// A complete config whose password file exists and whose sidecar socket is
/// a path nobody listens on.
fn config(dir: &TempDir, version: &str) -> Value {
    let pw = dir.file("alice.pass", "s3cret\n");
    json!({
        "cniVersion": version,
        "name": "vpnnet",
        "type": "softether",
        "server": "198.18.0.1",
        "user": "alice",
        "passwordFile": pw,
        "timeout": 5,
        "sidecarSocket": dir.0.join("sidecar.sock"),
    })
}

#[test]
fn version_with_podman_dummy_env() {
    for v in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let out = exec(
            &[
                ("CNI_COMMAND", "VERSION"),
                ("CNI_NETNS", "dummy"),
                ("CNI_IFNAME", "dummy"),
                ("CNI_PATH", "dummy"),
            ],
            &format!("{{\"cniVersion\":\"{v}\"}}"),
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(
            out.json(),
            json!({"cniVersion": v, "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
        );
    }
}

#[test]
fn version_with_garbage_stdin_still_answers() {
    let out = exec(&[("CNI_COMMAND", "VERSION")], "garbage");
    assert_eq!(out.code, 0);
    assert_eq!(out.json()["cniVersion"], "1.1.0");
}

#[test]
fn add_with_undecodable_stdin_is_6() {
    let out = exec(
        &container_env("ADD", "/run/netns/x"),
        "{\"cniVersion\": \"1.0.0\", ",
    );
    out.assert_error(6);
}

#[test]
fn add_with_invalid_config_is_7_and_echoes_the_version() {
    let dir = TempDir::new("badconf");
    let mut c = config(&dir, "0.4.0");
    c["port"] = json!(70000);
    let out = exec(&container_env("ADD", "/run/netns/x"), &c.to_string());
    let err = out.assert_error(7);
    assert_eq!(err["cniVersion"], "0.4.0");
    assert!(err["msg"].as_str().unwrap().contains("\"port\""), "{err}");
    assert!(err["msg"].as_str().unwrap().contains("70000"), "{err}");
}

#[test]
fn add_with_inline_password_is_7_and_never_echoes_it() {
    let dir = TempDir::new("inline");
    let mut c = config(&dir, "1.0.0");
    c["password"] = json!("hunter2");
    let out = exec(&container_env("ADD", "/run/netns/x"), &c.to_string());
    out.assert_error(7);
    assert!(!out.stdout.contains("hunter2") && !out.stderr.contains("hunter2"));
}

#[test]
fn add_with_missing_env_is_4_naming_the_variables() {
    let dir = TempDir::new("noenv");
    let out = exec(
        &[("CNI_COMMAND", "ADD"), ("CNI_PATH", "/opt/cni/bin")],
        &config(&dir, "1.0.0").to_string(),
    );
    let err = out.assert_error(4);
    let msg = err["msg"].as_str().unwrap();
    for var in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
        assert!(msg.contains(var), "{msg}");
    }
    assert_eq!(err["cniVersion"], "1.0.0");
}

#[test]
fn add_with_an_over_long_container_id_is_4_before_anything_is_created() {
    // Issue 14: a 300-byte id used to log in, lease, and then fail 102 persisting its record.
    let dir = TempDir::new("longid");
    let ns = TestNetns::new("longid");
    let long = "a".repeat(300);
    let mut env = container_env("ADD", "/run/netns/x");
    let netns = ns.path();
    env[1].1 = &long;
    env[2].1 = &netns;
    let out = exec(&env, &config(&dir, "1.0.0").to_string());
    let err = out.assert_error(4);
    assert!(
        err["details"].as_str().unwrap().contains("longer than 128"),
        "{err}"
    );
    assert!(!ns.links().contains("vpn0"), "no TAP was created");
    // DEL of such an id succeeds: nothing can exist for it.
    env[0].1 = "DEL";
    let out = exec(&env, &config(&dir, "1.0.0").to_string());
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn add_with_unsupported_version_is_1() {
    let dir = TempDir::new("oldver");
    let out = exec(
        &container_env("ADD", "/run/netns/x"),
        &config(&dir, "0.2.0").to_string(),
    );
    out.assert_error(1);
}

#[test]
fn add_with_unreachable_sidecar_is_11() {
    let dir = TempDir::new("unreach");
    let ns = TestNetns::new("unreach");
    let c = config(&dir, "1.0.0");
    let out = exec(&container_env("ADD", &ns.path()), &c.to_string());
    let err = out.assert_error(11);
    assert!(!ns.links().contains("vpn0"), "the TAP is removed again");
    let msg = err["msg"].as_str().unwrap();
    assert!(msg.contains(c["sidecarSocket"].as_str().unwrap()), "{msg}");
    assert!(msg.contains("is softether-sidecar running?"), "{msg}");
}

#[test]
fn status_with_unreachable_sidecar_is_50() {
    let dir = TempDir::new("status");
    let out = exec(
        &[("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/opt/cni/bin")],
        &config(&dir, "1.1.0").to_string(),
    );
    out.assert_error(50);
}

#[test]
fn del_with_nothing_to_do_succeeds_twice() {
    let dir = TempDir::new("del");
    let c = config(&dir, "1.0.0").to_string();
    let env: Vec<_> = container_env("DEL", "")
        .into_iter()
        .filter(|(k, _)| *k != "CNI_NETNS")
        .collect();
    for _ in 0..2 {
        let out = exec(&env, &c);
        assert_eq!(out.code, 0, "stdout: {} stderr: {}", out.stdout, out.stderr);
        assert_eq!(out.stdout, "", "DEL prints nothing on success");
    }
}

#[test]
fn add_through_a_fake_sidecar_returns_the_result() {
    let dir = TempDir::new("fake");
    let ns = TestNetns::new("fake");
    let netns = ns.path();
    let c = config(&dir, "0.4.0");
    let sidecar = fake_sidecar(
        Path::new(c["sidecarSocket"].as_str().unwrap()),
        json!({"ok": {"mac": "02:11:22:33:44:55", "mtu": 1400,
                      "ips": [{"address": "10.8.0.23/24", "gateway": "10.8.0.1"}],
                      "routes": [{"dst": "0.0.0.0/0", "gw": "10.8.0.1"}],
                      "dns": {"nameservers": ["10.8.0.1"]}}}),
    );
    let out = exec(&container_env("ADD", &netns), &c.to_string());
    assert_eq!(out.code, 0, "stdout: {} stderr: {}", out.stdout, out.stderr);
    let links = ns.links();
    assert!(
        links.contains("vpn0:") && links.contains("link/ether 5e:"),
        "{links}"
    );
    assert_eq!(
        out.json(),
        json!({
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "vpn0", "mac": "02:11:22:33:44:55", "sandbox": netns}],
            "ips": [{"version": "4", "address": "10.8.0.23/24", "gateway": "10.8.0.1", "interface": 0}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.8.0.1"}],
            "dns": {"nameservers": ["10.8.0.1"]}
        })
    );
    let req = sidecar.join().unwrap();
    assert_eq!(req["op"], "attach");
    assert_eq!(req["request"]["containerID"], "4f2a9c1e77b0");
    assert_eq!(req["request"]["login"]["user"], "alice");
    assert_eq!(req["request"]["podName"], "web");
    assert!(req["request"]["link"]["mac"]
        .as_str()
        .unwrap()
        .starts_with("5E:"));
    assert!(req["request"]["login"].get("password").is_none());
}

#[test]
fn add_login_failure_from_the_sidecar_is_100() {
    let dir = TempDir::new("login");
    let ns = TestNetns::new("login");
    let c = config(&dir, "1.0.0");
    let _sidecar = fake_sidecar(
        Path::new(c["sidecarSocket"].as_str().unwrap()),
        json!({"error": {"code": 100, "msg": "SoftEther login failed: ERR_AUTH_FAILED (9)",
                         "details": "user alice on hub DEFAULT at 198.18.0.1:443"}}),
    );
    let out = exec(&container_env("ADD", &ns.path()), &c.to_string());
    let err = out.assert_error(100);
    assert!(err["msg"].as_str().unwrap().contains("ERR_AUTH_FAILED"));
    assert!(!ns.links().contains("vpn0"), "the TAP is removed again");
}

/// A config whose `stateDir` is `dir` (it exists, so DEL may leave tombstones).
fn config_with_state(dir: &TempDir) -> Value {
    let mut c = config(dir, "1.0.0");
    c["stateDir"] = json!(dir.0);
    c
}

#[test]
fn del_with_sidecar_down_leaves_another_attachments_tap_alone() {
    let dir = TempDir::new("foreign");
    let ns = TestNetns::new("foreign");
    // Container A's TAP: same name, a MAC this attachment never had.
    for args in [
        vec!["tuntap", "add", "dev", "vpn0", "mode", "tap"],
        vec!["link", "set", "vpn0", "address", "02:aa:bb:cc:dd:01"],
    ] {
        let ok = Command::new("ip")
            .args(["-n", &ns.0])
            .args(&args)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip {args:?} in {} failed", ns.0);
    }
    let out = exec(
        &container_env("DEL", &ns.path()),
        &config_with_state(&dir).to_string(),
    );
    assert_eq!(out.code, 0, "stdout: {} stderr: {}", out.stdout, out.stderr);
    assert_eq!(out.stdout, "");
    let links = ns.links();
    assert!(
        links.contains("vpn0:") && links.contains("02:aa:bb:cc:dd:01"),
        "A's TAP survives: {links}"
    );
    assert!(
        out.stderr.contains("02:AA:BB:CC:DD:01") && out.stderr.contains("leaving it"),
        "{}",
        out.stderr
    );
    assert!(
        !dir.0.join("tombstones/4f2a9c1e77b0:vpn0.json").exists(),
        "no tombstone that would make the sidecar remove A's TAP"
    );
}

/// Issue 14: a link of that name that is no TAP, even carrying this attachment's MAC, is left
/// alone and gets no tombstone.
#[test]
fn del_with_sidecar_down_leaves_a_veth_with_our_mac_and_writes_no_tombstone() {
    let dir = TempDir::new("veth");
    let ns = TestNetns::new("veth");
    let mac = softether_cni::pod_tap::derived_mac("4f2a9c1e77b0", "vpn0");
    let mac = mac.map(|b| format!("{b:02x}")).join(":");
    let ok = Command::new("ip")
        .args(["-n", &ns.0, "link", "add", "vpn0", "address", &mac])
        .args(["type", "veth", "peer", "name", "vpn0p"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ip link add veth in {} failed", ns.0);
    let out = exec(
        &container_env("DEL", &ns.path()),
        &config_with_state(&dir).to_string(),
    );
    assert_eq!(out.code, 0, "stdout: {} stderr: {}", out.stdout, out.stderr);
    assert!(
        ns.links().contains("vpn0@"),
        "the veth survives: {}",
        ns.links()
    );
    assert!(out.stderr.contains("not a TAP (veth)"), "{}", out.stderr);
    assert!(!dir.0.join("tombstones/4f2a9c1e77b0:vpn0.json").exists());
}

#[test]
fn del_with_sidecar_down_removes_our_tap_and_leaves_a_tombstone() {
    let dir = TempDir::new("own");
    let ns = TestNetns::new("own");
    let c = config_with_state(&dir);
    let socket = PathBuf::from(c["sidecarSocket"].as_str().unwrap());
    let sidecar = fake_sidecar(
        &socket,
        json!({"ok": {"mac": "02:11:22:33:44:55", "mtu": 1400, "ips": [], "routes": []}}),
    );
    let out = exec(&container_env("ADD", &ns.path()), &c.to_string());
    assert_eq!(out.code, 0, "stdout: {} stderr: {}", out.stdout, out.stderr);
    sidecar.join().unwrap();
    assert!(
        ns.links().contains("vpn0:"),
        "ADD left the TAP for the sidecar"
    );
    // The one-shot sidecar is gone: its socket refuses connections.
    let out = exec(&container_env("DEL", &ns.path()), &c.to_string());
    assert_eq!(out.code, 0, "stdout: {} stderr: {}", out.stdout, out.stderr);
    assert!(!ns.links().contains("vpn0"), "{}", ns.links());
    let tomb: Value = serde_json::from_slice(
        &std::fs::read(dir.0.join("tombstones/4f2a9c1e77b0:vpn0.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(tomb["containerID"], "4f2a9c1e77b0");
    assert_eq!(tomb["netns"], ns.path());
}
