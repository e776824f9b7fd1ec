//! TAP devices: created (or re-attached) inside a namespace, then driven from tokio.
//!
//! A [`Tap`] is just the fd plus the interface name; it can be sent to another process
//! (SCM_RIGHTS) with [`Tap::into_fd`] / [`Tap::from_fd`]. [`AsyncTap`] wraps it for the
//! frame pump. Link state, MTU and MAC are set through [`crate::Netlink`], not here.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::error::{NetcfgError, Result};
use crate::netns::Netns;
use crate::sys;

/// How to create a TAP.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TapConfig {
    /// Interface name (at most 15 bytes); `None` lets the kernel pick `tapN`.
    pub name: Option<String>,
    /// Keep the interface when the fd closes (`ip tuntap add … mode tap`), so a restarted
    /// daemon can re-attach with [`Tap::open_persistent`].
    pub persistent: bool,
}

/// An attached TAP: the queue fd and the interface name. Dropping it closes the fd, which
/// removes a non-persistent TAP.
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    name: String,
    /// Where the TAP lives, for error messages only.
    netns: String,
}

impl Tap {
    /// Create a new TAP (`IFF_TAP | IFF_NO_PI`) in `netns`. Fails with `EBUSY` if a device of
    /// that name already exists (`IFF_TUN_EXCL`): re-attaching is [`Tap::open_persistent`].
    ///
    /// `ip tuntap add dev NAME mode tap` when persistent; otherwise a TAP that lives as long
    /// as the returned fd.
    pub async fn create(netns: &Netns, config: &TapConfig) -> Result<Tap> {
        let config = config.clone();
        let label = config.name.clone().unwrap_or_default();
        let ns = netns.clone();
        netns
            .run_async({
                let label = ns.to_string();
                move || create_here(&config, label)
            })
            .await?
            .map_err(|(op, source)| tap_error(op, &label, &ns, source))
    }

    /// Attach to an existing persistent TAP by name in `netns` (a daemon restart, or a second
    /// process taking over). Note the kernel creates a fresh non-persistent TAP if the name
    /// does not exist; check the link exists first if that matters.
    pub async fn open_persistent(netns: &Netns, name: &str) -> Result<Tap> {
        let owned = name.to_owned();
        let ns = netns.clone();
        netns
            .run_async({
                let label = ns.to_string();
                move || attach_here(&owned, label)
            })
            .await?
            .map_err(|(op, source)| tap_error(op, name, &ns, source))
    }

    /// Remove a persistent TAP: attach, clear the persist flag, close
    /// (`ip tuntap del dev NAME mode tap`). Ok if it did not exist. Fails with `EBUSY` while
    /// another fd is attached; [`crate::Netlink::delete_link`] removes it regardless.
    pub async fn delete_persistent(netns: &Netns, name: &str) -> Result<()> {
        let tap = Self::open_persistent(netns, name).await?;
        tap.set_persistent(false)?;
        Ok(())
    }

    /// Wrap a TAP fd received from elsewhere (SCM_RIGHTS); its name is read with `TUNGETIFF`.
    /// The fd should be non-blocking for [`AsyncTap`].
    pub fn from_fd(fd: OwnedFd) -> Result<Tap> {
        const ORIGIN: &str = "netns of a received fd";
        let name = sys::tun_get_name(fd.as_fd()).map_err(|source| NetcfgError::Tap {
            op: "TUNGETIFF",
            name: String::new(),
            netns: ORIGIN.into(),
            source,
        })?;
        Ok(Tap {
            fd,
            name,
            netns: ORIGIN.into(),
        })
    }

    /// The interface name the kernel attached this fd to.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Set or clear the persist flag (`TUNSETPERSIST`).
    pub fn set_persistent(&self, persistent: bool) -> Result<()> {
        sys::tun_set_persist(self.fd.as_fd(), persistent)
            .map_err(|source| self.error("TUNSETPERSIST", source))
    }

    /// Give up the wrapper, e.g. to pass the fd to another process.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Register with the current tokio runtime (must be called inside one).
    pub fn into_async(self) -> Result<AsyncTap> {
        let Tap { fd, name, netns } = self;
        match sys::register_async(fd) {
            Ok(fd) => Ok(AsyncTap { fd, name, netns }),
            Err(source) => Err(NetcfgError::Tap {
                op: "register with tokio",
                name,
                netns,
                source,
            }),
        }
    }

    fn error(&self, op: &'static str, source: io::Error) -> NetcfgError {
        NetcfgError::Tap {
            op,
            name: self.name.clone(),
            netns: self.netns.clone(),
            source,
        }
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A TAP registered with tokio: one Ethernet frame per `recv`/`send`.
///
/// `recv`/`send` take `&self`, so one task can read while another writes.
#[derive(Debug)]
pub struct AsyncTap {
    fd: AsyncFd<OwnedFd>,
    name: String,
    netns: String,
}

impl AsyncTap {
    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Wait for and read one frame into `buf`; returns its length. A frame longer than `buf`
    /// is truncated by the kernel, so size `buf` for MTU + 14 (+ 4 for VLAN).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd
            .async_io(Interest::READABLE, |fd| read_frame(fd, buf))
            .await
    }

    /// Read one frame if one is queued, without waiting: `Err(WouldBlock)` when empty. Use
    /// after [`AsyncTap::recv`] to drain a burst in one wakeup.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd.try_io(Interest::READABLE, |fd| read_frame(fd, buf))
    }

    /// Write one complete Ethernet frame (the kernel takes it whole or not at all).
    pub async fn send(&self, frame: &[u8]) -> io::Result<()> {
        let written = self
            .fd
            .async_io(Interest::WRITABLE, |fd| {
                nix::unistd::write(fd, frame).map_err(io::Error::from)
            })
            .await?;
        if written != frame.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short TAP write: {written} of {} bytes", frame.len()),
            ));
        }
        Ok(())
    }

    /// Deregister from tokio and get the plain [`Tap`] back.
    pub fn into_tap(self) -> Tap {
        Tap {
            fd: self.fd.into_inner(),
            name: self.name,
            netns: self.netns,
        }
    }
}

fn read_frame(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    nix::unistd::read(fd, buf).map_err(io::Error::from)
}

type StepResult<T> = std::result::Result<T, (&'static str, io::Error)>;

/// Runs on the netns thread.
fn create_here(config: &TapConfig, netns: String) -> StepResult<Tap> {
    let fd = sys::open_tun().map_err(|e| ("open /dev/net/tun", e))?;
    let requested = config.name.as_deref().unwrap_or("");
    let name = sys::tun_set_iff(fd.as_fd(), requested, sys::TapFlags { exclusive: true })
        .map_err(|e| ("TUNSETIFF", e))?;
    if config.persistent {
        sys::tun_set_persist(fd.as_fd(), true).map_err(|e| ("TUNSETPERSIST", e))?;
    }
    Ok(Tap { fd, name, netns })
}

/// Runs on the netns thread.
fn attach_here(name: &str, netns: String) -> StepResult<Tap> {
    if name.is_empty() {
        return Err((
            "TUNSETIFF",
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "a TAP name is required to re-attach",
            ),
        ));
    }
    let fd = sys::open_tun().map_err(|e| ("open /dev/net/tun", e))?;
    let name = sys::tun_set_iff(fd.as_fd(), name, sys::TapFlags { exclusive: false })
        .map_err(|e| ("TUNSETIFF", e))?;
    Ok(Tap { fd, name, netns })
}

fn tap_error(op: &'static str, name: &str, netns: &Netns, source: io::Error) -> NetcfgError {
    NetcfgError::Tap {
        op,
        name: name.to_owned(),
        netns: netns.to_string(),
        source,
    }
}
