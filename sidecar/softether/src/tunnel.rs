//! Tunnel data phase on one TCP/TLS stream (§10): record framing, keep-alives and the
//! receive timeout, as a sans-IO state machine over `Instant`s the caller supplies.
//!
//! ```text
//! Data batch : u32 N (0 < N < 0xFFFFFFFF), N × (u32 len, len bytes of Ethernet frame)
//! No-op      : u32 0
//! Keep-alive : u32 0xFFFFFFFF, u32 len (≤ 512), len bytes
//! ```
//! With `use_compress` every block is one zlib stream ([`Tunnel::set_compress`], §10.4).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::prng::SplitMix64;

/// Block count that marks a keep-alive record instead of a frame batch (§10).
pub const KEEP_ALIVE_MAGIC: u32 = 0xFFFF_FFFF;
/// Receiver limit for one block (2 × `MAX_PACKET_SIZE`); larger means a broken peer.
pub const MAX_BLOCK: u32 = 3200;
/// Receiver limit for a keep-alive body (`MAX_KEEPALIVE_SIZE`).
pub const MAX_KEEPALIVE: u32 = 512;
/// Largest frame sent; the server drops anything above `MAX_PACKET_SIZE` anyway.
pub const MAX_FRAME: usize = 1600;
/// Batches are closed once they reach this many bytes; the rest goes in the next record.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Keep-alive bodies are 0..=64 random bytes (the peer allows up to 512).
const MAX_KEEPALIVE_SENT: u64 = 64;

/// Fatal tunnel conditions: the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TunnelError {
    /// Nothing (not even a keep-alive) arrived within the session timeout.
    #[error("tunnel timed out: nothing received for {idle:?}")]
    Timeout {
        /// How long the connection was silent.
        idle: Duration,
    },
    /// A block length above [`MAX_BLOCK`].
    #[error("peer sent a {0}-byte block (limit {MAX_BLOCK}); stream is corrupt")]
    BlockTooLarge(u32),
    /// A keep-alive length above [`MAX_KEEPALIVE`].
    #[error("peer sent a {0}-byte keep-alive (limit {MAX_KEEPALIVE}); stream is corrupt")]
    KeepAliveTooLarge(u32),
}

/// Counters since the tunnel was created.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelStats {
    /// Ethernet frames received.
    pub frames_in: u64,
    /// Ethernet frames sent.
    pub frames_out: u64,
    /// Ethernet frame bytes (without framing).
    pub bytes_in: u64,
    /// Ethernet frame bytes sent (without framing).
    pub bytes_out: u64,
    /// Keep-alive records received.
    pub keepalives_in: u64,
    /// Keep-alive records sent.
    pub keepalives_out: u64,
    /// Frames not sent because they were empty or longer than [`MAX_FRAME`].
    pub frames_out_dropped: u64,
    /// Received blocks that did not inflate to a frame (compressed sessions only).
    pub frames_in_dropped: u64,
}

#[derive(Debug, Clone, Copy)]
enum Recv {
    Record,
    BlockLen { left: u32 },
    BlockData { len: usize, left: u32 },
    KeepAliveLen,
    KeepAliveBody { left: usize },
}

/// One tunnel connection. Call pattern (all `now`s monotonic):
/// - bytes read from the stream → [`handle_input`](Self::handle_input), then drain
///   [`poll_frame`](Self::poll_frame);
/// - frames to send → [`queue_frame`](Self::queue_frame), then write every record from
///   [`poll_transmit`](Self::poll_transmit) (it also produces keep-alives when due);
/// - sleep until [`poll_timeout`](Self::poll_timeout), then call
///   [`handle_timeout`](Self::handle_timeout) and [`poll_transmit`](Self::poll_transmit).
#[derive(Debug)]
pub struct Tunnel {
    timeout: Duration,
    rng: SplitMix64,
    recv_buf: BytesMut,
    recv: Recv,
    frames: VecDeque<Bytes>,
    failed: Option<TunnelError>,
    batch: BytesMut,
    batch_count: u32,
    ready: VecDeque<Bytes>,
    last_receive: Instant,
    next_keepalive: Instant,
    stats: TunnelStats,
    compress: bool,
    /// Half-connection (§9.3): keep-alives only on send-capable connections, the receive
    /// timeout only on receive-capable ones.
    can_send: bool,
    can_receive: bool,
}

impl Tunnel {
    /// `timeout` is the Welcome's session timeout; `seed` drives keep-alive jitter and padding.
    pub fn new(now: Instant, timeout: Duration, seed: u64) -> Self {
        let mut t = Tunnel {
            timeout,
            rng: SplitMix64::new(seed),
            // Grown by `recv_buffer` as reads need it: an idle tunnel holds only a few KiB.
            recv_buf: BytesMut::new(),
            recv: Recv::Record,
            frames: VecDeque::new(),
            failed: None,
            batch: BytesMut::new(),
            batch_count: 0,
            ready: VecDeque::new(),
            last_receive: now,
            next_keepalive: now,
            stats: TunnelStats::default(),
            compress: false,
            can_send: true,
            can_receive: true,
        };
        t.schedule_keepalive(now);
        t
    }

    /// Compress every block sent and inflate every block received (the Welcome's
    /// `use_compress`); frames that do not inflate are dropped and counted.
    pub fn set_compress(&mut self, on: bool) {
        self.compress = on;
    }

    /// The connection's direction under half-connection (`IS_SEND_TCP_SOCK` /
    /// `IS_RECV_TCP_SOCK`): a receive-only connection sends no keep-alives, a send-only one never
    /// times out (the server sends nothing on it).
    pub fn set_direction(&mut self, can_send: bool, can_receive: bool) {
        self.can_send = can_send;
        self.can_receive = can_receive;
    }

    /// `GenNextKeepAliveSpan`: uniformly in [timeout/5, timeout/2).
    fn schedule_keepalive(&mut self, now: Instant) {
        let lo = self.timeout / 5;
        let span = (self.timeout / 2).saturating_sub(lo).as_millis() as u64;
        self.next_keepalive = now + lo + Duration::from_millis(self.rng.below(span));
    }

    /// Feeds bytes read from the stream (any chunking). Any byte counts as "received" for the
    /// timeout. After an error the tunnel is dead and keeps returning it.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) -> Result<(), TunnelError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if !data.is_empty() {
            self.last_receive = self.last_receive.max(now);
        }
        self.recv_buf.extend_from_slice(data);
        let result = self.decode();
        if let Err(e) = &result {
            self.failed = Some(e.clone());
            self.recv_buf = BytesMut::new();
        }
        result
    }

    /// The receive buffer with at least `room` free bytes at its end, for reading the stream
    /// straight into it (then [`handle_received`](Self::handle_received)): no copy through a
    /// separate read buffer. When nothing is buffered, a buffer much larger than `room` (from
    /// a burst) is given back, so a quiet tunnel holds about `room` bytes.
    pub fn recv_buffer(&mut self, room: usize) -> &mut BytesMut {
        if self.recv_buf.is_empty() && self.recv_buf.capacity() > 2 * room {
            self.recv_buf = BytesMut::new();
        }
        self.recv_buf.reserve(room);
        &mut self.recv_buf
    }

    /// Decodes the `n` bytes just read into [`recv_buffer`](Self::recv_buffer), like
    /// [`handle_input`](Self::handle_input) with those bytes.
    pub fn handle_received(&mut self, now: Instant, n: usize) -> Result<(), TunnelError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if n > 0 {
            self.last_receive = self.last_receive.max(now);
        }
        let result = self.decode();
        if let Err(e) = &result {
            self.failed = Some(e.clone());
            self.recv_buf = BytesMut::new();
        }
        result
    }

    fn decode(&mut self) -> Result<(), TunnelError> {
        loop {
            let buf = &mut self.recv_buf;
            self.recv = match self.recv {
                Recv::Record | Recv::BlockLen { .. } | Recv::KeepAliveLen if buf.len() < 4 => {
                    return Ok(());
                }
                Recv::Record => match buf.get_u32() {
                    KEEP_ALIVE_MAGIC => Recv::KeepAliveLen,
                    0 => Recv::Record,
                    n => Recv::BlockLen { left: n },
                },
                Recv::BlockLen { left } => match buf.get_u32() {
                    len if len > MAX_BLOCK => return Err(TunnelError::BlockTooLarge(len)),
                    0 => next_block(left),
                    len => Recv::BlockData {
                        len: len as usize,
                        left,
                    },
                },
                Recv::BlockData { len, left } => {
                    if buf.len() < len {
                        return Ok(());
                    }
                    let block = buf.split_to(len).freeze();
                    let frame = if self.compress {
                        crate::compress::inflate(&block).map(Bytes::from)
                    } else {
                        Some(block)
                    };
                    match frame {
                        Some(frame) => {
                            self.stats.frames_in += 1;
                            self.stats.bytes_in += frame.len() as u64;
                            self.frames.push_back(frame);
                        }
                        None => self.stats.frames_in_dropped += 1,
                    }
                    next_block(left)
                }
                Recv::KeepAliveLen => match buf.get_u32() {
                    len if len > MAX_KEEPALIVE => return Err(TunnelError::KeepAliveTooLarge(len)),
                    len => {
                        self.stats.keepalives_in += 1;
                        Recv::KeepAliveBody { left: len as usize }
                    }
                },
                Recv::KeepAliveBody { left } => {
                    let skip = left.min(buf.len());
                    buf.advance(skip);
                    if skip < left {
                        self.recv = Recv::KeepAliveBody { left: left - skip };
                        return Ok(());
                    }
                    Recv::Record
                }
            };
        }
    }

    /// Next received Ethernet frame (a zero-copy slice of the receive buffer).
    pub fn poll_frame(&mut self) -> Option<Bytes> {
        self.frames.pop_front()
    }

    /// Queues an outgoing Ethernet frame; frames are batched into as few records as possible.
    /// Empty frames and frames over [`MAX_FRAME`] bytes are dropped (and counted).
    pub fn queue_frame(&mut self, frame: &[u8]) {
        if frame.is_empty() || frame.len() > MAX_FRAME {
            self.stats.frames_out_dropped += 1;
            return;
        }
        let deflated;
        let block = if self.compress {
            deflated = crate::compress::deflate(frame);
            &deflated[..]
        } else {
            frame
        };
        if self.batch_count == 0 {
            self.batch.reserve(4 + 4 + block.len());
            self.batch.put_u32(0); // patched with the count when the batch is sealed
        }
        self.batch.put_u32(block.len() as u32);
        self.batch.extend_from_slice(block);
        self.batch_count += 1;
        self.stats.frames_out += 1;
        self.stats.bytes_out += frame.len() as u64;
        if self.batch.len() >= MAX_BATCH_BYTES {
            self.seal_batch();
        }
    }

    fn seal_batch(&mut self) {
        if self.batch_count == 0 {
            return;
        }
        self.batch[..4].copy_from_slice(&self.batch_count.to_be_bytes());
        self.batch_count = 0;
        self.ready.push_back(self.batch.split().freeze());
    }

    /// Whether frames are waiting to be transmitted.
    pub fn has_pending_frames(&self) -> bool {
        !self.ready.is_empty() || self.batch_count > 0
    }

    /// Next record to write: a batch of queued frames, else a keep-alive if one is due.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        if self.ready.is_empty() {
            self.seal_batch();
        }
        if let Some(record) = self.ready.pop_front() {
            self.schedule_keepalive(now);
            return Some(record);
        }
        if now < self.next_keepalive || !self.can_send {
            return None;
        }
        let len = self.rng.below(MAX_KEEPALIVE_SENT + 1) as usize;
        let mut record = BytesMut::with_capacity(8 + len);
        record.put_u32(KEEP_ALIVE_MAGIC);
        record.put_u32(len as u32);
        record.resize(8 + len, 0);
        self.rng.fill(&mut record[8..]);
        self.stats.keepalives_out += 1;
        self.schedule_keepalive(now);
        Some(record.freeze())
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) / `poll_transmit` next.
    pub fn poll_timeout(&self) -> Instant {
        match (self.can_send, self.can_receive) {
            (true, false) => self.next_keepalive,
            (false, true) => self.last_receive + self.timeout,
            _ => self.next_keepalive.min(self.last_receive + self.timeout),
        }
    }

    /// Fails with [`TunnelError::Timeout`] once nothing was received for the timeout.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), TunnelError> {
        let idle = now.saturating_duration_since(self.last_receive);
        if idle >= self.timeout && self.can_receive {
            let e = TunnelError::Timeout { idle };
            self.failed = Some(e.clone());
            return Err(e);
        }
        Ok(())
    }

    /// The counters since the tunnel was created.
    pub fn stats(&self) -> TunnelStats {
        self.stats
    }
}

fn next_block(left: u32) -> Recv {
    if left <= 1 {
        Recv::Record
    } else {
        Recv::BlockLen { left: left - 1 }
    }
}

#[cfg(test)]
#[path = "tunnel_tests.rs"]
mod tests;
