//! Helpers shared by unit tests.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A directory under the system temp dir, unique per process and call,
/// removed on drop even when the test fails.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("softether-cni-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `contents` to `name` inside the directory and returns its path.
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub mod fake_sidecar;

/// Saves an attachment record the way the sidecar does (`softether_control::state_dir`, the
/// same type and writer), so tests read exactly what a running sidecar leaves.
pub fn sidecar_record(state_dir: &Path, container_id: &str, ifname: &str, netns: &str, mac: &str) {
    let record = softether_control::testing::record(container_id, ifname, netns, mac);
    softether_control::state_dir::StateDir::open(state_dir)
        .and_then(|dir| dir.save(&record))
        .expect("save the record as the sidecar does");
}
