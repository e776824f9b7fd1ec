//! DNS from the DHCP lease into a resolv.conf, with a backup to restore on shutdown.
//!
//! The backup is `<path>.softether-backup`, next to the file. It is taken on the first
//! [`apply`] only (later applies, e.g. after a reconnect, keep the original), removed by
//! [`restore`], and a backup found at startup means a previous run crashed: restore it with
//! [`recover_stale_backup`] before doing anything else.
//!
//! Symlinks (`/etc/resolv.conf -> /run/systemd/resolve/stub-resolv.conf`): we do **not**
//! write through the link, since that would edit a file another daemon owns and rewrites. The
//! link itself is saved (as a link) in the backup, replaced by our regular file, and put back
//! by [`restore`]. Bind mounts (containers, where the runtime mounts a file over
//! `/etc/resolv.conf`): rename over a mount point fails with `EBUSY`, so in that case the
//! content is rewritten in place (and restored in place); the backup is still a sibling file.
//!
//! Writes are atomic where the filesystem allows: a temp file in the same directory, fsync,
//! rename over the target.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{NetcfgError, Result};

/// Default location.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";
const BACKUP_SUFFIX: &str = ".softether-backup";
const TEMP_SUFFIX: &str = ".softether-tmp";

/// What to write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsConfig {
    /// `nameserver` lines, in order.
    pub nameservers: Vec<IpAddr>,
    /// Search domains; names containing whitespace or control characters (possible in
    /// network-supplied DHCP options) are dropped rather than written.
    pub search: Vec<String>,
}

/// The backup path for `path`: `<path>.softether-backup`.
pub fn backup_path(path: &Path) -> PathBuf {
    with_suffix(path, BACKUP_SUFFIX)
}

/// Render the file body.
pub fn render(config: &DnsConfig) -> String {
    let mut out =
        String::from("# Written by softether-sidecar; the original is restored on disconnect.\n");
    let search: Vec<&str> = config
        .search
        .iter()
        .map(String::as_str)
        .filter(|d| is_safe_domain(d))
        .collect();
    if !search.is_empty() {
        out += &format!("search {}\n", search.join(" "));
    }
    for ns in &config.nameservers {
        out += &format!("nameserver {ns}\n");
    }
    out
}

/// Back up `path` (first time only) and replace it with `config`.
pub fn apply(path: &Path, config: &DnsConfig) -> Result<()> {
    let backup = backup_path(path);
    if fs::symlink_metadata(&backup).is_err() {
        save_backup(path, &backup)?;
    }
    write_replacing(path, render(config).as_bytes())
}

/// Put the backup back and remove it. Returns `false` if there was no backup (nothing was
/// applied, or it was already restored).
pub fn restore(path: &Path) -> Result<bool> {
    let backup = backup_path(path);
    let meta = match fs::symlink_metadata(&backup) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(source) => return Err(err("inspect backup", &backup, source)),
    };
    match fs::rename(&backup, path) {
        Ok(()) => Ok(true),
        Err(e) if is_mount_point_error(&e) && meta.file_type().is_file() => {
            let original =
                fs::read(&backup).map_err(|source| err("read backup", &backup, source))?;
            write_in_place(path, &original)?;
            fs::remove_file(&backup).map_err(|source| err("remove backup", &backup, source))?;
            Ok(true)
        }
        Err(source) => Err(err("restore backup onto", path, source)),
    }
}

/// At startup: if a backup from a crashed run is lying next to `path`, restore it.
/// Returns whether one was found. Also removes a leftover temp file.
pub fn recover_stale_backup(path: &Path) -> Result<bool> {
    let temp = with_suffix(path, TEMP_SUFFIX);
    match fs::remove_file(&temp) {
        Ok(()) => tracing::warn!(path = %temp.display(), "removed stale temp file"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(err("remove stale temp file", &temp, source)),
    }
    let restored = restore(path)?;
    if restored {
        tracing::warn!(path = %path.display(), "restored resolv.conf from a previous run's backup");
    }
    Ok(restored)
}

/// Copy `path` into `backup` atomically, preserving a symlink as a symlink. A missing
/// `path` is backed up as an empty file (restoring then leaves an empty resolv.conf, which
/// resolvers treat like a missing one).
fn save_backup(path: &Path, backup: &Path) -> Result<()> {
    let temp = with_suffix(backup, TEMP_SUFFIX);
    let _ = fs::remove_file(&temp);
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            let target = fs::read_link(path).map_err(|source| err("read symlink", path, source))?;
            std::os::unix::fs::symlink(&target, &temp)
                .map_err(|source| err("create backup symlink", &temp, source))?;
        }
        Ok(meta) => {
            let content = fs::read(path).map_err(|source| err("read", path, source))?;
            write_new_file(&temp, &content, meta.permissions().mode())?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => write_new_file(&temp, b"", 0o644)?,
        Err(source) => return Err(err("inspect", path, source)),
    }
    fs::rename(&temp, backup).map_err(|source| err("move backup into place at", backup, source))
}

/// Atomically replace `path` (a symlink is replaced, not followed); fall back to an in-place
/// rewrite when `path` is a mount point.
fn write_replacing(path: &Path, content: &[u8]) -> Result<()> {
    let temp = with_suffix(path, TEMP_SUFFIX);
    let _ = fs::remove_file(&temp);
    write_new_file(&temp, content, 0o644)?;
    match fs::rename(&temp, path) {
        Ok(()) => Ok(()),
        Err(e) if is_mount_point_error(&e) => {
            let _ = fs::remove_file(&temp);
            write_in_place(path, content)
        }
        Err(source) => {
            let _ = fs::remove_file(&temp);
            Err(err("move new resolv.conf into place at", path, source))
        }
    }
}

fn write_new_file(path: &Path, content: &[u8], mode: u32) -> Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|source| err("create", path, source))?;
    file.write_all(content)
        .and_then(|()| file.set_permissions(fs::Permissions::from_mode(mode & 0o7777)))
        .and_then(|()| file.sync_all())
        .map_err(|source| err("write", path, source))
}

fn write_in_place(path: &Path, content: &[u8]) -> Result<()> {
    fs::write(path, content).map_err(|source| err("rewrite in place", path, source))
}

/// `rename` onto a bind-mounted file fails with EBUSY (or EXDEV across mounts).
fn is_mount_point_error(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::EXDEV))
}

fn is_safe_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.chars()
            .all(|c| c.is_ascii_graphic() && c != '#' && c != ';')
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(suffix);
    PathBuf::from(s)
}

fn err(op: &'static str, path: &Path, source: io::Error) -> NetcfgError {
    NetcfgError::Resolv {
        op,
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn render_drops_unsafe_search_domains() {
        let cfg = DnsConfig {
            nameservers: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))],
            search: vec![
                "vpn.example".into(),
                "bad domain\nnameserver 6.6.6.6".into(),
                "".into(),
            ],
        };
        let text = render(&cfg);
        assert!(text.contains("search vpn.example\n"));
        assert!(text.contains("nameserver 10.0.0.1\n"));
        assert!(!text.contains("6.6.6.6"));
    }

    #[test]
    fn backup_path_appends_suffix() {
        assert_eq!(
            backup_path(Path::new("/etc/resolv.conf")),
            PathBuf::from("/etc/resolv.conf.softether-backup")
        );
    }
}
