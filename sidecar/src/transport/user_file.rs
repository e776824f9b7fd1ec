//! Reading files a user names (password, CA, certificate, key) without trusting them.
//!
//! Whoever can set `passwordFile` or `caFile` (a network config, CNI_ARGS, Multus `cni-args`)
//! could otherwise name a FIFO (the read blocks forever), `/dev/zero` (memory grows without
//! bound) or a huge file. So a user file is:
//! - opened with `O_NONBLOCK` (opening a FIFO never waits for a writer) and `O_CLOEXEC`;
//! - accepted only if `fstat` says it is a regular file, of at most the kind's size cap;
//! - read with the cap enforced while reading too (the file may grow meanwhile);
//! - read off the runtime threads with a deadline ([`read_async`]), so a stalled filesystem
//!   delays only the request that named it.
//!
//! Symlinks are followed: Kubernetes Secret volumes (the shipped DaemonSet mounts one for
//! the password files) present every key as a symlink into `..data/`, and the checks above
//! apply to what the link points at, so a link to a FIFO or a device is refused all the same.
//! Secrets readable by group or others are used but warned about.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long reading one user file may take before the request that named it fails.
pub const READ_DEADLINE: Duration = Duration::from_secs(5);

/// What a file is for, which sets its size cap and whether its mode matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A password file (first line used): 4 KiB.
    Password,
    /// A PEM private key: 64 KiB.
    PrivateKey,
    /// PEM certificates (a client certificate, a CA bundle): 1 MiB.
    Certificates,
}

impl FileKind {
    pub fn max_bytes(self) -> u64 {
        match self {
            FileKind::Password => 4 << 10,
            FileKind::PrivateKey => 64 << 10,
            FileKind::Certificates => 1 << 20,
        }
    }

    fn is_secret(self) -> bool {
        matches!(self, FileKind::Password | FileKind::PrivateKey)
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserFileError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is {what}, not a regular file")]
    NotRegular { path: PathBuf, what: &'static str },
    #[error("{path} is larger than {max} bytes")]
    TooLarge { path: PathBuf, max: u64 },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {path} did not finish within {after:?}")]
    Timeout { path: PathBuf, after: Duration },
}

fn file_type_name(t: std::fs::FileType) -> &'static str {
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Reads `path` as a `kind` file (blocking; see [`read_async`] for runtime threads).
pub fn read(path: &Path, kind: FileKind) -> Result<Vec<u8>, UserFileError> {
    let max = kind.max_bytes();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
        .map_err(|source| UserFileError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    let meta = file.metadata().map_err(|source| UserFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.file_type().is_file() {
        return Err(UserFileError::NotRegular {
            path: path.to_path_buf(),
            what: file_type_name(meta.file_type()),
        });
    }
    if meta.len() > max {
        return Err(UserFileError::TooLarge {
            path: path.to_path_buf(),
            max,
        });
    }
    if kind.is_secret() && meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "secret file is accessible by group or others; chmod 0600 (or 0400) it"
        );
    }
    let mut data = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut data)
        .map_err(|source| UserFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if data.len() as u64 > max {
        return Err(UserFileError::TooLarge {
            path: path.to_path_buf(),
            max,
        });
    }
    Ok(data)
}

/// Runs `f` (which reads user files) on the blocking pool, failing after [`READ_DEADLINE`].
/// `path` names the file in the timeout error.
pub async fn off_runtime<T, E>(
    path: &Path,
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<UserFileError> + Send + 'static,
{
    let timeout = || UserFileError::Timeout {
        path: path.to_path_buf(),
        after: READ_DEADLINE,
    };
    match tokio::time::timeout(READ_DEADLINE, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(result)) => result,
        // The blocking task panicked or the runtime is shutting down: report it as a read
        // that did not finish rather than propagating a panic.
        Ok(Err(_)) | Err(_) => Err(timeout().into()),
    }
}

/// [`read`] on the blocking pool with [`READ_DEADLINE`].
pub async fn read_async(path: &Path, kind: FileKind) -> Result<Vec<u8>, UserFileError> {
    let owned = path.to_path_buf();
    off_runtime(path, move || read(&owned, kind)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("se-userfile-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn regular_file_and_symlink_to_it_are_read() {
        let dir = temp_dir("ok");
        let f = dir.join("pw");
        std::fs::write(&f, "secret\n").unwrap();
        std::os::unix::fs::symlink(&f, dir.join("link")).unwrap();
        assert_eq!(read(&f, FileKind::Password).unwrap(), b"secret\n");
        assert_eq!(
            read(&dir.join("link"), FileKind::Password).unwrap(),
            b"secret\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fifo_device_directory_and_links_to_them_are_refused_without_blocking() {
        let dir = temp_dir("bad");
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        std::os::unix::fs::symlink(&fifo, dir.join("to-fifo")).unwrap();
        for (path, what) in [
            (fifo.clone(), "FIFO"),
            (dir.join("to-fifo"), "FIFO"),
            (PathBuf::from("/dev/zero"), "character device"),
            (dir.clone(), "directory"),
        ] {
            let err = read(&path, FileKind::Password).unwrap_err().to_string();
            assert!(err.contains(what), "{}: {err}", path.display());
            assert!(err.contains(&path.display().to_string()), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn oversized_file_is_refused() {
        let dir = temp_dir("big");
        let f = dir.join("pw");
        std::fs::write(&f, vec![b'a'; 5000]).unwrap();
        let err = read(&f, FileKind::Password).unwrap_err();
        assert!(
            matches!(err, UserFileError::TooLarge { max: 4096, .. }),
            "{err}"
        );
        assert!(read(&f, FileKind::Certificates).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn async_read_runs_off_the_runtime() {
        let err = read_async(Path::new("/dev/zero"), FileKind::Certificates)
            .await
            .unwrap_err();
        assert!(matches!(err, UserFileError::NotRegular { .. }), "{err}");
    }
}
