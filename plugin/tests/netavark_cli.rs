//! Runs the built `softether` binary the way netavark runs a plugin: the command (and netns
//! path) as arguments, the JSON on stdin, no `CNI_*` environment; checks the exit status and
//! that stdout is exactly the answer or `{"error": "…"}`. The setup/teardown cases create TAPs
//! in throwaway namespaces and need root (they fail without it).

mod common;

use std::path::Path;

use common::{fake_sidecar, run_plugin, Outcome, TempDir, TestNetns};
use serde_json::{json, Value};

const ID: &str = "9f1c2b3a4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8";

fn netavark(args: &[&str], stdin: &Value) -> Outcome {
    run_plugin(args, &[], &stdin.to_string())
}

impl Outcome {
    /// Exit 1 and nothing on stdout but `{"error": "…"}`; returns the message.
    fn netavark_error(&self) -> String {
        assert_eq!(
            self.code, 1,
            "stdout: {} stderr: {}",
            self.stdout, self.stderr
        );
        let v = self.json();
        let keys: Vec<_> = v.as_object().expect("an object").keys().collect();
        assert_eq!(keys, ["error"], "{v}");
        v["error"].as_str().expect("a string").to_owned()
    }
}

fn network(dir: &TempDir) -> Value {
    let pw = dir.file("alice.pass", "s3cret\n");
    json!({
        "name": "vpn", "id": ID, "driver": "softether",
        "created": "2026-01-02T03:04:05Z", "internal": false, "ipv6_enabled": false,
        "dns_enabled": false, "subnets": [], "ipam_options": {"driver": "none"},
        "options": {
            "server": "198.18.0.1", "user": "alice", "passwordFile": pw, "timeout": "5",
            "sidecarSocket": dir.0.join("sidecar.sock"), "stateDir": dir.0
        }
    })
}

fn plugin_exec(dir: &TempDir, network_options: Value) -> Value {
    json!({
        "container_id": "c0ffee1234", "container_name": "web",
        "network": network(dir), "network_options": network_options
    })
}

#[test]
fn info_prints_version_and_api_version() {
    let out = run_plugin(&["info"], &[], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["api_version"], "1.0.0");
    assert_eq!(out.json()["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn create_prints_the_network_back_or_the_error_object() {
    let dir = TempDir::new("nv-create");
    let mut input = network(&dir);
    input["dns_enabled"] = json!(true);
    input["ipam_options"] = json!({});
    input["labels"] = json!({"a": "b"});
    let out = netavark(&["create"], &input);
    assert_eq!(out.code, 0, "stdout: {} stderr: {}", out.stdout, out.stderr);
    let created = out.json();
    for key in ["name", "id", "driver", "options", "created", "labels"] {
        assert_eq!(created[key], input[key], "{key}");
    }
    assert_eq!(created["subnets"], json!([]));
    assert_eq!(created["ipam_options"], json!({"driver": "none"}));
    assert_eq!(created["dns_enabled"], false);

    input["options"]["password"] = json!("hunter2");
    let out = netavark(&["create"], &input);
    let err = out.netavark_error();
    assert!(err.contains("\"password\""), "{err}");
    assert!(!out.stdout.contains("hunter2") && !out.stderr.contains("hunter2"));
    input["options"].as_object_mut().unwrap().remove("password");
    input["options"]["acceptDefaultGateway"] = json!("maybe");
    let err = netavark(&["create"], &input).netavark_error();
    assert!(err.contains("\"acceptDefaultGateway\""), "{err}");
    let out = run_plugin(&["create"], &[], "{not json");
    assert!(out.netavark_error().contains("cannot decode the network"));
}

#[test]
fn setup_and_teardown_need_the_netns_argument() {
    let dir = TempDir::new("nv-noarg");
    for cmd in ["setup", "teardown"] {
        let out = netavark(
            &[cmd],
            &plugin_exec(&dir, json!({"interface_name": "vpn0"})),
        );
        let err = out.netavark_error();
        assert!(err.contains("netns path argument is missing"), "{err}");
    }
}

#[test]
fn setup_through_a_fake_sidecar_prints_the_status_block_then_teardown_offline_twice() {
    let dir = TempDir::new("nv-setup");
    let ns = TestNetns::new("nv-setup");
    let netns = ns.path();
    let input = plugin_exec(
        &dir,
        json!({"interface_name": "vpn7", "static_mac": "02:00:5e:10:00:07"}),
    );
    let sidecar = fake_sidecar(
        &dir.0.join("sidecar.sock"),
        json!({"ok": {"mac": "02:00:5E:10:00:07", "mtu": 1400,
                      "ips": [{"address": "10.99.0.23/24", "gateway": "10.99.0.1"}],
                      "routes": [], "dns": {"nameservers": ["10.99.0.1"], "search": ["vpn.lan"]}}}),
    );
    let out = netavark(&["setup", &netns], &input);
    assert_eq!(out.code, 0, "stdout: {} stderr: {}", out.stdout, out.stderr);
    assert_eq!(
        out.json(),
        json!({
            "dns_search_domains": ["vpn.lan"],
            "dns_server_ips": ["10.99.0.1"],
            "interfaces": {"vpn7": {"mac_address": "02:00:5e:10:00:07",
                "subnets": [{"gateway": "10.99.0.1", "ipnet": "10.99.0.23/24"}]}}
        })
    );
    let req = sidecar.join().unwrap();
    assert_eq!(req["op"], "attach");
    assert_eq!(req["request"]["containerID"], "c0ffee1234");
    assert_eq!(req["request"]["ifname"], "vpn7");
    assert_eq!(req["request"]["network"], "vpn");
    assert_eq!(req["request"]["netns"], netns.as_str());
    let links = ns.links();
    assert!(
        links.contains("vpn7:") && links.contains("02:00:5e:10:00:07"),
        "{links}"
    );

    // The one-shot sidecar is gone: teardown removes the TAP itself, leaves a tombstone, and
    // succeeds again when there is nothing left.
    for round in 0..2 {
        let out = netavark(&["teardown", &netns], &input);
        assert_eq!(out.code, 0, "round {round}: {} {}", out.stdout, out.stderr);
        assert_eq!(out.stdout, "", "teardown prints nothing on success");
        assert!(!ns.links().contains("vpn7"), "{}", ns.links());
        assert!(dir.0.join("tombstones/c0ffee1234:vpn7.json").is_file());
    }
    // A netns that is already gone: still success.
    let out = netavark(&["teardown", "/run/netns/se-cli-gone-0"], &input);
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
}

#[test]
fn setup_failures_print_the_error_object_and_leave_no_tap() {
    let dir = TempDir::new("nv-unreach");
    let ns = TestNetns::new("nv-unreach");
    let input = plugin_exec(&dir, json!({"interface_name": "vpn0"}));
    // Nobody listens on the socket.
    let err = netavark(&["setup", &ns.path()], &input).netavark_error();
    assert!(err.contains("is softether-sidecar running?"), "{err}");
    assert!(!ns.links().contains("vpn0"), "{}", ns.links());
    // The sidecar refuses the login.
    let _sidecar = fake_sidecar(
        Path::new(&dir.0.join("sidecar.sock")),
        json!({"error": {"code": 100, "msg": "SoftEther login failed: ERR_AUTH_FAILED (9)",
                         "details": "user alice on hub DEFAULT at 198.18.0.1:443"}}),
    );
    let err = netavark(&["setup", &ns.path()], &input).netavark_error();
    assert!(err.contains("ERR_AUTH_FAILED"), "{err}");
    assert!(!ns.links().contains("vpn0"), "{}", ns.links());
    // Bad options never get as far as a TAP.
    let mut bad = input.clone();
    bad["network"]["options"]["port"] = json!("0");
    let err = netavark(&["setup", &ns.path()], &bad).netavark_error();
    assert!(err.contains("\"port\""), "{err}");
    assert!(!ns.links().contains("vpn0"), "{}", ns.links());
}
