//! A lab set up for CNI tests: `softether-sidecar run` in the lab's client namespace (the
//! "node"), a CNI_PATH directory holding the `softether` plugin and a fake previous plugin,
//! alice's password file, pod namespaces, and probes of what is left in them.
#![allow(dead_code)] // each test binary uses a different subset

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use softether_lab::netns::{self, KillOnDrop};
use softether_lab::Lab;

use super::cni::{Attachment, NetworkList, Runtime};
use super::connect::exec;
use super::workspace_bin;

/// Plugin type of the fake first plugin of a chain (`prev-eth`): its ADD prints a fixed result
/// with an `eth0` in the pod; every call is appended to `prev-eth.log` beside it.
pub const PREV_PLUGIN: &str = "prev-eth";

/// `softether-sidecar run` in the lab's node namespace; SIGKILLed on drop.
pub struct Sidecar {
    process: Option<KillOnDrop>,
    pub log: PathBuf,
}

impl Sidecar {
    pub fn start(lab: &Lab, socket: &Path, state: &Path, n: u32) -> Sidecar {
        let s = Sidecar::spawn(lab, socket, state, n, &[], &[], None);
        s.wait_listening(socket);
        s
    }

    /// [`Sidecar::start`] under `prlimit --nofile=N:N` (prlimit execs the daemon, so
    /// [`Sidecar::pid`] stays the daemon's).
    pub fn start_with_nofile(
        lab: &Lab,
        socket: &Path,
        state: &Path,
        n: u32,
        nofile: Option<u64>,
    ) -> Sidecar {
        let s = Sidecar::spawn(lab, socket, state, n, &[], &[], nofile);
        s.wait_listening(socket);
        s
    }

    /// Starts `run` with `extra` flags and `env` (under `prlimit --nofile=N:N` when `nofile`
    /// is set), without waiting for its control socket.
    pub fn spawn(
        lab: &Lab,
        socket: &Path,
        state: &Path,
        n: u32,
        extra: &[&str],
        env: &[(&str, &str)],
        nofile: Option<u64>,
    ) -> Sidecar {
        let log = lab.facts.dir.join(format!("sidecar-{n}.log"));
        let out = fs::File::create(&log).expect("sidecar log");
        let bin = workspace_bin("softether-sidecar");
        let limit = nofile.map(|n| format!("--nofile={n}:{n}"));
        let prefix: Vec<&str> = match &limit {
            Some(l) => vec!["prlimit", l, "--"],
            None => vec![],
        };
        let mut cmd = netns::command_in(
            &lab.facts.client_ns,
            &[
                &prefix[..],
                &[
                    bin.to_str().expect("utf-8 path"),
                    "run",
                    "--log",
                    "info,softether_sidecar=debug",
                    "--socket",
                    socket.to_str().expect("utf-8 path"),
                    "--state-dir",
                    state.to_str().expect("utf-8 path"),
                ][..],
            ]
            .concat(),
        );
        cmd.args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out);
        Sidecar {
            process: Some(netns::spawn_command(cmd).expect("spawn softether-sidecar run")),
            log,
        }
    }

    /// Waits (bounded) until the control socket accepts.
    pub fn wait_listening(&self, socket: &Path) {
        let s = self;
        let until = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            assert!(
                Instant::now() < until,
                "sidecar did not listen:\n{}",
                s.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The daemon's pid (`ip netns exec` execs it, so the child is the daemon itself).
    pub fn pid(&self) -> u32 {
        self.process.as_ref().expect("running").id()
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        self.process.take();
    }

    pub fn fd_count(&self) -> usize {
        fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("/proc/<pid>/fd")
            .count()
    }

    /// A `/proc/<pid>/status` field in kB (`VmRSS`, `VmHWM`).
    pub fn status_kb(&self, field: &str) -> u64 {
        let text = fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("status");
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("{field} missing in /proc/<pid>/status"))
    }
}

/// Paths of one CNI setup inside a lab directory.
pub struct CniDirs {
    pub socket: PathBuf,
    pub state: PathBuf,
    pub password_file: PathBuf,
    pub bin: PathBuf,
}

impl CniDirs {
    /// Creates `<lab dir>/cni` with alice's password file and a CNI_PATH dir holding the
    /// plugin (symlink) and [`PREV_PLUGIN`].
    pub fn create(lab: &Lab) -> CniDirs {
        let base = lab.facts.dir.join("cni");
        let bin = base.join("bin");
        fs::create_dir_all(&bin).expect("cni dirs");
        let password_file = base.join("alice.pass");
        fs::write(&password_file, format!("{}\n", lab.facts.alice.password)).expect("pass");
        std::os::unix::fs::symlink(workspace_bin("softether"), bin.join("softether"))
            .expect("plugin symlink");
        write_prev_plugin(&bin.join(PREV_PLUGIN));
        CniDirs {
            socket: base.join("sidecar.sock"),
            state: base.join("state"),
            password_file,
            bin,
        }
    }

    /// Our plugin's config (before the runtime injects name/cniVersion).
    pub fn plugin_conf(&self, lab: &Lab) -> Value {
        let f = &lab.facts;
        json!({
            "type": "softether",
            "server": f.server_ip.to_string(), "port": f.port, "hub": f.hub, "user": f.alice.name,
            "passwordFile": self.password_file, "insecure": true,
            "sidecarSocket": self.socket, "stateDir": self.state, "timeout": 90
        })
    }

    pub fn record(&self, att: &Attachment) -> PathBuf {
        self.state.join(format!(
            "attachments/{}:{}.json",
            att.container_id, att.ifname
        ))
    }

    /// Files left in the state dir's `attachments/` and `tombstones/`.
    pub fn leftover_state(&self) -> Vec<String> {
        state_leftovers(&self.state)
    }

    /// `softether-sidecar status --json` → the `attachments` array.
    pub fn status_attachments(&self, lab: &Lab) -> Vec<Value> {
        sidecar_status(&lab.facts.client_ns, &self.socket)["attachments"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn runtime(&self, lab: &Lab) -> Runtime {
        Runtime::new(&lab.facts.client_ns, vec![self.bin.clone()])
    }
}

/// The attachment of `container_id`'s `vpn0` in the pod namespace `pod`.
pub fn pod_attachment(container_id: &str, pod: &str) -> Attachment {
    Attachment {
        container_id: container_id.to_owned(),
        netns: Some(netns_path(pod)),
        ifname: "vpn0".to_owned(),
        ..Attachment::default()
    }
}

/// `softether-sidecar status --json --socket <socket>`, run in `client_ns`, parsed.
pub fn sidecar_status(client_ns: &str, socket: &Path) -> Value {
    let bin = workspace_bin("softether-sidecar");
    let (ok, out) = exec(
        client_ns,
        &[
            bin.to_str().expect("utf-8"),
            "status",
            "--json",
            "--socket",
            socket.to_str().expect("utf-8"),
        ],
    );
    assert!(ok, "status failed: {out}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("status --json ({e}): {out}"))
}

/// Attachment records and tombstones left in a sidecar state directory.
pub fn state_leftovers(state: &Path) -> Vec<String> {
    ["attachments", "tombstones"]
        .iter()
        .flat_map(|d| fs::read_dir(state.join(d)).into_iter().flatten())
        .flatten()
        .map(|e| e.path().display().to_string())
        .collect()
}

/// A shell plugin that behaves like a bridge plugin without touching anything: ADD prints a
/// fixed result for the requested version (eth0 in CNI_NETNS, 198.18.0.5/16; only JSON, nothing
/// is configured), the rest print nothing. Each call appends `COMMAND CONTAINERID` to
/// `<path>.log`.
fn write_prev_plugin(path: &Path) {
    let log = format!("{}.log", path.display());
    let script = format!(
        r#"#!/bin/sh
conf=$(cat)
echo "$CNI_COMMAND $CNI_CONTAINERID" >> '{log}'
version=$(printf '%s' "$conf" | sed -n 's/.*"cniVersion":"\([0-9.]*\)".*/\1/p')
case "$version" in
  0.*) ipver='"version":"4",' ;;
  *) ipver='' ;;
esac
case "$CNI_COMMAND" in
  ADD)
    printf '{{"cniVersion":"%s","interfaces":[{{"name":"eth0","mac":"0a:58:c6:12:00:05","sandbox":"%s"}}],"ips":[{{%s"address":"198.18.0.5/16","gateway":"198.18.0.1","interface":0}}],"routes":[{{"dst":"0.0.0.0/0","gw":"198.18.0.1"}}],"dns":{{"nameservers":["198.18.0.1"]}}}}\n' "$version" "$CNI_NETNS" "$ipver"
    ;;
  VERSION)
    printf '{{"cniVersion":"%s","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}}\n' "$version"
    ;;
esac
exit 0
"#,
    );
    fs::write(path, script).expect("write fake plugin");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod fake plugin");
}

/// The calls [`PREV_PLUGIN`] saw, `COMMAND CONTAINERID` per line.
pub fn prev_plugin_calls(dirs: &CniDirs) -> Vec<String> {
    fs::read_to_string(dirs.bin.join(format!("{PREV_PLUGIN}.log")))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A network list: `[prev-eth,] softether`.
pub fn network_list(name: &str, version: &str, plugin: &Value, chained: bool) -> NetworkList {
    let mut plugins = Vec::new();
    if chained {
        plugins.push(json!({"type": PREV_PLUGIN}));
    }
    plugins.push(plugin.clone());
    NetworkList {
        name: name.to_owned(),
        cni_version: version.to_owned(),
        plugins,
    }
}

/// The pod's `ifname` as `ip -j link` shows it, or None.
pub fn pod_link(pod: &str, ifname: &str) -> Option<Value> {
    let (ok, out) = exec(pod, &["ip", "-j", "link", "show", ifname]);
    if !ok {
        return None;
    }
    let v: Value = serde_json::from_str(&out).ok()?;
    v.get(0).cloned()
}

/// One ping to the lan host from the pod, up to `attempts` times.
pub fn ping_lan(lab: &Lab, pod: &str, attempts: u32) -> (bool, String) {
    let dst = lab.facts.lan_host.to_string();
    let mut last = String::new();
    for _ in 0..attempts {
        let (ok, out) = exec(pod, &["ping", "-c", "1", "-W", "2", &dst]);
        if ok {
            return (true, out);
        }
        last = out;
    }
    (false, last)
}

/// What our attachment leaves in a pod namespace besides `lo`: links, non-default rules,
/// nft tables, routes in any table other than local. Empty when the pod is clean.
pub fn pod_leftovers(pod: &str) -> Vec<String> {
    let mut out = Vec::new();
    let links = must_json(pod, &["ip", "-j", "link"]);
    for l in links.as_array().into_iter().flatten() {
        if l["ifname"] != "lo" {
            out.push(format!("link {}", l["ifname"]));
        }
    }
    let rules = must_json(pod, &["ip", "-j", "rule"]);
    for r in rules.as_array().into_iter().flatten() {
        let default = matches!(r["priority"].as_u64(), Some(0 | 32766 | 32767))
            && r.get("src").is_none_or(|s| s == "all")
            && r.get("fwmark").is_none();
        if !default {
            out.push(format!("rule {r}"));
        }
    }
    let tables = super::connect::must(pod, &["nft", "list", "tables"]);
    if !tables.trim().is_empty() {
        out.push(format!("nft {}", tables.trim()));
    }
    let routes = must_json(pod, &["ip", "-j", "route", "show", "table", "all"]);
    for r in routes.as_array().into_iter().flatten() {
        if r["table"] != "local" {
            out.push(format!("route {r}"));
        }
    }
    out
}

fn must_json(ns: &str, argv: &[&str]) -> Value {
    let out = super::connect::must(ns, argv);
    if out.trim().is_empty() {
        return json!([]);
    }
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{argv:?} ({e}): {out}"))
}

/// The pod's `vpn0` IPv4 address (`a.b.c.d/nn`), if any.
pub fn pod_address(pod: &str) -> Option<String> {
    let (_, out) = exec(pod, &["ip", "-4", "-o", "addr", "show", "vpn0"]);
    out.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .map(str::to_owned)
}

/// Steady background traffic from `pod` to the lan host: a ping every `interval` (e.g.
/// "0.5"), bounded to 10 minutes; killed on drop.
pub fn steady_ping(lab: &Lab, pod: &str, interval: &str) -> KillOnDrop {
    let dst = lab.facts.lan_host.to_string();
    let secs: f64 = interval.parse().expect("interval in seconds");
    let count = ((600.0 / secs) as u64).to_string();
    netns::spawn_in(
        pod,
        &["ping", "-q", "-i", interval, "-c", &count, "-W", "1", &dst],
    )
    .expect("spawn ping")
}

/// `/run/netns/<name>`.
pub fn netns_path(name: &str) -> String {
    format!("/run/netns/{name}")
}

/// Runs `f` for every item, at most `parallel` at a time, each on its own thread.
pub fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    parallel: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(parallel) {
        std::thread::scope(|s| {
            let handles: Vec<_> = chunk.iter().map(|item| s.spawn(|| f(item))).collect();
            out.extend(
                handles
                    .into_iter()
                    .map(|h| h.join().expect("worker thread")),
            );
        });
    }
    out
}
