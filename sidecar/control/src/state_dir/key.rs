//! An attachment's identity and the one rule for what a container id and an interface name
//! may be: the plugin applies it to `CNI_CONTAINERID`/`CNI_IFNAME` before it creates
//! anything, the sidecar to every request and record, and the state directory's file names
//! depend on it.

use std::fmt;

/// Longest container id accepted. The CNI spec sets no bound, but the id is part of a file
/// name (`<id>:<ifname>.json`, with a `.…tmp-<pid>-<n>` temporary beside it) that must stay
/// under the 255-byte limit of Linux file systems; 128 is twice the 64 hex digits of every
/// runtime seen (containerd, CRI-O, Podman, Docker) and leaves that name well inside it.
pub const MAX_CONTAINER_ID_LEN: usize = 128;
/// Longest interface name the kernel takes (`IFNAMSIZ - 1`).
pub const MAX_IFNAME_LEN: usize = 15;

/// Why a container id or interface name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The container id is empty or has a character outside `[A-Za-z0-9_.-]` (or starts with
    /// `_.-`); the id, cut to the bound.
    #[error("container id {0:?} must match [A-Za-z0-9][A-Za-z0-9_.-]*")]
    ContainerIdPattern(String),
    /// The container id is longer than [`MAX_CONTAINER_ID_LEN`] bytes.
    #[error("container id of {len} bytes is longer than {MAX_CONTAINER_ID_LEN}, which the state directory's file names allow")]
    ContainerIdTooLong {
        /// The id's length in bytes.
        len: usize,
    },
    /// The interface name is empty, too long, `.`/`..`, or has `/`, `:`, whitespace or a control
    /// character.
    #[error("interface name {name:?} is invalid: {why}")]
    Ifname {
        /// The name, cut to 64 characters.
        name: String,
        /// Which rule it breaks.
        why: &'static str,
    },
}

/// Whether `s` matches the CNI spec's pattern for container ids and network names (1.0+):
/// `[A-Za-z0-9][A-Za-z0-9_.-]*`.
pub fn is_cni_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// `[A-Za-z0-9][A-Za-z0-9_.-]*` (CNI spec 1.0+), at most [`MAX_CONTAINER_ID_LEN`] bytes.
pub fn validate_container_id(id: &str) -> Result<(), KeyError> {
    if !is_cni_identifier(id) {
        // A long id is printed in full only up to the bound; the rest is elided.
        let shown: String = id.chars().take(MAX_CONTAINER_ID_LEN).collect();
        return Err(KeyError::ContainerIdPattern(shown));
    }
    if id.len() > MAX_CONTAINER_ID_LEN {
        return Err(KeyError::ContainerIdTooLong { len: id.len() });
    }
    Ok(())
}

/// What the kernel accepts as a link name (skel `ValidateInterfaceName`), plus no control
/// characters.
pub fn validate_ifname(name: &str) -> Result<(), KeyError> {
    let why = if name.is_empty() {
        "empty"
    } else if name.len() > MAX_IFNAME_LEN {
        "longer than 15 bytes"
    } else if name == "." || name == ".." {
        "'.' and '..' are not interface names"
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        "contains '/', ':', whitespace or a control character"
    } else {
        return Ok(());
    };
    Err(KeyError::Ifname {
        name: name.chars().take(64).collect(),
        why,
    })
}

/// An attachment's identity: CNI 1.x's `(CNI_CONTAINERID, CNI_IFNAME)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttachmentKey {
    /// `CNI_CONTAINERID`, valid per [`validate_container_id`] when built by [`AttachmentKey::new`].
    pub container_id: String,
    /// `CNI_IFNAME`, valid per [`validate_ifname`] when built by [`AttachmentKey::new`].
    pub ifname: String,
}

impl AttachmentKey {
    /// Validates both parts, so they are safe in a file name.
    pub fn new(container_id: &str, ifname: &str) -> Result<AttachmentKey, KeyError> {
        validate_container_id(container_id)?;
        validate_ifname(ifname)?;
        Ok(AttachmentKey {
            container_id: container_id.to_owned(),
            ifname: ifname.to_owned(),
        })
    }

    /// `<containerID>:<ifname>.json`, the name of its record and of its tombstone.
    pub fn file_name(&self) -> String {
        format!("{}:{}{}", self.container_id, self.ifname, super::SUFFIX)
    }

    /// The key a record or tombstone file name stands for; `None` for anything else
    /// (temporary files, strangers).
    pub fn from_file_name(name: &str) -> Option<AttachmentKey> {
        let (container_id, ifname) = name.strip_suffix(super::SUFFIX)?.split_once(':')?;
        AttachmentKey::new(container_id, ifname).ok()
    }
}

impl fmt::Display for AttachmentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.container_id, self.ifname)
    }
}
