//! The control protocol between the `softether` CNI plugin and the `softether-sidecar` daemon.
//!
//! Both ends depend on this crate, so the wire format is defined once. It is deliberately
//! tiny (serde, serde_json, thiserror; no tokio, no nix): the plugin is a short-lived,
//! synchronous binary, and the transport (a Unix socket, SCM_RIGHTS for the TAP fd) stays
//! with each side.
//!
//! How a call goes (protocol version [`PROTOCOL_VERSION`], one connection per call):
//! 1. the client writes [`request_line`]`(op, &payload)` — `{"protocol":1,"op":…,"request":…}`
//!    and a newline; for `attach` the TAP fd rides on the same `sendmsg`;
//! 2. the daemon reads it as an [`Envelope`], decodes the op's payload ([`AttachRequest`],
//!    [`DetachRequest`], [`CheckRequest`], [`GcRequest`]; `status` and `list` take none),
//!    and answers with [`Reply::line`] — `{"ok":…}` or `{"error":{"code":N,…}}`;
//! 3. the client turns that line into the op's answer ([`AttachResult`], [`SidecarStatus`],
//!    [`GcReport`], [`ListReply`]) or a [`WireError`] with [`parse_reply`].
//!
//! [`pod_netns`] names what an attachment leaves in the pod's namespace (policy-rule
//! priorities, the CONNMARK table's id), so the plugin can remove it when the sidecar is down.
//!
//! The MAC address type lives here rather than in `netcfg` because the plugin and the sidecar
//! exchange MACs as text on this wire; `netcfg` only ever needs the raw `[u8; 6]`, which
//! [`Mac`] wraps.

mod framing;
mod ip_prefix;
mod mac;
mod messages;
pub mod pod_netns;
mod text_serde;

pub use framing::{code, parse_reply, request_line, Envelope, Reply, ReplyError, WireError};
pub use framing::{MAX_REPLY_BYTES, MAX_REQUEST_BYTES, PROTOCOL_VERSION};
pub use ip_prefix::IpPrefix;
pub use mac::{Mac, MacParseError};
pub use messages::{
    AttachRequest, AttachResult, AttachedIp, AttachedRoute, AttachmentRef, AttachmentStatus,
    CheckRequest, DetachRequest, Dns, GcReport, GcRequest, LinkSettings, ListReply, LoginSettings,
    SidecarStatus, UdpAcceleration, ValidAttachment,
};
