//! The seam between the plugin and the sidecar daemon.
//!
//! Commands talk to a [`SidecarClient`]; [`UnixSidecarClient`] is the real one
//! (one JSON request line, one JSON reply line per connection on the
//! `sidecarSocket` Unix socket). The request and reply types are the control
//! protocol's (`softether-control`, shared with the sidecar), re-exported here.
//! Tests substitute a fake. Errors stay a [`SidecarError`] here: what an
//! unreachable sidecar means (11 for ADD, 50 for STATUS, success for DEL) is
//! each command's decision.

mod unix_socket;

use std::io;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::spec::CniError;
pub use softether_control::{
    AttachRequest, AttachResult, AttachedIp, AttachedRoute, AttachmentRef, CheckRequest,
    DetachRequest, GcReport, GcRequest, LinkSettings, SidecarStatus,
};
pub use unix_socket::UnixSidecarClient;

/// Why a sidecar call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SidecarError {
    #[error("sidecar unreachable at {}: {source}; is softether-sidecar running?", path.display())]
    Unreachable { path: PathBuf, source: io::Error },
    #[error("sidecar at {} did not answer within {}s", path.display(), waited.as_secs())]
    Timeout { path: PathBuf, waited: Duration },
    #[error("connection to the sidecar at {} failed: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// The request is longer than the sidecar reads (only a GC listing more attachments
    /// than any node has can be); retrying cannot help.
    #[error("the {op} request is {bytes} bytes, more than the {limit} the sidecar accepts")]
    TooLarge {
        op: &'static str,
        bytes: usize,
        limit: usize,
    },
    #[error("sidecar at {} sent a reply this plugin does not understand: {reason}", path.display())]
    Protocol { path: PathBuf, reason: String },
    /// The sidecar did the work and reports a CNI error (login refused, DHCP
    /// timeout, netns failure); passed to the runtime as is.
    #[error("{0}")]
    Refused(CniError),
}

/// The operations the plugin needs from the sidecar. Every call carries an
/// absolute deadline; implementations must return [`SidecarError::Timeout`]
/// rather than block past it.
pub trait SidecarClient {
    /// `tap` is the TAP's fd, sent along with the request.
    fn attach(
        &mut self,
        req: &AttachRequest,
        tap: BorrowedFd<'_>,
        deadline: Instant,
    ) -> Result<AttachResult, SidecarError>;
    fn detach(&mut self, req: &DetachRequest, deadline: Instant) -> Result<(), SidecarError>;
    fn check(&mut self, req: &CheckRequest, deadline: Instant) -> Result<(), SidecarError>;
    fn status(&mut self, deadline: Instant) -> Result<SidecarStatus, SidecarError>;
    fn gc(&mut self, req: &GcRequest, deadline: Instant) -> Result<GcReport, SidecarError>;
}

/// Opens a client for the sidecar socket named in the config; commands take one so tests
/// can hand out fakes.
pub type Connect<'a> = &'a dyn Fn(&Path) -> Box<dyn SidecarClient>;
