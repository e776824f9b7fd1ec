//! The registry as the metrics endpoint and `status` see it: labels and live status per
//! attachment, and the time conversions of the `list` answer.

use std::time::{SystemTime, UNIX_EPOCH};

use super::{session, Registry};
use crate::observe::metrics::AttachmentSample;

impl Registry {
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
