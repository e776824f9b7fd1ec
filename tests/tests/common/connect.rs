//! Helpers for end-to-end tests that run the `softether-sidecar connect` binary in a shared
//! [`Lab`]: start it in the client namespace as alice, wait for log lines, stop it with SIGTERM,
//! snapshot the client namespace's network state for before/after diffs, read the hub packet log.
#![allow(dead_code)] // each test binary uses a different subset

use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use softether_lab::netns::{self, KillOnDrop, Netns};
use softether_lab::Lab;

use super::workspace_bin;

/// Name of the TAP `connect` creates in the client namespace.
pub const TAP: &str = "vpn0";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Runs `argv` in namespace `ns`: (exit status is success, stdout followed by stderr).
pub fn exec(ns: &str, argv: &[&str]) -> (bool, String) {
    let out = netns::exec_in(ns, argv).unwrap_or_else(|e| panic!("{argv:?} in {ns}: {e:#}"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text += &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Runs `argv` in namespace `ns`, panicking with its output when it fails; returns stdout.
pub fn must(ns: &str, argv: &[&str]) -> String {
    netns::exec_in_ok(ns, argv).unwrap_or_else(|e| panic!("{e:#}"))
}

/// An extra namespace (`se-x-<pid>-<n>`, so the lab's sweeper knows it), deleted on drop.
pub fn extra_netns() -> Netns {
    let name = format!(
        "se-x-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    Netns::create(&name).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Everything `connect` could touch in the client namespace, for before/after diffs.
pub fn client_snapshot(lab: &Lab) -> String {
    let c = &lab.facts.client_ns;
    [
        &["ip", "-j", "addr"][..],
        &["ip", "-j", "route", "show", "table", "all"],
        &["ip", "-j", "-6", "route", "show", "table", "all"],
        &["ip", "-j", "rule"],
        &["nft", "-j", "list", "ruleset"],
    ]
    .iter()
    .map(|argv| must(c, argv))
    .collect::<Vec<_>>()
    .join("\n")
}

/// The hub's packet log (SoftEther writes one line per packet when the DHCP server's /LOG is on).
pub fn hub_packet_log(lab: &Lab) -> String {
    let dir = lab
        .server_log_dir()
        .expect("lab has a server")
        .join("packet_log")
        .join(&lab.facts.hub);
    let mut out = String::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            out += &fs::read_to_string(e.path()).unwrap_or_default();
        }
    }
    out
}

/// Starts `softether-sidecar connect` in the client namespace as alice (password through
/// SOFTETHER_PASSWORD), TAP [`TAP`], plus `extra` flags.
pub fn connect(lab: &Lab, extra: &[&str]) -> Connect {
    connect_as(lab, &lab.facts.alice.password, extra)
}

/// Like [`connect`] with another password for alice.
pub fn connect_as(lab: &Lab, password: &str, extra: &[&str]) -> Connect {
    connect_with_tap(lab, password, Some(TAP), extra)
}

/// Like [`connect_as`] with `--tap tap`, or no `--tap` flag at all for `None` (the kernel
/// names the TAP; [`Connect::tap_name`] tells which).
pub fn connect_with_tap(lab: &Lab, password: &str, tap: Option<&str>, extra: &[&str]) -> Connect {
    let f = &lab.facts;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let log = f.dir.join(format!("connect-{n}.log"));
    let out = fs::File::create(&log).expect("connect log file");
    let mut argv = vec!["--log", "info"];
    if let Some(tap) = tap {
        argv.extend_from_slice(&["--tap", tap]);
    }
    argv.extend_from_slice(extra);
    let bin = workspace_bin("softether-sidecar");
    let mut cmd = softether_lab::sidecar::as_alice(lab, &bin, "connect", password, &argv);
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone().expect("log file"))
        .stderr(out);
    let process = netns::spawn_command(cmd).unwrap_or_else(|e| panic!("{e:#}"));
    Connect {
        process: Some(process),
        log,
        started: Instant::now(),
    }
}

/// A running `connect` process; killed on drop.
pub struct Connect {
    process: Option<KillOnDrop>,
    /// Its stdout and stderr.
    pub log: PathBuf,
    /// When it was started.
    pub started: Instant,
}

impl Connect {
    /// Process id (`ip netns exec` execs the binary, so this is connect itself); 0 once exited.
    pub fn pid(&self) -> u32 {
        self.process.as_ref().map(KillOnDrop::id).unwrap_or(0)
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.process
            .as_mut()
            .and_then(|p| p.child_mut().try_wait().ok().flatten())
    }

    /// Waits until the log contains `needle` `count` times; returns the time since start.
    pub fn wait_log_count(&mut self, needle: &str, count: usize, timeout: Duration) -> Duration {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log_text().matches(needle).count() >= count {
                return self.started.elapsed();
            }
            if let Some(status) = self.try_exit_status() {
                panic!(
                    "connect exited ({status}) before logging {needle:?} x{count}:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} x{count} within {timeout:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_log(&mut self, needle: &str, timeout: Duration) -> Duration {
        self.wait_log_count(needle, 1, timeout)
    }

    /// Waits (bounded) for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        assert!(self.process.is_some(), "connect already exited");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status() {
                self.process = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "connect still running after {timeout:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, signal: Signal) {
        let pid = i32::try_from(self.pid()).expect("pid");
        kill(Pid::from_raw(pid), signal).expect("signal connect");
    }

    /// Sends SIGTERM without waiting (see [`Connect::wait_exit`]).
    pub fn terminate(&self) {
        self.signal(Signal::SIGTERM);
    }

    /// SIGTERM, then wait (bounded) for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        self.wait_exit(Duration::from_secs(15))
    }

    /// SIGKILL (a crash: no cleanup), then wait (bounded) for the exit.
    pub fn crash(&mut self) -> ExitStatus {
        self.signal(Signal::SIGKILL);
        self.wait_exit(Duration::from_secs(5))
    }

    /// VmRSS of the process in kB.
    pub fn rss_kb(&self) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// The raw text after `field=` in the last log line containing `message`, up to the next
    /// `name=` token (values formatted with `%` may contain spaces, e.g. `delay=1s 873ms`).
    pub fn log_field(&self, message: &str, field: &str) -> String {
        let log = self.log_text();
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains(message))
            .unwrap_or_else(|| panic!("no {message:?} line in:\n{log}"));
        let key = format!(" {field}=");
        let at = line
            .find(&key)
            .unwrap_or_else(|| panic!("no {field} in {line:?}"))
            + key.len();
        line[at..]
            .split(' ')
            .take_while(|token| !token.contains('='))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The TAP's name from the "TAP created" log line.
    pub fn tap_name(&self) -> String {
        self.log_field("TAP created", "tap")
    }

    /// The leased address from the (last) "lease acquired" log line.
    pub fn leased_address(&self) -> Ipv4Addr {
        let log = self.log_text();
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains("lease acquired"))
            .expect("a lease acquired line");
        let at = line.find("address=").expect("address field") + "address=".len();
        let rest = &line[at..];
        rest[..rest.find('/').expect("prefix")]
            .parse()
            .unwrap_or_else(|e| panic!("address in {line:?}: {e}"))
    }
}

/// Whether `address` lies in the lab's DHCP pool.
pub fn in_dhcp_pool(lab: &Lab, address: Ipv4Addr) -> bool {
    (lab.facts.dhcp_start..=lab.facts.dhcp_end).contains(&address)
}

/// Resets our side of the TCP connection to the server only (nftables in the client namespace):
/// the server never sees a FIN or RST, so it keeps the session (for its timeout) while we lose
/// the socket.
pub fn reset_our_tcp_connection(lab: &Lab) {
    let port = our_port(lab);
    let rules = format!(
        "add table inet cut\n\
         add chain inet cut out {{ type filter hook output priority 0; }}\n\
         add rule inet cut out tcp sport {port} reject with tcp reset\n"
    );
    super::nft::apply(lab, &lab.facts.client_ns, &rules);
}

/// The local port of our established TCP connection to the server.
fn our_port(lab: &Lab) -> String {
    let f = &lab.facts;
    let out = must(
        &f.client_ns,
        &[
            "ss",
            "-Htn",
            "state",
            "established",
            "dst",
            &f.server_ip.to_string(),
        ],
    );
    let line = out
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no connection in:\n{out}"));
    // "0  0  198.18.x.2:PORT  198.18.x.1:443"
    let local = line
        .split_whitespace()
        .nth(2)
        .expect("local address column");
    local.rsplit(':').next().expect("port").to_owned()
}
