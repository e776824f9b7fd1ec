//! `softether-lab up [--json]`: start one lab, print its facts, keep it running until SIGINT/SIGTERM or
//! stdin EOF, then tear it down.

use std::io::Read;
use std::process::ExitCode;

use anyhow::{bail, Result};
use nix::sys::signal::{SigSet, Signal};
use softether_lab::{Lab, LabOptions};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("softether-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str =
    "usage: softether-lab up [--json]   (as root; Ctrl-C, SIGTERM or stdin EOF tears down)

  up       start one lab (SoftEther server, client and LAN namespaces), print its facts
  --json   print the facts as JSON
  --help   print this help";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    Help,
    Up { json: bool },
}

/// `--help`/`-h` anywhere wins (it never starts a lab); anything unknown is an error.
fn parse_args(args: &[String]) -> Result<Action> {
    if args
        .iter()
        .any(|a| a == "--help" || a == "-h" || a == "help")
    {
        return Ok(Action::Help);
    }
    match args.first().map(String::as_str) {
        Some("up") => {}
        _ => bail!("{USAGE}"),
    }
    let mut json = false;
    for arg in &args[1..] {
        match arg.as_str() {
            "--json" => json = true,
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(Action::Up { json })
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = match parse_args(&args)? {
        Action::Help => {
            println!("{USAGE}");
            return Ok(());
        }
        Action::Up { json } => json,
    };
    // Block the stop signals before any thread exists so every thread inherits the mask and `wait` below
    // receives them; child processes get a clean mask from std::process.
    let mut stop = SigSet::empty();
    stop.add(Signal::SIGINT);
    stop.add(Signal::SIGTERM);
    stop.thread_block()?;

    let lab = Lab::start(LabOptions::default())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&lab.facts.to_json())?);
    } else {
        let f = &lab.facts;
        println!(
            "lab {} up: server {}:{} hub {} (ns {}), client ns {}, lan ns {} ({})",
            f.id, f.server_ip, f.port, f.hub, f.server_ns, f.client_ns, f.lan_ns, f.lan_host
        );
        println!(
            "server cert sha256 {}; Ctrl-C or close stdin to tear down",
            f.server_cert_sha256
        );
    }

    std::thread::spawn(|| {
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        // Process-directed (not raise(), which targets this thread) so the waiting main thread gets it.
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), Signal::SIGTERM);
    });
    let sig = stop.wait()?;
    eprintln!("softether-lab: {sig:?}, tearing down");
    drop(lab);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Action> {
        parse_args(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn help_never_starts_a_lab() {
        for args in [
            &["up", "--help"][..],
            &["--help"],
            &["-h"],
            &["up", "--json", "-h"],
        ] {
            assert_eq!(parse(args).unwrap(), Action::Help, "{args:?}");
        }
        assert_eq!(parse(&["up"]).unwrap(), Action::Up { json: false });
        assert_eq!(parse(&["up", "--json"]).unwrap(), Action::Up { json: true });
        assert!(parse(&[]).is_err());
        assert!(parse(&["up", "--jsn"]).is_err());
        assert!(parse(&["down"]).is_err());
    }
}
