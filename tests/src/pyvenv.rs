//! Python tools from PyPI for the tests, each in its own venv under `target/` (installed on first
//! use, reused by later runs): the Kubernetes schema validator of the deploy-manifest tests and
//! the CRI client of the containerd tests. Needs `python3` with `venv` (Debian: python3-venv) and
//! PyPI access on the first run; a failed install is an error naming the requirement.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::command;

/// Deadline of `python3 -m venv`.
const VENV_TIMEOUT: Duration = Duration::from_secs(120);
/// Deadline of the `pip install` (wheels of grpcio etc. on a slow mirror).
const PIP_TIMEOUT: Duration = Duration::from_secs(600);
/// Written last: a venv without it is an interrupted install and is redone from scratch.
const MARKER: &str = ".installed";

/// A venv with `requirements` installed (pinned `name==version` specs).
#[derive(Debug, Clone)]
pub struct Venv {
    /// The venv's directory: `target/<first requirement, == replaced by ->`.
    pub dir: PathBuf,
}

impl Venv {
    /// Returns the venv for `requirements`, creating it and running `pip install` unless an
    /// earlier run finished that. Not safe against two processes installing the same venv at
    /// once; callers serialise within a process (one `OnceLock` per tool).
    pub fn ensure(requirements: &[&str]) -> Result<Venv> {
        let first = requirements.first().context("no requirement given")?;
        let dir = target_dir().join(first.replace("==", "-"));
        let venv = Venv { dir };
        let marker = venv.dir.join(MARKER);
        let wanted = requirements.join("\n");
        if fs::read_to_string(&marker).is_ok_and(|m| m == wanted) {
            return Ok(venv);
        }
        let _ = fs::remove_dir_all(&venv.dir);
        let help = "python3 with venv/pip and PyPI access (Debian: apt-get install python3-venv)";
        let out = command::run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv.dir),
            VENV_TIMEOUT,
        )?;
        if !out.status.success() {
            bail!(
                "python3 -m venv {} failed (needs {help}):\n{}",
                venv.dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let out = command::run(
            Command::new(venv.bin("pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .args(requirements),
            PIP_TIMEOUT,
        )?;
        if !out.status.success() {
            bail!(
                "pip install {requirements:?} failed (needs {help}):\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        fs::write(&marker, wanted).with_context(|| format!("writing {}", marker.display()))?;
        Ok(venv)
    }

    /// A program the venv installed (`python`, `pip`, console scripts).
    pub fn bin(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }
}

/// The workspace's target directory (`CARGO_TARGET_DIR` or `<workspace>/target`).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}
