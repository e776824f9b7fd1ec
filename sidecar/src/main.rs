//! `softether-sidecar`: SoftEther VPN sidecar daemon and standalone client.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use softether_sidecar::cmd::args::ServerArgs;
use softether_sidecar::cmd::connect::{run_connect, ConnectArgs};
use softether_sidecar::cmd::probe::probe_command;
use softether_sidecar::cmd::run::{run_daemon, RunArgs};
use softether_sidecar::cmd::status::{run_status, StatusArgs};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, Parser)]
#[command(
    name = "softether-sidecar",
    version,
    about = "SoftEther VPN sidecar daemon and standalone client"
)]
struct Cli {
    /// Log filter: a level or `level,crate=level` directives, e.g. "info" or "softether_sidecar=debug". Also RUST_LOG.
    /// Default: "info" for connect, "warn" otherwise.
    #[arg(long, global = true, env = "RUST_LOG")]
    log: Option<String>,
    /// Log line format on stderr: `text` (human) or `json` (one JSON object per line, same
    /// fields, for log shippers).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Connect, log in, print what the server said, exchange a few frames, disconnect.
    ///
    /// Exit codes: 0 success; 2 bad usage; 3 the server refused the login (SoftEther error named,
    /// retrying will not help); 4 TLS trust failure (e.g. --pin-sha256 mismatch) or TLS setup error;
    /// 5 transient failure (network, timeout, server busy); 1 other errors.
    Probe {
        #[command(flatten)]
        server: Box<ServerArgs>,
        /// Print the report (or the failure) as one JSON object on stdout.
        #[arg(long)]
        json: bool,
        /// How long to wait for DHCP/ARP answers during the frame exchange.
        #[arg(long, value_name = "DUR", default_value = "3s", value_parser = humantime::parse_duration)]
        frame_wait: Duration,
        /// After the frame exchange, wait up to this long for UDP acceleration to become active
        /// (it needs 10 s of working UDP first); 0 reports its state as it is.
        #[arg(long, value_name = "DUR", default_value = "0s", value_parser = humantime::parse_duration)]
        udp_wait: Duration,
    },
    /// Standalone client: TAP + session + DHCP + routes, reconnecting until SIGINT/SIGTERM.
    ///
    /// Creates a TAP in the current network namespace, bridges it to the SoftEther session,
    /// runs DHCP through the tunnel and installs what the flags accept. On SIGINT/SIGTERM it
    /// releases the lease, closes the session and removes every address, route, rule and nft
    /// table it added, and restores resolv.conf.
    ///
    /// Exit codes: 0 stopped by a signal, cleaned up; 1 other errors; 2 bad usage (e.g.
    /// --connmark without --policy-route-table); 3 the server refused the login for good (bad
    /// password, unknown hub; not retried); 4 TLS trust failure; 6 local network setup failed
    /// (TAP, netlink, nftables, resolv.conf); 7 stopped but teardown left something behind.
    Connect(Box<ConnectArgs>),
    /// The daemon behind the CNI plugin: control socket, one session per pod attachment,
    /// re-adoption of attachments after a restart. Stops on SIGTERM/SIGINT (attachments stay).
    ///
    /// Re-executes itself once at start with GLIBC_TUNABLES=glibc.malloc.tcache_count=0 (glibc's
    /// per-thread caches would keep freed pages resident), unless GLIBC_TUNABLES is already set.
    Run(RunArgs),
    /// One line per attachment of a running daemon (container, netns, ifname, address, server,
    /// state, since, bytes in/out, reconnects, lease time left, rates), plus why one that is not
    /// up is not (last error, next retry).
    Status(StatusArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(filter: &str, format: LogFormat) {
    // `Targets` takes the same `level,crate=level` directives as EnvFilter without pulling in
    // a regex engine (a smaller binary is less resident memory).
    let filter: Targets = filter
        .parse()
        .unwrap_or_else(|_| Targets::new().with_default(tracing::Level::WARN));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_target(false),
            )
            .init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr)
                    .with_target(false),
            )
            .init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_log = match cli.command {
        Command::Connect(_) | Command::Run(_) => "info",
        _ => "warn",
    };
    init_logging(cli.log.as_deref().unwrap_or(default_log), cli.log_format);
    if let Command::Run(_) = cli.command {
        // Before any thread or resource exists; returns only if it did not restart.
        if let Some(e) = softether_sidecar::memory::restart_daemon_with_tunables() {
            tracing::warn!(
                "running with glibc's default malloc caches: cannot re-execute /proc/self/exe: {e}"
            );
        }
    }
    // Before the runtime's threads start; after logging, so that a refusal is logged.
    softether_sidecar::memory::tune_allocator();
    // One session (connect, probe) is I/O-bound and fits one thread: a current-thread runtime
    // saves the worker threads, their stacks and their malloc arenas (several MB of RSS under
    // load) at no measured throughput cost. The daemon serves many pods: two workers.
    let mut builder = match cli.command {
        Command::Run(_) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(2);
            b
        }
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("softether-sidecar: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Probe {
                server,
                json,
                frame_wait,
                udp_wait,
            } => probe_command(&server, json, frame_wait, udp_wait).await,
            Command::Connect(args) => run_connect(*args).await,
            Command::Run(args) => run_daemon(args).await,
            Command::Status(args) => run_status(args).await,
        }
    });
    ExitCode::from(code)
}
