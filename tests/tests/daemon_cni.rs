//! The CNI plugin + `softether-sidecar run` against the real server: the plugin is executed the
//! way libcni does (env + stdin, exit status, stdout JSON) in the "node" namespace of the lab,
//! for a pod namespace created here; the sidecar is killed with SIGKILL and restarted.
//!
//! Needs `cargo build --workspace --bins` first, and root.

mod common;

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::cni_lab::{sidecar_status, Sidecar};
use common::connect::{exec, extra_netns, must};
use common::workspace_bin;
use serde_json::{json, Value};
use softether_lab::netns::{self, Netns};
use softether_lab::{Lab, LabOptions};

const POLL: Duration = Duration::from_millis(250);

struct Setup {
    // Fields drop in order: the pod namespace goes before the lab.
    pod: Netns,
    lab: Lab,
    socket: PathBuf,
    state: PathBuf,
    password_file: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let lab = Lab::start(LabOptions::default()).expect("lab");
        let pod = extra_netns();
        let base = lab.facts.dir.join("cni");
        fs::create_dir_all(&base).unwrap();
        let password_file = base.join("alice.pass");
        fs::write(&password_file, format!("{}\n", lab.facts.alice.password)).unwrap();
        Setup {
            socket: base.join("sidecar.sock"),
            state: base.join("state"),
            password_file,
            pod,
            lab,
        }
    }

    fn netns_path(&self) -> String {
        format!("/run/netns/{}", self.pod.name())
    }

    fn config(&self, version: &str) -> Value {
        let f = &self.lab.facts;
        json!({
            "cniVersion": version, "name": "vpnnet", "type": "softether",
            "server": f.server_ip.to_string(), "port": f.port, "hub": f.hub, "user": f.alice.name,
            "passwordFile": self.password_file, "insecure": true,
            "sidecarSocket": self.socket, "stateDir": self.state, "timeout": 60
        })
    }

    /// Runs the plugin like libcni: returns (exit code, stdout JSON or Null, stderr).
    fn cni(&self, command: &str, container: &str, stdin: &Value) -> (i32, Value, String) {
        let plugin = workspace_bin("softether");
        let mut child = netns::command_in(&self.lab.facts.client_ns, &[plugin.to_str().unwrap()])
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container)
            .env("CNI_NETNS", self.netns_path())
            .env("CNI_IFNAME", "vpn0")
            .env("CNI_PATH", "/opt/cni/bin")
            .env("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web")
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let json = if stdout.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&stdout)
                .unwrap_or_else(|e| panic!("stdout not JSON ({e}): {stdout}"))
        };
        (
            out.status.code().unwrap_or(-1),
            json,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The MAC of vpn0 in the pod, or None when it does not exist.
    fn pod_mac(&self) -> Option<String> {
        let (ok, out) = exec(self.pod.name(), &["ip", "-j", "link", "show", "vpn0"]);
        if !ok {
            return None;
        }
        let v: Value = serde_json::from_str(&out).ok()?;
        v[0]["address"].as_str().map(str::to_uppercase)
    }

    fn status_json(&self) -> Value {
        sidecar_status(&self.lab.facts.client_ns, &self.socket)
    }

    /// Polls `status` until `container` is up; returns its address.
    fn wait_up(&self, container: &str, daemon: &Sidecar) -> String {
        let until = Instant::now() + Duration::from_secs(45);
        loop {
            let s = self.status_json();
            if let Some(a) = s["attachments"]
                .as_array()
                .and_then(|l| l.iter().find(|a| a["containerID"] == container))
            {
                if a["state"] == "up" {
                    return a["address"].as_str().unwrap_or_default().to_owned();
                }
            }
            assert!(
                Instant::now() < until,
                "{container} not up: {s}\n{}",
                daemon.log_text()
            );
            std::thread::sleep(POLL);
        }
    }

    fn ping_lan(&self) -> (bool, String) {
        exec(
            self.pod.name(),
            &[
                "ping",
                "-c",
                "2",
                "-i",
                "0.3",
                "-W",
                "2",
                &self.lab.facts.lan_host.to_string(),
            ],
        )
    }

    fn record(&self, container: &str) -> PathBuf {
        self.state
            .join(format!("attachments/{container}:vpn0.json"))
    }

    fn tombstone(&self, container: &str) -> PathBuf {
        self.state.join(format!("tombstones/{container}:vpn0.json"))
    }
}

fn add(s: &Setup, container: &str, daemon: &Sidecar) -> Value {
    let started = Instant::now();
    let (code, result, stderr) = s.cni("ADD", container, &s.config("1.0.0"));
    assert_eq!(
        code,
        0,
        "ADD failed: {result} {stderr}\n{}",
        daemon.log_text()
    );
    println!("ADD took {} ms", started.elapsed().as_millis());
    let mac = s.pod_mac().expect("vpn0 exists in the pod");
    assert_eq!(result["interfaces"][0]["name"], "vpn0");
    assert_eq!(
        result["interfaces"][0]["mac"]
            .as_str()
            .unwrap()
            .to_uppercase(),
        mac
    );
    assert_eq!(result["interfaces"][0]["sandbox"], s.netns_path().as_str());
    let address = result["ips"][0]["address"].as_str().unwrap();
    let ip: std::net::Ipv4Addr = address.split('/').next().unwrap().parse().unwrap();
    let f = &s.lab.facts;
    assert!((f.dhcp_start..=f.dhcp_end).contains(&ip), "{result}");
    assert_eq!(result["ips"][0]["interface"], 0);
    result
}

#[test]
fn add_check_kill9_readopt_del_del() {
    let s = Setup::new();
    let mut daemon = Sidecar::start(&s.lab, &s.socket, &s.state, 0);
    let result = add(&s, "ctr1", &daemon);
    let address = result["ips"][0]["address"].as_str().unwrap().to_owned();
    let (ok, out) = s.ping_lan();
    assert!(
        ok,
        "pod cannot reach the lan host: {out}\n{}",
        daemon.log_text()
    );
    assert!(s.record("ctr1").exists());
    let record = fs::read_to_string(s.record("ctr1")).unwrap();
    assert!(
        !record.contains(&s.lab.facts.alice.password),
        "the record never holds the password"
    );

    let mut check = s.config("1.0.0");
    check["prevResult"] = result.clone();
    let (code, out, err) = s.cni("CHECK", "ctr1", &check);
    assert_eq!(code, 0, "CHECK: {out} {err}");
    assert_eq!(s.wait_up("ctr1", &daemon), address);

    // kill -9: the TAP (persistent) and its address stay in the pod; the restarted sidecar
    // re-adopts it and gets the same address back.
    daemon.kill9();
    assert!(s.pod_mac().is_some(), "the TAP survives the sidecar");
    let daemon = Sidecar::start(&s.lab, &s.socket, &s.state, 1);
    assert_eq!(
        s.wait_up("ctr1", &daemon),
        address,
        "same address after restart"
    );
    let (ok, out) = s.ping_lan();
    assert!(
        ok,
        "traffic did not resume after re-adoption: {out}\n{}",
        daemon.log_text()
    );
    let (code, out, err) = s.cni("CHECK", "ctr1", &check);
    assert_eq!(code, 0, "CHECK after restart: {out} {err}");

    let mut del = s.config("1.0.0");
    del["prevResult"] = result;
    for _ in 0..2 {
        let (code, out, err) = s.cni("DEL", "ctr1", &del);
        assert_eq!((code, &out), (0, &Value::Null), "DEL: {err}");
        assert!(s.pod_mac().is_none(), "vpn0 removed");
        assert!(!s.record("ctr1").exists(), "record removed");
    }
    assert_eq!(s.status_json()["attachments"], json!([]));
}

#[test]
fn del_while_sidecar_down_leaves_tombstone_processed_on_start() {
    let s = Setup::new();
    let mut daemon = Sidecar::start(&s.lab, &s.socket, &s.state, 0);
    add(&s, "ctr2", &daemon);
    daemon.kill9();
    let (code, out, err) = s.cni("DEL", "ctr2", &s.config("1.0.0"));
    assert_eq!(
        (code, &out),
        (0, &Value::Null),
        "DEL with the sidecar down: {err}"
    );
    assert!(s.pod_mac().is_none(), "the plugin removed vpn0 itself");
    assert!(s.tombstone("ctr2").exists(), "tombstone written");
    assert!(
        s.record("ctr2").exists(),
        "the record stays for the sidecar"
    );

    let daemon = Sidecar::start(&s.lab, &s.socket, &s.state, 1);
    assert!(!s.tombstone("ctr2").exists(), "{}", daemon.log_text());
    assert!(!s.record("ctr2").exists(), "{}", daemon.log_text());
    assert_eq!(s.status_json()["attachments"], json!([]));
    assert!(s.pod_mac().is_none());
    // A DEL after that is still fine.
    let (code, _, err) = s.cni("DEL", "ctr2", &s.config("1.0.0"));
    assert_eq!(code, 0, "{err}");
    must(s.pod.name(), &["ip", "link", "show", "lo"]);
}

#[test]
fn policy_routing_connmark_then_del_and_login_failure_is_100() {
    let s = Setup::new();
    let daemon = Sidecar::start(&s.lab, &s.socket, &s.state, 0);
    let mut conf = s.config("1.1.0");
    conf["policyRouteTable"] = json!(100);
    conf["connmark"] = json!(true);
    conf["acceptDefaultGateway"] = json!(true);
    let (code, result, err) = s.cni("ADD", "ctr3", &conf);
    assert_eq!(code, 0, "ADD: {result} {err}\n{}", daemon.log_text());
    let address = result["ips"][0]["address"].as_str().unwrap().to_owned();
    let ip = address.split('/').next().unwrap();
    // The same routes `connect --accept-default-gateway --policy-route-table 100` installs:
    // the default route at metric 50 in main, and the subnet + default route in table 100.
    let routes = result["routes"].as_array().expect("routes");
    assert!(
        routes
            .iter()
            .any(|r| r["dst"] == "0.0.0.0/0" && r["table"] == 100),
        "{result}"
    );
    assert!(
        routes
            .iter()
            .any(|r| r["dst"] == "0.0.0.0/0" && r.get("table").is_none()),
        "{result}"
    );
    let pod = s.pod.name();
    let rules = must(pod, &["ip", "rule"]);
    assert!(rules.contains(&format!("from {ip} lookup 100")), "{rules}");
    assert!(rules.contains("fwmark 0x64 lookup 100"), "{rules}");
    let table = must(pod, &["ip", "route", "show", "table", "100"]);
    assert!(
        table.contains(&format!("default via {} dev vpn0", s.lab.facts.gateway)),
        "{table}"
    );
    let nft = must(pod, &["nft", "list", "tables"]);
    assert!(nft.contains("softether_"), "{nft}");
    let (ok, out) = s.ping_lan();
    assert!(ok, "{out}");

    let (code, _, err) = s.cni("DEL", "ctr3", &conf);
    assert_eq!(code, 0, "{err}");
    let nft = must(pod, &["nft", "list", "tables"]);
    assert!(!nft.contains("softether_"), "nft table removed: {nft}");
    assert!(s.pod_mac().is_none());

    let wrong = s.lab.facts.dir.join("cni/wrong.pass");
    fs::write(&wrong, "not-the-password\n").unwrap();
    let mut conf = s.config("1.0.0");
    conf["passwordFile"] = json!(wrong);
    let (code, out, _) = s.cni("ADD", "ctr4", &conf);
    assert_eq!((code, &out["code"]), (1, &json!(100)), "{out}");
    assert!(
        out["msg"].as_str().unwrap().contains("ERR_AUTH_FAILED"),
        "{out}"
    );
    assert!(s.pod_mac().is_none(), "the failed ADD left no TAP");
    assert!(!s.record("ctr4").exists());

    let mut conf = s.config("1.0.0");
    conf["passwordFile"] = json!("/nonexistent/alice.pass");
    let (code, out, _) = s.cni("ADD", "ctr5", &conf);
    assert_eq!((code, &out["code"]), (1, &json!(7)), "{out}");
    assert!(s.pod_mac().is_none());
}
