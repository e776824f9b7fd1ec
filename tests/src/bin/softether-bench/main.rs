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
//! `--udp` adds a column: our client once the server reports UDP acceleration active (it needs
//! 10 s of working UDP first; the default column is measured from the lease on, mostly over TCP).
//!
//! `--wan [--wan-runs N]` measures something else (`tests/bench-wan`): iperf3 through an emulated WAN
//! on the underlay (30 ms RTT, a rate limit, 0 / 0.5 / 2 % loss), ours with UDP acceleration vs the
//! official client with UDP acceleration vs ours TCP-only; see [`wan`].
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
use crate::measure::measure;
use crate::output::print_table;
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
            "--wan-runs" => {
                opts.wan_runs = args
                    .next()
                    .context("--wan-runs needs a value")?
                    .parse()
                    .context("--wan-runs: a number")?;
            }
            _ => bail!(
                "usage: softether-bench [--skip-official] [--skip-cni] [--skip-no-offload] [--securenat-nat] [--udp] [--bin-dir DIR]\n       \
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
    let udp = if opts.udp {
        eprintln!("measuring our client with UDP acceleration active");
        Some(measure(&lab, |lab| {
            let before = sessions_before(lab)?;
            let ours = Ours::start(lab, &opts.bin_dir, &[])?;
            wait_udp_active(lab, &before)?;
            Ok(ours)
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
    print_table(
        &ours,
        plain.as_ref(),
        udp.as_ref(),
        official.as_ref(),
        cni.as_ref(),
    );
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
