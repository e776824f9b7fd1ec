//! The one error type of this crate.
//!
//! Every variant says which operation failed and where (interface, table, path, netns) so a
//! CNI error message or a log line is actionable without a backtrace.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while configuring a network namespace.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetcfgError {
    /// Opening the namespace file or `setns(CLONE_NEWNET)` into it failed.
    #[error("cannot enter network namespace {netns}: {source}")]
    EnterNetns {
        netns: String,
        #[source]
        source: io::Error,
    },

    /// The helper thread that entered the namespace could not be spawned or panicked.
    #[error("helper thread for network namespace {netns} failed: {detail}")]
    NetnsThread { netns: String, detail: String },

    /// Creating a socket inside the namespace failed.
    #[error("cannot open {what} socket in {netns}: {source}")]
    Socket {
        what: &'static str,
        netns: String,
        #[source]
        source: io::Error,
    },

    /// A TAP ioctl/open/read-back failed.
    #[error("{op} for TAP {name:?} in {netns}: {source}")]
    Tap {
        op: &'static str,
        name: String,
        netns: String,
        #[source]
        source: io::Error,
    },

    /// A netlink request was rejected by the kernel or the connection failed.
    #[error("netlink {op} ({target}) in {netns}: {source}")]
    Netlink {
        op: &'static str,
        target: String,
        netns: String,
        /// Boxed: rtnetlink's error can carry a whole netlink message.
        #[source]
        source: Box<rtnetlink::Error>,
    },

    /// The named link does not exist in the namespace.
    #[error("link {name:?} not found in {netns}")]
    LinkNotFound { name: String, netns: String },

    /// Running `nft` failed (spawn error, non-zero exit, unparsable output).
    #[error("nft {op} for table {table} in {netns}: {detail}")]
    Nft {
        op: &'static str,
        table: String,
        netns: String,
        detail: String,
    },

    /// Reading or writing a resolv.conf (or its backup) failed.
    #[error("{op} {}: {source}", path.display())]
    Resolv {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Writing a per-interface sysctl (`/proc/sys/net/ipv6/conf/IF/KEY`) failed.
    #[error("sysctl {} in {netns}: {source}", path.display())]
    Sysctl {
        path: PathBuf,
        netns: String,
        #[source]
        source: io::Error,
    },

    /// A caller-supplied value cannot be used (bad interface name, bad prefix, …).
    #[error("invalid {what}: {detail}")]
    InvalidArgument { what: &'static str, detail: String },
}

impl NetcfgError {
    /// The kernel errno behind this error, when there is one (positive, e.g. `libc::EEXIST`).
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::EnterNetns { source, .. }
            | Self::Socket { source, .. }
            | Self::Tap { source, .. }
            | Self::Resolv { source, .. }
            | Self::Sysctl { source, .. } => source.raw_os_error(),
            Self::Netlink { source, .. } => netlink_errno(source),
            _ => None,
        }
    }
}

/// The positive errno carried by a netlink NACK, if the error is one.
pub(crate) fn netlink_errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| c.get().abs()),
        _ => None,
    }
}

pub type Result<T, E = NetcfgError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_operation_and_place() {
        let e = NetcfgError::Tap {
            op: "TUNSETIFF",
            name: "tap0".into(),
            netns: "/run/netns/x".into(),
            source: io::Error::from_raw_os_error(libc::EBUSY),
        };
        let s = e.to_string();
        assert!(s.contains("TUNSETIFF") && s.contains("tap0") && s.contains("/run/netns/x"));
        assert_eq!(e.errno(), Some(libc::EBUSY));
    }
}
