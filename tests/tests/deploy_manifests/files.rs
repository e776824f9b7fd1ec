//! What `deploy/` and `examples/` ship, read for the tests: the files, the YAML documents (parsed
//! with PyYAML from the `kubernetes-validate` venv, which this module installs on first use), the
//! network configs inside them, and the commands and flags the READMEs show.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use serde_json::Value;
use softether_lab::pyvenv::Venv;

use super::exec::{run, text};

/// Pinned validator; its bundled schemas go up to Kubernetes 1.37.
pub const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";
/// An older still-common release and the newest the pinned validator knows.
pub const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];
pub const NAD_KIND: &str = "NetworkAttachmentDefinition";
pub const SECRET_MOUNT: &str = "/etc/softether-cni/secrets/";
pub const PLUGIN_KEYS: [&str; 22] = [
    "type",
    "capabilities",
    "args",
    "server",
    "port",
    "hub",
    "user",
    "passwordFile",
    "plainPassword",
    "insecure",
    "pinSha256",
    "caFile",
    "maxConnections",
    "mtu",
    "acceptDefaultGateway",
    "acceptStaticRoutes",
    "policyRouteTable",
    "connmark",
    "timeout",
    "sidecarSocket",
    "stateDir",
    "onChange",
];

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The venv with `kubernetes-validate` (and PyYAML, its dependency, used to read the manifests).
pub struct Tooling {
    python: PathBuf,
    validator: PathBuf,
}

pub fn tooling() -> &'static Tooling {
    static TOOLING: OnceLock<Tooling> = OnceLock::new();
    TOOLING.get_or_init(|| {
        let venv = Venv::ensure(&[KUBERNETES_VALIDATE]).unwrap_or_else(|e| panic!("{e:#}"));
        Tooling {
            python: venv.bin("python"),
            validator: venv.bin("kubernetes-validate"),
        }
    })
}

/// Files under `deploy/` and `examples/` whose name ends with one of `exts`, sorted.
pub fn shipped_files(exts: &[&str]) -> Vec<PathBuf> {
    pub fn walk(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if path.is_dir() {
                walk(&path, exts, out);
            } else if exts.iter().any(|e| name.ends_with(e)) {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    for top in ["deploy", "examples"] {
        walk(&repo_root().join(top), exts, &mut out);
    }
    out.sort();
    out
}

/// One YAML document of a manifest file.
pub struct Doc {
    pub file: PathBuf,
    pub doc: Value,
}

impl Doc {
    pub fn kind(&self) -> &str {
        self.doc["kind"].as_str().unwrap_or("")
    }
    pub fn name(&self) -> &str {
        self.doc["metadata"]["name"].as_str().unwrap_or("")
    }
}

pub fn manifests() -> &'static Vec<Doc> {
    static DOCS: OnceLock<Vec<Doc>> = OnceLock::new();
    DOCS.get_or_init(|| {
        let files = shipped_files(&[".yaml", ".yml"]);
        assert!(!files.is_empty(), "no manifests under deploy/ or examples/");
        const TO_JSON: &str = "import json, sys, yaml\n\
            print(json.dumps([[f, d] for f in sys.argv[1:] \
            for d in yaml.safe_load_all(open(f)) if d is not None]))";
        let out = run(Command::new(&tooling().python)
            .args(["-c", TO_JSON])
            .args(&files));
        assert!(
            out.status.success(),
            "YAML parse failed:\n{}",
            text(&out.stderr)
        );
        let pairs: Vec<(PathBuf, Value)> = serde_json::from_slice(&out.stdout).unwrap();
        pairs
            .into_iter()
            .map(|(file, doc)| Doc { file, doc })
            .collect()
    })
}

pub fn docs_of(kind: &str) -> Vec<&'static Doc> {
    manifests().iter().filter(|d| d.kind() == kind).collect()
}

pub fn validate(files: &[PathBuf], version: &str) -> Output {
    run(Command::new(&tooling().validator)
        .args(["--strict", "--quiet", "--no-warn", "-k", version])
        .args(files))
}

/// The plugin objects of a network config (a conflist's `plugins`, or the config itself).
pub fn plugins(conf: &Value) -> Vec<&Value> {
    match conf["plugins"].as_array() {
        Some(list) => list.iter().collect(),
        None => vec![conf],
    }
}

pub fn softether_plugins(conf: &Value) -> Vec<&Value> {
    plugins(conf)
        .into_iter()
        .filter(|p| p["type"] == "softether")
        .collect()
}

/// `(where, parsed config)` for every NAD config and every `*.conflist`/`*.json` file.
pub fn network_configs() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for nad in docs_of(NAD_KIND) {
        let raw = nad.doc["spec"]["config"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: spec.config must be a string", nad.file.display()));
        let conf: Value = serde_json::from_str(raw)
            .unwrap_or_else(|e| panic!("{}: spec.config is not JSON: {e}", nad.file.display()));
        out.push((format!("{} ({})", nad.file.display(), nad.name()), conf));
    }
    for file in shipped_files(&[".conflist", ".json"]) {
        let conf = serde_json::from_slice(&fs::read(&file).unwrap())
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", file.display()));
        out.push((file.display().to_string(), conf));
    }
    out
}

/// `(pod, element)` for every long-form `k8s.v1.cni.cncf.io/networks` annotation entry.
pub fn pod_network_elements() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for pod in docs_of("Pod") {
        let Some(raw) = pod.doc["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"].as_str()
        else {
            continue;
        };
        let at = format!("{} (pod {})", pod.file.display(), pod.name());
        if let Ok(Value::Array(list)) = serde_json::from_str::<Value>(raw) {
            out.extend(list.into_iter().map(|e| (at.clone(), e)));
        } else {
            // Short form: comma-separated [namespace/]name[@ifname].
            assert!(
                raw.trim().split(',').all(|n| !n.trim().is_empty()),
                "{at}: {raw:?}"
            );
        }
    }
    out
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("deploy-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The values of `CNI_ARGS="..."` in the examples' Markdown files.
pub fn documented_cni_args() -> Vec<String> {
    let mut out = Vec::new();
    for file in shipped_files(&[".md"]) {
        let body = fs::read_to_string(&file).unwrap();
        for part in body.split("CNI_ARGS=\"").skip(1) {
            out.push(part.split('"').next().unwrap().to_owned());
        }
    }
    assert!(!out.is_empty(), "no CNI_ARGS example in the READMEs");
    out
}

/// Long flags (`--x-y`) in a text, without `--help`.
pub fn long_flags(text: &str) -> BTreeSet<String> {
    let flag_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    text.split(|c: char| !flag_char(c))
        .filter(|w| w.starts_with("--") && w.len() > 2 && !w[2..].starts_with('-'))
        .filter(|w| *w != "--help")
        .map(str::to_owned)
        .collect()
}

/// The `softether-sidecar connect ...` command lines of a README, continuations included.
pub fn connect_commands(readme: &str) -> String {
    let mut out = String::new();
    let mut continued = false;
    for line in readme.lines() {
        if continued || line.contains("softether-sidecar connect") {
            out.push_str(line);
            out.push('\n');
            continued = line.trim_end().ends_with('\\');
        }
    }
    out
}
