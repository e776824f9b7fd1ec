//! The `run` and `status` subcommands.

use std::path::PathBuf;

use clap::Args;

use super::{query_list, render_list, run, DaemonOptions, DEFAULT_SOCKET, DEFAULT_STATE_DIR};

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Control socket for the CNI plugin (root-only, mode 0600).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Attachment records and the plugin's tombstones.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The daemon's control socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Print the attachments as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Exit codes: 0 stopped by a signal; 1 the daemon could not start or failed.
pub async fn run_daemon(args: RunArgs) -> u8 {
    let opts = DaemonOptions {
        socket: args.socket,
        state_dir: args.state_dir,
    };
    match run(&opts).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("softether-sidecar run: {e}");
            1
        }
    }
}

/// Exit codes: 0 listed; 1 the daemon did not answer.
pub async fn run_status(args: StatusArgs) -> u8 {
    match query_list(&args.socket).await {
        Ok(list) => {
            if args.json {
                println!("{}", serde_json::to_string(&list).unwrap_or_default());
            } else {
                print!("{}", render_list(&list));
            }
            0
        }
        Err(e) => {
            eprintln!("softether-sidecar status: {e}");
            1
        }
    }
}
