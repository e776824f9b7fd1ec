//! Batched UDP I/O for the acceleration channel: `sendmmsg`/`recvmmsg` through nix's safe wrappers,
//! so a burst of frames costs one system call per batch instead of one per datagram, and buffers
//! that live as long as the channel, so the data path allocates nothing per datagram.
//!
//! Sending: the caller seals each datagram into the next [`SendBatch`] slot (the buffers keep their
//! capacity across batches), then [`SendBatch::flush`] hands them to the kernel. Receiving:
//! [`RecvSlab`] reads up to [`BATCH`] datagrams into one contiguous buffer and splits each off as
//! an owned `BytesMut`, so a frame is a slice of it (one allocation per batch, not per frame).
//!
//! Memory follows the traffic: slots are allocated when a batch first needs them, the receive
//! block starts at [`MIN_RECV_SLOTS`] and doubles while reads fill it, and `release` gives all of
//! it back when the channel goes quiet. Allocated up front, the two came to ~200 KiB per session,
//! measured as most of an idle CNI attachment's memory (100 attachments on one daemon).
//! Kernels or sandboxes without the `mmsg` calls (ENOSYS) fall back to one datagram per call.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use bytes::BytesMut;
use nix::errno::Errno;
use nix::sys::socket::{recvmmsg, sendmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
use softether_proto::udp_accel::MAX_DATAGRAM;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams per system call (and frames taken from the caller per wake-up).
pub const BATCH: usize = 64;
/// Room per received datagram: one byte more than the largest accepted, to detect longer ones.
const SLOT: usize = MAX_DATAGRAM + 1;
/// Receive slots of a quiet channel's block: keep-alives arrive one at a time.
pub const MIN_RECV_SLOTS: usize = 4;

/// Outgoing datagrams of one batch.
pub struct SendBatch {
    bufs: Vec<Vec<u8>>,
    dests: Vec<Option<SockaddrStorage>>,
    len: usize,
    mmsg: bool,
}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch").field("len", &self.len).finish()
    }
}

impl Default for SendBatch {
    fn default() -> Self {
        SendBatch {
            bufs: Vec::new(),
            dests: Vec::new(),
            len: 0,
            mmsg: true,
        }
    }
}

impl SendBatch {
    /// Whether every slot is taken (flush before the next push).
    pub fn is_full(&self) -> bool {
        self.len == BATCH
    }

    /// Number of datagrams waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The next free buffer; `seal` writes the datagram into it and returns its destination, or
    /// `None` to leave the slot free (the frame went elsewhere). Returns what `seal` returned.
    pub fn push_with(
        &mut self,
        seal: impl FnOnce(&mut Vec<u8>) -> Option<SocketAddr>,
    ) -> Option<SocketAddr> {
        debug_assert!(!self.is_full());
        if self.len == self.bufs.len() {
            self.bufs.push(Vec::new());
            self.dests.push(None);
        }
        let dest = seal(&mut self.bufs[self.len])?;
        self.dests[self.len] = Some(SockaddrStorage::from(dest));
        self.len += 1;
        Some(dest)
    }

    /// Frees the slots' buffers (they come back as needed). Only between batches: waiting
    /// datagrams stay.
    pub fn release(&mut self) {
        if self.len == 0 {
            self.bufs = Vec::new();
            self.dests = Vec::new();
        }
    }

    /// Bytes of buffer held.
    #[cfg(test)]
    fn capacity_bytes(&self) -> usize {
        self.bufs.iter().map(Vec::capacity).sum()
    }

    /// Sends every waiting datagram, waiting for socket space as needed. A datagram the kernel
    /// refuses (a firewall's EPERM, an unreachable network) is skipped and counted: UDP never
    /// ends the session, the link then dies by the protocol's own rule. Returns the errors.
    pub async fn flush(&mut self, socket: &UdpSocket) -> u64 {
        let mut at = 0;
        let mut errors = 0;
        while at < self.len {
            let r = socket
                .async_io(Interest::WRITABLE, || self.send_from(socket, at))
                .await;
            match r {
                Ok(n) => at += n.max(1),
                Err(e) => {
                    tracing::debug!("UDP acceleration send error: {e}");
                    errors += 1;
                    at += 1;
                }
            }
        }
        self.len = 0;
        errors
    }

    /// One system call from slot `at`: how many datagrams went out (≥ 1), or the first one's error.
    fn send_from(&mut self, socket: &UdpSocket, at: usize) -> io::Result<usize> {
        let fd = socket.as_raw_fd();
        if self.mmsg {
            let slices: Vec<[IoSlice<'_>; 1]> = self.bufs[at..self.len]
                .iter()
                .map(|b| [IoSlice::new(b)])
                .collect();
            // Per system call, not per datagram: nix's headers hold raw pointers (not Send), and
            // this state lives across awaits in a spawned task.
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(self.len - at, None);
            match sendmmsg(
                fd,
                &mut headers,
                &slices,
                &self.dests[at..self.len],
                [],
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(sent) => return Ok(sent.count()),
                Err(Errno::ENOSYS) => self.mmsg = false,
                Err(e) => return Err(io::Error::from(e)),
            }
        }
        let dest = self.dests[at]
            .as_ref()
            .and_then(to_std)
            .ok_or_else(|| io::Error::other("datagram without a destination"))?;
        socket.try_send_to(&self.bufs[at], dest).map(|_| 1)
    }
}

/// Received datagrams of one batch, each an owned piece of one contiguous buffer.
pub struct RecvSlab {
    slab: BytesMut,
    /// Slots of the next block: doubles (up to [`BATCH`]) when a read fills every free slot.
    slots: usize,
    mmsg: bool,
}

impl std::fmt::Debug for RecvSlab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecvSlab")
    }
}

impl Default for RecvSlab {
    fn default() -> Self {
        RecvSlab {
            slab: BytesMut::new(),
            slots: MIN_RECV_SLOTS,
            mmsg: true,
        }
    }
}

impl RecvSlab {
    /// Reads what the socket has queued (up to [`BATCH`] datagrams) without waiting and hands each
    /// to `each` with its source. `Err(WouldBlock)` when nothing was queued.
    ///
    /// Memory: a block of slots serves datagrams until it is used up, then a new one is
    /// allocated; a frame in flight keeps its block alive, so at most one block per frame queued
    /// downstream (a bounded channel) is held. Blocks grow from [`MIN_RECV_SLOTS`] to [`BATCH`]
    /// slots while reads fill them.
    pub fn try_recv(
        &mut self,
        socket: &UdpSocket,
        mut each: impl FnMut(SocketAddr, BytesMut),
    ) -> io::Result<usize> {
        if self.slab.len() < SLOT {
            // The rest of the old block stays with the frames still referencing it.
            self.slab = BytesMut::zeroed(self.slots * SLOT);
        }
        let free = (self.slab.len() / SLOT).min(BATCH);
        let mut got: [(usize, Option<SocketAddr>); BATCH] = [(0, None); BATCH];
        let n = socket.try_io(Interest::READABLE, || self.recv_into(socket, &mut got))?;
        if n == free {
            // More may be queued: a bigger block next time, so a burst takes fewer calls.
            self.slots = (self.slots * 2).min(BATCH);
        }
        for &(len, src) in &got[..n] {
            let mut d = self.slab.split_to(SLOT);
            d.truncate(len);
            if let Some(src) = src {
                each(src, d);
            }
        }
        Ok(n)
    }

    /// Gives the free part of the block back and starts small again (frames still queued keep
    /// their own pieces).
    pub fn release(&mut self) {
        self.slab = BytesMut::new();
        self.slots = MIN_RECV_SLOTS;
    }

    /// Slots the next block will have.
    #[cfg(test)]
    fn next_block_slots(&self) -> usize {
        self.slots
    }

    fn recv_into(
        &mut self,
        socket: &UdpSocket,
        got: &mut [(usize, Option<SocketAddr>); BATCH],
    ) -> io::Result<usize> {
        if self.mmsg {
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = self
                .slab
                .chunks_exact_mut(SLOT)
                .take(BATCH)
                .map(|c| [IoSliceMut::new(c)])
                .collect();
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(slices.len(), None);
            match recvmmsg(
                socket.as_raw_fd(),
                &mut headers,
                slices.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            ) {
                Ok(msgs) => {
                    let mut n = 0;
                    for (slot, m) in got.iter_mut().zip(msgs) {
                        *slot = (m.bytes, m.address.as_ref().and_then(to_std));
                        n += 1;
                    }
                    return Ok(n);
                }
                Err(Errno::ENOSYS) => self.mmsg = false,
                Err(e) => return Err(io::Error::from(e)),
            }
        }
        let (len, src) = socket.try_recv_from(&mut self.slab[..SLOT])?;
        got[0] = (len, Some(src));
        Ok(1)
    }
}

fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
    a.as_sockaddr_in()
        .map(|a| SocketAddr::from(*a))
        .or_else(|| a.as_sockaddr_in6().map(|a| SocketAddr::from(*a)))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair() -> (UdpSocket, UdpSocket) {
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        (a, b)
    }

    /// Receives until `want` datagrams arrived (bounded: 200 readiness waits).
    async fn recv_all(slab: &mut RecvSlab, socket: &UdpSocket, want: usize) -> Vec<BytesMut> {
        let mut got = Vec::new();
        for _ in 0..200 {
            if got.len() >= want {
                break;
            }
            socket.readable().await.unwrap();
            match slab.try_recv(socket, |_, d| got.push(d)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        got
    }

    #[tokio::test]
    async fn send_slots_are_allocated_by_use_and_released() {
        let (a, b) = pair().await;
        let dest = b.local_addr().unwrap();
        let mut batch = SendBatch::default();
        assert_eq!(batch.capacity_bytes(), 0, "nothing up front");
        for i in 0..3u8 {
            batch.push_with(|buf| {
                buf.clear();
                buf.extend_from_slice(&[i; 100]);
                Some(dest)
            });
        }
        assert_eq!(batch.len(), 3);
        assert!(batch.capacity_bytes() >= 300 && batch.capacity_bytes() < 3 * SLOT);
        batch.release();
        assert!(batch.capacity_bytes() >= 300, "waiting datagrams are kept");
        assert_eq!(batch.flush(&a).await, 0);
        let mut slab = RecvSlab::default();
        let got = recv_all(&mut slab, &b, 3).await;
        assert_eq!(got.iter().map(|d| d[0]).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(got.iter().all(|d| d.len() == 100));
        batch.release();
        assert_eq!(batch.capacity_bytes(), 0);
    }

    #[tokio::test]
    async fn receive_blocks_grow_with_bursts_and_shrink_on_release() {
        let (a, b) = pair().await;
        let dest = b.local_addr().unwrap();
        let mut slab = RecvSlab::default();
        assert_eq!(slab.next_block_slots(), MIN_RECV_SLOTS);
        // A burst of 40 datagrams queued before the first read fills every block it gets.
        for i in 0..40u8 {
            a.send_to(&[i; 64], dest).await.unwrap();
        }
        let got = recv_all(&mut slab, &b, 40).await;
        assert_eq!(got.len(), 40);
        assert_eq!(
            got.iter().map(|d| d[0]).collect::<Vec<_>>(),
            (0..40).collect::<Vec<u8>>()
        );
        assert!(
            slab.next_block_slots() > MIN_RECV_SLOTS,
            "grew with the burst"
        );
        assert!(slab.next_block_slots() <= BATCH);
        slab.release();
        assert_eq!(slab.next_block_slots(), MIN_RECV_SLOTS);
        // A lone keep-alive after that uses a small block again.
        a.send_to(&[7; 30], dest).await.unwrap();
        let got = recv_all(&mut slab, &b, 1).await;
        assert_eq!(&got[0][..], &[7; 30][..]);
        assert_eq!(slab.next_block_slots(), MIN_RECV_SLOTS);
    }
}
