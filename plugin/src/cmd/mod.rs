//! One module per CNI command; [`dispatch`] picks one.
//!
//! Commands return `Result<Output, CniError>`; only `main` prints. The sidecar
//! client is injected through a `connect` function so tests can run every
//! command against a fake.

pub mod add;
pub mod check;
pub mod del;
pub mod gc;
pub mod status;
pub mod version;

use std::path::Path;

use serde_json::Value;

use crate::netconf::NetConf;
use crate::pod_tap::PodTaps;
use crate::sidecar_client::SidecarClient;
use crate::spec::{CniError, Command, Env};

/// What a successful command prints on stdout.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A JSON object (ADD result, VERSION reply).
    Json(Value),
    /// DEL, CHECK, GC and STATUS print nothing on success.
    Nothing,
}

/// Opens a client for the sidecar socket named in the config.
pub type Connect<'a> = &'a dyn Fn(&Path) -> Box<dyn SidecarClient>;

/// `taps` creates/removes the pod's TAP (ADD, and DEL while the sidecar is down).
pub fn dispatch(
    env: &Env,
    stdin: &[u8],
    connect: Connect<'_>,
    taps: &dyn PodTaps,
) -> Result<Output, CniError> {
    match env.command {
        Command::Version => Ok(Output::Json(version::run(stdin))),
        // DEL parses its config leniently: it must not fail on a config that
        // stopped validating after ADD.
        Command::Del => del::run(env, stdin, connect, taps),
        Command::Add => {
            let conf = NetConf::from_stdin(stdin)?;
            add::run(env, &conf, connect(&conf.sidecar_socket).as_mut(), taps)
        }
        Command::Check => {
            let conf = NetConf::from_stdin(stdin)?;
            check::run(env, &conf, connect(&conf.sidecar_socket).as_mut())
        }
        Command::Status => {
            let conf = NetConf::from_stdin(stdin)?;
            status::run(&conf, connect(&conf.sidecar_socket).as_mut())
        }
        Command::Gc => {
            let conf = NetConf::from_stdin(stdin)?;
            gc::run(&conf, connect(&conf.sidecar_socket).as_mut())
        }
    }
}

/// Env fields that `Env::from_lookup` guarantees for per-container commands.
pub(crate) fn required<'a>(value: &'a Option<String>, var: &str) -> Result<&'a str, CniError> {
    value
        .as_deref()
        .ok_or_else(|| CniError::invalid_env(format!("{var} is not set"), ""))
}

#[cfg(test)]
pub(crate) mod fake;
