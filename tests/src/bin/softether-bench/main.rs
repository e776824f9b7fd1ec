//! `softether-bench`: starts one lab and prints a Markdown table comparing our client
//! (`softether-sidecar connect`: TAP + DHCP) with the official Debian `vpnclient` (TAP + a static address),
//! plus the CNI path (plugin + `softether-sidecar run`).
//!
//! Run as root, after building release binaries (`tests/bench` does both):
//! `cargo run --release -p softether-lab --bin softether-bench [-- --skip-official --skip-cni
//! --skip-no-offload --securenat-nat --bin-dir DIR]`.
//!
//! Our client is measured twice: with the TAP offloads (the default) and with `--no-offload`.
//! `--securenat-nat` turns SecureNAT's NAT on in the hub (what `SecureNatEnable` gives an
//! administrator; the default lab runs SecureNAT's DHCP with NAT off), the other hub setup.
//!
//! Numbers are measured, never asserted: they depend on the machine and on whatever else runs on it.
//! All traffic stays inside the lab's namespaces (iperf3 and ping between the client ns and the lan host).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use softether_lab::netns::{self, KillOnDrop, Netns};
use softether_lab::{command, ClientAuth, Lab, LabOptions, OfficialClient};

/// Static address for the official client's NIC: in the hub subnet, outside the DHCP pool (.10–.99).
const OFFICIAL_ADDRESS: &str = "10.99.0.160/24";
const TAP: &str = "vpn0";
const CNI_CYCLES: usize = 10;
const CNI_ATTACHMENTS: usize = 10;
const POLL: Duration = Duration::from_millis(20);

struct Options {
    bin_dir: PathBuf,
    official: bool,
    cni: bool,
    no_offload: bool,
    securenat_nat: bool,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("softether-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn parse_args() -> Result<Options> {
    let mut opts = Options {
        bin_dir: std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
            .join("release"),
        official: true,
        cni: true,
        no_offload: true,
        securenat_nat: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--skip-official" => opts.official = false,
            "--skip-cni" => opts.cni = false,
            "--skip-no-offload" => opts.no_offload = false,
            "--securenat-nat" => opts.securenat_nat = true,
            "--bin-dir" => opts.bin_dir = args.next().context("--bin-dir needs a value")?.into(),
            _ => bail!(
                "usage: softether-bench [--skip-official] [--skip-cni] [--skip-no-offload] [--securenat-nat] [--bin-dir DIR]   (root; DIR defaults to target/release)"
            ),
        }
    }
    for bin in ["softether-sidecar", "softether"] {
        let path = opts.bin_dir.join(bin);
        if !path.is_file() {
            bail!(
                "{} is missing: build release binaries first (`cargo build --release --workspace --bins`, or use tests/bench)",
                path.display()
            );
        }
    }
    Ok(opts)
}

fn run() -> Result<()> {
    let opts = parse_args()?;
    let lab = Lab::start(LabOptions {
        securenat_nat: opts.securenat_nat,
        ..LabOptions::default()
    })?;
    eprintln!("lab {} up; measuring our client", lab.facts.id);
    let ours = measure(&lab, |lab| Ours::start(lab, &opts.bin_dir, &[]));
    let plain = if opts.no_offload {
        eprintln!("measuring our client with --no-offload");
        Some(measure(&lab, |lab| {
            Ours::start(lab, &opts.bin_dir, &["--no-offload"])
        }))
    } else {
        None
    };
    let official = if opts.official {
        eprintln!("measuring the official vpnclient");
        Some(measure(&lab, Official::start))
    } else {
        None
    };
    let cni = if opts.cni {
        eprintln!("measuring the CNI path");
        Some(measure_cni(&lab, &opts.bin_dir))
    } else {
        None
    };
    print_table(&ours, plain.as_ref(), official.as_ref(), cni.as_ref());
    println!(
        "Hub: SecureNAT DHCP with NAT {} (`--securenat-nat` for the other setup).",
        if opts.securenat_nat {
            "enabled"
        } else {
            "disabled"
        }
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// /proc readings

/// A `/proc/<pid>/status` field in kB.
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn sum_kb(pids: &[u32], field: &str) -> Option<u64> {
    let values: Vec<u64> = pids.iter().filter_map(|p| status_kb(*p, field)).collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// utime + stime of `pid` in seconds.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised comm: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100);
    Some(ticks as f64 / hz as f64)
}

fn sum_cpu(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|p| cpu_secs(*p)).sum()
}

/// Pids whose command name starts with `comm` and whose network namespace is `ns`.
fn pids_in_ns(ns: &str, comm: &str) -> Vec<u32> {
    let target = fs::metadata(format!("/run/netns/{ns}")).ok().map(|m| {
        use std::os::unix::fs::MetadataExt;
        (m.dev(), m.ino())
    });
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let name = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let net = fs::metadata(format!("/proc/{pid}/ns/net")).ok().map(|m| {
                use std::os::unix::fs::MetadataExt;
                (m.dev(), m.ino())
            });
            name.starts_with(comm) && net.is_some() && net == target
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------
// The two clients

/// A client under test, connected and addressed in the lab's client namespace.
trait Subject {
    /// Process ids whose memory and CPU count.
    fn pids(&self) -> Vec<u32>;
    /// Time from process start to a usable address.
    fn time_to_address(&self) -> Duration;
}

struct Ours {
    process: Option<KillOnDrop>,
    took: Duration,
}

impl Ours {
    fn start(lab: &Lab, bin_dir: &Path, extra: &[&str]) -> Result<Ours> {
        let f = &lab.facts;
        let log = f.dir.join("bench-connect.log");
        let out = fs::File::create(&log)?;
        let bin = bin_dir.join("softether-sidecar");
        let (host, port) = (f.server_ip.to_string(), f.port.to_string());
        let mut argv = vec![
            bin.to_str().context("utf-8 path")?,
            "connect",
            "--host",
            &host,
            "--port",
            &port,
            "--hub",
            &f.hub,
            "--user",
            &f.alice.name,
            "--insecure",
            "--tap",
            TAP,
            "--log",
            "info",
        ];
        argv.extend_from_slice(extra);
        let mut cmd = netns::command_in(&f.client_ns, &argv);
        cmd.env("SOFTETHER_PASSWORD", &f.alice.password)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let started = Instant::now();
        let mut process = netns::spawn_command(cmd)?;
        let deadline = started + Duration::from_secs(30);
        loop {
            if fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("lease acquired")
            {
                break;
            }
            if let Ok(Some(status)) = process.child_mut().try_wait() {
                bail!(
                    "connect exited ({status}):\n{}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "no lease within 30 s:\n{}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(POLL);
        }
        let took = started.elapsed();
        Ok(Ours {
            took,
            process: Some(process),
        })
    }
}

impl Subject for Ours {
    fn pids(&self) -> Vec<u32> {
        // `ip netns exec` execs the binary, so the child is connect itself.
        self.process.iter().map(KillOnDrop::id).collect()
    }
    fn time_to_address(&self) -> Duration {
        self.took
    }
}

impl Drop for Ours {
    fn drop(&mut self) {
        // SIGTERM so connect releases the lease and removes what it added before the next subject runs.
        if let Some(p) = self.process.take() {
            let _ = p.terminate(Duration::from_secs(15));
        }
    }
}

struct Official {
    ns: String,
    client: Option<OfficialClient>,
    took: Duration,
}

impl Official {
    fn start(lab: &Lab) -> Result<Official> {
        let f = &lab.facts;
        let started = Instant::now();
        let client = OfficialClient::start(lab, &f.client_ns, "bench-vpnclient")?;
        let auth = ClientAuth::Password {
            user: f.alice.name.clone(),
            password: f.alice.password.clone(),
            plain: false,
        };
        let nic = client.connect(lab, "bench", &auth)?;
        lab.exec_in_ok(
            &f.client_ns,
            &["ip", "addr", "add", OFFICIAL_ADDRESS, "dev", &nic],
        )?;
        lab.exec_in_ok(&f.client_ns, &["ip", "link", "set", &nic, "up"])?;
        Ok(Official {
            ns: f.client_ns.clone(),
            client: Some(client),
            took: started.elapsed(),
        })
    }
}

impl Subject for Official {
    fn pids(&self) -> Vec<u32> {
        pids_in_ns(&self.ns, "vpnclient")
    }
    fn time_to_address(&self) -> Duration {
        self.took
    }
}

impl Drop for Official {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            let _ = c.disconnect();
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Measurements

#[derive(Debug, Default)]
struct Numbers {
    time_to_address: Duration,
    rtt_avg_ms: Option<f64>,
    up_mbit: Option<f64>,
    down_mbit: Option<f64>,
    cpu_per_gb_up: Option<f64>,
    cpu_per_gb_down: Option<f64>,
    rss_idle_kb: Option<u64>,
    rss_peak_kb: Option<u64>,
    processes: usize,
}

fn measure<S: Subject>(lab: &Lab, start: impl FnOnce(&Lab) -> Result<S>) -> Result<Numbers> {
    let subject = start(lab)?;
    let mut n = Numbers {
        time_to_address: subject.time_to_address(),
        ..Numbers::default()
    };
    std::thread::sleep(Duration::from_secs(1));
    let pids = subject.pids();
    if pids.is_empty() {
        bail!("no client process found");
    }
    n.processes = pids.len();
    n.rss_idle_kb = sum_kb(&pids, "VmRSS:");
    n.rtt_avg_ms = ping_avg(lab).map_err(|e| eprintln!("ping: {e:#}")).ok();
    for reverse in [false, true] {
        let cpu_before = sum_cpu(&pids);
        match iperf3(lab, reverse) {
            Ok((mbit, bytes)) => {
                let cpu = sum_cpu(&pids) - cpu_before;
                let per_gb = (bytes > 0.0).then(|| cpu / (bytes / 1e9));
                if reverse {
                    (n.down_mbit, n.cpu_per_gb_down) = (Some(mbit), per_gb);
                } else {
                    (n.up_mbit, n.cpu_per_gb_up) = (Some(mbit), per_gb);
                }
            }
            Err(e) => eprintln!("iperf3 (reverse: {reverse}): {e:#}"),
        }
    }
    n.rss_peak_kb = sum_kb(&pids, "VmHWM:");
    Ok(n)
}

/// Average RTT (ms) of 20 pings from the client ns to the lan host.
fn ping_avg(lab: &Lab) -> Result<f64> {
    let f = &lab.facts;
    let host = f.lan_host.to_string();
    // Warm up ARP first so the first reply's resolution time does not skew the average.
    let _ = lab.exec_in(&f.client_ns, &["ping", "-c", "1", "-W", "2", &host]);
    let out = lab.exec_in_ok(
        &f.client_ns,
        &["ping", "-q", "-c", "20", "-i", "0.05", "-W", "2", &host],
    )?;
    let line = out
        .lines()
        .find(|l| l.contains("min/avg/max"))
        .with_context(|| format!("no rtt summary in {out}"))?;
    let values = line.split('=').nth(1).context("rtt values")?.trim();
    values
        .split('/')
        .nth(1)
        .context("rtt avg")?
        .parse()
        .context("rtt avg number")
}

/// One 5 s iperf3 TCP run from the client ns to the lan host (reverse: download). (Mbit/s, bytes received).
fn iperf3(lab: &Lab, reverse: bool) -> Result<(f64, f64)> {
    let f = &lab.facts;
    let host = f.lan_host.to_string();
    let mut server = netns::command_in(
        &f.lan_ns,
        &["timeout", "40", "iperf3", "-s", "-1", "-B", &host],
    );
    server
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let server = netns::spawn_command(server)?;
    std::thread::sleep(Duration::from_millis(500));
    let mut argv = vec![
        "timeout",
        "25",
        "iperf3",
        "-c",
        &host,
        "-t",
        "5",
        "-J",
        "--connect-timeout",
        "3000",
    ];
    if reverse {
        argv.push("-R");
    }
    let out = command::run(
        &mut netns::command_in(&f.client_ns, &argv),
        Duration::from_secs(35),
    )?;
    drop(server);
    let report: Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "iperf3 output is not JSON: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if let Some(err) = report["error"].as_str() {
        bail!("iperf3: {err}");
    }
    let sum = &report["end"]["sum_received"];
    let bps = sum["bits_per_second"].as_f64().context("bits_per_second")?;
    let bytes = sum["bytes"].as_f64().context("bytes")?;
    Ok((bps / 1e6, bytes))
}

// ---------------------------------------------------------------------------------------------------------
// CNI

#[derive(Debug, Default)]
struct CniNumbers {
    add_median_ms: f64,
    add_min_ms: f64,
    add_max_ms: f64,
    rss_idle_kb: Option<u64>,
    rss_attached_kb: Option<u64>,
}

struct Cni<'a> {
    lab: &'a Lab,
    plugin: PathBuf,
    config: Value,
}

impl Cni<'_> {
    /// Runs the plugin like libcni; Ok(stdout JSON) on exit 0.
    fn call(&self, command: &str, pod: &str) -> Result<Value> {
        use std::io::Write;
        let mut child = netns::command_in(
            &self.lab.facts.client_ns,
            &[self.plugin.to_str().context("utf-8 path")?],
        )
        .env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", pod)
        .env("CNI_NETNS", format!("/run/netns/{pod}"))
        .env("CNI_IFNAME", TAP)
        .env("CNI_PATH", "/opt/cni/bin")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(self.config.to_string().as_bytes())?;
        // The config's own timeout (60 s) bounds the plugin.
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "CNI {command} {pod} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

fn pod_netns(n: usize) -> Result<Netns> {
    Netns::create(&format!("se-x-{}-{}", std::process::id(), 900 + n))
}

fn measure_cni(lab: &Lab, bin_dir: &Path) -> Result<CniNumbers> {
    let f = &lab.facts;
    let base = f.dir.join("bench-cni");
    fs::create_dir_all(&base)?;
    let password_file = base.join("alice.pass");
    fs::write(&password_file, format!("{}\n", f.alice.password))?;
    let socket = base.join("sidecar.sock");
    let log = fs::File::create(base.join("daemon.log"))?;
    let sidecar = bin_dir.join("softether-sidecar");
    let mut cmd = netns::command_in(
        &f.client_ns,
        &[
            sidecar.to_str().context("utf-8 path")?,
            "run",
            "--socket",
            socket.to_str().context("utf-8 path")?,
            "--state-dir",
            base.join("state").to_str().context("utf-8 path")?,
        ],
    );
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let daemon = netns::spawn_command(cmd)?;
    let until = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if Instant::now() >= until {
            bail!("the sidecar daemon did not listen on {}", socket.display());
        }
        std::thread::sleep(POLL);
    }
    let cni = Cni {
        lab,
        plugin: bin_dir.join("softether"),
        config: json!({
            "cniVersion": "1.0.0", "name": "vpnnet", "type": "softether",
            "server": f.server_ip.to_string(), "port": f.port, "hub": f.hub, "user": f.alice.name,
            "passwordFile": password_file, "insecure": true,
            "sidecarSocket": socket, "stateDir": base.join("state"), "timeout": 60
        }),
    };
    let mut n = CniNumbers {
        rss_idle_kb: status_kb(daemon.id(), "VmRSS:"),
        ..CniNumbers::default()
    };
    let mut took = Vec::with_capacity(CNI_CYCLES);
    for i in 0..CNI_CYCLES {
        let pod = pod_netns(i)?;
        let started = Instant::now();
        cni.call("ADD", pod.name())?;
        took.push(started.elapsed().as_secs_f64() * 1e3);
        cni.call("DEL", pod.name())?;
    }
    took.sort_by(f64::total_cmp);
    n.add_median_ms = (took[CNI_CYCLES / 2 - 1] + took[CNI_CYCLES / 2]) / 2.0;
    n.add_min_ms = took[0];
    n.add_max_ms = took[CNI_CYCLES - 1];

    let mut pods = Vec::with_capacity(CNI_ATTACHMENTS);
    for i in 0..CNI_ATTACHMENTS {
        let pod = pod_netns(100 + i)?;
        cni.call("ADD", pod.name())?;
        pods.push(pod);
    }
    std::thread::sleep(Duration::from_secs(1));
    n.rss_attached_kb = status_kb(daemon.id(), "VmRSS:");
    for pod in &pods {
        cni.call("DEL", pod.name())?;
    }
    let _ = daemon.terminate(Duration::from_secs(10));
    Ok(n)
}

// ---------------------------------------------------------------------------------------------------------
// Output

fn mib(kb: Option<u64>) -> String {
    kb.map_or("n/a".into(), |kb| format!("{:.1}", kb as f64 / 1024.0))
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.decimals$}"))
}

fn column(n: &Result<Numbers>) -> Vec<String> {
    match n {
        Ok(n) => vec![
            opt(n.up_mbit, 0),
            opt(n.down_mbit, 0),
            opt(n.rtt_avg_ms, 3),
            format!("{}", n.time_to_address.as_millis()),
            mib(n.rss_idle_kb),
            mib(n.rss_peak_kb),
            opt(n.cpu_per_gb_up, 2),
            opt(n.cpu_per_gb_down, 2),
            n.processes.to_string(),
        ],
        Err(e) => {
            let msg = format!("error: {e:#}").replace(['\n', '|'], " ");
            std::iter::once(msg)
                .chain(std::iter::repeat("n/a".to_owned()))
                .take(9)
                .collect()
        }
    }
}

fn print_table(
    ours: &Result<Numbers>,
    plain: Option<&Result<Numbers>>,
    official: Option<&Result<Numbers>>,
    cni: Option<&Result<CniNumbers>>,
) {
    let rows = [
        "iperf3 TCP upload (client → lan), Mbit/s",
        "iperf3 TCP download (lan → client), Mbit/s",
        "ping RTT avg to lan host (20 × 0.05 s), ms",
        "process start → usable address, ms",
        "RSS idle (VmRSS), MiB",
        "RSS peak after load (VmHWM), MiB",
        "CPU (user+sys) per GB, upload, s",
        "CPU (user+sys) per GB, download, s",
        "processes counted",
    ];
    let mut header = vec!["Metric", "ours (`softether-sidecar connect`)"];
    let mut columns = vec![column(ours)];
    if let Some(plain) = plain {
        header.push("ours, `--no-offload`");
        columns.push(column(plain));
    }
    if let Some(official) = official {
        header.push("official `vpnclient`");
        columns.push(column(official));
    }
    println!();
    println!("| {} |", header.join(" | "));
    println!("|---|{}", "---:|".repeat(columns.len()));
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<&str> = columns.iter().map(|c| c[i].as_str()).collect();
        println!("| {row} | {} |", cells.join(" | "));
    }
    if let Some(cni) = cni {
        println!();
        println!("| CNI (plugin + `softether-sidecar run`) | value |");
        println!("|---|---:|");
        match cni {
            Ok(c) => {
                println!(
                    "| ADD latency, median of {CNI_CYCLES} ADD/DEL cycles (min–max), ms | {:.0} ({:.0}–{:.0}) |",
                    c.add_median_ms, c.add_min_ms, c.add_max_ms
                );
                println!(
                    "| sidecar RSS, no attachments, MiB | {} |",
                    mib(c.rss_idle_kb)
                );
                println!(
                    "| sidecar RSS, {CNI_ATTACHMENTS} attachments, MiB | {} |",
                    mib(c.rss_attached_kb)
                );
            }
            Err(e) => println!("| error | {} |", format!("{e:#}").replace(['\n', '|'], " ")),
        }
    }
    println!();
    println!(
        "Official client: static address {OFFICIAL_ADDRESS} (no DHCP on Linux); its time includes vpncmd setup \
         (NicCreate, AccountCreate, AccountConnect) and 250 ms status polling. Single runs on a shared machine: noisy."
    );
}
