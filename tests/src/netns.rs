//! Named network namespaces (`ip netns`), running programs inside them, and sweeping leftovers.
//!
//! Names embed the creating process's pid (`se-srv-<pid>-<n>`), so a later run can tell whether the owner is
//! dead and its namespaces are safe to delete.

use std::fs::File;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::command::{self, DEFAULT_TIMEOUT};

/// Prefixes of every namespace a lab or [`crate::farm::Farm`] creates; the sweeper only touches names with these.
pub const NS_PREFIXES: &[&str] = &[
    "se-srv-", "se-cli-", "se-lan-", "se-x-", "se-fc-", "se-fm-", "se-fcl-",
];

/// A network namespace created with `ip netns add`; deleted (after killing every process in it) on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `name`, brings its `lo` up and turns IPv6 duplicate address detection off.
    pub fn create(name: &str) -> Result<Self> {
        command::run_argv(&["ip", "netns", "add", name])
            .with_context(|| format!("creating network namespace {name}"))?;
        let ns = Netns {
            name: name.to_owned(),
        };
        command::run_argv(&["ip", "-n", name, "link", "set", "lo", "up"])?;
        // No IPv6 duplicate address detection: otherwise link-local addresses stay "tentative" for a
        // second or two after a link appears, and snapshots of the namespace taken meanwhile differ from
        // later ones. Applies to every interface created in the namespace later (veths, TAPs).
        command::run_argv(&[
            "ip",
            "netns",
            "exec",
            name,
            "sysctl",
            "-qw",
            "net.ipv6.conf.default.accept_dad=0",
            "net.ipv6.conf.all.accept_dad=0",
        ])?;
        Ok(ns)
    }

    /// The namespace's name (as used with `ip netns exec`, and under /run/netns/).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        destroy(&self.name);
    }
}

/// Kills every process inside `name` and deletes it; errors are ignored (teardown keeps going).
pub fn destroy(name: &str) {
    kill_all_in(name);
    let _ = command::run(
        Command::new("ip").args(["netns", "del", name]),
        DEFAULT_TIMEOUT,
    );
}

/// SIGKILLs every process whose network namespace is `name` and waits (bounded) until none is left.
pub fn kill_all_in(name: &str) {
    for _ in 0..50 {
        let pids = pids_in(name);
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn pids_in(name: &str) -> Vec<i32> {
    let Ok(out) = command::run(
        Command::new("ip").args(["netns", "pids", name]),
        DEFAULT_TIMEOUT,
    ) else {
        return Vec::new();
    };
    // Zombies still show up until their parent reaps them; they cannot be killed twice, so skip them.
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .filter(|p| !is_zombie(*p))
        .collect()
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('Z')))
        .unwrap_or(true)
}

/// A [`Command`] that runs `argv` inside namespace `ns` (via `ip netns exec`).
pub fn command_in(ns: &str, argv: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).args(argv);
    cmd
}

/// Runs `argv` inside `ns` and returns its output whatever the exit status (60 s deadline).
pub fn exec_in(ns: &str, argv: &[&str]) -> Result<Output> {
    command::run(&mut command_in(ns, argv), DEFAULT_TIMEOUT)
}

/// Runs `argv` inside `ns`; a non-zero exit is an error. Returns stdout.
pub fn exec_in_ok(ns: &str, argv: &[&str]) -> Result<String> {
    let out = command::run_ok(&mut command_in(ns, argv), DEFAULT_TIMEOUT)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A background process; SIGKILLed (whole process group) and reaped when dropped.
#[derive(Debug)]
pub struct KillOnDrop {
    child: Child,
}

impl KillOnDrop {
    /// Wraps a child spawned as a process group leader (`process_group(0)` or a new session).
    pub fn new(child: Child) -> Self {
        KillOnDrop { child }
    }

    /// Process id (also the process group id).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The underlying child, e.g. to take its stdout or `try_wait` it.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Sends SIGTERM to the process group and waits up to `grace` before SIGKILL. Returns the exit status.
    pub fn terminate(mut self, grace: Duration) -> Result<std::process::ExitStatus> {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).context("pid out of range")?);
        let _ = nix::sys::signal::killpg(pid, Signal::SIGTERM);
        if let Some(st) = command::wait_deadline(&mut self.child, grace)? {
            return Ok(st);
        }
        command::kill_group(&mut self.child);
        self.child.wait().context("reaping child")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        command::kill_group(&mut self.child);
    }
}

/// Spawns `argv` inside `ns` in its own process group, stdin closed, stdout/stderr inherited.
/// Use `spawn_command_in` for control over stdio.
pub fn spawn_in(ns: &str, argv: &[&str]) -> Result<KillOnDrop> {
    let mut cmd = command_in(ns, argv);
    cmd.stdin(Stdio::null());
    spawn_command(cmd)
}

/// Spawns a prepared command (e.g. from [`command_in`]) in its own session and process group
/// (see `own_session` in `sys.rs` for why a session), killed on drop.
pub fn spawn_command(mut cmd: Command) -> Result<KillOnDrop> {
    let desc = command::describe(&cmd);
    let child = crate::sys::own_session(&mut cmd)
        .spawn()
        .with_context(|| format!("cannot start `{desc}`"))?;
    Ok(KillOnDrop::new(child))
}

/// Runs `f` on a fresh OS thread that has entered network namespace `ns`, and returns its result.
///
/// Everything `f` opens (sockets, netlink, a tokio runtime built inside it — its worker threads inherit the
/// namespace) lives in `ns`. The calling thread's namespace is never changed.
pub fn run_in<F, R>(ns: &str, f: F) -> Result<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let path = format!("/run/netns/{ns}");
    let file = File::open(&path).with_context(|| format!("opening {path}"))?;
    let handle = thread::Builder::new()
        .name(format!("netns-{ns}"))
        .spawn(move || -> Result<R> {
            setns(&file, CloneFlags::CLONE_NEWNET).context("setns(CLONE_NEWNET)")?;
            drop(file);
            Ok(f())
        })
        .context("spawning namespace thread")?;
    handle
        .join()
        .map_err(|_| anyhow!("closure running in netns {ns} panicked"))?
}

/// Whether process `pid` exists.
pub fn pid_alive(pid: i32) -> bool {
    pid > 0
        && !matches!(
            kill(Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        )
}

/// Extracts the owner pid from a lab-generated name such as `se-srv-1234-0` (prefix, pid, counter).
pub fn owner_pid(name: &str, prefixes: &[&str]) -> Option<i32> {
    let rest = prefixes.iter().find_map(|p| name.strip_prefix(p))?;
    let (pid, counter) = rest.split_once('-')?;
    if counter.is_empty() || !counter.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Deletes namespaces from earlier runs whose owning process is gone. Returns the names removed.
pub fn sweep_stale() -> Vec<String> {
    let Ok(list) = command::run_argv(&["ip", "netns", "list"]) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if let Some(pid) = owner_pid(name, NS_PREFIXES) {
            if !pid_alive(pid) {
                destroy(name);
                removed.push(name.to_owned());
            }
        }
    }
    removed
}

/// Names of all existing namespaces (for leak checks in tests).
pub fn list() -> Result<Vec<String>> {
    Ok(command::run_argv(&["ip", "netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_owner_pid() {
        assert_eq!(owner_pid("se-srv-1234-0", NS_PREFIXES), Some(1234));
        assert_eq!(owner_pid("se-lan-7-12", NS_PREFIXES), Some(7));
        assert_eq!(owner_pid("se-srv-1234", NS_PREFIXES), None);
        assert_eq!(owner_pid("se-srv-abc-1", NS_PREFIXES), None);
        assert_eq!(owner_pid("cx-srv-1-1", NS_PREFIXES), None);
        assert_eq!(owner_pid("se-srv-1-1x", NS_PREFIXES), None);
    }

    #[test]
    fn own_pid_is_alive() {
        assert!(pid_alive(std::process::id() as i32));
        assert!(!pid_alive(0));
    }
}
