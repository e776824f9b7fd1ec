//! A CNI runtime for the tests that executes plugins the way libcni does (`libcni/api.go`,
//! `pkg/invoke`): the plugin binary is looked up by `type` in `CNI_PATH`; the environment is
//! `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_PATH` and `CNI_ARGS`
//! (`IgnoreUnknown=1;…`, empty variables for GC/STATUS as `invoke.Args.AsEnv` sets them); stdin
//! is the plugin's config with `name` and `cniVersion` from the list injected, `capabilities`
//! stripped and the matching capability args put into `runtimeConfig`. ADD runs the chain in
//! order, each plugin getting the previous result as `prevResult`, and caches the final result;
//! CHECK and DEL pass the cached result as `prevResult` (DEL only for cniVersion ≥ 0.4.0, as
//! libcni does) and DEL runs the chain in reverse. GC sends both spellings of the attachment key.
//!
//! Every invocation is bounded; exit code, stdout and stderr are captured and stdout parsed.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use softether_lab::command::{kill_group, wait_deadline};

/// How long one plugin invocation may take before the runtime kills it (above the plugin's
/// own ADD `timeout`, which is at most 119 s).
pub const INVOKE_TIMEOUT: Duration = Duration::from_secs(150);

/// A network config list (`.conflist`): the list's `name` and `cniVersion` are injected into
/// every plugin's config.
#[derive(Debug, Clone)]
pub struct NetworkList {
    pub name: String,
    pub cni_version: String,
    pub plugins: Vec<Value>,
}

/// One attachment's runtime parameters (`RuntimeConf` in libcni).
#[derive(Debug, Clone, Default)]
pub struct Attachment {
    pub container_id: String,
    /// `None` sends `CNI_NETNS=""` (DEL after the sandbox is gone).
    pub netns: Option<String>,
    pub ifname: String,
    /// Extra `CNI_ARGS` pairs after `IgnoreUnknown=1`.
    pub args: Vec<(String, String)>,
    /// Capability args (`mac`, `portMappings`, …); only those a plugin declares reach it.
    pub capability_args: Map<String, Value>,
}

/// What one plugin execution returned.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub plugin: String,
    pub command: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// stdout parsed as JSON, `Null` when stdout is empty.
    pub json: Value,
    pub elapsed: Duration,
}

impl Invocation {
    /// The CNI error code, when the plugin failed with an error object.
    pub fn error_code(&self) -> Option<u64> {
        (self.code != 0)
            .then(|| self.json["code"].as_u64())
            .flatten()
    }

    pub fn msg(&self) -> &str {
        self.json["msg"].as_str().unwrap_or_default()
    }

    /// Panics (with everything captured) unless the plugin exited 0.
    pub fn expect_ok(self, what: &str) -> Invocation {
        assert_eq!(self.code, 0, "{what}: {self}");
        self
    }
}

impl std::fmt::Display for Invocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} exited {} after {} ms\nstdout: {}\nstderr: {}",
            self.plugin,
            self.command,
            self.code,
            self.elapsed.as_millis(),
            self.stdout.trim(),
            self.stderr.trim()
        )
    }
}

/// A failed invocation (boxed: it carries all captured output).
pub type Failed = Box<Invocation>;

/// The runtime: plugins run inside network namespace `node_ns` (the "host" of the pods).
pub struct Runtime {
    pub node_ns: String,
    pub cni_path: Vec<PathBuf>,
    /// libcni's result cache (`/var/lib/cni/results`), keyed by (network, container, ifname).
    cache: Mutex<HashMap<(String, String, String), Value>>,
    /// Every invocation in order: (plugin type, command, container id).
    pub journal: Mutex<Vec<(String, String, String)>>,
}

impl Runtime {
    pub fn new(node_ns: &str, cni_path: Vec<PathBuf>) -> Runtime {
        Runtime {
            node_ns: node_ns.to_owned(),
            cni_path,
            cache: Mutex::new(HashMap::new()),
            journal: Mutex::new(Vec::new()),
        }
    }

    fn find_plugin(&self, plugin_type: &str) -> PathBuf {
        self.cni_path
            .iter()
            .map(|d| d.join(plugin_type))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("plugin {plugin_type:?} not found in {:?}", self.cni_path))
    }

    fn path_var(&self) -> String {
        self.cni_path
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(":")
    }

    /// The standard environment for `command` and `att` (all `CNI_*` variables set, empty when
    /// not applicable).
    pub fn env_for(&self, command: &str, att: Option<&Attachment>) -> Vec<(String, String)> {
        let mut args = String::from("IgnoreUnknown=1");
        let (id, netns, ifname) = match att {
            Some(a) => {
                for (k, v) in &a.args {
                    args += &format!(";{k}={v}");
                }
                (
                    a.container_id.clone(),
                    a.netns.clone().unwrap_or_default(),
                    a.ifname.clone(),
                )
            }
            None => Default::default(),
        };
        [
            ("CNI_COMMAND", command.to_owned()),
            ("CNI_CONTAINERID", id),
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", ifname),
            ("CNI_ARGS", args),
            ("CNI_PATH", self.path_var()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Executes plugin `plugin_type` with exactly `env` (plus PATH) and `stdin`.
    pub fn exec_raw(
        &self,
        plugin_type: &str,
        env: &[(String, String)],
        stdin: &[u8],
    ) -> Invocation {
        let binary = self.find_plugin(plugin_type);
        let command = env
            .iter()
            .find(|(k, _)| k == "CNI_COMMAND")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let container = env
            .iter()
            .find(|(k, _)| k == "CNI_CONTAINERID")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        self.journal
            .lock()
            .unwrap()
            .push((plugin_type.to_owned(), command.clone(), container));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.node_ns])
            .arg(&binary)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let started = Instant::now();
        let mut child = cmd.spawn().expect("spawn the plugin through ip netns exec");
        let mut pipe = child.stdin.take().expect("stdin pipe");
        let stdin = stdin.to_vec();
        // A separate writer: a plugin that does not read stdin must not block the runtime.
        let writer = std::thread::spawn(move || {
            let _ = pipe.write_all(&stdin);
        });
        let read = |r: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_end(&mut buf);
                }
                String::from_utf8_lossy(&buf).into_owned()
            })
        };
        let out = read(child.stdout.take().map(|p| Box::new(p) as _));
        let err = read(child.stderr.take().map(|p| Box::new(p) as _));
        let status = wait_deadline(&mut child, INVOKE_TIMEOUT).expect("waitpid");
        let Some(status) = status else {
            kill_group(&mut child);
            panic!("{plugin_type} {command} did not finish within {INVOKE_TIMEOUT:?}");
        };
        let elapsed = started.elapsed();
        let _ = writer.join();
        let stdout = out.join().unwrap_or_default();
        let stderr = err.join().unwrap_or_default();
        let json = if stdout.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&stdout).unwrap_or_else(|e| {
                panic!("{plugin_type} {command}: stdout is not JSON ({e}): {stdout}")
            })
        };
        Invocation {
            plugin: plugin_type.to_owned(),
            command,
            code: status.code().unwrap_or(-1),
            stdout,
            stderr,
            json,
            elapsed,
        }
    }

    /// The stdin libcni builds for plugin `index` of `list`.
    pub fn plugin_stdin(
        &self,
        list: &NetworkList,
        index: usize,
        att: Option<&Attachment>,
        prev_result: Option<&Value>,
    ) -> Value {
        let mut conf = list.plugins[index].clone();
        conf["name"] = json!(list.name);
        conf["cniVersion"] = json!(list.cni_version);
        let caps = conf
            .as_object_mut()
            .and_then(|o| o.remove("capabilities"))
            .unwrap_or(Value::Null);
        if let (Some(caps), Some(att)) = (caps.as_object(), att) {
            let mut runtime_config = Map::new();
            for (cap, enabled) in caps {
                if enabled == &json!(true) {
                    if let Some(v) = att.capability_args.get(cap) {
                        runtime_config.insert(cap.clone(), v.clone());
                    }
                }
            }
            if !runtime_config.is_empty() {
                conf["runtimeConfig"] = Value::Object(runtime_config);
            }
        }
        if let Some(prev) = prev_result {
            conf["prevResult"] = prev.clone();
        }
        conf
    }

    /// Runs plugin `index` of `list` like libcni does; a non-zero exit is the failure.
    fn exec_plugin(
        &self,
        list: &NetworkList,
        index: usize,
        env: &[(String, String)],
        stdin: &Value,
    ) -> Result<Invocation, Failed> {
        let inv = self.exec_raw(
            &Self::plugin_type(list, index),
            env,
            stdin.to_string().as_bytes(),
        );
        if inv.code != 0 {
            return Err(Box::new(inv));
        }
        Ok(inv)
    }

    fn plugin_type(list: &NetworkList, index: usize) -> String {
        list.plugins[index]["type"]
            .as_str()
            .expect("every plugin config has a type")
            .to_owned()
    }

    fn key(list: &NetworkList, att: &Attachment) -> (String, String, String) {
        (
            list.name.clone(),
            att.container_id.clone(),
            att.ifname.clone(),
        )
    }

    pub fn cached_result(&self, list: &NetworkList, att: &Attachment) -> Option<Value> {
        self.cache
            .lock()
            .unwrap()
            .get(&Self::key(list, att))
            .cloned()
    }

    /// `AddNetworkList`: the final result, or the failing invocation. Results are cached.
    pub fn add(&self, list: &NetworkList, att: &Attachment) -> Result<Value, Failed> {
        let env = self.env_for("ADD", Some(att));
        let mut prev: Option<Value> = None;
        for i in 0..list.plugins.len() {
            let stdin = self.plugin_stdin(list, i, Some(att), prev.as_ref());
            let inv = self.exec_plugin(list, i, &env, &stdin)?;
            assert!(!inv.json.is_null(), "ADD printed no result: {inv}");
            prev = Some(inv.json);
        }
        let result = prev.expect("a list has at least one plugin");
        self.cache
            .lock()
            .unwrap()
            .insert(Self::key(list, att), result.clone());
        Ok(result)
    }

    /// `CheckNetworkList`. libcni itself refuses CHECK below 0.4.0; this runtime forwards it
    /// anyway so tests can assert the plugin's own refusal (skel answers code 1).
    pub fn check(&self, list: &NetworkList, att: &Attachment) -> Result<(), Failed> {
        let env = self.env_for("CHECK", Some(att));
        let cached = self.cached_result(list, att);
        for i in 0..list.plugins.len() {
            let stdin = self.plugin_stdin(list, i, Some(att), cached.as_ref());
            self.exec_plugin(list, i, &env, &stdin)?;
        }
        Ok(())
    }

    /// `DelNetworkList`: reverse order; the cache entry goes once every plugin succeeded.
    pub fn del(&self, list: &NetworkList, att: &Attachment) -> Result<(), Failed> {
        let env = self.env_for("DEL", Some(att));
        let cached = if version_at_least(&list.cni_version, (0, 4, 0)) {
            self.cached_result(list, att)
        } else {
            None
        };
        for i in (0..list.plugins.len()).rev() {
            let stdin = self.plugin_stdin(list, i, Some(att), cached.as_ref());
            let inv = self.exec_plugin(list, i, &env, &stdin)?;
            assert!(inv.json.is_null(), "DEL printed something: {inv}");
        }
        self.cache.lock().unwrap().remove(&Self::key(list, att));
        Ok(())
    }

    /// `GCNetworkList`: `valid` under both key spellings, as libcni ≥ 1.2.3 sends it.
    pub fn gc(&self, list: &NetworkList, valid: &[(&str, &str)]) -> Result<(), Failed> {
        self.gc_with_keys(
            list,
            valid,
            &["cni.dev/valid-attachments", "cni.dev/attachments"],
        )
    }

    /// GC with the attachment list under `keys` only (one spelling, to test each).
    pub fn gc_with_keys(
        &self,
        list: &NetworkList,
        valid: &[(&str, &str)],
        keys: &[&str],
    ) -> Result<(), Failed> {
        let env = self.env_for("GC", None);
        let attachments: Vec<Value> = valid
            .iter()
            .map(|(id, ifname)| json!({"containerID": id, "ifname": ifname}))
            .collect();
        for i in 0..list.plugins.len() {
            let mut stdin = self.plugin_stdin(list, i, None, None);
            for key in keys {
                stdin[*key] = json!(attachments);
            }
            self.exec_plugin(list, i, &env, &stdin)?;
        }
        Ok(())
    }

    /// `GetStatusNetworkList`: STATUS on every plugin; the first failure is returned.
    pub fn status(&self, list: &NetworkList) -> Result<(), Failed> {
        let env = self.env_for("STATUS", None);
        for i in 0..list.plugins.len() {
            let stdin = self.plugin_stdin(list, i, None, None);
            self.exec_plugin(list, i, &env, &stdin)?;
        }
        Ok(())
    }
}

/// `version.GreaterThanOrEqualTo` for `major.minor.patch` strings.
pub fn version_at_least(version: &str, min: (u32, u32, u32)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let v = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    v >= min
}

/// Every cniVersion the plugin supports.
pub const VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
