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
        /// The namespace, as [`Netns`](crate::Netns) displays it.
        netns: String,
        /// The `open` or `setns` error.
        #[source]
        source: io::Error,
    },

    /// The helper thread that entered the namespace could not be spawned or panicked.
    #[error("helper thread for network namespace {netns} failed: {detail}")]
    NetnsThread {
        /// The namespace the thread was to enter.
        netns: String,
        /// The spawn error or the panic message.
        detail: String,
    },

    /// Creating a socket inside the namespace failed.
    #[error("cannot open {what} socket in {netns}: {source}")]
    Socket {
        /// Which socket (`NETLINK_ROUTE`, …).
        what: &'static str,
        /// The namespace it was to live in.
        netns: String,
        /// The `socket` error.
        #[source]
        source: io::Error,
    },

    /// A TAP ioctl/open/read-back failed.
    #[error("{op} for TAP {name:?} in {netns}: {source}")]
    Tap {
        /// The step that failed (`open /dev/net/tun`, `TUNSETIFF`, …).
        op: &'static str,
        /// The TAP's name (empty when the kernel was to pick it).
        name: String,
        /// The namespace of the TAP.
        netns: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// A netlink request was rejected by the kernel or the connection failed.
    #[error("netlink {op} ({target}) in {netns}: {source}")]
    Netlink {
        /// The request (`add route`, `set link up`, …).
        op: &'static str,
        /// What it was about, in `ip` syntax where there is one.
        target: String,
        /// The namespace the request went to.
        netns: String,
        /// Boxed: rtnetlink's error can carry a whole netlink message.
        #[source]
        source: Box<rtnetlink::Error>,
    },

    /// The named link does not exist in the namespace.
    #[error("link {name:?} not found in {netns}")]
    LinkNotFound {
        /// The interface name looked up.
        name: String,
        /// The namespace looked in.
        netns: String,
    },

    /// Running `nft` failed (spawn error, non-zero exit, unparsable output).
    #[error("nft {op} for table {table} in {netns}: {detail}")]
    Nft {
        /// What `nft` was asked to do (`apply`, `delete`, `list`).
        op: &'static str,
        /// The nft table concerned.
        table: String,
        /// The namespace `nft` ran in.
        netns: String,
        /// The spawn error, exit status with stderr, or parse error.
        detail: String,
    },

    /// Reading or writing a resolv.conf (or its backup) failed.
    #[error("{op} {}: {source}", path.display())]
    Resolv {
        /// The file operation (`read`, `write`, `rename`, …).
        op: &'static str,
        /// The file it was done to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// Writing a per-interface sysctl (`/proc/sys/net/ipv6/conf/IF/KEY`) failed.
    #[error("sysctl {} in {netns}: {source}", path.display())]
    Sysctl {
        /// The `/proc/sys` file.
        path: PathBuf,
        /// The namespace whose sysctl it is.
        netns: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// A caller-supplied value cannot be used (bad interface name, bad prefix, …).
    #[error("invalid {what}: {detail}")]
    InvalidArgument {
        /// Which argument.
        what: &'static str,
        /// Why it is refused.
        detail: String,
    },
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

/// This crate's result: [`NetcfgError`] unless another error type is given.
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
