//! The Markdown tables.

use anyhow::Result;

use crate::cni::{CniNumbers, CNI_ATTACHMENTS, CNI_CYCLES};
use crate::measure::Numbers;
use crate::OFFICIAL_ADDRESS;

pub(crate) fn mib(kb: Option<u64>) -> String {
    kb.map_or("n/a".into(), |kb| format!("{:.1}", kb as f64 / 1024.0))
}

pub(crate) fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.decimals$}"))
}

pub(crate) fn column(n: &Result<Numbers>) -> Vec<String> {
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

pub(crate) fn print_table(
    ours: &Result<Numbers>,
    plain: Option<&Result<Numbers>>,
    udp: Option<&Result<Numbers>>,
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
    if let Some(udp) = udp {
        header.push("ours, UDP acceleration active");
        columns.push(column(udp));
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
