//! Debian 12's containerd 1.6 with its CRI plugin, driven over the CRI API the way kubelet drives
//! it, set up privately so that the host's /etc/containerd and /run/containerd are never touched:
//!
//! - one directory per instance (`/tmp/softether-containerd-<pid>-<n>`) holding `config.toml`, the
//!   daemon's root, state, opt dir and socket, the CNI `conf_dir` (`net.d`) and pod log dirs;
//! - the daemon runs with only its network namespace switched to the lab's client ("node")
//!   namespace (`nsenter --net=…`; `ip netns exec` would also give it a private mount namespace,
//!   and the sidecar must see the `cni-*` pod namespaces containerd bind-mounts under /run/netns);
//! - `restrict_oom_score_adj = true` (without CAP_SYS_RESOURCE runc fails with "can't get final
//!   child's PID from pipe"), runc with cgroupfs, `max_conf_num = 2` (a default network plus ours,
//!   what Multus gives a pod with a secondary network), and the caller's CNI `bin_dir`, which must
//!   hold `loopback` (containerd sets up `lo` of every pod with it);
//! - the CRI client is `common/cri_client.py` on PyPI `container-runtime-interface-api` (crictl is
//!   not packaged in Debian 12), in a venv under `target/`;
//! - the busybox image of `common/podman.rs` (running `sleep`, so it serves as the sandbox
//!   "pause" image too), imported with `ctr -n k8s.io images import`: no registry.
//!
//! Dropping it stops and removes every pod sandbox (the CNI DELs run while the caller's sidecar
//! is still up), stops the daemon, kills shims of this instance, unmounts and deletes the directory.
#![allow(dead_code)] // each test binary uses a different subset

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use softether_lab::command;
use softether_lab::netns::{self, KillOnDrop};
use softether_lab::prereq::{self, Tool};
use softether_lab::pyvenv::Venv;

use super::podman::{Podman, IMAGE};
use super::{helper_pids, unmount_below};

/// The CRI client's PyPI package (stubs generated from k8s.io/cri-api, CRI v1 and v1alpha2).
const CRI_API: &str = "container-runtime-interface-api==2.0.1";
/// Deadline of one CRI call (RunPodSandbox includes the plugins' ADDs: login + DHCP).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(150);
/// How long the daemon may take to boot and load the CNI config.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);
/// The image's command: long-lived, so the image also serves as the sandbox ("pause") image.
/// PID 1 ignores SIGTERM; StopContainer's timeout then ends it with SIGKILL.
const SLEEP: &str = r#"["/bin/sleep", "2147483647"]"#;

const TOOLS: &[Tool] = &[
    Tool {
        program: "/usr/bin/containerd",
        package: "containerd",
    },
    Tool {
        program: "/usr/bin/ctr",
        package: "containerd",
    },
    Tool {
        program: "/usr/bin/containerd-shim-runc-v2",
        package: "containerd",
    },
    Tool {
        program: "runc",
        package: "runc",
    },
    Tool {
        program: "nsenter",
        package: "util-linux",
    },
];

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A private containerd in network namespace `netns`; see the module docs.
pub struct Containerd {
    dir: PathBuf,
    daemon: Option<KillOnDrop>,
    log: PathBuf,
}

/// A pod sandbox: its id and the config it was created with (CreateContainer repeats it).
pub struct Sandbox {
    pub id: String,
    pub config: Value,
}

impl Containerd {
    /// Writes the configuration (CNI `bin_dir` = `cni_bin`, `conf_dir` = [`Containerd::net_d`])
    /// without starting the daemon: write the network configs first, then [`Containerd::start`].
    pub fn new(cni_bin: &Path) -> Containerd {
        prereq::require_root().unwrap_or_else(|e| panic!("{e:#}"));
        prereq::require_tools(TOOLS).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(
            cni_bin.join("loopback").exists(),
            "{} lacks `loopback` (containerd runs it for every pod)",
            cni_bin.display()
        );
        let dir = PathBuf::from(format!(
            "/tmp/softether-containerd-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("net.d")).expect("containerd test dir");
        let d = |sub: &str| dir.join(sub).display().to_string();
        let config = format!(
            r#"# written by tests/tests/common/containerd.rs
version = 2
root = "{root}"
state = "{state}"
# Only the overlayfs snapshotter is used; the others would probe the host's filesystems.
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{bin}"
    conf_dir = "{net_d}"
    max_conf_num = 2
"#,
            root = d("root"),
            state = d("state"),
            socket = d("containerd.sock"),
            opt = d("opt"),
            bin = cni_bin.display(),
            net_d = d("net.d"),
        );
        fs::write(dir.join("config.toml"), config).expect("config.toml");
        Containerd {
            log: dir.join("containerd.log"),
            dir,
            daemon: None,
        }
    }

    /// The instance's directory (for the caller's extra state, e.g. an IPAM data dir).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// containerd's CNI `conf_dir`: `<name>.conflist` files, loaded in name order (eth0, eth1).
    pub fn net_d(&self) -> PathBuf {
        self.dir.join("net.d")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Starts the daemon in namespace `netns`, waits (bounded) until the CRI answers with both
    /// RuntimeReady and NetworkReady (a CNI config loaded), and imports the busybox image
    /// (built by a throwaway private Podman in the same namespace).
    pub fn start(&mut self, netns: &str) {
        let out = fs::File::create(&self.log).expect("containerd log");
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{netns}"))
            .arg("/usr/bin/containerd")
            .arg("--config")
            .arg(self.dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out);
        self.daemon = Some(netns::spawn_command(cmd).expect("spawn containerd"));
        let until = Instant::now() + START_TIMEOUT;
        loop {
            let ready = self.call("Status", &json!({})).ok().is_some_and(|s| {
                let conditions = s["status"]["conditions"].as_array().cloned();
                let ok = |kind: &str| {
                    conditions
                        .iter()
                        .flatten()
                        .any(|c| c["type"] == kind && c["status"].as_bool() == Some(true))
                };
                ok("RuntimeReady") && ok("NetworkReady")
            });
            if ready {
                break;
            }
            assert!(
                Instant::now() < until,
                "containerd not ready within {START_TIMEOUT:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(POLL);
        }
        let started = Instant::now();
        let tar = self.dir.join("busybox.tar");
        {
            let podman = Podman::new(netns);
            podman.import_busybox_with_cmd(SLEEP);
            podman.save(&tar);
        }
        command::run_ok(
            Command::new("/usr/bin/ctr")
                .arg("--address")
                .arg(self.socket())
                .args(["--namespace", "k8s.io", "images", "import"])
                .arg(&tar),
            Duration::from_secs(60),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        println!(
            "busybox image into containerd: {} ms",
            started.elapsed().as_millis()
        );
    }

    /// One CRI v1 call (`RunPodSandbox`, `ExecSync`, …) with `request` as proto3 JSON; the
    /// response as JSON (fields at their default value, such as `exit_code: 0`, are absent),
    /// or the gRPC error as text.
    pub fn call(&self, method: &str, request: &Value) -> Result<Value, String> {
        let timeout = CALL_TIMEOUT.as_secs().to_string();
        let out = command::run_with_input(
            Command::new(cri_python())
                .arg(client_script())
                .arg(self.socket())
                .args([method, &timeout]),
            Some(request.to_string().as_bytes()),
            CALL_TIMEOUT + Duration::from_secs(30),
        )
        .map_err(|e| format!("{e:#}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("{method} response: {e}"))
    }

    /// [`Containerd::call`] that must succeed.
    pub fn ok(&self, method: &str, request: &Value) -> Value {
        self.call(method, request).unwrap_or_else(|e| {
            panic!(
                "CRI {method} failed: {e}\ncontainerd log:\n{}",
                tail(&self.log_text(), 40)
            )
        })
    }

    /// RunPodSandbox as kubelet sends it for pod `name` in namespace `default`.
    pub fn run_pod(&self, name: &str) -> Sandbox {
        self.try_run_pod(name).unwrap_or_else(|e| {
            panic!(
                "CRI RunPodSandbox failed: {e}\ncontainerd log:\n{}",
                tail(&self.log_text(), 40)
            )
        })
    }

    /// [`Containerd::run_pod`] that may fail: the gRPC error as text.
    pub fn try_run_pod(&self, name: &str) -> Result<Sandbox, String> {
        let logs = self.dir.join("pods").join(name);
        fs::create_dir_all(&logs).expect("pod log dir");
        let config = json!({
            "metadata": {"name": name, "uid": format!("uid-{name}"), "namespace": "default", "attempt": 0},
            "hostname": name,
            "log_directory": logs,
            "labels": {"app": name},
            "linux": {}
        });
        let id = self.call("RunPodSandbox", &json!({ "config": config }))?["pod_sandbox_id"]
            .as_str()
            .expect("pod_sandbox_id")
            .to_owned();
        Ok(Sandbox { id, config })
    }

    /// PodSandboxStatus (verbose): `status` plus containerd's `info` (runtime spec, CNI result).
    pub fn pod_status(&self, pod: &Sandbox) -> (Value, Value) {
        let out = self.ok(
            "PodSandboxStatus",
            &json!({"pod_sandbox_id": pod.id, "verbose": true}),
        );
        let info = out["info"]["info"]
            .as_str()
            .map(|s| serde_json::from_str(s).expect("verbose info JSON"))
            .unwrap_or(Value::Null);
        (out["status"].clone(), info)
    }

    /// The name (under /run/netns) of the pod's network namespace, from the runtime spec.
    pub fn pod_netns(&self, pod: &Sandbox) -> String {
        let (_, info) = self.pod_status(pod);
        netns_of(&info).unwrap_or_else(|| panic!("no network namespace path in {info}"))
    }

    /// CreateContainer + StartContainer: busybox `sleep` in the pod; returns the container id.
    pub fn start_container(&self, pod: &Sandbox, name: &str) -> String {
        let id = self.ok(
            "CreateContainer",
            &json!({
                "pod_sandbox_id": pod.id,
                "config": {
                    "metadata": {"name": name},
                    "image": {"image": IMAGE},
                    "log_path": format!("{name}.log"),
                    "linux": {}
                },
                "sandbox_config": pod.config
            }),
        )["container_id"]
            .as_str()
            .expect("container_id")
            .to_owned();
        self.ok("StartContainer", &json!({ "container_id": id }));
        id
    }

    /// ExecSync: (exit code, stdout + stderr).
    pub fn exec(&self, container: &str, argv: &[&str]) -> (i64, String) {
        let out = self.ok(
            "ExecSync",
            &json!({"container_id": container, "cmd": argv, "timeout": 30}),
        );
        let text = |k: &str| out[k].as_str().unwrap_or("").to_owned();
        (
            out["exit_code"].as_i64().unwrap_or(0),
            text("stdout") + &text("stderr"),
        )
    }

    /// What kubelet does when a pod goes: StopContainer (with a grace period) and RemoveContainer
    /// for each container, then StopPodSandbox (CNI DEL) and RemovePodSandbox.
    pub fn remove_pod(&self, pod: &Sandbox, containers: &[String]) {
        for id in containers {
            self.ok("StopContainer", &json!({"container_id": id, "timeout": 1}));
            self.ok("RemoveContainer", &json!({ "container_id": id }));
        }
        self.ok("StopPodSandbox", &json!({ "pod_sandbox_id": pod.id }));
        self.ok("RemovePodSandbox", &json!({ "pod_sandbox_id": pod.id }));
    }

    /// Ids of the sandboxes containerd knows.
    pub fn sandboxes(&self) -> Vec<String> {
        self.call("ListPodSandbox", &json!({}))
            .ok()
            .and_then(|l| l["items"].as_array().cloned())
            .into_iter()
            .flatten()
            .filter_map(|s| s["id"].as_str().map(str::to_owned))
            .collect()
    }

    fn shim_pids(&self) -> Vec<i32> {
        helper_pids("containerd-shim", &self.socket().to_string_lossy())
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            for id in self.sandboxes() {
                let pod = json!({ "pod_sandbox_id": id });
                let netns = self
                    .call(
                        "PodSandboxStatus",
                        &json!({"pod_sandbox_id": id, "verbose": true}),
                    )
                    .ok()
                    .and_then(|s| serde_json::from_str(s["info"]["info"].as_str()?).ok())
                    .and_then(|info: Value| netns_of(&info));
                // containerd keeps the namespace of a sandbox whose CNI DEL failed (say, a broken
                // default network); it is ours to remove then.
                if self.call("StopPodSandbox", &pod).is_err() {
                    if let Some(name) = netns {
                        netns::destroy(&name);
                    }
                }
                let _ = self.call("RemovePodSandbox", &pod);
            }
            let _ = daemon.terminate(Duration::from_secs(10));
        }
        for pid in self.shim_pids() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        unmount_below(&self.dir);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The network namespace name in a sandbox's verbose info (its runtime spec).
fn netns_of(info: &Value) -> Option<String> {
    let path = info["runtimeSpec"]["linux"]["namespaces"]
        .as_array()?
        .iter()
        .find(|n| n["type"] == "network")?["path"]
        .as_str()?;
    Some(Path::new(path).file_name()?.to_str()?.to_owned())
}

/// The venv's python with the CRI stubs (installed once per target dir).
fn cri_python() -> PathBuf {
    static VENV: OnceLock<Venv> = OnceLock::new();
    VENV.get_or_init(|| Venv::ensure(&[CRI_API]).unwrap_or_else(|e| panic!("{e:#}")))
        .bin("python")
}

fn client_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/cri_client.py")
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
