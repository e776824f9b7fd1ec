//! One module per CNI command; [`dispatch`] picks one.
//!
//! Commands return `Result<Output, CniError>` ([`crate::spec::Output`]); only `main` prints.
//! The sidecar client is injected through a [`Connect`] function so tests can run every
//! command against a fake (`test_support::fake_sidecar`).

pub mod add;
pub mod check;
pub mod del;
pub mod gc;
pub mod status;
pub mod version;

use crate::netconf::NetConf;
use crate::pod_tap::PodTaps;
use crate::sidecar_client::Connect;
use crate::spec::{CniError, Command, Env, Output};

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
