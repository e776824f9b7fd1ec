//! The only `unsafe` in this crate: taking ownership of file descriptors received as
//! SCM_RIGHTS ancillary data on the control socket.
#![allow(unsafe_code)]

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};

/// At most this many fds are accepted per message; the plugin sends one.
const MAX_FDS: usize = 4;

/// One `recvmsg` on a non-blocking Unix stream socket: bytes into `buf`, plus every fd that
/// arrived with them, owned (close-on-exec, so a spawned `nft` never inherits a pod's TAP).
pub fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; MAX_FDS]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<UnixAddr>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    // With MSG_CTRUNC nix refuses to walk the buffer; the kernel closes what did not fit, and
    // what did fit would leak, so the peer is told (the request then fails) rather than trusted.
    let cmsgs = msg.cmsgs().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("more than {MAX_FDS} file descriptors in one message"),
        )
    })?;
    for c in cmsgs {
        if let ControlMessageOwned::ScmRights(raw) = c {
            for fd in raw {
                // SAFETY: the kernel just installed `fd` in our table for this message
                // (SCM_RIGHTS); nothing else in the process knows it, so we are its only owner.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Ok((msg.bytes, fds))
}
