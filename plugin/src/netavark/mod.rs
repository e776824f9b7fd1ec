//! The same `softether` binary as a netavark plugin (plugin API 1.0.0, netavark ≥ 1.6; what
//! Podman ≥ 4.5, and Podman 5 only, uses for external network drivers), chosen by the first
//! argument: `info`, `create`, `setup NETNS`, `teardown NETNS`. Without one it stays the CNI
//! plugin. Installed into a netavark plugin directory (`/usr/libexec/netavark/softether`, or a
//! directory of containers.conf `netavark_plugin_dirs`), the driver name is `softether`.
//!
//! - `types`: the plugin API's JSON (our own types; the `netavark` crate is not a library);
//! - `options`: a network's string options → the CNI network config (same keys, same checks);
//! - `commands`: `create` validates, `setup` is CNI ADD, `teardown` is CNI DEL.
//!
//! [`exec`] is this mode's single exit: the answer on stdout, or `{"error": "…"}` and exit
//! status 1. Logs go to stderr, which netavark passes on.

pub mod commands;
pub mod options;
pub mod types;

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::pod_tap::{KernelTaps, PodTaps};
use crate::sidecar_client::Connect;
use crate::sidecar_client::{SidecarClient, UnixSidecarClient};
use crate::spec::CniError;
use types::ErrorObject;

/// A netavark plugin call, from the process arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    Info,
    Create,
    Setup {
        netns: String,
    },
    Teardown {
        netns: String,
    },
    /// `setup`/`teardown` without the netns path: answered with the error object.
    MissingNetns {
        command: &'static str,
    },
}

impl Invocation {
    /// `Some` when the first argument is a plugin command; `None` means CNI mode. Arguments
    /// are `OsString`s (`std::env::args_os()`): a netns path that is not UTF-8 counts as missing
    /// rather than panicking.
    pub fn from_args(mut args: impl Iterator<Item = OsString>) -> Option<Invocation> {
        let _program = args.next();
        let command = args.next()?;
        let netns = args
            .next()
            .and_then(|n| n.into_string().ok())
            .filter(|n| !n.is_empty());
        Some(match (command.to_str()?, netns) {
            ("info", _) => Invocation::Info,
            ("create", _) => Invocation::Create,
            ("setup", Some(netns)) => Invocation::Setup { netns },
            ("teardown", Some(netns)) => Invocation::Teardown { netns },
            ("setup", None) => Invocation::MissingNetns { command: "setup" },
            ("teardown", None) => Invocation::MissingNetns {
                command: "teardown",
            },
            _ => return None,
        })
    }
}

/// Runs `invocation` as the process: reads stdin, prints the answer or the error object.
pub fn exec(invocation: &Invocation) -> ExitCode {
    let connect =
        |path: &Path| -> Box<dyn SidecarClient> { Box::new(UnixSidecarClient::new(path)) };
    let mut stdin = Vec::new();
    let answer = match std::io::stdin().read_to_end(&mut stdin) {
        Ok(_) => run(invocation, &stdin, &connect, &KernelTaps),
        Err(e) => Err(format!("cannot read the plugin input from stdin: {e}")),
    };
    let (line, status) = match answer {
        Ok(Some(value)) => (Some(value), ExitCode::SUCCESS),
        Ok(None) => (None, ExitCode::SUCCESS),
        Err(error) => {
            crate::logging::debug(&error);
            let object = serde_json::to_value(ErrorObject { error }).unwrap_or(Value::Null);
            (Some(object), ExitCode::FAILURE)
        }
    };
    if let Some(value) = line {
        let mut out = std::io::stdout().lock();
        // Nothing sensible is left to do if stdout is gone.
        let _ = writeln!(out, "{value}").and_then(|()| out.flush());
    }
    status
}

/// One command on `stdin`: `Ok(Some(json))` to print, `Ok(None)` for teardown's silence, or
/// the error message.
pub fn run(
    invocation: &Invocation,
    stdin: &[u8],
    connect: Connect<'_>,
    taps: &dyn PodTaps,
) -> Result<Option<Value>, String> {
    let value = match invocation {
        Invocation::Info => to_json(commands::info())?,
        Invocation::Create => to_json(commands::create(parse(stdin, "network")?).map_err(text)?)?,
        Invocation::Setup { netns } => {
            let exec = parse(stdin, "setup input")?;
            to_json(commands::setup(netns, &exec, connect, taps).map_err(text)?)?
        }
        Invocation::Teardown { netns } => {
            let exec = parse(stdin, "teardown input")?;
            commands::teardown(netns, &exec, connect, taps).map_err(text)?;
            return Ok(None);
        }
        Invocation::MissingNetns { command } => {
            return Err(format!(
                "{command}: the netns path argument is missing (or not UTF-8)"
            ))
        }
    };
    Ok(Some(value))
}

/// Decodes `stdin` as the plugin input `what` (a [`types::Network`] for `create`, a
/// [`types::PluginExec`] for `setup`/`teardown`); the error is the message for the user.
pub fn parse<T: DeserializeOwned>(stdin: &[u8], what: &str) -> Result<T, String> {
    serde_json::from_slice(stdin).map_err(|e| format!("cannot decode the {what} on stdin: {e}"))
}

fn to_json(value: impl serde::Serialize) -> Result<Value, String> {
    serde_json::to_value(value).map_err(|e| format!("cannot encode the answer: {e}"))
}

/// A CNI error as one line for the Podman user: the message, then the details.
pub fn text(e: CniError) -> String {
    if e.details().is_empty() {
        e.msg().to_owned()
    } else {
        format!("{} ({})", e.msg(), e.details())
    }
}

#[cfg(test)]
mod tests;
