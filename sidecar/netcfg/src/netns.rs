//! Which network namespace an operation targets, and the "enter on a throwaway thread" pattern.
//!
//! A socket, a TAP fd or a child process belongs to the network namespace of the *thread* that
//! created it, for its whole life. So to act inside a namespace we spawn a short-lived
//! `std::thread`, `setns(CLONE_NEWNET)` it into the namespace, create the fd (or spawn the
//! child) there, hand the result back and let the thread exit. The namespace switch dies with
//! the thread: no tokio worker and no long-lived thread ever changes namespace.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};

use crate::error::{NetcfgError, Result};

/// A network namespace, named by the file that pins it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Netns {
    /// The namespace of the calling process: no `setns` is done.
    Current,
    /// A namespace file such as `/run/netns/NAME` or `/proc/PID/ns/net` (what CNI's
    /// `CNI_NETNS` gives us).
    Path(PathBuf),
}

impl Netns {
    /// The namespace file at `path`.
    pub fn from_path(path: impl Into<PathBuf>) -> Self {
        Self::Path(path.into())
    }

    /// A namespace created by `ip netns add NAME` (`/run/netns/NAME`).
    pub fn named(name: &str) -> Self {
        Self::Path(Path::new("/run/netns").join(name))
    }

    /// The namespace of process `pid` (`/proc/PID/ns/net`).
    pub fn of_pid(pid: u32) -> Self {
        Self::Path(PathBuf::from(format!("/proc/{pid}/ns/net")))
    }

    /// Run `f` on a fresh OS thread that first entered this namespace; block until it returns.
    ///
    /// Blocks the caller for as long as `f` runs (plus a thread spawn): from async code use
    /// [`Netns::run_async`]. `f` may borrow from the caller.
    pub fn run<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let ns_file = self.open()?;
        std::thread::scope(|scope| {
            let worker = std::thread::Builder::new()
                .name("netns".into())
                .spawn_scoped(scope, move || {
                    self.enter(ns_file.as_ref())?;
                    Ok(f())
                })
                .map_err(|e| self.thread_error(format!("spawn: {e}")))?;
            worker
                .join()
                .map_err(|_| self.thread_error("panicked".into()))?
        })
    }

    /// Like [`Netns::run`], but awaits the thread instead of blocking the runtime.
    ///
    /// The closure runs on its own OS thread, never on a tokio worker, so it may block (spawn
    /// and wait for `nft`, for instance). Inside it, `tokio::runtime::Handle` is not entered;
    /// capture one and `enter()` it if the closure registers fds with the reactor.
    pub async fn run_async<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let ns_file = self.open()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let this = self.clone();
        std::thread::Builder::new()
            .name("netns".into())
            .spawn(move || {
                let out = this.enter(ns_file.as_ref()).map(|()| f());
                // The receiver only disappears if the caller's future was dropped; the result
                // (and any fd in it) is then simply closed.
                let _ = tx.send(out);
            })
            .map_err(|e| self.thread_error(format!("spawn: {e}")))?;
        rx.await.map_err(|_| self.thread_error("panicked".into()))?
    }

    /// Open the namespace file on the caller's thread so a missing namespace is reported
    /// before any thread is spawned.
    fn open(&self) -> Result<Option<File>> {
        match self {
            Self::Current => Ok(None),
            Self::Path(path) => {
                File::open(path)
                    .map(Some)
                    .map_err(|source| NetcfgError::EnterNetns {
                        netns: self.to_string(),
                        source,
                    })
            }
        }
    }

    fn enter(&self, ns_file: Option<&File>) -> Result<()> {
        let Some(file) = ns_file else {
            return Ok(());
        };
        setns(file, CloneFlags::CLONE_NEWNET).map_err(|errno| NetcfgError::EnterNetns {
            netns: self.to_string(),
            source: errno.into(),
        })
    }

    fn thread_error(&self, detail: String) -> NetcfgError {
        NetcfgError::NetnsThread {
            netns: self.to_string(),
            detail,
        }
    }
}

impl fmt::Display for Netns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Current => f.write_str("current netns"),
            Self::Path(p) => write!(f, "netns {}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_build_the_usual_paths() {
        assert_eq!(Netns::named("x"), Netns::Path("/run/netns/x".into()));
        assert_eq!(Netns::of_pid(7), Netns::Path("/proc/7/ns/net".into()));
        assert_eq!(Netns::named("x").to_string(), "netns /run/netns/x");
    }

    #[test]
    fn current_runs_closure_with_borrowed_data() {
        let v = [1, 2, 3];
        let sum = Netns::Current.run(|| v.iter().sum::<i32>()).unwrap();
        assert_eq!(sum, 6);
    }

    #[test]
    fn missing_namespace_is_reported_with_path() {
        let err = Netns::from_path("/nonexistent/netns")
            .run(|| ())
            .unwrap_err();
        assert!(matches!(err, NetcfgError::EnterNetns { .. }));
        assert!(err.to_string().contains("/nonexistent/netns"));
    }

    #[test]
    fn panicking_closure_is_an_error() {
        let err = Netns::Current.run(|| -> () { panic!("boom") }).unwrap_err();
        assert!(matches!(err, NetcfgError::NetnsThread { .. }));
    }
}
