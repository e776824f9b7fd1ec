//! Helpers of the CLI tests (`cli.rs` for CNI mode, `netavark_cli.rs` for netavark mode): run
//! the built binary, temp dirs, throwaway network namespaces, a one-shot fake sidecar.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use serde_json::Value;

pub const PLUGIN: &str = env!("CARGO_BIN_EXE_softether");

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "softether-cni-it-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A throwaway network namespace (`ip netns add`), deleted on drop. Needs root:
/// without it the test fails rather than skips.
pub struct TestNetns(pub String);

impl TestNetns {
    pub fn new(tag: &str) -> TestNetns {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "se-cli-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {name} failed (these tests need root)");
        TestNetns(name)
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }

    /// `ip -o link show` inside the namespace.
    pub fn links(&self) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.0, "-o", "link", "show"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {:?}; stderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    /// An error exit: status 1 and the CNI error object on stdout.
    pub fn assert_error(&self, code: u64) -> Value {
        assert_eq!(
            self.code, 1,
            "stdout: {} stderr: {}",
            self.stdout, self.stderr
        );
        let v = self.json();
        assert_eq!(v["code"], code, "{v}");
        assert!(v["msg"].is_string(), "{v}");
        v
    }
}

/// Runs the plugin with `args` and exactly `env` (no inherited variables), `stdin` on stdin.
pub fn run_plugin(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Outcome {
    let mut child = Command::new(PLUGIN)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plugin");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Outcome {
        code: out.status.code().expect("plugin killed by a signal"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// A one-shot sidecar: answers the first request with `reply`, hands back
/// the request it received.
pub fn fake_sidecar(socket: &Path, reply: Value) -> JoinHandle<Value> {
    let listener = UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).unwrap();
        (&stream)
            .write_all(format!("{reply}\n").as_bytes())
            .unwrap();
        serde_json::from_str(&line).unwrap()
    })
}
