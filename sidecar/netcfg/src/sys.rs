//! The only place in this crate that talks to the kernel through `unsafe`: the TUN/TAP ioctls
//! (the plugin's and the sidecar's: create, attach, persist, name, MAC) and registering an fd
//! with tokio's reactor.
//!
//! Everything here takes and returns `OwnedFd`/`BorrowedFd`, so no raw fd escapes this module.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use tokio::io::unix::AsyncFd;

/// `IFNAMSIZ` including the trailing NUL: interface names are at most 15 bytes.
pub const IFNAMSIZ: usize = libc::IFNAMSIZ;

// <linux/if_tun.h>: TUNSETIFF = _IOW('T', 202, int), TUNSETPERSIST = _IOW('T', 203, int),
// TUNGETIFF = _IOR('T', 210, unsigned int). The "int" size in the request code is historical:
// the kernel reads and writes a whole `struct ifreq` through the pointer for SETIFF (it copies
// the chosen name back), hence the read-write wrapper with a `*mut` argument.
nix::ioctl_readwrite_bad!(
    tunsetiff,
    nix::request_code_write!(b'T', 202, std::mem::size_of::<libc::c_int>()),
    libc::ifreq
);
nix::ioctl_read_bad!(
    tungetiff,
    nix::request_code_read!(b'T', 210, std::mem::size_of::<libc::c_uint>()),
    libc::ifreq
);
nix::ioctl_write_int_bad!(
    tunsetpersist,
    nix::request_code_write!(b'T', 203, std::mem::size_of::<libc::c_int>())
);

/// Open `/dev/net/tun` non-blocking and close-on-exec. The TAP is created in the network
/// namespace of the calling thread at [`tun_set_iff`] time.
pub fn open_tun() -> io::Result<OwnedFd> {
    Ok(open(
        c"/dev/net/tun",
        OFlag::O_RDWR | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        Mode::empty(),
    )?)
}

/// Flags for [`tun_set_iff`].
#[derive(Clone, Copy, Debug)]
pub struct TapFlags {
    /// Fail with `EBUSY` instead of attaching when the name already exists (`IFF_TUN_EXCL`).
    pub exclusive: bool,
    /// Prefix every frame with a `virtio_net_hdr` (`IFF_VNET_HDR`), the prerequisite of
    /// [`tun_set_offload`]. The kernel keeps this flag per device and each attach replaces it.
    pub vnet_hdr: bool,
}

/// `IFF_VNET_HDR` in `<linux/if_tun.h>`.
pub const IFF_VNET_HDR: libc::c_int = 0x4000;
/// `TUN_F_CSUM`: the reader handles partial checksums.
pub const TUN_F_CSUM: libc::c_uint = 0x01;
/// `TUN_F_TSO4`: the reader handles TCPv4 super-frames.
pub const TUN_F_TSO4: libc::c_uint = 0x02;
/// `TUN_F_TSO6`: the reader handles TCPv6 super-frames.
pub const TUN_F_TSO6: libc::c_uint = 0x04;

/// `TUNSETIFF` with `IFF_TAP | IFF_NO_PI` (plus `IFF_TUN_EXCL` on request). An empty `name`
/// lets the kernel pick `tapN`. Returns the name the kernel used.
pub fn tun_set_iff(fd: BorrowedFd<'_>, name: &str, flags: TapFlags) -> io::Result<String> {
    let mut req = ifreq_with_name(name)?;
    let mut bits = libc::IFF_TAP | libc::IFF_NO_PI;
    if flags.exclusive {
        bits |= libc::IFF_TUN_EXCL;
    }
    if flags.vnet_hdr {
        bits |= IFF_VNET_HDR;
    }
    // The other flags are below 0x8000 | 0x1000 | 0x2 and `IFF_TUN_EXCL` is 0x8000, which is
    // exactly the sign bit of a c_short: the kernel reads the field as unsigned short.
    req.ifr_ifru.ifru_flags = bits as u16 as libc::c_short;
    // SAFETY: `fd` is a live descriptor (borrowed for the call); `req` is a fully initialised,
    // exclusively borrowed ifreq on our stack for the duration of the ioctl, which reads and
    // writes only within `sizeof(struct ifreq)`.
    unsafe { tunsetiff(fd.as_raw_fd(), &mut req) }?;
    name_of(&req)
}

/// `TUNGETIFF`: the interface name attached to this TAP fd.
pub fn tun_get_name(fd: BorrowedFd<'_>) -> io::Result<String> {
    // SAFETY: ifreq is plain old data (arrays, integers and a union of those/pointers); the
    // all-zero bit pattern is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is live for the call; `req` is a valid, writable ifreq on our stack.
    unsafe { tungetiff(fd.as_raw_fd(), &mut req) }?;
    name_of(&req)
}

/// `TUNGETIFF`: the device flags (`IFF_TAP`, `IFF_VNET_HDR`, `IFF_PERSIST`, ...) as the last
/// attach left them.
pub fn tun_get_flags(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    // SAFETY: ifreq is plain old data; the all-zero bit pattern is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is live for the call; `req` is a valid, writable ifreq on our stack.
    unsafe { tungetiff(fd.as_raw_fd(), &mut req) }?;
    // SAFETY: TUNGETIFF fills `ifru_flags`, and every bit pattern is a valid c_short.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    Ok(libc::c_int::from(flags as u16))
}

// TUNSETOFFLOAD = _IOW('T', 208, unsigned int) takes its argument by value;
// TUNSETVNETHDRSZ = _IOW('T', 216, int) and TUNSETVNETLE = _IOW('T', 220, int) read an int
// through the pointer.
nix::ioctl_write_int_bad!(
    tunsetoffload,
    nix::request_code_write!(b'T', 208, std::mem::size_of::<libc::c_uint>())
);
nix::ioctl_write_ptr_bad!(
    tunsetvnethdrsz,
    nix::request_code_write!(b'T', 216, std::mem::size_of::<libc::c_int>()),
    libc::c_int
);
nix::ioctl_write_ptr_bad!(
    tunsetvnetle,
    nix::request_code_write!(b'T', 220, std::mem::size_of::<libc::c_int>()),
    libc::c_int
);

/// `TUNSETVNETHDRSZ`: the size of the header in front of every frame.
pub fn tun_set_vnet_hdr_size(fd: BorrowedFd<'_>, size: libc::c_int) -> io::Result<()> {
    // SAFETY: `fd` is live for the call; the kernel reads one int from `&size`, which lives
    // on our stack for the duration of the ioctl.
    unsafe { tunsetvnethdrsz(fd.as_raw_fd(), &size) }?;
    Ok(())
}

/// `TUNSETVNETLE`: the header's fields are little-endian (as the offload codec writes them).
pub fn tun_set_vnet_le(fd: BorrowedFd<'_>, little_endian: bool) -> io::Result<()> {
    let value = libc::c_int::from(little_endian);
    // SAFETY: `fd` is live for the call; the kernel reads one int from `&value`, which lives
    // on our stack for the duration of the ioctl.
    unsafe { tunsetvnetle(fd.as_raw_fd(), &value) }?;
    Ok(())
}

/// `TUNSETOFFLOAD`: which `TUN_F_*` offloads the reader accepts (0: none). Device-wide.
pub fn tun_set_offload(fd: BorrowedFd<'_>, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: `fd` is live for the call; TUNSETOFFLOAD takes its argument by value.
    unsafe { tunsetoffload(fd.as_raw_fd(), flags as libc::c_int) }?;
    Ok(())
}

fn name_of(req: &libc::ifreq) -> io::Result<String> {
    let bytes: Vec<u8> = req.ifr_name.iter().map(|&c| c as u8).collect();
    let name = CStr::from_bytes_until_nul(&bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "ifreq name not terminated"))?;
    Ok(name.to_string_lossy().into_owned())
}

/// `TUNSETPERSIST`: keep (or stop keeping) the interface after the last fd closes.
pub fn tun_set_persist(fd: BorrowedFd<'_>, persist: bool) -> io::Result<()> {
    // SAFETY: `fd` is live for the call; TUNSETPERSIST takes its argument by value.
    unsafe { tunsetpersist(fd.as_raw_fd(), libc::c_int::from(persist)) }?;
    Ok(())
}

nix::ioctl_write_ptr_bad!(siocsifhwaddr, libc::SIOCSIFHWADDR, libc::ifreq);

/// `SIOCSIFHWADDR` on a TAP fd: the tun driver applies it to the attached interface, with no
/// netlink and no lookup by name.
pub fn tun_set_mac(tap: BorrowedFd<'_>, mac: [u8; 6]) -> io::Result<()> {
    // SAFETY: ifreq is plain old data; the all-zero bit pattern is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let mut addr = libc::sockaddr {
        sa_family: libc::ARPHRD_ETHER,
        sa_data: [0; 14],
    };
    for (dst, src) in addr.sa_data.iter_mut().zip(mac) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_hwaddr = addr;
    // SAFETY: `tap` is live for the call; `req` is an initialised ifreq on our stack that the
    // kernel only reads (sizeof(struct ifreq) bytes).
    unsafe { siocsifhwaddr(tap.as_raw_fd(), &req) }?;
    Ok(())
}

/// Register an fd with the current tokio reactor. Must be called inside a runtime context.
pub fn register_async(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd takes ownership of the OwnedFd, so the descriptor stays open and
    // refers to the same open file description until the AsyncFd is dropped, and
    // `OwnedFd::as_raw_fd` always returns that same descriptor.
    unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
}

fn ifreq_with_name(name: &str) -> io::Result<libc::ifreq> {
    if name.len() >= IFNAMSIZ
        || name
            .bytes()
            .any(|b| b == 0 || b == b'/' || b.is_ascii_whitespace())
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name {name:?}"),
        ));
    }
    // SAFETY: ifreq is plain old data; the all-zero bit pattern is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_if_tun_h() {
        let codes = [
            nix::request_code_write!(b'T', 202, 4),
            nix::request_code_read!(b'T', 210, 4),
            nix::request_code_write!(b'T', 203, 4),
            nix::request_code_write!(b'T', 208, 4),
            nix::request_code_write!(b'T', 216, 4),
            nix::request_code_write!(b'T', 220, 4),
        ];
        assert_eq!(
            codes.map(u64::from),
            [0x400454ca, 0x800454d2, 0x400454cb, 0x400454d0, 0x400454d8, 0x400454dc]
        );
    }

    #[test]
    fn rejects_bad_names() {
        assert!(ifreq_with_name("0123456789abcdef").is_err());
        assert!(ifreq_with_name("a b").is_err());
        assert!(ifreq_with_name("a/b").is_err());
        assert!(ifreq_with_name("").is_ok());
        assert!(ifreq_with_name("tap0").is_ok());
    }
}
