//! The hook runner: events derived from status changes, the environment, the timeout, and a
//! slow hook never holding anything up.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::hooks::{
    hook_env, run_once, spawn_runner, EventKind, EventTracker, HookCommand, HookContext, RunOutcome,
};
use crate::engine::status::{self, status_channel, LeaseEvent, Phase};
use crate::engine::test_lease::bound_lease;

fn lease(addr: [u8; 4]) -> dhcp_client::Lease {
    let mut l = bound_lease(Instant::now(), Duration::from_secs(600));
    l.address = addr.into();
    l
}

#[test]
fn tracker_reports_acquired_changed_lost_and_released() {
    let (tx, rx) = status_channel();
    let mut t = EventTracker::default();
    let kinds = |t: &mut EventTracker| -> Vec<EventKind> {
        t.observe(&rx.borrow())
            .into_iter()
            .map(|e| e.kind)
            .collect()
    };
    assert!(kinds(&mut t).is_empty());
    status::set_lease(&tx, LeaseEvent::Bound, Some(lease([192, 168, 30, 10])));
    assert_eq!(kinds(&mut t), [EventKind::Acquired]);
    assert!(kinds(&mut t).is_empty(), "no change, no event");
    status::set_lease(&tx, LeaseEvent::Changed, Some(lease([192, 168, 30, 11])));
    let events = t.observe(&rx.borrow());
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::Changed);
    assert_eq!(
        events[0].old_address.map(|a| a.to_string()).as_deref(),
        Some("192.168.30.10/24")
    );
    // Session lost (lease kept in the status while reconnecting), then bound again.
    status::set_reconnecting(&tx, "gone".into(), Duration::from_secs(1));
    assert_eq!(kinds(&mut t), [EventKind::Lost]);
    status::set_phase(&tx, Phase::Bound);
    assert_eq!(kinds(&mut t), [EventKind::Acquired]);
    // A loss and a new lease between two looks still show as both.
    status::set_reconnecting(&tx, "gone".into(), Duration::from_secs(1));
    status::set_phase(&tx, Phase::Bound);
    assert_eq!(kinds(&mut t), [EventKind::Lost, EventKind::Acquired]);
    status::set_released(&tx);
    assert_eq!(kinds(&mut t), [EventKind::Released]);
    // Stopped without a release (daemon shutdown: the pod keeps its address): no event.
    let (tx, rx) = status_channel();
    let mut t = EventTracker::default();
    status::set_lease(&tx, LeaseEvent::Bound, Some(lease([192, 168, 30, 10])));
    assert_eq!(t.observe(&rx.borrow()).len(), 1);
    status::set_phase(&tx, Phase::Stopped);
    assert!(t.observe(&rx.borrow()).is_empty());
}

#[test]
fn tracker_reports_ipv6_acquired_changed_lost_and_the_env_carries_it() {
    let (tx, rx) = status_channel();
    let mut t = EventTracker::default();
    let v6 = crate::engine::test_lease::slaac_settings();
    let set6 = |settings: dhcp_client::v6::Ipv6Settings| {
        status::set_ipv6_installed(&tx, (true, false), Some(settings));
    };
    // IPv6 before the lease rides along with `acquired`.
    set6(v6.clone());
    status::set_lease(&tx, LeaseEvent::Bound, Some(lease([192, 168, 30, 10])));
    let events = t.observe(&rx.borrow());
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::Acquired);
    let env = hook_env(&context(), &events[0]);
    let var = |env: &[(&str, String)], k: &str| {
        env.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{k} missing"))
    };
    assert_eq!(var(&env, "SOFTETHER_ADDRESS6"), "fd00:6::11:22ff:fe33:4455");
    assert_eq!(var(&env, "SOFTETHER_PREFIX6"), "64");
    assert_eq!(
        var(&env, "SOFTETHER_ADDRESSES6"),
        "fd00:6::11:22ff:fe33:4455/64"
    );
    assert_eq!(var(&env, "SOFTETHER_GATEWAY6"), "fe80::1");
    assert_eq!(var(&env, "SOFTETHER_DNS6"), v6.dns_servers[0].to_string());
    assert!(!env.iter().any(|(k, _)| *k == "SOFTETHER_OLD_ADDRESS6"));

    // On its own, IPv6 has events of its own: lost6 (with what went), acquired6, changed6.
    set6(Default::default());
    let events = t.observe(&rx.borrow());
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::Lost6);
    let env = hook_env(&context(), &events[0]);
    assert_eq!(var(&env, "SOFTETHER_EVENT"), "lost6");
    assert_eq!(var(&env, "SOFTETHER_ADDRESS6"), "fd00:6::11:22ff:fe33:4455");
    assert_eq!(var(&env, "SOFTETHER_ADDRESS"), "192.168.30.10");
    set6(v6.clone());
    let kinds: Vec<_> = t
        .observe(&rx.borrow())
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, [EventKind::Acquired6]);
    let mut moved = v6.clone();
    moved.addresses[0].address = "fd00:6::99".parse().unwrap();
    set6(moved);
    let events = t.observe(&rx.borrow());
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::Changed6);
    let env = hook_env(&context(), &events[0]);
    assert_eq!(var(&env, "SOFTETHER_ADDRESS6"), "fd00:6::99");
    assert_eq!(
        var(&env, "SOFTETHER_OLD_ADDRESS6"),
        "fd00:6::11:22ff:fe33:4455"
    );
    // DNS or router changes alone are no event; a release reports `released` only.
    let mut dns = t.observe(&rx.borrow());
    assert!(dns.is_empty());
    status::set_released(&tx);
    dns = t.observe(&rx.borrow());
    assert_eq!(
        dns.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [EventKind::Released]
    );
    // `released` carries what went away, IPv6 included.
    let env = hook_env(&context(), &dns[0]);
    assert_eq!(var(&env, "SOFTETHER_GATEWAY6"), "fe80::1", "what went away");
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("se-hooks-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn context() -> HookContext {
    HookContext {
        interface: "vpn0".into(),
        container_id: Some("c1".into()),
        netns: Some("/run/netns/p".into()),
        server: "198.18.0.1:443".into(),
        hub: "HUB".into(),
    }
}

#[tokio::test]
async fn hook_gets_argv_and_environment() {
    let dir = temp_dir("env");
    let out = dir.join("out");
    let hook = script(
        &dir,
        "hook",
        &format!(
            "echo \"$1|$SOFTETHER_EVENT|$SOFTETHER_INTERFACE|$SOFTETHER_ADDRESS|$SOFTETHER_PREFIX|$SOFTETHER_GATEWAY|$SOFTETHER_DNS|$SOFTETHER_CONTAINER_ID|$SOFTETHER_NETNS|$SOFTETHER_SERVER|$SOFTETHER_HUB\" > '{}'",
            out.display()
        ),
    );
    let (tx, rx) = status_channel();
    status::set_lease(&tx, LeaseEvent::Bound, Some(lease([192, 168, 30, 10])));
    let event = EventTracker::default().observe(&rx.borrow()).remove(0);
    let cmd = HookCommand {
        program: hook,
        args: vec!["--flag with space".into()],
        timeout: Duration::from_secs(10),
    };
    let outcome = run_once(&cmd, &hook_env(&context(), &event)).await;
    assert!(
        matches!(outcome, RunOutcome::Exited(s) if s.success()),
        "{outcome:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap().trim(),
        "--flag with space|acquired|vpn0|192.168.30.10|24|192.168.30.1||c1|/run/netns/p|198.18.0.1:443|HUB"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_hanging_hook_is_killed_with_its_children_after_the_timeout() {
    let dir = temp_dir("hang");
    let pidfile = dir.join("child.pid");
    // The child `sleep` is in the hook's process group: it must die too.
    let hook = script(
        &dir,
        "hang",
        &format!("sleep 1000 & echo $! > '{}'; wait", pidfile.display()),
    );
    let cmd = HookCommand {
        program: hook,
        args: Vec::new(),
        timeout: Duration::from_millis(300),
    };
    let started = Instant::now();
    assert_eq!(run_once(&cmd, &[]).await, RunOutcome::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(5));
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
    {
        assert!(Instant::now() < deadline, "the hook's child {pid} survived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let missing = HookCommand {
        program: dir.join("missing"),
        args: Vec::new(),
        timeout: Duration::from_secs(1),
    };
    assert!(matches!(
        run_once(&missing, &[]).await,
        RunOutcome::SpawnFailed(_)
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn runner_runs_events_in_order_and_a_slow_hook_blocks_nothing() {
    let dir = temp_dir("runner");
    let log = dir.join("events");
    let hook = script(
        &dir,
        "hook",
        &format!(
            "echo \"$SOFTETHER_EVENT $SOFTETHER_ADDRESS\" >> '{}'",
            log.display()
        ),
    );
    let (tx, rx) = status_channel();
    let cmd = HookCommand {
        program: hook,
        args: Vec::new(),
        timeout: Duration::from_secs(10),
    };
    let runner = spawn_runner(cmd, context(), rx);
    let started = Instant::now();
    status::set_lease(&tx, LeaseEvent::Bound, Some(lease([192, 168, 30, 10])));
    wait_for_lines(&log, 1).await;
    status::set_lease(&tx, LeaseEvent::Changed, Some(lease([192, 168, 30, 11])));
    wait_for_lines(&log, 2).await;
    status::set_reconnecting(&tx, "gone".into(), Duration::from_secs(1));
    wait_for_lines(&log, 3).await;
    status::set_phase(&tx, Phase::Bound);
    wait_for_lines(&log, 4).await;
    status::set_released(&tx);
    drop(tx);
    tokio::time::timeout(Duration::from_secs(10), runner)
        .await
        .expect("runner ends once the status is gone")
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "acquired 192.168.30.10\nchanged 192.168.30.11\nlost 192.168.30.11\nacquired 192.168.30.11\nreleased 192.168.30.11\n"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // A hook that never returns: status updates go on, the runner keeps at most a few events.
    let hang = script(&dir, "hang", "exec sleep 1000");
    let (tx, rx) = status_channel();
    let cmd = HookCommand {
        program: hang,
        args: Vec::new(),
        timeout: Duration::from_secs(3600),
    };
    let runner = spawn_runner(cmd, context(), rx);
    let started = Instant::now();
    for i in 0..50u8 {
        status::set_lease(
            &tx,
            LeaseEvent::Changed,
            Some(lease([192, 168, 30, 10 + i])),
        );
        tokio::task::yield_now().await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "status updates were held up"
    );
    runner.abort();
    let _ = runner.await;
    let _ = std::fs::remove_dir_all(&dir);
}

async fn wait_for_lines(path: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .count();
        if lines >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} has {lines} lines, want {n}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn only_programs_inside_the_hooks_dir_are_allowed() {
    use super::hooks::allowed_program;
    let dir = temp_dir("allowed");
    let hooks = dir.join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    let hook = script(&hooks, "ok", "true");
    let outside = script(&dir, "outside", "true");
    std::os::unix::fs::symlink(&outside, hooks.join("link-out")).unwrap();
    assert_eq!(
        allowed_program(&hook, Some(&hooks)).unwrap(),
        hook.canonicalize().unwrap()
    );
    for refused in [
        outside.clone(),
        hooks.join("../outside"),
        hooks.join("link-out"),
        hooks.join("missing"),
        hooks.clone(),
    ] {
        assert!(
            allowed_program(&refused, Some(&hooks)).is_err(),
            "{} was allowed",
            refused.display()
        );
    }
    let off = allowed_program(&hook, None).unwrap_err();
    assert!(off.contains("--hooks-dir"), "{off}");
    let _ = std::fs::remove_dir_all(&dir);
}
