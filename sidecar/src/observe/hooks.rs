//! Lease hooks: `connect --on-change` and the CNI config's `onChange` run a program when the
//! lease is acquired, changes address, is lost or is released, and when the IPv6 address from
//! the VPN's routers appears, changes or goes while the lease stays, with the facts in
//! `SOFTETHER_*` environment variables (e.g. to update DNAT rules for a VPN port forward).
//!
//! One runner task per attachment watches the engine's status, derives events
//! ([`EventTracker`], pure), and runs the hook for each in order: argv as given (no shell),
//! stdin/stdout/stderr on /dev/null, its own process group, killed (the whole group) after the
//! timeout. A few events wait while one runs; beyond that the oldest is dropped (logged).
//! Nothing here blocks the session: the engine only publishes its status.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::engine::status::{EngineStatus, LeaseEvent, Phase};

/// Events that may wait while a hook runs; older ones are dropped beyond this.
pub const QUEUE_MAX: usize = 4;
/// How long `connect` waits at exit for the last hooks (e.g. `released`) before killing them.
pub const EXIT_GRACE: Duration = Duration::from_secs(2);
/// Default time a hook may run before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub timeout: Duration,
}

/// Fixed facts about the attachment, passed to every run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookContext {
    pub interface: String,
    pub container_id: Option<String>,
    pub netns: Option<String>,
    /// `host:port`.
    pub server: String,
    pub hub: String,
}

/// What happened to the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A lease is installed and the session is up (first time, or again after a loss).
    Acquired,
    /// The lease moved to another address while the session stayed up.
    Changed,
    /// The session or the lease went away; the configuration may still be in place while the
    /// engine reconnects.
    Lost,
    /// RELEASEd and removed on a stop (`connect` on SIGTERM, CNI DEL).
    Released,
    /// An IPv6 address was installed while the lease stayed (none before).
    Acquired6,
    /// The (first) IPv6 address moved to another one while the lease stayed.
    Changed6,
    /// The last IPv6 address went (lifetime expired, router gone) while the lease stayed.
    Lost6,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Acquired => "acquired",
            EventKind::Changed => "changed",
            EventKind::Lost => "lost",
            EventKind::Released => "released",
            EventKind::Acquired6 => "acquired6",
            EventKind::Changed6 => "changed6",
            EventKind::Lost6 => "lost6",
        }
    }
}

/// The lease facts an event carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseFacts {
    pub address: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    /// IPv6 installed beside the lease (empty when none).
    pub ipv6: Ipv6Facts,
}

/// The IPv6 facts an event carries: what is installed from the VPN's routers and DHCPv6.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ipv6Facts {
    /// SLAAC addresses first, then DHCPv6 ones, with their prefix lengths.
    pub addresses: Vec<Ipv6Net>,
    /// The default router's link-local address.
    pub gateway: Option<Ipv6Addr>,
    pub dns: Vec<Ipv6Addr>,
}

impl Ipv6Facts {
    fn of(status: &EngineStatus) -> Ipv6Facts {
        let s = &status.ipv6.settings;
        Ipv6Facts {
            addresses: s.addresses.iter().map(|a| a.interface_address()).collect(),
            gateway: s.router.map(|r| r.address),
            dns: s.dns_servers.clone(),
        }
    }

    /// The address `SOFTETHER_ADDRESS6` names: the first one.
    fn primary(&self) -> Option<Ipv6Net> {
        self.addresses.first().copied()
    }
}

impl LeaseFacts {
    fn of(status: &EngineStatus) -> Option<LeaseFacts> {
        if !status.is_up() {
            return None;
        }
        let lease = status.lease.as_ref()?;
        Some(LeaseFacts {
            address: lease.interface_address(),
            gateway: lease.default_gateway().or(lease.router),
            dns: lease.dns_servers.clone(),
            ipv6: Ipv6Facts::of(status),
        })
    }
}

/// One event to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookEvent {
    pub kind: EventKind,
    pub lease: LeaseFacts,
    /// The previous address, for [`EventKind::Changed`].
    pub old_address: Option<Ipv4Net>,
    /// The previous IPv6 address, for [`EventKind::Changed6`].
    pub old_address6: Option<Ipv6Net>,
}

/// Turns successive status values into events. The status channel keeps only the latest
/// value, so a loss and a new lease between two looks are recognised by the reconnect count.
#[derive(Debug, Default)]
pub struct EventTracker {
    bound: Option<LeaseFacts>,
    reconnects: u32,
}

impl EventTracker {
    pub fn observe(&mut self, status: &EngineStatus) -> Vec<HookEvent> {
        if status.phase == Phase::Stopped && status.lease_event != Some(LeaseEvent::Released) {
            // Stopped without a release (daemon shutdown or restart, configuration kept for
            // the next engine): nothing happened to the pod's address.
            return Vec::new();
        }
        let now = LeaseFacts::of(status);
        let reconnected = status.reconnects > self.reconnects;
        self.reconnects = status.reconnects;
        let event = |kind, lease: &LeaseFacts| HookEvent {
            kind,
            lease: lease.clone(),
            old_address: None,
            old_address6: None,
        };
        let mut events = match (&self.bound, &now) {
            (None, Some(new)) => vec![event(EventKind::Acquired, new)],
            (Some(old), None) if status.lease_event == Some(LeaseEvent::Released) => {
                vec![event(EventKind::Released, old)]
            }
            (Some(old), None) => vec![event(EventKind::Lost, old)],
            (Some(old), Some(new)) if reconnected => {
                vec![event(EventKind::Lost, old), event(EventKind::Acquired, new)]
            }
            (Some(old), Some(new)) if old.address != new.address => vec![HookEvent {
                old_address: Some(old.address),
                ..event(EventKind::Changed, new)
            }],
            _ => Vec::new(),
        };
        // IPv6 rides along with the lease's events; on its own it has events of its own.
        if let (true, Some(old), Some(new)) = (events.is_empty(), &self.bound, &now) {
            let kind = match (old.ipv6.primary(), new.ipv6.primary()) {
                (None, Some(_)) => Some(EventKind::Acquired6),
                (Some(_), None) => Some(EventKind::Lost6),
                (Some(a), Some(b)) if a != b => Some(EventKind::Changed6),
                _ => None,
            };
            if let Some(kind) = kind {
                // `lost6` carries what went away, like `lost`.
                let facts = if kind == EventKind::Lost6 { old } else { new };
                events.push(HookEvent {
                    old_address6: (kind == EventKind::Changed6)
                        .then(|| old.ipv6.primary())
                        .flatten(),
                    ..event(kind, facts)
                });
            }
        }
        self.bound = now;
        events
    }
}

/// The program `program` resolves to if it lies inside `dir` (both canonicalized, so `..` and
/// symlinks cannot lead out); an error saying why not otherwise, or when there is no `dir`.
pub fn allowed_program(program: &Path, dir: Option<&Path>) -> Result<PathBuf, String> {
    let dir = dir.ok_or("hooks are off (softether-sidecar run has no --hooks-dir)")?;
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("--hooks-dir {}: {e}", dir.display()))?;
    let resolved = program
        .canonicalize()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    if resolved.starts_with(&dir) && resolved.is_file() {
        Ok(resolved)
    } else {
        Err(format!(
            "{} is not a file inside {}",
            resolved.display(),
            dir.display()
        ))
    }
}

/// The environment of one hook run.
pub fn hook_env(ctx: &HookContext, event: &HookEvent) -> Vec<(&'static str, String)> {
    let l = &event.lease;
    let mut env = vec![
        ("SOFTETHER_EVENT", event.kind.as_str().to_owned()),
        ("SOFTETHER_INTERFACE", ctx.interface.clone()),
        ("SOFTETHER_ADDRESS", l.address.addr().to_string()),
        ("SOFTETHER_PREFIX", l.address.prefix_len().to_string()),
        (
            "SOFTETHER_GATEWAY",
            l.gateway.map(|g| g.to_string()).unwrap_or_default(),
        ),
        (
            "SOFTETHER_DNS",
            l.dns
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        ("SOFTETHER_SERVER", ctx.server.clone()),
        ("SOFTETHER_HUB", ctx.hub.clone()),
        (
            "SOFTETHER_CONTAINER_ID",
            ctx.container_id.clone().unwrap_or_default(),
        ),
        ("SOFTETHER_NETNS", ctx.netns.clone().unwrap_or_default()),
    ];
    if let Some(old) = event.old_address {
        env.push(("SOFTETHER_OLD_ADDRESS", old.addr().to_string()));
    }
    env.extend(ipv6_env(&l.ipv6));
    if let Some(old) = event.old_address6 {
        env.push(("SOFTETHER_OLD_ADDRESS6", old.addr().to_string()));
    }
    env
}

/// The IPv6 variables, set (empty when there is no IPv6) for every event.
fn ipv6_env(v6: &Ipv6Facts) -> [(&'static str, String); 5] {
    let primary = v6.primary();
    let joined = |items: Vec<String>| items.join(" ");
    [
        (
            "SOFTETHER_ADDRESS6",
            primary.map(|a| a.addr().to_string()).unwrap_or_default(),
        ),
        (
            "SOFTETHER_PREFIX6",
            primary
                .map(|a| a.prefix_len().to_string())
                .unwrap_or_default(),
        ),
        (
            "SOFTETHER_ADDRESSES6",
            joined(v6.addresses.iter().map(ToString::to_string).collect()),
        ),
        (
            "SOFTETHER_GATEWAY6",
            v6.gateway.map(|g| g.to_string()).unwrap_or_default(),
        ),
        (
            "SOFTETHER_DNS6",
            joined(v6.dns.iter().map(ToString::to_string).collect()),
        ),
    ]
}

/// How one run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum RunOutcome {
    Exited(std::process::ExitStatus),
    TimedOut,
    SpawnFailed(String),
}

/// Runs the hook once with `env`, killing its process group after the timeout.
pub async fn run_once(cmd: &HookCommand, env: &[(&'static str, String)]) -> RunOutcome {
    use std::process::Stdio;
    let mut command = tokio::process::Command::new(&cmd.program);
    command
        .args(&cmd.args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => return RunOutcome::SpawnFailed(e.to_string()),
    };
    // Kills the hook's process group on timeout, and also when this future is dropped
    // (runner stopped at exit), so no hook outlives its bound.
    let mut group = ProcessGroup(child.id().and_then(|p| i32::try_from(p).ok()));
    let outcome = match tokio::time::timeout(cmd.timeout, child.wait()).await {
        Ok(Ok(status)) => {
            group.0 = None;
            RunOutcome::Exited(status)
        }
        Ok(Err(e)) => RunOutcome::SpawnFailed(format!("waiting for it failed: {e}")),
        Err(_) => RunOutcome::TimedOut,
    };
    drop(group);
    let _ = child.kill().await;
    outcome
}

/// A hook's process group (its leader's pid), SIGKILLed on drop unless disarmed (`None`).
struct ProcessGroup(Option<i32>);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn log_outcome(cmd: &HookCommand, event: &HookEvent, outcome: &RunOutcome) {
    let program = cmd.program.display();
    let kind = event.kind.as_str();
    match outcome {
        RunOutcome::Exited(s) if s.success() => {
            tracing::info!(hook = %program, event = kind, "on-change hook done")
        }
        RunOutcome::Exited(s) => {
            tracing::warn!(hook = %program, event = kind, status = %s, "on-change hook failed")
        }
        RunOutcome::TimedOut => tracing::warn!(
            hook = %program,
            event = kind,
            timeout = ?cmd.timeout,
            "on-change hook timed out; killed"
        ),
        RunOutcome::SpawnFailed(e) => {
            tracing::warn!(hook = %program, event = kind, "cannot run the on-change hook: {e}")
        }
    }
}

/// Watches `status` and runs `cmd` for each event until the status sender is gone and the
/// queue is empty.
pub fn spawn_runner(
    cmd: HookCommand,
    ctx: HookContext,
    mut status: watch::Receiver<EngineStatus>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tracker = EventTracker::default();
        let mut queue: VecDeque<HookEvent> = VecDeque::new();
        let mut running: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> =
            None;
        let mut closed = false;
        loop {
            for event in tracker.observe(&status.borrow_and_update()) {
                if queue.len() >= QUEUE_MAX {
                    if let Some(dropped) = queue.pop_front() {
                        tracing::warn!(
                            hook = %cmd.program.display(),
                            event = dropped.kind.as_str(),
                            "on-change hook busy; dropping an older event"
                        );
                    }
                }
                queue.push_back(event);
            }
            if running.is_none() {
                running = queue.pop_front().map(|event| {
                    let (cmd, env) = (cmd.clone(), hook_env(&ctx, &event));
                    Box::pin(async move {
                        let outcome = run_once(&cmd, &env).await;
                        log_outcome(&cmd, &event, &outcome);
                    }) as std::pin::Pin<Box<_>>
                });
            }
            let Some(task) = running.as_mut() else {
                if closed {
                    return;
                }
                if status.changed().await.is_err() {
                    closed = true;
                }
                continue;
            };
            tokio::select! {
                changed = status.changed(), if !closed => closed = changed.is_err(),
                _ = task => running = None,
            }
        }
    })
}

/// Waits up to `grace` for a runner whose status sender is gone to run its last events; then
/// stops it (a hook still running is killed when the runtime drops it).
pub async fn finish(runner: JoinHandle<()>, grace: Duration) {
    let abort = runner.abort_handle();
    if tokio::time::timeout(grace, runner).await.is_err() {
        tracing::warn!("on-change hook still running after {grace:?} at exit; killing it");
        abort.abort();
    }
}
