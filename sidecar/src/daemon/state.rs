//! Attachment records and tombstones in the state directory.
//!
//! ```text
//! STATE_DIR/attachments/<containerID>:<ifname>.json   one per live attachment (written by us)
//! STATE_DIR/tombstones/<containerID>:<ifname>.json    a DEL the plugin did while we were down
//! ```
//!
//! `:` cannot appear in a container id (`[A-Za-z0-9][A-Za-z0-9_.-]*`) nor in an interface name,
//! so the file name is unambiguous. Records hold everything needed to re-adopt an attachment
//! after a restart (netns path, ifname, MAC, login settings with the password *file path*,
//! last leased address) and never a password. Writes are atomic: temporary file, fsync, rename,
//! fsync of the directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use softether_control::{LinkSettings, LoginSettings};

pub const RECORD_VERSION: u32 = 1;
const ATTACHMENTS: &str = "attachments";
const TOMBSTONES: &str = "tombstones";

/// An attachment's identity: CNI 1.x's `(CNI_CONTAINERID, CNI_IFNAME)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttachmentKey {
    pub container_id: String,
    pub ifname: String,
}

impl AttachmentKey {
    /// Validates both parts the way CNI's `skel` does, so they are safe in a file name.
    pub fn new(container_id: &str, ifname: &str) -> Result<AttachmentKey, String> {
        let mut chars = container_id.chars();
        let id_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !id_ok {
            return Err(format!(
                "container id {container_id:?} must match [A-Za-z0-9][A-Za-z0-9_.-]*"
            ));
        }
        let if_ok = !ifname.is_empty()
            && ifname.len() < 16
            && ifname != "."
            && ifname != ".."
            && !ifname
                .chars()
                .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
        if !if_ok {
            return Err(format!(
                "interface name {ifname:?} must be 1-15 bytes without '/', ':' or whitespace"
            ));
        }
        Ok(AttachmentKey {
            container_id: container_id.to_owned(),
            ifname: ifname.to_owned(),
        })
    }

    pub fn file_name(&self) -> String {
        format!("{}:{}.json", self.container_id, self.ifname)
    }
}

impl std::fmt::Display for AttachmentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.container_id, self.ifname)
    }
}

/// Everything needed to re-adopt an attachment after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentRecord {
    pub version: u32,
    pub network: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
    pub netns: String,
    /// `5E:…` style, upper case.
    pub mac: String,
    pub login: LoginSettings,
    pub link: LinkSettings,
    #[serde(default)]
    pub last_address: Option<Ipv4Net>,
    #[serde(default)]
    pub pod_namespace: Option<String>,
    #[serde(default)]
    pub pod_name: Option<String>,
    /// Unix seconds.
    pub created_at: u64,
}

impl AttachmentRecord {
    pub fn key(&self) -> Result<AttachmentKey, String> {
        AttachmentKey::new(&self.container_id, &self.ifname)
    }
}

/// A DEL that happened while the sidecar was down (written by the plugin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tombstone {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
    #[serde(default)]
    pub network: String,
    #[serde(default)]
    pub netns: Option<String>,
    /// Unix seconds.
    #[serde(default)]
    pub deleted_at: u64,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a valid record: {reason}")]
    Invalid { path: PathBuf, reason: String },
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
    /// Opens (creating, mode 0700) `root` and its subdirectories.
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

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn attachments(&self) -> PathBuf {
        self.root.join(ATTACHMENTS)
    }

    fn tombstones(&self) -> PathBuf {
        self.root.join(TOMBSTONES)
    }

    pub fn record_path(&self, key: &AttachmentKey) -> PathBuf {
        self.attachments().join(key.file_name())
    }

    pub fn tombstone_path(&self, key: &AttachmentKey) -> PathBuf {
        self.tombstones().join(key.file_name())
    }

    /// Writes (or replaces) the record atomically.
    pub fn save(&self, record: &AttachmentRecord) -> Result<(), StateError> {
        let key = record.key().map_err(|reason| StateError::Invalid {
            path: self.attachments(),
            reason,
        })?;
        let bytes = serde_json::to_vec_pretty(record).map_err(|e| StateError::Invalid {
            path: self.record_path(&key),
            reason: e.to_string(),
        })?;
        write_atomically(&self.record_path(&key), &bytes)
    }

    /// Removes the record; fine if there is none.
    pub fn remove(&self, key: &AttachmentKey) -> Result<(), StateError> {
        remove_if_present(&self.record_path(key))
    }

    pub fn remove_tombstone(&self, key: &AttachmentKey) -> Result<(), StateError> {
        remove_if_present(&self.tombstone_path(key))
    }

    /// Every record, or why one could not be read (the caller logs and skips those).
    pub fn records(&self) -> Result<Vec<Result<AttachmentRecord, StateError>>, StateError> {
        read_all(&self.attachments())
    }

    pub fn tombstones_list(&self) -> Result<Vec<Result<Tombstone, StateError>>, StateError> {
        read_all(&self.tombstones())
    }
}

fn read_all<T: serde::de::DeserializeOwned>(
    dir: &Path,
) -> Result<Vec<Result<T, StateError>>, StateError> {
    let mut out = Vec::new();
    let entries = fs::read_dir(dir).map_err(io_err("list", dir))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    for path in paths {
        out.push(
            fs::read(&path)
                .map_err(io_err("read", &path))
                .and_then(|bytes| {
                    serde_json::from_slice(&bytes).map_err(|e| StateError::Invalid {
                        path: path.clone(),
                        reason: e.to_string(),
                    })
                }),
        );
    }
    Ok(out)
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
mod tests {
    use super::*;

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            TempDir(std::env::temp_dir().join(format!("se-state-{tag}-{}-{n}", std::process::id())))
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    pub(crate) fn record(cid: &str) -> AttachmentRecord {
        AttachmentRecord {
            version: RECORD_VERSION,
            network: "vpnnet".into(),
            container_id: cid.into(),
            ifname: "vpn0".into(),
            netns: "/run/netns/p".into(),
            mac: "5E:01:02:03:04:05".into(),
            login: LoginSettings {
                server: "198.18.0.1".into(),
                port: 443,
                hub: "H".into(),
                user: "u".into(),
                password_file: "/etc/softether/pw".into(),
                plain_password: false,
                insecure: true,
                pin_sha256: None,
                ca_file: None,
                max_connections: 1,
                udp_acceleration: Default::default(),
                compress: false,
                half_connection: false,
            },
            link: LinkSettings::default(),
            last_address: Some("192.168.30.10/24".parse().unwrap()),
            pod_namespace: None,
            pod_name: None,
            created_at: 1,
        }
    }

    #[test]
    fn keys_are_validated_and_unambiguous() {
        assert!(AttachmentKey::new("abc-1.2_x", "vpn0").is_ok());
        for (id, ifname) in [
            ("", "vpn0"),
            ("-x", "vpn0"),
            ("../x", "vpn0"),
            ("a:b", "vpn0"),
            ("a", ""),
            ("a", ".."),
            ("a", "x/y"),
            ("a", "x:y"),
            ("a", "0123456789abcdef"),
        ] {
            assert!(AttachmentKey::new(id, ifname).is_err(), "{id:?} {ifname:?}");
        }
        let a = AttachmentKey::new("a.b", "c").unwrap().file_name();
        let b = AttachmentKey::new("a", "b.c").unwrap().file_name();
        assert_ne!(a, b);
    }

    #[test]
    fn records_round_trip_atomically_without_password() {
        let tmp = TempDir::new("rec");
        let dir = StateDir::open(&tmp.0).unwrap();
        let mut rec = record("c1");
        dir.save(&rec).unwrap();
        rec.last_address = Some("192.168.30.11/24".parse().unwrap());
        dir.save(&rec).unwrap();
        let all: Vec<_> = dir
            .records()
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(all, vec![rec.clone()]);
        let key = rec.key().unwrap();
        let text = fs::read_to_string(dir.record_path(&key)).unwrap();
        assert!(text.contains("passwordFile") && !text.contains("\"password\""));
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.record_path(&key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // No temporary files left behind.
        assert_eq!(fs::read_dir(dir.attachments()).unwrap().count(), 1);
        dir.remove(&key).unwrap();
        dir.remove(&key).unwrap();
        assert!(dir.records().unwrap().is_empty());
    }

    #[test]
    fn tombstones_and_broken_files_are_listed() {
        let tmp = TempDir::new("tomb");
        let dir = StateDir::open(&tmp.0).unwrap();
        let key = AttachmentKey::new("c2", "vpn0").unwrap();
        let t = Tombstone {
            container_id: "c2".into(),
            ifname: "vpn0".into(),
            network: "vpnnet".into(),
            netns: None,
            deleted_at: 5,
        };
        write_atomically(&dir.tombstone_path(&key), &serde_json::to_vec(&t).unwrap()).unwrap();
        fs::write(dir.attachments().join("junk.json"), b"{").unwrap();
        let tombs = dir.tombstones_list().unwrap();
        assert_eq!(tombs.len(), 1);
        assert_eq!(tombs[0].as_ref().unwrap(), &t);
        let recs = dir.records().unwrap();
        assert!(matches!(recs[0], Err(StateError::Invalid { .. })));
        dir.remove_tombstone(&key).unwrap();
        assert!(dir.tombstones_list().unwrap().is_empty());
    }
}
