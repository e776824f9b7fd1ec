//! Entry point of the CNI plugin `softether`; see the library docs for the
//! layers. This is the single exit point: it prints the result, or the CNI
//! error object with exit status 1.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use softether_cni::cmd;
use softether_cni::logging;
use softether_cni::pod_tap::KernelTaps;
use softether_cni::sidecar_client::{SidecarClient, UnixSidecarClient};
use softether_cni::spec::{CniError, Env, ErrorCode, Output};

fn main() -> ExitCode {
    // `info`, `create`, `setup NETNS`, `teardown NETNS`: the netavark plugin, its own exit.
    if let Some(call) = softether_cni::netavark::Invocation::from_args(std::env::args_os()) {
        return softether_cni::netavark::exec(&call);
    }
    let (stdout, status) = match run() {
        Ok(Output::Json(value)) => (Some(value), ExitCode::SUCCESS),
        Ok(Output::Nothing) => (None, ExitCode::SUCCESS),
        Err(e) => {
            logging::debug(&e);
            (Some(e.to_json()), ExitCode::FAILURE)
        }
    };
    if let Some(value) = stdout {
        let mut out = std::io::stdout().lock();
        // Nothing sensible is left to do if stdout is gone.
        let _ = writeln!(out, "{value}").and_then(|()| out.flush());
    }
    status
}

/// Reads stdin and the environment, runs the command. Errors carry the
/// caller's `cniVersion` when stdin had one.
fn run() -> Result<Output, CniError> {
    let mut stdin = Vec::new();
    std::io::stdin().read_to_end(&mut stdin).map_err(|e| {
        CniError::new(
            ErrorCode::Io,
            "cannot read the network config from stdin",
            e.to_string(),
        )
    })?;
    let version = sniff_cni_version(&stdin);
    let connect =
        |path: &Path| -> Box<dyn SidecarClient> { Box::new(UnixSidecarClient::new(path)) };
    Env::from_process()
        .and_then(|env| cmd::dispatch(&env, &stdin, &connect, &KernelTaps))
        .map_err(|e| e.in_version(version.as_deref()))
}

/// The `cniVersion` string on stdin, if stdin is a JSON object with one.
fn sniff_cni_version(stdin: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(stdin).ok()?;
    value.get("cniVersion")?.as_str().map(str::to_owned)
}
