//! The `run` subcommand: the daemon behind the CNI plugin.

use std::path::PathBuf;

use clap::Args;

use crate::daemon::{run, DaemonOptions, DEFAULT_SOCKET, DEFAULT_STATE_DIR};

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Control socket for the CNI plugin (root-only, mode 0600).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Attachment records and the plugin's tombstones.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Serve Prometheus metrics (/metrics), /healthz and /readyz over HTTP on ADDR:PORT (off
    /// unless given). Metrics name container ids: bind to 127.0.0.1 (e.g. 127.0.0.1:9560)
    /// unless the port is firewalled.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Directory of the programs a network config's `onChange` may name (off: such configs are
    /// refused with code 7, since they would run as the sidecar's root).
    #[arg(long, value_name = "DIR")]
    pub hooks_dir: Option<PathBuf>,
}

/// Exit codes: 0 stopped by a signal; 1 the daemon could not start or failed.
pub async fn run_daemon(args: RunArgs) -> u8 {
    let opts = DaemonOptions {
        socket: args.socket,
        state_dir: args.state_dir,
        metrics_addr: args.metrics_addr,
        hooks_dir: args.hooks_dir,
    };
    match run(&opts).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("softether-sidecar run: {e}");
            1
        }
    }
}
