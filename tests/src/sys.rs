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
