//! The registry as the observability layer sees it: labels and live status per attachment for
//! the metrics endpoint, the `onChange` hook policy, and the time conversions of `list`.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{session, Registry};
use crate::observe::hooks;
use crate::observe::metrics::AttachmentSample;
use softether_control::{code, WireError};

impl Registry {
    /// Allows `onChange` programs from `dir` (`run --hooks-dir`); without it they are refused.
    pub fn with_hooks_dir(mut self, dir: Option<PathBuf>) -> Registry {
        self.hooks_dir = dir;
        self
    }

    /// ADD refuses (code 7) an `onChange` program outside the hooks directory: a network
    /// config must not be able to run arbitrary programs as the sidecar's root.
    pub(super) fn check_hook(&self, on_change: &[String]) -> Result<(), WireError> {
        let Some(program) = on_change.first() else {
            return Ok(());
        };
        hooks::allowed_program(program.as_ref(), self.hooks_dir.as_deref())
            .map(drop)
            .map_err(|why| {
                WireError::new(
                    code::INVALID_CONFIG,
                    format!("onChange {program:?} is refused: {why}"),
                    "put the hook in the directory given to softether-sidecar run --hooks-dir",
                )
            })
    }

    /// Each attachment's labels and live status, for the metrics endpoint.
    pub fn samples(&self) -> Vec<AttachmentSample> {
        self.lock()
            .values()
            .map(|e| AttachmentSample {
                labels: session::metric_labels(&e.record),
                status: e.session.status.borrow().clone(),
            })
            .collect()
    }
}

/// Whole seconds from now until `t` (rounded up; 0 when past).
pub(super) fn secs_from_now(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::now())
        .map_or(0, |d| d.as_secs_f64().ceil() as u64)
}

pub(super) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
