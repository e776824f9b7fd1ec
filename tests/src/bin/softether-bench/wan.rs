//! `--wan`: iperf3 through an emulated WAN ([`softether_lab::wan`]: 15 ms each way through a
//! user-space delay line, tbf rate limit, nftables loss on both endpoints), comparing ours with UDP
//! acceleration, the official `vpnclient` with UDP acceleration, and ours TCP-only
//! (`--udp-acceleration off`). Subjects alternate within each round (A B C, A B C, ...); each
//! subject connects once per round, waits until the server reports UDP acceleration active (the
//! UDP subjects), then runs upload and download at every loss level. Medians over the rounds.

use anyhow::{Context, Result};
use softether_lab::wan::{Wan, WanShape};
use softether_lab::{Lab, LabOptions};

use crate::measure::{iperf3_for, ping_rtt_avg};
use crate::output::median;
use crate::subjects::{sessions_before, wait_udp_active, Official, Ours};
use crate::Options;

/// Loss per endpoint ingress, per mille: 0 %, 0.5 %, 2 %.
const LOSSES: [u32; 3] = [0, 5, 20];
/// iperf3 seconds per run.
const SECS: u64 = 8;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    OursUdp,
    Official,
    OursTcp,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::OursUdp, Kind::Official, Kind::OursTcp];

    fn label(self) -> &'static str {
        match self {
            Kind::OursUdp => "ours, UDP accel.",
            Kind::Official => "official, UDP accel.",
            Kind::OursTcp => "ours, TCP only",
        }
    }
}

/// Keeps a connected subject alive (its Drop disconnects).
enum Connected {
    Ours(#[allow(dead_code)] Ours),
    Official(#[allow(dead_code)] Official),
}

/// One measurement: subject, loss, download?, Mbit/s.
type Sample = (Kind, u32, bool, f64);

pub(crate) fn run(opts: &Options) -> Result<()> {
    let lab = Lab::start(LabOptions::default())?;
    let shape = WanShape::default();
    let wan = Wan::insert(&lab, shape)?;
    let rtt = underlay_rtt(&lab).unwrap_or_else(|e| format!("n/a ({e:#})"));
    eprintln!(
        "lab {} up behind an emulated WAN (underlay RTT {rtt} ms)",
        lab.facts.id
    );
    let mut samples: Vec<Sample> = Vec::new();
    let mut notes = Vec::new();
    for round in 0..opts.wan_runs {
        for kind in Kind::ALL {
            eprintln!("round {}/{}: {}", round + 1, opts.wan_runs, kind.label());
            if let Err(e) = run_subject(&lab, &wan, opts, kind, &mut samples) {
                let msg = format!("round {}, {}: {e:#}", round + 1, kind.label());
                eprintln!("{msg}");
                notes.push(msg.replace(['\n', '|'], " "));
            }
        }
    }
    let _ = wan.set_loss(0);
    let (forwarded, dropped) = wan.line_counters();
    print_table(&samples, opts.wan_runs, shape, &rtt);
    println!(
        "Delay line: {forwarded} frames forwarded, {dropped} dropped by its queue bound or the \
         output socket (not the emulated loss)."
    );
    for n in notes {
        println!("- failed: {n}");
    }
    Ok(())
}

fn run_subject(
    lab: &Lab,
    wan: &Wan,
    opts: &Options,
    kind: Kind,
    samples: &mut Vec<Sample>,
) -> Result<()> {
    wan.set_loss(0)?;
    let before = sessions_before(lab)?;
    let _subject = match kind {
        Kind::OursUdp => Connected::Ours(Ours::start(lab, &opts.bin_dir, &[])?),
        Kind::OursTcp => Connected::Ours(Ours::start(
            lab,
            &opts.bin_dir,
            &["--udp-acceleration", "off"],
        )?),
        Kind::Official => Connected::Official(Official::start(lab)?),
    };
    if kind != Kind::OursTcp {
        wait_udp_active(lab, &before).context("UDP acceleration never became active")?;
    }
    for loss in LOSSES {
        wan.set_loss(loss)?;
        for reverse in [false, true] {
            match iperf3_for(lab, reverse, SECS, 1) {
                Ok(run) => samples.push((kind, loss, reverse, run.mbit)),
                Err(e) => eprintln!(
                    "iperf3 {} loss {loss}‰ reverse {reverse}: {e:#}",
                    kind.label()
                ),
            }
        }
    }
    wan.set_loss(0)?;
    Ok(())
}

/// Average RTT (ms) of pings over the emulated underlay, client ns → server.
fn underlay_rtt(lab: &Lab) -> Result<String> {
    let f = &lab.facts;
    let rtt = ping_rtt_avg(lab, &f.client_ns, &f.server_ip.to_string(), "10", "0.1")?;
    Ok(format!("{rtt:.1}"))
}

fn print_table(samples: &[Sample], runs: usize, shape: WanShape, rtt: &str) {
    let pick = |kind, loss, down| -> Vec<f64> {
        samples
            .iter()
            .filter(|s| s.0 == kind && s.1 == loss && s.2 == down)
            .map(|s| s.3)
            .collect()
    };
    let cell = |v: &[f64]| match median(v.to_vec()) {
        Some(m) => {
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(0.0, f64::max);
            format!("{m:.1} ({lo:.1}–{hi:.1}, n={})", v.len())
        }
        None => "n/a".to_owned(),
    };
    let ratio = |a: &[f64], b: &[f64]| match (median(a.to_vec()), median(b.to_vec())) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "n/a".to_owned(),
    };
    println!();
    println!(
        "| loss each way | direction | {} | {} | {} | ours UDP / official | ours UDP / ours TCP |",
        Kind::OursUdp.label(),
        Kind::Official.label(),
        Kind::OursTcp.label()
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for loss in LOSSES {
        for down in [false, true] {
            let [u, o, t] = Kind::ALL.map(|k| pick(k, loss, down));
            println!(
                "| {}.{} % | {} | {} | {} | {} | {} | {} |",
                loss / 10,
                loss % 10,
                if down { "download" } else { "upload" },
                cell(&u),
                cell(&o),
                cell(&t),
                ratio(&u, &o),
                ratio(&u, &t),
            );
        }
    }
    println!();
    println!(
        "iperf3 TCP, {SECS} s per run, Mbit/s: median (min–max, runs) of {runs} alternating rounds. \
         WAN: {} ms one way through a user-space delay line, tbf {} Mbit/s on both endpoints, loss \
         by nftables on both endpoints' ingress; measured underlay RTT {rtt} ms. Shared 2-core \
         machine with other builds running: noisy.",
        shape.one_way_delay.as_millis(),
        shape.rate_mbit
    );
}
