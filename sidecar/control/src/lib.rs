//! The control protocol between the `softether` CNI plugin and the `softether-sidecar` daemon.
//!
//! Both ends depend on this crate, so the wire format is defined once. It is deliberately
//! tiny (serde, serde_json, thiserror; no tokio, no nix): the plugin is a short-lived,
//! synchronous binary, and the transport (a Unix socket, SCM_RIGHTS for the TAP fd) stays
//! with each side.
//!
//! How a call goes (protocol version [`PROTOCOL_VERSION`], one connection per call):
//! 1. the client writes [`request_line`]`(&request)` — a [`Request`] (`Attach`, `Detach`,
//!    `Check`, `Gc`, `Status`, `List`), on the wire `{"protocol":1,"op":…,"request":…}` and a
//!    newline; for `attach` the TAP fd rides on the same `sendmsg`;
//! 2. the daemon reads the line up to [`request_limit`] bytes (only `gc` may be long), decodes
//!    it with [`decode_request`], matches the [`Request`] exhaustively, and answers with
//!    [`Reply::line`] — `{"ok":…}` or `{"error":{"code":N,…}}`;
//! 3. the client turns that line into the op's answer ([`AttachResult`], [`SidecarStatus`],
//!    [`GcReport`], [`ListReply`]) or a [`WireError`] with [`parse_reply`].
//!
//! [`state_dir`] owns the state directory: its layout, the attachment records the sidecar
//! writes, the tombstones the plugin writes when the sidecar is down, the sidecar's hub facts
//! (`hubs.json`: which hubs have IPv6 routers), and the rule for container ids and interface
//! names both ends check.
//!
//! The MAC address type lives here rather than in `netcfg` because the plugin and the sidecar
//! exchange MACs as text on this wire; `netcfg` only ever needs the raw `[u8; 6]`, which
//! [`Mac`] wraps.

#![warn(missing_docs)]

mod framing;
mod ip_prefix;
mod mac;
mod messages;
mod proxy_url;
mod request;
pub mod state_dir;
pub mod testing;
mod text_serde;

pub use framing::{code, parse_reply, Reply, ReplyError, WireError};
pub use framing::{MAX_REPLY_BYTES, PROTOCOL_VERSION};
pub use ip_prefix::IpPrefix;
pub use mac::{Mac, MacParseError};
pub use messages::{
    AttachRequest, AttachResult, AttachedIp, AttachedRoute, AttachmentRef, AttachmentStatus,
    CheckRequest, DetachRequest, Dns, GcReport, GcRequest, LinkSettings, ListReply, LoginSettings,
    SidecarStatus, UdpAcceleration, ValidAttachment,
};
pub use proxy_url::{ProxyKind, ProxyUrl};
pub use request::{decode_request, request_limit, request_line, NoPayload, Request};
pub use request::{MAX_GC_REQUEST_BYTES, MAX_REQUEST_BYTES};
