//! The measurements of one connected client: ping RTT, iperf3 both ways, memory and CPU.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use softether_lab::netns;
use softether_lab::{command, Lab};

use crate::procfs::{pids_in_ns, sum_context_switches, sum_cpu, sum_kb};
use crate::subjects::Subject;

/// iperf3 stream counts measured (`-P`): one TCP connection, and several that can use more cores.
pub(crate) const STREAMS: [u32; 2] = [1, 4];
/// Seconds per iperf3 run.
const IPERF_SECS: u64 = 5;

/// One iperf3 run through the subject.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Transfer {
    pub(crate) mbit: f64,
    /// Segments the iperf3 sender retransmitted, per GB received: loss somewhere on the path
    /// (a queue that overflowed), which costs every hop the retransmitted bytes again.
    pub(crate) retransmits_per_gb: Option<f64>,
    /// The client processes' user+sys seconds per GB received.
    pub(crate) client_cpu_per_gb: Option<f64>,
    /// The same for the lab's `vpnserver` process: tells whether the server is the bottleneck.
    pub(crate) server_cpu_per_gb: Option<f64>,
    /// The server's CPU seconds over the run's nominal length, in % of one core (up to 200 on
    /// two cores: vpnserver is multi-threaded).
    pub(crate) server_util_pct: Option<f64>,
    /// Context switches of the client's and of the server's threads per MB received: wakeups
    /// that batching saves.
    pub(crate) client_switches_per_mb: Option<f64>,
    pub(crate) server_switches_per_mb: Option<f64>,
}

/// What one round measured for one subject.
#[derive(Debug, Default)]
pub(crate) struct Numbers {
    pub(crate) time_to_address: Duration,
    pub(crate) rtt_avg_ms: Option<f64>,
    /// Indexed `[streams index in STREAMS][0 upload, 1 download]`.
    pub(crate) transfers: [[Option<Transfer>; 2]; STREAMS.len()],
    pub(crate) rss_idle_kb: Option<u64>,
    pub(crate) rss_peak_kb: Option<u64>,
    pub(crate) processes: usize,
}

pub(crate) fn measure<S: Subject>(
    lab: &Lab,
    start: impl FnOnce(&Lab) -> Result<S>,
) -> Result<Numbers> {
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
    let server = pids_in_ns(&lab.facts.server_ns, "vpnserver");
    for (i, streams) in STREAMS.into_iter().enumerate() {
        for (j, reverse) in [false, true].into_iter().enumerate() {
            let (client_before, server_before) = (sum_cpu(&pids), sum_cpu(&server));
            let switches_before = (sum_context_switches(&pids), sum_context_switches(&server));
            match iperf3_for(lab, reverse, IPERF_SECS, streams) {
                Ok(Iperf {
                    mbit,
                    bytes,
                    retransmits,
                }) => {
                    let gb = bytes / 1e9;
                    let mb = bytes / 1e6;
                    let per_mb = |after: u64, before: u64| {
                        (mb > 0.0).then(|| after.saturating_sub(before) as f64 / mb)
                    };
                    let server_cpu = sum_cpu(&server) - server_before;
                    let known = !server.is_empty();
                    n.transfers[i][j] = Some(Transfer {
                        mbit,
                        retransmits_per_gb: retransmits.filter(|_| gb > 0.0).map(|r| r as f64 / gb),
                        client_cpu_per_gb: (gb > 0.0)
                            .then(|| (sum_cpu(&pids) - client_before) / gb),
                        server_cpu_per_gb: (known && gb > 0.0).then(|| server_cpu / gb),
                        server_util_pct: known.then(|| server_cpu / IPERF_SECS as f64 * 100.0),
                        client_switches_per_mb: per_mb(
                            sum_context_switches(&pids),
                            switches_before.0,
                        ),
                        server_switches_per_mb: known
                            .then(|| per_mb(sum_context_switches(&server), switches_before.1))
                            .flatten(),
                    });
                }
                Err(e) => eprintln!("iperf3 (streams {streams}, reverse {reverse}): {e:#}"),
            }
        }
    }
    n.rss_peak_kb = sum_kb(&pids, "VmHWM:");
    Ok(n)
}

/// Average RTT (ms) of 20 pings from the client ns to the lan host.
pub(crate) fn ping_avg(lab: &Lab) -> Result<f64> {
    let f = &lab.facts;
    let host = f.lan_host.to_string();
    // Warm up ARP first so the first reply's resolution time does not skew the average.
    let _ = lab.exec_in(&f.client_ns, &["ping", "-c", "1", "-W", "2", &host]);
    ping_rtt_avg(lab, &f.client_ns, &host, "20", "0.05")
}

/// Average RTT (ms) of `count` pings every `interval` s from `ns` to `host`.
pub(crate) fn ping_rtt_avg(
    lab: &Lab,
    ns: &str,
    host: &str,
    count: &str,
    interval: &str,
) -> Result<f64> {
    let out = lab.exec_in_ok(
        ns,
        &["ping", "-q", "-c", count, "-i", interval, "-W", "2", host],
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

/// What one iperf3 run reported.
pub(crate) struct Iperf {
    pub(crate) mbit: f64,
    /// Bytes received.
    pub(crate) bytes: f64,
    /// The sender's retransmitted segments (absent when iperf3 cannot read them).
    pub(crate) retransmits: Option<u64>,
}

/// One iperf3 TCP run of `secs` seconds with `streams` parallel connections from the client ns
/// to the lan host (reverse: download).
pub(crate) fn iperf3_for(lab: &Lab, reverse: bool, secs: u64, streams: u32) -> Result<Iperf> {
    let f = &lab.facts;
    let (secs_arg, limit) = (secs.to_string(), (secs + 20).to_string());
    let host = f.lan_host.to_string();
    let mut server = netns::command_in(
        &f.lan_ns,
        &["timeout", &limit, "iperf3", "-s", "-1", "-B", &host],
    );
    server
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let server = netns::spawn_command(server)?;
    std::thread::sleep(Duration::from_millis(500));
    let mut argv = vec![
        "timeout",
        &limit,
        "iperf3",
        "-c",
        &host,
        "-t",
        &secs_arg,
        "-J",
        "--connect-timeout",
        "3000",
    ];
    if reverse {
        argv.push("-R");
    }
    let parallel = streams.to_string();
    if streams > 1 {
        argv.extend(["-P", &parallel]);
    }
    let out = command::run(
        &mut netns::command_in(&f.client_ns, &argv),
        Duration::from_secs(secs + 30),
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
    Ok(Iperf {
        mbit: bps / 1e6,
        bytes,
        retransmits: report["end"]["sum_sent"]["retransmits"].as_u64(),
    })
}
