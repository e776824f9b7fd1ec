//! The Markdown tables: per subject the median (min–max) of the rounds, and the ratio of our
//! default client's median to the official client's.

use anyhow::Result;

use crate::cni::{CniNumbers, CNI_ATTACHMENTS, CNI_CYCLES};
use crate::measure::{Numbers, Transfer, STREAMS};
use crate::OFFICIAL_ADDRESS;

pub(crate) fn mib(kb: Option<u64>) -> String {
    kb.map_or("n/a".into(), |kb| format!("{:.1}", kb as f64 / 1024.0))
}

/// A measured client: its column header and what each round gave.
pub(crate) struct Column<'a> {
    pub(crate) header: &'a str,
    pub(crate) rounds: &'a [Result<Numbers>],
}

/// A ratio column: our column's median divided by the official client's.
pub(crate) struct Ratio {
    pub(crate) header: &'static str,
    pub(crate) ours: usize,
    pub(crate) theirs: usize,
}

/// Reads one figure of a round.
type Reader = Box<dyn Fn(&Numbers) -> Option<f64>>;

/// A table row: label, decimals, and how to read it from one round.
struct Row {
    label: String,
    decimals: usize,
    read: Reader,
}

/// The rows of each iperf3 run: label (`{what}` names the run), decimals, reader.
type TransferRow = (&'static str, usize, fn(&Transfer) -> Option<f64>);
const TRANSFER_ROWS: [TransferRow; 7] = [
    ("iperf3 {what}, Mbit/s", 0, |t| Some(t.mbit)),
    ("sender's TCP retransmits per GB, {what}", 0, |t| {
        t.retransmits_per_gb
    }),
    ("client CPU (user+sys) per GB, {what}, s", 2, |t| {
        t.client_cpu_per_gb
    }),
    ("server CPU per GB, {what}, s", 2, |t| t.server_cpu_per_gb),
    ("client context switches per MB, {what}", 1, |t| {
        t.client_switches_per_mb
    }),
    ("server context switches per MB, {what}", 1, |t| {
        t.server_switches_per_mb
    }),
    ("server CPU utilisation, {what}, % of a core", 0, |t| {
        t.server_util_pct
    }),
];

fn rows() -> Vec<Row> {
    let mut rows = Vec::new();
    let transfer = |i: usize, j: usize, f: fn(&Transfer) -> Option<f64>| {
        Box::new(move |n: &Numbers| n.transfers[i][j].as_ref().and_then(f)) as Reader
    };
    for (i, streams) in STREAMS.into_iter().enumerate() {
        for (j, dir) in ["upload (client → lan)", "download (lan → client)"]
            .into_iter()
            .enumerate()
        {
            let what = format!(
                "TCP {dir}, {streams} stream{}",
                if streams > 1 { "s" } else { "" }
            );
            for (label, decimals, read) in TRANSFER_ROWS {
                rows.push(Row {
                    label: label.replace("{what}", &what),
                    decimals,
                    read: transfer(i, j, read),
                });
            }
        }
    }
    rows.push(Row {
        label: "ping RTT avg to lan host (20 × 0.05 s), ms".into(),
        decimals: 3,
        read: Box::new(|n| n.rtt_avg_ms),
    });
    rows.push(Row {
        label: "process start → usable address, ms".into(),
        decimals: 0,
        read: Box::new(|n| Some(n.time_to_address.as_secs_f64() * 1e3)),
    });
    rows.push(Row {
        label: "RSS idle (VmRSS), MiB".into(),
        decimals: 1,
        read: Box::new(|n| n.rss_idle_kb.map(|kb| kb as f64 / 1024.0)),
    });
    rows.push(Row {
        label: "RSS peak after load (VmHWM), MiB".into(),
        decimals: 1,
        read: Box::new(|n| n.rss_peak_kb.map(|kb| kb as f64 / 1024.0)),
    });
    rows.push(Row {
        label: "processes counted".into(),
        decimals: 0,
        read: Box::new(|n| Some(n.processes as f64)),
    });
    rows
}

pub(crate) fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn values(column: &Column, row: &Row) -> Vec<f64> {
    column
        .rounds
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .filter_map(|n| (row.read)(n))
        .collect()
}

fn cell(v: &[f64], decimals: usize) -> String {
    match median(v.to_vec()) {
        Some(m) if v.len() == 1 => format!("{m:.decimals$}"),
        Some(m) => {
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{m:.decimals$} ({lo:.decimals$}–{hi:.decimals$})")
        }
        None => "n/a".to_owned(),
    }
}

/// Prints the client table, then one ratio column per entry of `ratios`.
pub(crate) fn print_table(columns: &[Column], ratios: &[Ratio], runs: usize) {
    let mut header: Vec<&str> = vec!["Metric"];
    header.extend(columns.iter().map(|c| c.header));
    header.extend(ratios.iter().map(|r| r.header));
    println!();
    println!("| {} |", header.join(" | "));
    println!("|---|{}", "---:|".repeat(header.len() - 1));
    for row in rows() {
        let mut cells: Vec<String> = columns
            .iter()
            .map(|c| cell(&values(c, &row), row.decimals))
            .collect();
        for ratio in ratios {
            let ours = median(values(&columns[ratio.ours], &row));
            let theirs = median(values(&columns[ratio.theirs], &row));
            cells.push(match (ours, theirs) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
                _ => "n/a".to_owned(),
            });
        }
        println!("| {} | {} |", row.label, cells.join(" | "));
    }
    println!();
    println!(
        "Cells: median (min–max) of {runs} round(s); the subjects alternate within each round. \
         iperf3 5 s per run. Columns not marked UDP are TCP only: the hub's \
         DisableUdpAcceleration extended option is set while they run (the server would otherwise \
         switch a session to UDP 10 s in, half-way through the runs); UDP columns clear it and \
         start measuring 11 s after the server reports the session's UDP acceleration active (each \
         side sends over UDP only after 10 s of working UDP). Server figures are the lab's \
         vpnserver process (user+sys) over the same run: near 100 % per busy server thread means \
         the server bounds the throughput. The server, each client and each iperf3 end lead their \
         own session, so the scheduler's autogroups share the CPU between them as between \
         separate machines."
    );
    for c in columns {
        for (round, r) in c.rounds.iter().enumerate() {
            if let Err(e) = r {
                let msg = format!("{e:#}").replace(['\n', '|'], " ");
                println!("- {}, round {}: error: {msg}", c.header, round + 1);
            }
        }
    }
    println!(
        "Official client: static address {OFFICIAL_ADDRESS} (no DHCP on Linux); its time includes \
         vpncmd setup (NicCreate, AccountCreate, AccountConnect) and 250 ms status polling. Shared \
         machine: noisy."
    );
}

pub(crate) fn print_cni(cni: &Result<CniNumbers>) {
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
