//! The only `unsafe` in the plugin: setting and reading a TAP's MAC address through its own fd
//! (`SIOCSIFHWADDR` / `SIOCGIFHWADDR` on the TUN character device), which needs no netlink and
//! no netns switch.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

nix::ioctl_write_ptr_bad!(siocsifhwaddr, libc::SIOCSIFHWADDR, libc::ifreq);
nix::ioctl_readwrite_bad!(siocgifhwaddr, libc::SIOCGIFHWADDR, libc::ifreq);

/// `SIOCSIFHWADDR` on a TAP fd: the tun driver applies it to the attached interface.
pub fn set_tap_mac(tap: BorrowedFd<'_>, mac: [u8; 6]) -> io::Result<()> {
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

/// `SIOCGIFHWADDR` on a TAP fd: the MAC of the interface this fd is attached to. Reading it
/// through the fd (not by name) ties the answer to the very device the caller holds.
pub fn tap_mac(tap: BorrowedFd<'_>) -> io::Result<[u8; 6]> {
    // SAFETY: ifreq is plain old data; the all-zero bit pattern is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    // SAFETY: `tap` is live for the call; `req` is an initialised, exclusively borrowed ifreq on
    // our stack; the kernel reads and writes only within sizeof(struct ifreq).
    unsafe { siocgifhwaddr(tap.as_raw_fd(), &mut req) }?;
    // SAFETY: the kernel filled `ifru_hwaddr` (the union member this ioctl answers with); every
    // member of the union is plain old data, so reading it is valid either way.
    let addr = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (dst, src) in mac.iter_mut().zip(addr.sa_data) {
        *dst = src as u8;
    }
    Ok(mac)
}
