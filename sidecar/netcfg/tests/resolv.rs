//! Root tests (root because the suite is): resolv.conf write/restore/stale recovery in a temp
//! directory, never touching the real /etc/resolv.conf.

mod common;

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use common::{require_root, unique};
use netcfg::resolv::{self, backup_path, DnsConfig};

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        require_root();
        let dir = std::env::temp_dir().join(unique("netcfg-resolv-"));
        fs::create_dir(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn dns() -> DnsConfig {
    DnsConfig {
        nameservers: vec![IpAddr::V4(Ipv4Addr::new(198, 18, 0, 53))],
        search: vec!["vpn.test".into()],
    }
}

const ORIGINAL: &str = "nameserver 192.0.2.1\n";

#[test]
fn apply_then_restore_regular_file() {
    let dir = TempDir::new();
    let path = dir.0.join("resolv.conf");
    fs::write(&path, ORIGINAL).unwrap();

    resolv::apply(&path, &dns()).unwrap();
    let written = fs::read_to_string(&path).unwrap();
    assert!(written.contains("nameserver 198.18.0.53\n") && written.contains("search vpn.test\n"));
    assert_eq!(fs::read_to_string(backup_path(&path)).unwrap(), ORIGINAL);

    // A second apply (reconnect with a new lease) keeps the original in the backup.
    let second = DnsConfig {
        nameservers: vec![IpAddr::V4(Ipv4Addr::new(198, 18, 0, 54))],
        search: vec![],
    };
    resolv::apply(&path, &second).unwrap();
    assert!(fs::read_to_string(&path).unwrap().contains("198.18.0.54"));
    assert_eq!(fs::read_to_string(backup_path(&path)).unwrap(), ORIGINAL);

    assert!(resolv::restore(&path).unwrap());
    assert_eq!(fs::read_to_string(&path).unwrap(), ORIGINAL);
    assert!(!backup_path(&path).exists());
    assert!(
        !resolv::restore(&path).unwrap(),
        "second restore has nothing to do"
    );
    assert_eq!(only_entries(&dir.0), vec!["resolv.conf"]);
}

#[test]
fn symlink_is_replaced_not_followed_and_comes_back() {
    let dir = TempDir::new();
    let target = dir.0.join("stub-resolv.conf");
    let path = dir.0.join("resolv.conf");
    fs::write(&target, ORIGINAL).unwrap();
    std::os::unix::fs::symlink("stub-resolv.conf", &path).unwrap();

    resolv::apply(&path, &dns()).unwrap();
    assert!(fs::symlink_metadata(&path).unwrap().file_type().is_file());
    assert_eq!(
        fs::read_to_string(&target).unwrap(),
        ORIGINAL,
        "link target was modified"
    );
    assert_eq!(
        fs::read_link(backup_path(&path)).unwrap(),
        Path::new("stub-resolv.conf")
    );

    assert!(resolv::restore(&path).unwrap());
    assert_eq!(fs::read_link(&path).unwrap(), Path::new("stub-resolv.conf"));
    assert_eq!(fs::read_to_string(&path).unwrap(), ORIGINAL);
}

#[test]
fn stale_backup_from_a_crashed_run_is_recovered() {
    let dir = TempDir::new();
    let path = dir.0.join("resolv.conf");
    fs::write(&path, ORIGINAL).unwrap();
    resolv::apply(&path, &dns()).unwrap();
    // "Crash": no restore. Next start:
    assert!(resolv::recover_stale_backup(&path).unwrap());
    assert_eq!(fs::read_to_string(&path).unwrap(), ORIGINAL);
    assert!(!resolv::recover_stale_backup(&path).unwrap());
}

#[test]
fn missing_original_is_restored_as_empty_file() {
    let dir = TempDir::new();
    let path = dir.0.join("resolv.conf");
    resolv::apply(&path, &dns()).unwrap();
    assert!(resolv::restore(&path).unwrap());
    assert_eq!(fs::read_to_string(&path).unwrap(), "");
}

/// Containers get /etc/resolv.conf as a bind-mounted file: rename over it fails with EBUSY,
/// so content is rewritten in place and restored in place.
#[test]
fn bind_mounted_file_is_rewritten_in_place() {
    let dir = TempDir::new();
    let source = dir.0.join("runtime-resolv.conf");
    let path = dir.0.join("resolv.conf");
    fs::write(&source, ORIGINAL).unwrap();
    fs::write(&path, "").unwrap();
    let _mount = BindMount::new(&source, &path);

    resolv::apply(&path, &dns()).unwrap();
    assert!(fs::read_to_string(&source).unwrap().contains("198.18.0.53"));
    assert!(resolv::restore(&path).unwrap());
    assert_eq!(fs::read_to_string(&source).unwrap(), ORIGINAL);
    assert!(!backup_path(&path).exists());
}

struct BindMount(PathBuf);

impl BindMount {
    fn new(source: &Path, target: &Path) -> Self {
        let (s, t) = (source.to_str().unwrap(), target.to_str().unwrap());
        common::run("mount", &["--bind", s, t]);
        BindMount(target.to_owned())
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

fn only_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
