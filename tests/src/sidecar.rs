//! This project's `softether-sidecar` against a lab: a subcommand pointed at the lab's server as
//! alice (the flags every e2e test, the bench and the probe use), and a `run` daemon with the CNI
//! network config that attaches pods through it (the bench and the soak).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::netns::{self, KillOnDrop};
use crate::Lab;

/// `bin SUBCOMMAND --host … --port … --hub … --user alice --insecure EXTRA…` in the client
/// namespace, for the lab's server; `password` goes in `SOFTETHER_PASSWORD`, never argv.
pub fn as_alice(
    lab: &Lab,
    bin: &Path,
    subcommand: &str,
    password: &str,
    extra: &[&str],
) -> Command {
    let f = &lab.facts;
    let mut cmd = netns::command_in(&f.client_ns, &[]);
    cmd.arg(bin).arg(subcommand);
    cmd.args([
        "--host",
        &f.server_ip.to_string(),
        "--port",
        &f.port.to_string(),
    ])
    .args(["--hub", &f.hub, "--user", &f.alice.name, "--insecure"])
    .args(extra)
    .env("SOFTETHER_PASSWORD", password);
    cmd
}

/// A `softether-sidecar run` daemon in the client namespace, listening.
pub struct Daemon {
    /// Killed on drop.
    pub process: KillOnDrop,
    /// Its stdout and stderr.
    pub log: PathBuf,
    /// The CNI network config (`vpnnet`, alice with a password file, `--insecure`, timeout
    /// 60 s) for the lab's server through this daemon.
    pub config: Value,
}

/// Starts `bin/softether-sidecar run` with its socket, state dir, log and alice's password file
/// under `base`; returns once the control socket accepts (at most 20 s).
pub fn start_daemon(lab: &Lab, bin_dir: &Path, base: &Path) -> Result<Daemon> {
    let f = &lab.facts;
    fs::create_dir_all(base)?;
    let password_file = base.join("alice.pass");
    fs::write(&password_file, format!("{}\n", f.alice.password))?;
    let (socket, state) = (base.join("sidecar.sock"), base.join("state"));
    let log = base.join("daemon.log");
    let out = fs::File::create(&log).with_context(|| format!("{}", log.display()))?;
    let mut cmd = netns::command_in(&f.client_ns, &[]);
    cmd.arg(bin_dir.join("softether-sidecar"))
        .arg("run")
        .arg("--socket")
        .arg(&socket)
        .arg("--state-dir")
        .arg(&state)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    let process = netns::spawn_command(cmd)?;
    let until = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if Instant::now() >= until {
            bail!("the sidecar daemon did not listen on {}", socket.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let config = json!({
        "cniVersion": "1.0.0", "name": "vpnnet", "type": "softether",
        "server": f.server_ip.to_string(), "port": f.port, "hub": f.hub, "user": f.alice.name,
        "passwordFile": password_file, "insecure": true,
        "sidecarSocket": socket, "stateDir": state, "timeout": 60
    });
    Ok(Daemon {
        process,
        log,
        config,
    })
}

/// Runs the CNI plugin `plugin` in the client namespace as libcni does: `verb` for the pod whose
/// namespace is `/run/netns/<pod>` (the pod name is the container id), interface `ifname`,
/// `config` on stdin, a clean environment. Its stdout JSON (`null` when empty) on exit 0; the
/// config's own timeout bounds the plugin, `deadline` bounds this call.
pub fn plugin_call(
    lab: &Lab,
    plugin: &Path,
    config: &Value,
    verb: &str,
    pod: &str,
    ifname: &str,
    deadline: Duration,
) -> Result<Value> {
    let mut cmd = netns::command_in(&lab.facts.client_ns, &[]);
    cmd.arg(plugin)
        .env_clear()
        .envs([
            ("CNI_COMMAND", verb),
            ("CNI_CONTAINERID", pod),
            ("CNI_IFNAME", ifname),
            ("CNI_PATH", "/opt/cni/bin"),
            ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        ])
        .env("CNI_NETNS", format!("/run/netns/{pod}"));
    let input = config.to_string();
    let out = crate::command::run_with_input(&mut cmd, Some(input.as_bytes()), deadline)?;
    if !out.status.success() {
        bail!(
            "CNI {verb} {pod} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
}
