//! The only `unsafe` in the plugin: setting a TAP's MAC address through its own fd
//! (`SIOCSIFHWADDR` on the TUN character device), which needs no netlink and no netns switch.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

nix::ioctl_write_ptr_bad!(siocsifhwaddr, libc::SIOCSIFHWADDR, libc::ifreq);

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
