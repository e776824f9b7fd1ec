//! The state directory the sidecar keeps and the plugin reads and writes when the sidecar is
//! down: its layout, its two record types, their file names, and the attachment key rule.
//!
//! ```text
//! STATE_DIR/attachments/<containerID>:<ifname>.json   one per live attachment (the sidecar)
//! STATE_DIR/tombstones/<containerID>:<ifname>.json    a DEL the plugin did while the sidecar was down
//! STATE_DIR/hubs.json                                  what the sidecar learned per hub (IPv6 or not)
//! ```
//!
//! `:` cannot appear in a container id (`[A-Za-z0-9][A-Za-z0-9_.-]*`, at most
//! [`MAX_CONTAINER_ID_LEN`] bytes) nor in an interface name, so the file name is unambiguous,
//! and the length bound keeps every name this module writes (temporary files included) under
//! the 255-byte file-name limit. Records hold everything needed to re-adopt an attachment
//! after a restart (netns path, ifname, MAC, login settings with the password *file path*,
//! last leased address) and never a password. Writes are atomic: temporary file, fsync,
//! rename, fsync of the directory.
//!
//! Both ends import these types, so renaming a field cannot silently break DEL with the
//! sidecar down.

mod hubs;
mod key;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::{LinkSettings, LoginSettings};
pub use hubs::{HubFacts, HubsRecord, HUBS_VERSION, MAX_HUBS, MAX_HUB_KEY_LEN};
pub use key::{is_cni_identifier, validate_container_id, validate_ifname, AttachmentKey, KeyError};
pub use key::{MAX_CONTAINER_ID_LEN, MAX_IFNAME_LEN};

/// The `version` of [`AttachmentRecord`]s written today.
pub const RECORD_VERSION: u32 = 1;
const ATTACHMENTS: &str = "attachments";
const TOMBSTONES: &str = "tombstones";
const SUFFIX: &str = ".json";

/// Everything needed to re-adopt an attachment after a restart (written by the sidecar).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentRecord {
    /// Format version, [`RECORD_VERSION`] when written today.
    pub version: u32,
    /// The CNI network name.
    pub network: String,
    /// `CNI_CONTAINERID`.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// `CNI_IFNAME`: the TAP's name in the pod netns.
    pub ifname: String,
    /// The pod netns path.
    pub netns: String,
    /// `5E:…` style, upper case.
    pub mac: String,
    /// The login settings of the attach request (the password as a file path only).
    pub login: LoginSettings,
    /// The link settings of the attach request.
    pub link: LinkSettings,
    /// The last leased address, asked for again (INIT-REBOOT) after a restart.
    #[serde(default)]
    pub last_address: Option<Ipv4Net>,
    /// Kubernetes pod namespace, if the runtime passed one.
    #[serde(default)]
    pub pod_namespace: Option<String>,
    /// Kubernetes pod name, if the runtime passed one.
    #[serde(default)]
    pub pod_name: Option<String>,
    /// Unix seconds.
    pub created_at: u64,
}

impl AttachmentRecord {
    /// The record's validated key (fails for a hand-edited record with a bad id or ifname).
    pub fn key(&self) -> Result<AttachmentKey, KeyError> {
        AttachmentKey::new(&self.container_id, &self.ifname)
    }
}

/// A DEL that happened while the sidecar was down (written by the plugin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tombstone {
    /// `CNI_CONTAINERID` of the deleted attachment.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// `CNI_IFNAME` of the deleted attachment.
    pub ifname: String,
    /// The CNI network name; empty if unknown.
    #[serde(default)]
    pub network: String,
    /// The pod netns path DEL was given, if any.
    #[serde(default)]
    pub netns: Option<String>,
    /// Unix seconds.
    #[serde(default)]
    pub deleted_at: u64,
}

impl Tombstone {
    /// The tombstone's validated key.
    pub fn key(&self) -> Result<AttachmentKey, KeyError> {
        AttachmentKey::new(&self.container_id, &self.ifname)
    }
}

/// Why the state directory or a record in it could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A file-system call failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done (`create`, `read`, `rename`, …).
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A file or record that cannot be parsed or encoded, or whose key is invalid.
    #[error("{path} is not a valid record: {reason}")]
    Invalid {
        /// The file (or directory) concerned.
        path: PathBuf,
        /// The parse, encode or key error.
        reason: String,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Opens (creating, mode 0700) `root` and its subdirectories: the sidecar's start.
    pub fn open(root: impl Into<PathBuf>) -> Result<StateDir, StateError> {
        let dir = StateDir { root: root.into() };
        for sub in [dir.root.clone(), dir.attachments(), dir.tombstones()] {
            fs::create_dir_all(&sub).map_err(io_err("create", &sub))?;
        }
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&dir.root, fs::Permissions::from_mode(0o700))
            .map_err(io_err("chmod 0700", &dir.root))?;
        Ok(dir)
    }

    /// The directory at `root` as it is, creating nothing: the plugin's view, which must not
    /// make a state directory where no sidecar ever ran.
    pub fn at(root: impl Into<PathBuf>) -> StateDir {
        StateDir { root: root.into() }
    }

    /// The state directory's root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether a sidecar ever ran here (the root exists).
    pub fn exists(&self) -> bool {
        self.root.is_dir()
    }

    fn attachments(&self) -> PathBuf {
        self.root.join(ATTACHMENTS)
    }

    fn tombstones(&self) -> PathBuf {
        self.root.join(TOMBSTONES)
    }

    /// Where the record of `key` lives: `attachments/<containerID>:<ifname>.json`.
    pub fn record_path(&self, key: &AttachmentKey) -> PathBuf {
        self.attachments().join(key.file_name())
    }

    /// Where the tombstone of `key` lives: `tombstones/<containerID>:<ifname>.json`.
    pub fn tombstone_path(&self, key: &AttachmentKey) -> PathBuf {
        self.tombstones().join(key.file_name())
    }

    /// Writes (or replaces) the record atomically.
    pub fn save(&self, record: &AttachmentRecord) -> Result<(), StateError> {
        let key = record.key().map_err(|e| StateError::Invalid {
            path: self.attachments(),
            reason: e.to_string(),
        })?;
        let bytes = serde_json::to_vec_pretty(record).map_err(|e| StateError::Invalid {
            path: self.record_path(&key),
            reason: e.to_string(),
        })?;
        write_atomically(&self.record_path(&key), &bytes)
    }

    /// The record of `key`; `Ok(None)` if there is none.
    pub fn record(&self, key: &AttachmentKey) -> Result<Option<AttachmentRecord>, StateError> {
        read_optional(&self.record_path(key))
    }

    /// Removes the record; fine if there is none.
    pub fn remove(&self, key: &AttachmentKey) -> Result<(), StateError> {
        remove_if_present(&self.record_path(key))
    }

    /// Writes (or replaces) the tombstone atomically, creating `tombstones/` if needed.
    pub fn write_tombstone(&self, tombstone: &Tombstone) -> Result<(), StateError> {
        let key = tombstone.key().map_err(|e| StateError::Invalid {
            path: self.tombstones(),
            reason: e.to_string(),
        })?;
        let dir = self.tombstones();
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let bytes = serde_json::to_vec(tombstone).map_err(|e| StateError::Invalid {
            path: self.tombstone_path(&key),
            reason: e.to_string(),
        })?;
        write_atomically(&self.tombstone_path(&key), &bytes)
    }

    /// Whether the plugin left a tombstone for `key`.
    pub fn has_tombstone(&self, key: &AttachmentKey) -> bool {
        self.tombstone_path(key).exists()
    }

    /// Removes the tombstone; fine if there is none.
    pub fn remove_tombstone(&self, key: &AttachmentKey) -> Result<(), StateError> {
        remove_if_present(&self.tombstone_path(key))
    }

    /// The keys of every record file, from the file names alone (nothing is parsed), sorted.
    pub fn record_keys(&self) -> Result<Vec<AttachmentKey>, StateError> {
        let dir = self.attachments();
        let mut keys: Vec<AttachmentKey> = fs::read_dir(&dir)
            .map_err(io_err("list", &dir))?
            .filter_map(|e| AttachmentKey::from_file_name(e.ok()?.file_name().to_str()?))
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// Every record, or why one could not be read (the caller logs and skips those).
    pub fn records(&self) -> Result<Vec<Result<AttachmentRecord, StateError>>, StateError> {
        read_all(&self.attachments())
    }

    /// Every tombstone, or why one could not be read (the caller logs and skips those).
    pub fn tombstones_list(&self) -> Result<Vec<Result<Tombstone, StateError>>, StateError> {
        read_all(&self.tombstones())
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, StateError> {
    serde_json::from_slice(bytes).map_err(|e| StateError::Invalid {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn read_optional<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    match fs::read(path) {
        Ok(bytes) => read_json(path, &bytes).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", path)(e)),
    }
}

fn read_all<T: serde::de::DeserializeOwned>(
    dir: &Path,
) -> Result<Vec<Result<T, StateError>>, StateError> {
    let entries = fs::read_dir(dir).map_err(io_err("list", dir))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    Ok(paths
        .into_iter()
        .map(|path| {
            fs::read(&path)
                .map_err(io_err("read", &path))
                .and_then(|bytes| read_json(&path, &bytes))
        })
        .collect())
}

fn remove_if_present(path: &Path) -> Result<(), StateError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", path)(e)),
        _ => Ok(()),
    }
}

/// Temporary file in the same directory, fsync, rename over `path`, fsync the directory: a
/// crash leaves either the old or the new record, never half of one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per call: the attach request and the session task may save the same record.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        f.write_all(bytes).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("fsync", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("rename into place", path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("fsync", dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
