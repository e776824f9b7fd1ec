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
    /// Open with `IFF_VNET_HDR`, so [`Tap::setup_offload`] can turn the TAP offloads on.
    pub vnet_hdr: bool,
}

/// How frames cross an attached TAP fd: decided by the fd (whoever attached last chose
/// `IFF_VNET_HDR`) and by what the kernel accepted in [`Tap::setup_offload`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TapOffload {
    /// Plain Ethernet frames, one per read/write (no `IFF_VNET_HDR`: e.g. a TAP attached by
    /// an older plugin, or offloads turned off at creation).
    #[default]
    Plain,
    /// Every frame carries a `virtio_net_hdr` but the kernel sends no super-frames
    /// (`TUNSETOFFLOAD` refused, or offloads turned off on an `IFF_VNET_HDR` fd).
    Header,
    /// `virtio_net_hdr` with checksum and TSO4/TSO6 offloads: reads return TCP super-frames
    /// (up to 64 KiB) to segment, writes may carry coalesced super-frames.
    Offload,
}

impl TapOffload {
    /// Whether every frame read or written carries a `virtio_net_hdr`.
    pub fn has_header(self) -> bool {
        self != TapOffload::Plain
    }
}

/// An attached TAP: the queue fd and the interface name. Dropping it closes the fd, which
/// removes a non-persistent TAP.
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    name: String,
    /// Where the TAP lives, for error messages only.
    netns: String,
    offload: TapOffload,
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
            offload: TapOffload::Plain,
        })
    }

    /// Turns the TAP offloads on (`want`) or off and returns what this fd now does. An fd
    /// attached without `IFF_VNET_HDR` stays [`TapOffload::Plain`] (and any offloads an
    /// earlier attach left on the device are cleared, or the kernel would hand plain readers
    /// super-frames). With the header: `TUNSETVNETHDRSZ(10)`, `TUNSETVNETLE(1)` and
    /// `TUNSETOFFLOAD(CSUM | TSO4 | TSO6)`; if the kernel refuses the offloads, frames still
    /// carry the header ([`TapOffload::Header`]). Never fails: the data path works in every
    /// mode, the refusal is logged.
    pub fn setup_offload(&mut self, want: bool) -> TapOffload {
        let fd = self.fd.as_fd();
        let flags = match sys::tun_get_flags(fd) {
            Ok(flags) => flags,
            Err(e) => {
                tracing::warn!(tap = %self.name, "TUNGETIFF: {e}; assuming plain frames");
                return self.offload;
            }
        };
        self.offload = if flags & sys::IFF_VNET_HDR == 0 {
            if let Err(e) = sys::tun_set_offload(fd, 0) {
                tracing::debug!(tap = %self.name, "TUNSETOFFLOAD(0): {e}");
            }
            if want {
                tracing::info!(tap = %self.name, "TAP attached without IFF_VNET_HDR (created by an older plugin?): offloads off");
            }
            TapOffload::Plain
        } else {
            let header = sys::tun_set_vnet_hdr_size(fd, crate::offload::VNET_HDR_LEN as i32)
                .and_then(|()| sys::tun_set_vnet_le(fd, true));
            let offloads = if want {
                sys::TUN_F_CSUM | sys::TUN_F_TSO4 | sys::TUN_F_TSO6
            } else {
                0
            };
            match header.and_then(|()| sys::tun_set_offload(fd, offloads)) {
                Ok(()) if want => TapOffload::Offload,
                Ok(()) => TapOffload::Header,
                Err(e) => {
                    tracing::warn!(tap = %self.name, "the kernel refused the TAP offloads: {e}; one frame per read");
                    // Whatever was set before the failure: no super-frames, header kept.
                    let _ = sys::tun_set_offload(fd, 0);
                    TapOffload::Header
                }
            }
        };
        self.offload
    }

    /// How frames cross this fd (see [`Tap::setup_offload`]).
    pub fn offload(&self) -> TapOffload {
        self.offload
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
        let Tap {
            fd,
            name,
            netns,
            offload,
        } = self;
        match sys::register_async(fd) {
            Ok(fd) => Ok(AsyncTap {
                fd,
                name,
                netns,
                offload,
            }),
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
    offload: TapOffload,
}

impl AsyncTap {
    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How frames cross this fd: with [`TapOffload::Header`] or [`TapOffload::Offload`] every
    /// read and write starts with a `virtio_net_hdr`.
    pub fn offload(&self) -> TapOffload {
        self.offload
    }

    /// Wait for and read one frame into `buf`; returns its length. A frame longer than `buf`
    /// is truncated by the kernel, so size `buf` for MTU + 14 (+ 4 for VLAN).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd
            .async_io(Interest::READABLE, |fd| read_frame(fd, buf))
            .await
    }

    /// Waits until a frame is queued, without reading it (then [`AsyncTap::try_recv`]): the
    /// caller needs no read buffer while the TAP is idle.
    pub async fn readable(&self) -> io::Result<()> {
        // Dropping the guard keeps the readiness: the next `try_recv` reads, and a
        // `WouldBlock` there clears it.
        self.fd.readable().await.map(drop)
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
            offload: self.offload,
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
    let flags = sys::TapFlags {
        exclusive: true,
        vnet_hdr: config.vnet_hdr,
    };
    let name = sys::tun_set_iff(fd.as_fd(), requested, flags).map_err(|e| ("TUNSETIFF", e))?;
    if config.persistent {
        sys::tun_set_persist(fd.as_fd(), true).map_err(|e| ("TUNSETPERSIST", e))?;
    }
    Ok(Tap {
        fd,
        name,
        netns,
        offload: TapOffload::Plain,
    })
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
    // A re-attach (daemon restart, recovery) always asks for the header: the bridge follows
    // whatever mode the fd ends up in, and an older reader never re-attaches after us.
    let flags = sys::TapFlags {
        exclusive: false,
        vnet_hdr: true,
    };
    let name = sys::tun_set_iff(fd.as_fd(), name, flags).map_err(|e| ("TUNSETIFF", e))?;
    Ok(Tap {
        fd,
        name,
        netns,
        offload: TapOffload::Plain,
    })
}

fn tap_error(op: &'static str, name: &str, netns: &Netns, source: io::Error) -> NetcfgError {
    NetcfgError::Tap {
        op,
        name: name.to_owned(),
        netns: netns.to_string(),
        source,
    }
}
