//! Noticing a pod network namespace that disappeared without a DEL (a crashed runtime).
//!
//! The session's own sockets in the pod namespace (netlink, nftables) keep the namespace
//! alive after its runtime removed it, so the TAP never fails by itself: the daemon would hold
//! a server session (a licence) for a pod that no longer exists. Instead the namespace path of
//! the record is looked at every [`CHECK_EVERY`]: once it is missing, or names another
//! namespace than the one attached (a reused `/proc/<pid>/ns/net`), the namespace is gone.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

/// How often the namespace path is looked at (a gone pod is noticed within this plus a stat).
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// What a namespace path names: `(st_dev, st_ino)` of the nsfs inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetnsIdentity(u64, u64);

/// The identity of the namespace `path` names now; `Ok(None)` when the path is missing.
/// Other errors (e.g. permission) say nothing about the namespace and are returned.
pub async fn identity(path: &str) -> std::io::Result<Option<NetnsIdentity>> {
    // tokio::fs: the stat runs on the blocking pool, never on a runtime thread.
    match tokio::fs::metadata(path).await {
        Ok(meta) => Ok(Some(NetnsIdentity(meta.dev(), meta.ino()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Returns once `path` no longer names the namespace `attached` (missing or replaced).
/// Never returns while it does, nor while the path cannot be inspected.
pub async fn wait_gone(path: &str, attached: NetnsIdentity) {
    loop {
        match identity(path).await {
            Ok(Some(now)) if now == attached => {}
            Ok(Some(_)) => {
                tracing::info!(netns = path, "the path names another network namespace now");
                return;
            }
            Ok(None) => {
                tracing::info!(netns = path, "the pod's network namespace is gone");
                return;
            }
            Err(e) => tracing::debug!(netns = path, "cannot stat the namespace: {e}"),
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_removed_path_is_gone() {
        let dir = std::env::temp_dir().join(format!("se-nswatch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ns");
        std::fs::write(&path, "").unwrap();
        let p = path.to_str().unwrap().to_owned();
        let attached = identity(&p).await.unwrap().unwrap();
        let watcher = tokio::spawn({
            let p = p.clone();
            async move { wait_gone(&p, attached).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!watcher.is_finished(), "gone while the path is unchanged");
        std::fs::remove_file(&path).unwrap();
        tokio::time::timeout(CHECK_EVERY * 3, watcher)
            .await
            .expect("noticed within a few checks")
            .unwrap();
        assert_eq!(identity(&p).await.unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
