//! `softether-soak`: a long run of the CNI path, not a test. One lab whose DHCP leases last
//! 60 s, `softether-sidecar run` with a few pods attached through the plugin, steady pings
//! from every pod to the lan host; every minute a line with the daemon's RSS, fds, renewals and
//! reconnects so far; at the end a Markdown summary (RSS first/last/max after warm-up,
//! renewal intervals per pod, late renewals, reconnects, ping loss).
//!
//! Run as root after building release binaries (`tests/soak` does both):
//! `cargo run --release -p softether-lab --bin softether-soak [-- --minutes 30 --pods 4 --bin-dir DIR]`.
//! Figures are reported, never asserted. All traffic stays inside the lab's namespaces.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use softether_lab::netns::{self, Netns};
use softether_lab::{Lab, LabOptions};

const LEASE_SECS: u32 = 60;
/// With a 60 s lease, a renewal is due every 30 s (T1); later than this counts as late.
const LATE_RENEWAL_SECS: f64 = 35.0;
const SAMPLE_EVERY: Duration = Duration::from_secs(60);
const PING_INTERVAL: &str = "0.2";

struct Options {
    minutes: u64,
    pods: usize,
    bin_dir: PathBuf,
}

fn parse_args() -> Result<Options> {
    let mut opts = Options {
        minutes: 30,
        pods: 4,
        bin_dir: std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
            .join("release"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--minutes" => opts.minutes = value()?.parse().context("--minutes")?,
            "--pods" => opts.pods = value()?.parse().context("--pods")?,
            "--bin-dir" => opts.bin_dir = value()?.into(),
            "-h" | "--help" => {
                println!(
                    "usage: softether-soak [--minutes N (30)] [--pods N (4)] [--bin-dir DIR (target/release)]   (root)"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    if opts.minutes == 0 || opts.pods == 0 {
        bail!("--minutes and --pods must be at least 1");
    }
    Ok(opts)
}

fn main() -> std::process::ExitCode {
    match parse_args().and_then(|o| soak(&o)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("softether-soak: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Seconds since midnight UTC of a log line's RFC 3339 timestamp (`2026-12-07T02:53:48.1Z`).
fn log_time(line: &str) -> Option<f64> {
    let ts = line.split_whitespace().next()?;
    let time = ts.split('T').nth(1)?.trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// `address=` of a log line.
fn log_address(line: &str) -> Option<&str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("address="))
}

/// The plugin for `pod`, like libcni (the config's timeout bounds it; 120 s this call).
fn plugin(
    lab: &Lab,
    bin: &std::path::Path,
    conf: &Value,
    command: &str,
    pod: &str,
) -> Result<Value> {
    softether_lab::sidecar::plugin_call(
        lab,
        bin,
        conf,
        command,
        pod,
        "vpn0",
        Duration::from_secs(120),
    )
}

struct Sample {
    minute: u64,
    rss_kb: u64,
    fds: usize,
    renewals: usize,
    reconnects: usize,
}

fn soak(opts: &Options) -> Result<()> {
    let lab = Lab::start(LabOptions {
        dhcp_lease_secs: LEASE_SECS,
        ..Default::default()
    })?;
    let daemon =
        softether_lab::sidecar::start_daemon(&lab, &opts.bin_dir, &lab.facts.dir.join("soak"))?;
    let (pid, log_path, conf) = (daemon.process.id(), &daemon.log, &daemon.config);
    let f = &lab.facts;
    let plugin_bin = opts.bin_dir.join("softether");
    let pods: Vec<Netns> = (0..opts.pods)
        .map(|i| Netns::create(&format!("se-x-{}-{}", std::process::id(), 700 + i)))
        .collect::<Result<_>>()?;
    for pod in &pods {
        plugin(&lab, &plugin_bin, conf, "ADD", pod.name())?;
    }
    let duration = Duration::from_secs(opts.minutes * 60);
    let count = (opts.minutes * 60 * 5 + 50).to_string();
    let dst = f.lan_host.to_string();
    let pings: Vec<_> = pods
        .iter()
        .map(|p| {
            let mut c = netns::command_in(
                p.name(),
                &[
                    "ping",
                    "-q",
                    "-i",
                    PING_INTERVAL,
                    "-c",
                    &count,
                    "-W",
                    "1",
                    &dst,
                ],
            );
            c.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            c.spawn().context("spawn ping")
        })
        .collect::<Result<_>>()?;

    let log_text = || fs::read_to_string(log_path).unwrap_or_default();
    let count_lines =
        |text: &str, needle: &str| text.lines().filter(|l| l.contains(needle)).count();
    println!(
        "soak: {} pods, {LEASE_SECS} s leases, pings every {PING_INTERVAL} s, {} min",
        opts.pods, opts.minutes
    );
    println!("| minute | VmRSS kB | fds | renewals | reconnects |");
    println!("|---:|---:|---:|---:|---:|");
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut minute = 0;
    while started.elapsed() < duration {
        std::thread::sleep(SAMPLE_EVERY.min(duration.saturating_sub(started.elapsed())));
        minute += 1;
        let text = log_text();
        let s = Sample {
            minute,
            rss_kb: proc_status_kb(pid, "VmRSS:").context("daemon gone")?,
            fds: fd_count(pid),
            renewals: count_lines(&text, "lease renewed"),
            reconnects: count_lines(&text, "session lost, reconnecting"),
        };
        println!(
            "| {} | {} | {} | {} | {} |",
            s.minute, s.rss_kb, s.fds, s.renewals, s.reconnects
        );
        samples.push(s);
    }

    // Renewal intervals per pod (by leased address).
    let text = log_text();
    let mut renewals: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.contains("lease renewed") || l.contains("lease acquired"))
    {
        if let (Some(t), Some(a)) = (log_time(line), log_address(line)) {
            renewals.entry(a.to_owned()).or_default().push(t);
        }
    }
    let mut intervals = Vec::new();
    for times in renewals.values() {
        intervals.extend(times.windows(2).map(|w| w[1] - w[0]).filter(|d| *d >= 0.0));
    }
    intervals.sort_by(f64::total_cmp);
    let late = intervals.iter().filter(|d| **d > LATE_RENEWAL_SECS).count();

    let mut losses = Vec::new();
    for p in pings {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let out = p.wait_with_output()?;
        let summary = String::from_utf8_lossy(&out.stdout);
        let loss = summary
            .split(',')
            .find(|s| s.contains("packet loss"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|| "?".into());
        losses.push(loss);
    }
    for pod in &pods {
        let _ = plugin(&lab, &plugin_bin, conf, "DEL", pod.name());
    }

    let after_warmup: Vec<&Sample> = samples.iter().skip(1).collect();
    let rss: Vec<u64> = after_warmup.iter().map(|s| s.rss_kb).collect();
    let last = samples.last().context("no samples")?;
    println!();
    println!("| soak figure | value |");
    println!("|---|---|");
    println!(
        "| duration | {} min, {} pods, {LEASE_SECS} s leases |",
        opts.minutes, opts.pods
    );
    if let (Some(first), Some(lastv), Some(max)) = (rss.first(), rss.last(), rss.iter().max()) {
        println!(
            "| VmRSS after warm-up (min 1 → end, max) | {first} kB → {lastv} kB, max {max} kB |"
        );
    }
    println!(
        "| fds (first → last sample) | {} → {} |",
        samples.first().map_or(0, |s| s.fds),
        last.fds
    );
    println!(
        "| renewals | {} (expected ≈ {}) |",
        last.renewals,
        opts.pods as u64 * opts.minutes * 2
    );
    if !intervals.is_empty() {
        println!(
            "| renewal interval min / median / max | {:.1} / {:.1} / {:.1} s |",
            intervals[0],
            intervals[intervals.len() / 2],
            intervals[intervals.len() - 1]
        );
    }
    println!("| renewals later than {LATE_RENEWAL_SECS} s | {late} |");
    println!("| reconnects | {} |", last.reconnects);
    println!("| ping loss per pod | {} |", losses.join("; "));
    drop(daemon);
    Ok(())
}
