//! `softether-bench-daemon`: the CNI daemon's memory per attachment (issue 11's target: at most
//! 150 KiB per extra attachment at 100 attachments, and back within 20 % of the baseline after
//! they are all deleted). Prints a Markdown table; numbers are measured, never asserted.
//!
//! One lab, one `softether-sidecar run` in the client namespace; then, through the real plugin:
//! one attachment with iperf3 both ways, deleted (the warm reading); N attachments (default
//! 100) in their own pod namespaces, iperf3 TCP (5 s, both ways one after the other) from the
//! first 10 to the lan host at once, all of them deleted. The
//! daemon's VmRSS is read at each step, after it settled (sessions close asynchronously).
//!
//! Run as root after `cargo build --release --workspace --bins` (`tests/bench-daemon` does
//! both): `softether-bench-daemon [--attachments N] [--busy N] [--smaps FILE] [--bin-dir DIR]`.

use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use softether_lab::netns::{self, Netns};
use softether_lab::{Lab, LabOptions};

mod report;
use report::{Memory, Report};

const IFNAME: &str = "vpn0";
/// Attachments after which the first reading is taken; the per-attachment figure is the slope
/// from here to the last one.
pub(crate) const FIRST: usize = 10;
const IPERF_PORT: u16 = 5301;
/// The pool must hold every attachment's lease: 10.99.0.10 up to here is 141 addresses.
const POOL_END: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 150);

struct Options {
    bin_dir: PathBuf,
    attachments: usize,
    busy: usize,
    /// Where to copy the daemon's /proc/PID/smaps with all attachments up (to see what grew);
    /// FILE with its extension replaced by `deleted` gets it once they are all deleted (to see
    /// what stayed).
    smaps: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    match parse_args().and_then(|o| run(&o)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("softether-bench-daemon: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn parse_args() -> Result<Options> {
    let mut o = Options {
        bin_dir: std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
            .join("release"),
        attachments: 100,
        busy: 10,
        smaps: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--attachments" => o.attachments = value()?.parse()?,
            "--busy" => o.busy = value()?.parse()?,
            "--bin-dir" => o.bin_dir = value()?.into(),
            "--smaps" => o.smaps = Some(value()?.into()),
            _ => bail!(
                "usage: softether-bench-daemon [--attachments N (≤ 140)] [--busy N] [--smaps FILE] [--bin-dir DIR]   (root)"
            ),
        }
    }
    if o.attachments <= FIRST || o.attachments > 140 || o.busy > o.attachments {
        bail!("--attachments must be 11..=140 (the lab's DHCP pool) and --busy at most that");
    }
    Ok(o)
}

/// `/proc/<pid>/status` field in KiB (or a count, e.g. `Threads:`).
pub(crate) fn proc_kb(pid: u32, field: &str) -> Result<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("{field} of pid {pid}"))
}

fn open_fds(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// The plugin, run like a container runtime would, for one pod namespace.
struct Plugin<'a> {
    lab: &'a Lab,
    path: PathBuf,
    config: Value,
}

impl Plugin<'_> {
    fn invoke(&self, verb: &str, pod: &str) -> Result<()> {
        let deadline = Duration::from_secs(120);
        softether_lab::sidecar::plugin_call(
            self.lab,
            &self.path,
            &self.config,
            verb,
            pod,
            IFNAME,
            deadline,
        )
        .map(drop)
    }
}

/// Waits (bounded) until the daemon's fd count is back to `fds`, then a little more for the
/// session tasks to finish freeing.
fn settle(pid: u32, fds: usize) {
    let until = Instant::now() + Duration::from_secs(30);
    while open_fds(pid) > fds && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
}

/// iperf3 from each busy pod to its own server on the lan host, all at once, `reverse` for
/// download. Returns the total Mbit/s (for the record; not the point of this bench).
fn traffic(lab: &Lab, pods: &[Netns], reverse: bool) -> Result<f64> {
    let host = lab.facts.lan_host.to_string();
    let mut servers = Vec::new();
    for i in 0..pods.len() {
        let port = (IPERF_PORT + i as u16).to_string();
        let mut server = netns::command_in(
            &lab.facts.lan_ns,
            &[
                "timeout", "40", "iperf3", "-s", "-1", "-B", &host, "-p", &port,
            ],
        );
        server
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        servers.push(netns::spawn_command(server)?);
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut clients = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        let port = (IPERF_PORT + i as u16).to_string();
        let mut argv = vec![
            "timeout", "30", "iperf3", "-c", &host, "-p", &port, "-t", "5", "-J",
        ];
        if reverse {
            argv.push("-R");
        }
        let mut cmd = netns::command_in(pod.name(), &argv);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        clients.push(cmd.spawn()?);
    }
    let mut mbit = 0.0;
    for client in clients {
        let out = client.wait_with_output()?;
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        match report["end"]["sum_received"]["bits_per_second"].as_f64() {
            Some(bps) => mbit += bps / 1e6,
            None => eprintln!("iperf3: {}", report["error"]),
        }
    }
    drop(servers);
    Ok(mbit)
}

fn run(o: &Options) -> Result<()> {
    let lab = Lab::start(LabOptions {
        dhcp_pool_end: Some(POOL_END),
        ..LabOptions::default()
    })?;
    let f = &lab.facts;
    let daemon =
        softether_lab::sidecar::start_daemon(&lab, &o.bin_dir, &f.dir.join("bench-daemon"))?;
    let pid = daemon.process.id();
    let mut config = daemon.config.clone();
    // 100 attachments log in back to back on a busy machine: more room than the shared 60 s.
    config["timeout"] = json!(90);
    let plugin = Plugin {
        lab: &lab,
        path: o.bin_dir.join("softether"),
        config,
    };
    std::thread::sleep(Duration::from_secs(1));
    let base_fds = open_fds(pid);
    let baseline = Memory::read(pid)?;
    eprintln!(
        "daemon up, RSS {} KiB; attaching {}",
        baseline.rss, o.attachments
    );

    // One pod with traffic comes and goes first: the code an attachment runs is then paged in
    // and the runtime workers have their malloc arenas, so what the 100 leave behind shows
    // against this "warm" reading, not against a daemon that never ran an attachment.
    let warm_pod = Netns::create(&format!("se-x-{}-warm", std::process::id()))?;
    plugin.invoke("ADD", warm_pod.name())?;
    traffic(&lab, std::slice::from_ref(&warm_pod), false)?;
    traffic(&lab, std::slice::from_ref(&warm_pod), true)?;
    plugin.invoke("DEL", warm_pod.name())?;
    drop(warm_pod);
    settle(pid, base_fds);
    let warm = Memory::read(pid)?;

    let mut pods = Vec::with_capacity(o.attachments);
    let mut first = None;
    let started = Instant::now();
    for i in 0..o.attachments {
        let pod = Netns::create(&format!("se-x-{}-{}", std::process::id(), 2000 + i))?;
        plugin.invoke("ADD", pod.name())?;
        pods.push(pod);
        if pods.len() == FIRST {
            std::thread::sleep(Duration::from_secs(3));
            first = Some(Memory::read(pid)?);
        }
    }
    let attach_secs = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(3));
    let attached = Memory::read(pid)?;
    let threads = proc_kb(pid, "Threads:")?;
    if let Some(path) = &o.smaps {
        fs::copy(format!("/proc/{pid}/smaps"), path).context("copying smaps")?;
    }
    eprintln!(
        "{} attached in {attach_secs:.0} s; traffic on {}",
        o.attachments, o.busy
    );
    let busy = &pods[..o.busy];
    let up = traffic(&lab, busy, false)?;
    let down = traffic(&lab, busy, true)?;
    let loaded = Memory::read(pid)?;
    // Idle again: the busy sessions give their buffers back after a second or two without frames.
    std::thread::sleep(Duration::from_secs(3));
    let after_traffic = Memory::read(pid)?;

    eprintln!("deleting");
    for pod in &pods {
        plugin.invoke("DEL", pod.name())?;
    }
    settle(pid, base_fds);
    let deleted = Memory::read(pid)?;
    if let Some(path) = &o.smaps {
        let after = path.with_extension("deleted");
        fs::copy(format!("/proc/{pid}/smaps"), after).context("copying smaps")?;
    }
    let _ = daemon.process.terminate(Duration::from_secs(10));

    let report = Report {
        attachments: o.attachments,
        busy: o.busy,
        baseline,
        warm,
        first,
        attached,
        loaded,
        after_traffic,
        deleted,
    };
    report.print();
    println!(
        "| daemon threads with {} attachments | {threads} |",
        o.attachments
    );
    println!(
        "| iperf3 total over {} pods, up / down, Mbit/s | {up:.0} / {down:.0} |",
        o.busy
    );
    println!(
        "| {} sequential ADDs took, s | {attach_secs:.0} |",
        o.attachments
    );
    println!();
    println!(
        "Per extra attachment = (RSS at {} − RSS at {FIRST}) / {}: the code an attachment runs is paged in once, \
         by the first ones. Anon = RssAnon (heap, stacks): what the daemon allocated, without the binary's \
         file-backed pages. Single run on a shared machine; RSS is robust to load, throughput is not.",
        o.attachments,
        o.attachments.saturating_sub(FIRST)
    );
    Ok(())
}
