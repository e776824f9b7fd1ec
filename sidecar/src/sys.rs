//! The only `unsafe` in this crate: receiving file descriptors as SCM_RIGHTS ancillary data on
//! the daemon's control socket and taking ownership of them; the allocator's parameters and
//! returning free heap pages to the kernel (`crate::memory`).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::libc;

/// The kernel's per-message limit on passed descriptors (`SCM_MAX_FD`). The control buffer
/// holds that many, so the kernel never has to truncate an SCM_RIGHTS message: every fd it
/// installs is seen here and owned (closed on drop), however many a peer sends.
const SCM_MAX_FD: usize = 253;

/// Room for one SCM_RIGHTS message of [`SCM_MAX_FD`] fds plus one more control message
/// (e.g. credentials), as `u64`s so the buffer is aligned for `cmsghdr`.
const CMSG_WORDS: usize = (SCM_MAX_FD * 4 + 64) / 8 + 8;

/// One `recvmsg` on a non-blocking Unix stream socket: bytes into `buf`, plus every fd that
/// arrived with them, owned (close-on-exec, so a spawned `nft` never inherits a pod's TAP).
/// If the kernel still reports truncated control data, the fds that did arrive are closed and
/// the call fails: a request is never served with part of what its peer sent.
pub fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut control = [0u64; CMSG_WORDS];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is a valid "no name, no iovecs, no control" header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` points at `iov` (covering `buf`) and `control`, all alive and exclusively
    // borrowed for the duration of the call; lengths are the buffers' real sizes.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: `msg` was filled by a successful recvmsg; the CMSG_* macros only walk inside
    // `msg_control[..msg_controllen]`, which the kernel wrote (even when it set MSG_CTRUNC,
    // the headers it wrote are complete and their lengths cover only installed fds).
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let hdr = &*cmsg;
            if hdr.cmsg_level == libc::SOL_SOCKET && hdr.cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let header_len = data.offset_from(cmsg.cast::<u8>()) as usize;
                let count = (hdr.cmsg_len as usize).saturating_sub(header_len)
                    / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    // SAFETY: the kernel just installed `fd` in our table for this message;
                    // nothing else in the process knows it, so we are its only owner.
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        // `fds` is dropped here: everything that did arrive is closed.
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "control data truncated ({} file descriptors received and closed)",
                fds.len()
            ),
        ));
    }
    Ok((n as usize, fds))
}

/// `mallopt(M_MMAP_THRESHOLD, bytes)`: allocations of at least `bytes` get their own mapping,
/// unmapped when freed. Setting it also stops glibc from raising the threshold on its own.
/// Returns whether glibc accepted the value.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn set_mmap_threshold(bytes: i32) -> bool {
    // SAFETY: mallopt only changes the allocator's parameters under its own lock; it has no
    // preconditions and is called before the runtime's threads start.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, bytes) == 1 }
}

/// `malloc_trim(0)`: returns the free pages of every glibc arena to the kernel (the top of
/// each heap and whole free pages inside it). Returns whether any memory was released.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn malloc_trim() -> bool {
    // SAFETY: malloc_trim takes the allocator's own locks; it has no preconditions.
    unsafe { libc::malloc_trim(0) == 1 }
}
