//! The measurements of one connected client: ping RTT, iperf3 both ways, memory and CPU.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use softether_lab::netns;
use softether_lab::{command, Lab};

use crate::procfs::{sum_cpu, sum_kb};
use crate::subjects::Subject;

#[derive(Debug, Default)]
pub(crate) struct Numbers {
    pub(crate) time_to_address: Duration,
    pub(crate) rtt_avg_ms: Option<f64>,
    pub(crate) up_mbit: Option<f64>,
    pub(crate) down_mbit: Option<f64>,
    pub(crate) cpu_per_gb_up: Option<f64>,
    pub(crate) cpu_per_gb_down: Option<f64>,
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

/// One 5 s iperf3 TCP run from the client ns to the lan host (reverse: download). (Mbit/s, bytes received).
pub(crate) fn iperf3(lab: &Lab, reverse: bool) -> Result<(f64, f64)> {
    iperf3_for(lab, reverse, 5)
}

/// [`iperf3`] for `secs` seconds.
pub(crate) fn iperf3_for(lab: &Lab, reverse: bool, secs: u64) -> Result<(f64, f64)> {
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
    Ok((bps / 1e6, bytes))
}
