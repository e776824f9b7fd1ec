//! Running the built binaries the way their users do: the CNI plugin as libcni executes it (env +
//! stdin, inside a network namespace of our own), and `softether-sidecar --help`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{json, Value};

use super::files::{long_flags, TempDir};

pub fn bin_dir() -> PathBuf {
    // target/debug/deps/deploy_manifests-HASH -> target/debug
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

pub fn built(name: &str, package: &str) -> PathBuf {
    let bin = bin_dir().join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p {package}`",
        bin.display()
    );
    bin
}

pub fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"))
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A network namespace of our own for one ADD; removed on drop.
pub struct Netns(pub String);

impl Netns {
    pub fn new() -> Netns {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "sdm{}x{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let out = run(Command::new("ip").args(["netns", "add", &name]));
        assert!(
            out.status.success(),
            "ip netns add {name}: {}",
            text(&out.stderr)
        );
        Netns(name)
    }
    pub fn links(&self) -> String {
        text(&run(Command::new("ip").args(["-n", &self.0, "-o", "link", "show"])).stdout)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Runs the plugin as libcni does; returns (exit success, stdout JSON).
pub fn plugin(env: &[(&str, &str)], stdin: &Value) -> (bool, Value) {
    plugin_with_args(&[], env, stdin)
}

/// Runs the plugin with `args` (netavark's `create`, `setup NETNS`, …); returns (exit success,
/// stdout JSON).
pub fn plugin_with_args(args: &[&str], env: &[(&str, &str)], stdin: &Value) -> (bool, Value) {
    let mut child = Command::new(built("softether", "softether-cni"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        stdin.to_string().as_bytes(),
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "plugin stdout is not JSON ({e}): {}{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    (out.status.success(), json)
}

/// ADD with the sidecar socket pointed at nothing: 11 means env and config were accepted.
pub fn add_reaches_the_sidecar(at: &str, stdin: &Value, cni_args: &str) -> Value {
    let tmp = TempDir::new("add");
    let mut stdin = stdin.clone();
    stdin["sidecarSocket"] = json!(tmp.0.join("absent.sock"));
    stdin["stateDir"] = json!(tmp.0.join("state"));
    let ns = Netns::new();
    let netns = format!("/run/netns/{}", ns.0);
    let env = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "deploy-manifests-test"),
        ("CNI_NETNS", netns.as_str()),
        ("CNI_IFNAME", "vpn0"),
        ("CNI_PATH", "/opt/cni/bin"),
        ("CNI_ARGS", cni_args),
    ];
    let (ok, out) = plugin(&env, &stdin);
    assert!(!ok, "{at}: ADD cannot succeed without a sidecar");
    assert!(
        !ns.links().contains("vpn0"),
        "{at}: failed ADD left the TAP behind"
    );
    out
}

pub fn sidecar_help(command: &str) -> BTreeSet<String> {
    let out = run(
        Command::new(built("softether-sidecar", "softether-sidecar")).args([command, "--help"]),
    );
    assert!(out.status.success());
    long_flags(&text(&out.stdout))
}
