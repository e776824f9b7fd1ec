//! The lab crate's only `unsafe`: a packet-socket address (`sockaddr_ll`), which nix builds only
//! through the unsafe `SockaddrLike::from_raw`.

#![allow(unsafe_code)]

use nix::libc;
use nix::sys::socket::{LinkAddr, SockaddrLike};

/// The address that binds an `AF_PACKET` socket to interface `ifindex` for every protocol.
pub fn packet_bind_addr(ifindex: u32) -> Option<LinkAddr> {
    // SAFETY: sockaddr_ll is a plain C struct of integers and byte arrays; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    sll.sll_ifindex = i32::try_from(ifindex).ok()?;
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: the pointer is to a live, initialised sockaddr_ll of exactly `len` bytes, which is what
    // LinkAddr wraps; from_raw copies it and checks the family.
    unsafe { LinkAddr::from_raw(std::ptr::addr_of!(sll).cast::<libc::sockaddr>(), Some(len)) }
}

/// Makes `cmd`'s child the leader of a new session (and so of a new process group, whose id is
/// its pid: [`crate::command::kill_group`] works as with `process_group(0)`).
///
/// Why a session and not only a group: with `kernel.sched_autogroup_enabled` (Debian's default)
/// the scheduler shares CPU fairly between sessions first. Children left in the test's session
/// compete as one group: the lab's server, the client under test and iperf3 then interleave per
/// packet, which no deployment does (they run on separate machines or as separate services). In
/// one group our client's UDP-accelerated upload fell into a per-datagram lock-step with the
/// server: 394 Mbit/s with the server at 24 s of CPU per GB, against 1214 Mbit/s and 5.8 s/GB in
/// its own session (same lab, same binary).
pub(crate) fn own_session(cmd: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls setsid(2), which
    // is async-signal-safe, allocates nothing and touches no lock. It cannot fail in a freshly
    // forked child (not a group leader); if it did, the child would keep our group, and
    // `kill_group` (which signals the group whose id is the child's pid) would find none.
    unsafe {
        cmd.pre_exec(|| {
            let _ = nix::unistd::setsid();
            Ok(())
        })
    }
}
