//! A private instance of the Debian `vpnserver`, running in the lab's server namespace.
//!
//! The Debian build hard-codes its state directories (`/var/lib/softether` for `vpn_server.config`,
//! `/var/log/softether`, `/run/softether` for the lock/pid files) instead of using the binary's own directory
//! (verified with a copied binary: it fails with "Unable to create /run/softether/.VPN-…"). To run several
//! servers side by side, each lab starts `vpnserver execsvc` (foreground mode) in a private mount namespace
//! where those three paths are bind mounts of per-lab directories. The foreground process is the leader of
//! its own process group (execsvc forks one worker, which a monitor restarts on crash), so killing the group
//! stops the server for good.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::command;
use crate::netns;
use crate::prereq::VPNSERVER_DIR;

/// The state paths compiled into Debian's SoftEther binaries, in the order [`StateDirs`] mounts them.
pub const DEBIAN_STATE_PATHS: [&str; 3] =
    ["/var/lib/softether", "/var/log/softether", "/run/softether"];

/// Per-instance replacements for [`DEBIAN_STATE_PATHS`] under one directory: `db/`, `log/`, `run/`.
#[derive(Debug, Clone)]
pub struct StateDirs {
    root: PathBuf,
}

impl StateDirs {
    /// Creates `root/{db,log,run}` and the mount points on the host (empty dirs, as the Debian package's
    /// systemd unit would create them).
    pub fn create(root: &Path) -> Result<Self> {
        for sub in ["db", "log", "run"] {
            fs::create_dir_all(root.join(sub))
                .with_context(|| format!("creating {}", root.join(sub).display()))?;
        }
        for p in DEBIAN_STATE_PATHS {
            fs::create_dir_all(p).with_context(|| format!("creating mount point {p}"))?;
        }
        Ok(StateDirs {
            root: root.to_path_buf(),
        })
    }

    /// Directory holding `vpn_server.config` / `vpn_client.config`.
    pub fn db(&self) -> PathBuf {
        self.root.join("db")
    }

    /// Directory holding server_log/, security_log/, packet_log/.
    pub fn log(&self) -> PathBuf {
        self.root.join("log")
    }

    /// Shell snippet bind-mounting the private dirs over the Debian paths, then exec'ing `exe args`.
    pub fn wrap_exec(&self, exe: &Path, args: &str) -> String {
        let mut s = String::new();
        for (sub, target) in ["db", "log", "run"].iter().zip(DEBIAN_STATE_PATHS) {
            s.push_str(&format!(
                "mount --bind '{}' {target} && ",
                self.root.join(sub).display()
            ));
        }
        s.push_str(&format!("exec '{}' {args}", exe.display()));
        s
    }
}

/// A copied `vpnserver` + `hamcore.se2` in a lab directory; start/kill/restart it in a namespace.
#[derive(Debug)]
pub struct ServerProcess {
    ns: String,
    dir: PathBuf,
    state: StateDirs,
    child: Option<Child>,
}

impl ServerProcess {
    /// Copies the Debian binary and its hamcore into `dir` (created) without starting it.
    pub fn prepare(ns: &str, dir: &Path) -> Result<Self> {
        let state = copy_binary(VPNSERVER_DIR, "vpnserver", dir)?;
        Ok(ServerProcess {
            ns: ns.to_owned(),
            dir: dir.to_path_buf(),
            state,
            child: None,
        })
    }

    /// Starts `vpnserver execsvc` in the namespace; stdout/stderr go to `<dir>/vpnserver.out`.
    pub fn start(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("vpnserver already running");
        }
        self.child = Some(spawn_private(
            &self.ns,
            &self.dir,
            "vpnserver",
            &self.state,
        )?);
        Ok(())
    }

    /// SIGKILLs the server's whole process group and reaps it. No-op when not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            command::kill_group(&mut child);
        }
    }

    /// Process id of the monitor process (the group leader), if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the server process is still alive.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Private state directories (config in `db/vpn_server.config`).
    pub fn state(&self) -> &StateDirs {
        &self.state
    }

    /// Polls until a TCP connection from namespace `from_ns` to `ip:port` succeeds, or `timeout`.
    pub fn wait_listening(
        &mut self,
        from_ns: &str,
        ip: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.is_running() {
                bail!(
                    "vpnserver exited during startup; output: {}",
                    fs::read_to_string(self.dir.join("vpnserver.out")).unwrap_or_default()
                );
            }
            if tcp_probe(from_ns, ip, port)? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "vpnserver in {} not accepting on {ip}:{port} after {timeout:?}",
                    self.ns
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Copies `<src_dir>/<exe>` and its `hamcore.se2` (resolving the package's symlink) into `dir`, and creates
/// the private state directories there.
pub fn copy_binary(src_dir: &str, exe: &str, dir: &Path) -> Result<StateDirs> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for f in [exe, "hamcore.se2"] {
        let src = Path::new(src_dir).join(f);
        fs::copy(&src, dir.join(f))
            .with_context(|| format!("copying {} to {}", src.display(), dir.display()))?;
    }
    StateDirs::create(&dir.join("state"))
}

/// Spawns `<dir>/<exe> execsvc` inside `ns` and a private mount namespace, in its own session
/// and process group (see `own_session` in `sys.rs`).
pub fn spawn_private(ns: &str, dir: &Path, exe: &str, state: &StateDirs) -> Result<Child> {
    let out = fs::File::create(dir.join(format!("{exe}.out")))?;
    let err = out.try_clone()?;
    let script = state.wrap_exec(&dir.join(exe), "execsvc");
    let mut cmd = Command::new("ip");
    crate::sys::own_session(&mut cmd)
        .args([
            "netns",
            "exec",
            ns,
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
        ])
        .arg(&script)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting {exe} in namespace {ns}"))
}

/// One TCP connect attempt from inside `ns` (bash's /dev/tcp, 1 s deadline). Ok(false) when refused.
pub fn tcp_probe(ns: &str, ip: &str, port: u16) -> Result<bool> {
    let script = format!("exec 3<>/dev/tcp/{ip}/{port}");
    let out = command::run(
        &mut netns::command_in(ns, &["timeout", "1", "bash", "-c", &script]),
        Duration::from_secs(5),
    )?;
    Ok(out.status.success())
}

/// Everything a lab or farm owns: its servers, namespaces and directory, released in reverse
/// order of acquisition on drop — also when a start fails half-way or a test panics.
#[derive(Debug)]
pub(crate) struct Resources {
    pub servers: Vec<ServerProcess>,
    pub namespaces: Vec<crate::netns::Netns>,
    pub dir: PathBuf,
}

impl Resources {
    /// Takes `dir` (emptied if a dead run left it behind) as the owned directory.
    pub fn new(dir: &Path) -> anyhow::Result<Self> {
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Resources {
            servers: Vec::new(),
            namespaces: Vec::new(),
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for Resources {
    fn drop(&mut self) {
        while let Some(mut s) = self.servers.pop() {
            s.kill();
        }
        while let Some(ns) = self.namespaces.pop() {
            drop(ns);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
