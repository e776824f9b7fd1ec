//! The seam between the plugin and the sidecar daemon.
//!
//! Commands talk to a [`SidecarClient`]; [`UnixSidecarClient`] is the real one
//! (one JSON request line, one JSON reply line per connection on the
//! `sidecarSocket` Unix socket, see `unix_socket.rs` for the wire format).
//! Tests substitute a fake. Errors stay a [`SidecarError`] here: what an
//! unreachable sidecar means (11 for ADD, 50 for STATUS, success for DEL) is
//! each command's decision.

mod unix_socket;

use std::io;
use std::net::IpAddr;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::netconf::{Attachment, LoginSettings};
use crate::spec::result::{Dns, IpPrefix};
use crate::spec::CniError;
pub use unix_socket::UnixSidecarClient;

/// Which pod interface a request is about, and in which CNI network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentRef {
    pub network: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// Link-level and routing choices for the TAP in the pod netns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    pub accept_default_gateway: bool,
    pub accept_static_routes: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_route_table: Option<u32>,
    pub connmark: bool,
}

/// ADD: the plugin created the persistent TAP `ifname` in `netns` and passes
/// its fd with this request (SCM_RIGHTS); the sidecar logs in, runs DHCP and
/// configures the netns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachRequest {
    #[serde(flatten)]
    pub attachment: AttachmentRef,
    pub netns: String,
    pub login: LoginSettings,
    pub link: LinkSettings,
    /// What is left of the plugin's `timeout`; the sidecar should give up
    /// (and clean up) before it runs out.
    pub timeout_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
}

/// What the sidecar configured; the plugin turns it into the CNI result.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachResult {
    /// The TAP's MAC; Podman refuses a sandbox interface without one.
    pub mac: String,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub ips: Vec<AttachedIp>,
    #[serde(default)]
    pub routes: Vec<AttachedRoute>,
    #[serde(default)]
    pub dns: Dns,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AttachedIp {
    pub address: IpPrefix,
    #[serde(default)]
    pub gateway: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AttachedRoute {
    pub dst: IpPrefix,
    #[serde(default)]
    pub gw: Option<IpAddr>,
    #[serde(default)]
    pub table: Option<u32>,
    #[serde(default)]
    pub priority: Option<u32>,
}

/// DEL: end the session, release the lease, remove the TAP if the netns is
/// still there. Must succeed when nothing is left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DetachRequest {
    #[serde(flatten)]
    pub attachment: AttachmentRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
}

/// CHECK: is the session up and is the pod interface as ADD left it?
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckRequest {
    #[serde(flatten)]
    pub attachment: AttachmentRef,
    pub netns: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    pub ips: Vec<IpPrefix>,
}

/// GC: drop every attachment of `network` not listed in `valid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GcRequest {
    pub network: String,
    pub valid: Vec<Attachment>,
}

/// What GC did; `errors` are attachments it could not clean up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GcReport {
    #[serde(default)]
    pub removed: Vec<Attachment>,
    #[serde(default)]
    pub errors: Vec<String>,
}

/// STATUS answer from a sidecar that is up.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum SidecarStatus {
    /// Ready to serve ADD.
    Ready,
    /// Up, but some sessions are down (CNI code 51).
    Degraded { reason: String },
}

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
