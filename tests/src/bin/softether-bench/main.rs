//! `softether-bench`: starts one lab and prints a Markdown table comparing our client
//! (`softether-sidecar connect`: TAP + DHCP) with the official Debian `vpnclient` (TAP + a static address),
//! plus the CNI path (plugin + `softether-sidecar run`).
//!
//! Run as root, after building release binaries (`tests/bench` does both):
//! `cargo run --release -p softether-lab --bin softether-bench [-- --skip-official --skip-cni
//! --skip-no-offload --securenat-nat --runs N --bin-dir DIR]`.
//!
//! `--runs N` (default 3) rounds in which the subjects take turns; each cell is the median (min–max)
//! of the rounds, and a last column divides our default client's median by the official client's.
//! Every subject runs iperf3 with 1 and with 4 streams each way; the lab's `vpnserver` CPU per GB
//! and utilisation during each run show when the server, not the client, is the bottleneck.
//!
//! Our client is measured twice: with the TAP offloads (the default) and with `--no-offload`.
//! `--securenat-nat` turns SecureNAT's NAT on in the hub (what `SecureNatEnable` gives an
//! administrator; the default lab runs SecureNAT's DHCP with NAT off), the other hub setup.
//!
//! The default columns are TCP only: the hub's `DisableUdpAcceleration` extended option is set
//! while they run, because the server would switch a session to UDP 10 s in, half-way through
//! its runs. `--udp` adds two columns, ours and the official client 11 s after the server reports
//! the session's UDP acceleration active (when both sides send over UDP), with their own ratio
//! column.
//!
//! `--wan [--wan-runs N]` measures something else (`tests/bench-wan`): iperf3 through an emulated WAN
//! on the underlay (30 ms RTT, a rate limit, 0 / 0.5 / 2 % loss), ours with UDP acceleration vs the
//! official client with UDP acceleration vs ours TCP-only; see [`wan`].
//!
//! Every process the lab starts leads its own session, hence its own scheduler autogroup (see
//! `own_session` in the lab crate's `sys`): sharing the bench's one session, the server, the
//! client and iperf3 interleaved per packet, which put our client's UDP upload into a lock-step
//! with the server that no deployment sees.
//!
//! Numbers are measured, never asserted: they depend on the machine and on whatever else runs on it.
//! All traffic stays inside the lab's namespaces (iperf3 and ping between the client ns and the lan host).

mod cni;
mod measure;
mod output;
mod procfs;
mod subjects;
mod wan;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use softether_lab::{Lab, LabOptions};

use crate::cni::measure_cni;
use crate::measure::{measure, Numbers};
use crate::output::{print_cni, print_table, Column, Ratio};
use crate::subjects::{sessions_before, wait_udp_active, Official, Ours};

/// Static address for the official client's NIC: in the hub subnet, outside the DHCP pool (.10–.99).
pub(crate) const OFFICIAL_ADDRESS: &str = "10.99.0.160/24";
pub(crate) const TAP: &str = "vpn0";
pub(crate) const POLL: Duration = Duration::from_millis(20);

pub(crate) struct Options {
    pub(crate) bin_dir: PathBuf,
    official: bool,
    cni: bool,
    no_offload: bool,
    securenat_nat: bool,
    udp: bool,
    wan: bool,
    pub(crate) wan_runs: usize,
    runs: usize,
}

/// The clients the default bench compares, in the order they take turns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ours,
    NoOffload,
    Udp,
    Official,
    OfficialUdp,
}

impl Kind {
    fn header(self) -> &'static str {
        match self {
            Kind::Ours => "ours (`softether-sidecar connect`)",
            Kind::NoOffload => "ours, `--no-offload`",
            Kind::Udp => "ours, UDP acceleration active",
            Kind::Official => "official `vpnclient`",
            Kind::OfficialUdp => "official `vpnclient`, UDP acceleration active",
        }
    }

    /// Whether the hub lets this subject use UDP acceleration: the other columns are TCP only,
    /// so a run never switches transport half-way (the server turns UDP on 10 s into a session).
    fn udp(self) -> bool {
        matches!(self, Kind::Udp | Kind::OfficialUdp)
    }

    fn measure(self, lab: &Lab, opts: &Options) -> Result<Numbers> {
        match self {
            Kind::Ours => measure(lab, |lab| Ours::start(lab, &opts.bin_dir, &[])),
            Kind::NoOffload => measure(lab, |lab| {
                Ours::start(lab, &opts.bin_dir, &["--no-offload"])
            }),
            Kind::Udp => measure(lab, |lab| {
                let before = sessions_before(lab)?;
                let ours = Ours::start(lab, &opts.bin_dir, &[])?;
                wait_udp_active(lab, &before)?;
                Ok(ours)
            }),
            Kind::Official => measure(lab, Official::start),
            Kind::OfficialUdp => measure(lab, |lab| {
                let before = sessions_before(lab)?;
                let official = Official::start(lab)?;
                wait_udp_active(lab, &before)?;
                Ok(official)
            }),
        }
    }
}

/// Sets the hub's `DisableUdpAcceleration` extended option: the server offers UDP acceleration
/// to sessions that log in afterwards only when `allow`.
fn allow_udp_acceleration(lab: &Lab, allow: bool) -> Result<()> {
    let value = if allow { "/VALUE:0" } else { "/VALUE:1" };
    lab.vpncmd(&["ExtOptionSet", "DisableUdpAcceleration", value])
        .map(drop)
        .context("setting the hub's DisableUdpAcceleration")
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
        udp: false,
        wan: false,
        wan_runs: 3,
        runs: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--skip-official" => opts.official = false,
            "--skip-cni" => opts.cni = false,
            "--skip-no-offload" => opts.no_offload = false,
            "--securenat-nat" => opts.securenat_nat = true,
            "--bin-dir" => opts.bin_dir = args.next().context("--bin-dir needs a value")?.into(),
            "--udp" => opts.udp = true,
            "--wan" => opts.wan = true,
            "--runs" => {
                opts.runs = args
                    .next()
                    .context("--runs needs a value")?
                    .parse()
                    .context("--runs: a number")?;
                if opts.runs == 0 {
                    bail!("--runs: at least 1");
                }
            }
            "--wan-runs" => {
                opts.wan_runs = args
                    .next()
                    .context("--wan-runs needs a value")?
                    .parse()
                    .context("--wan-runs: a number")?;
            }
            _ => bail!(
                "usage: softether-bench [--skip-official] [--skip-cni] [--skip-no-offload] [--securenat-nat] [--udp] [--runs N] [--bin-dir DIR]\n       \
                 softether-bench --wan [--wan-runs N] [--bin-dir DIR]   (root; DIR defaults to target/release)"
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
    if opts.wan {
        return wan::run(&opts);
    }
    let lab = Lab::start(LabOptions {
        securenat_nat: opts.securenat_nat,
        ..LabOptions::default()
    })?;
    eprintln!("lab {} up", lab.facts.id);
    // Subjects alternate within each round, so a slow minute of a shared machine spreads over
    // all of them instead of landing on one.
    let mut kinds = vec![Kind::Ours];
    if opts.no_offload {
        kinds.push(Kind::NoOffload);
    }
    if opts.udp {
        kinds.push(Kind::Udp);
    }
    if opts.official {
        kinds.push(Kind::Official);
        if opts.udp {
            kinds.push(Kind::OfficialUdp);
        }
    }
    let mut rounds: Vec<Vec<Result<Numbers>>> = kinds.iter().map(|_| Vec::new()).collect();
    for round in 0..opts.runs {
        for (k, kind) in kinds.iter().enumerate() {
            eprintln!("round {}/{}: {}", round + 1, opts.runs, kind.header());
            rounds[k].push(
                allow_udp_acceleration(&lab, kind.udp()).and_then(|()| kind.measure(&lab, &opts)),
            );
        }
    }
    let columns: Vec<Column> = kinds
        .iter()
        .zip(&rounds)
        .map(|(kind, rounds)| Column {
            header: kind.header(),
            rounds,
        })
        .collect();
    let index = |k: Kind| kinds.iter().position(|x| *x == k);
    let ratios: Vec<Ratio> = [
        ("ours / official, TCP (medians)", Kind::Ours, Kind::Official),
        (
            "ours / official, UDP (medians)",
            Kind::Udp,
            Kind::OfficialUdp,
        ),
    ]
    .into_iter()
    .filter_map(|(header, ours, theirs)| {
        Some(Ratio {
            header,
            ours: index(ours)?,
            theirs: index(theirs)?,
        })
    })
    .collect();
    print_table(&columns, &ratios, opts.runs);
    if opts.cni {
        eprintln!("measuring the CNI path");
        print_cni(&measure_cni(&lab, &opts.bin_dir));
    }
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
