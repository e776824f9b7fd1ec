//! A user-space delay line for the WAN bench: this kernel has no `netem`, so latency is added by a
//! process that forwards Ethernet frames between two interfaces (packet sockets) through a fixed
//! delay queue. Rate is shaped with `tc tbf` and loss with nftables elsewhere ([`crate::wan`]).
//!
//! [`DelayQueue`] is the sans-IO part and holds the guarantees:
//! - order: frames leave in the order they arrived (FIFO, one queue per direction);
//! - delay: a frame never leaves before `arrival + delay`, and is due exactly then (the I/O loop
//!   sleeps until the head is due, so it leaves late only by scheduling latency);
//! - memory: the bytes held (frame buffers, counted by capacity, plus recycled spares) never exceed
//!   the configured budget; a frame that does not fit is dropped and counted, like a full router
//!   queue (tail drop).
//!
//! [`DelayLine`] runs one thread per direction over two datagram sockets: `AF_PACKET` sockets bound
//! to two interfaces in the lab, or any datagram socket pair in tests.

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvfrom, send, LinkAddr, MsgFlags};

/// Longest frame forwarded (Ethernet + VLAN tag, no offloads); longer ones are dropped.
pub const MAX_FRAME: usize = 1522;
/// `sll_pkttype` of a frame the interface itself sent (packet sockets see those too).
const PACKET_OUTGOING: u8 = 4;
/// How often a thread looks at its stop flag when idle.
const IDLE_WAKE: Duration = Duration::from_millis(50);
/// Frames read per wake-up before due frames are sent.
const READ_BURST: usize = 64;

/// A FIFO that releases each frame `delay` after it arrived, within a byte budget.
#[derive(Debug)]
pub struct DelayQueue {
    delay: Duration,
    budget: usize,
    held: usize,
    queue: VecDeque<(Instant, Vec<u8>)>,
    spares: Vec<Vec<u8>>,
    last_arrival: Option<Instant>,
    dropped: u64,
}

impl DelayQueue {
    /// A queue adding `delay`, holding at most `budget` bytes.
    pub fn new(delay: Duration, budget: usize) -> Self {
        DelayQueue {
            delay,
            budget,
            held: 0,
            queue: VecDeque::new(),
            spares: Vec::new(),
            last_arrival: None,
            dropped: 0,
        }
    }

    /// Queues a copy of `frame` that arrived at `now`; false (counted) if it is empty, longer than
    /// [`MAX_FRAME`] or does not fit the budget.
    pub fn push(&mut self, now: Instant, frame: &[u8]) -> bool {
        // Arrival times never go backwards, so release times keep the arrival order.
        let now = self.last_arrival.map_or(now, |t| t.max(now));
        if frame.is_empty() || frame.len() > MAX_FRAME {
            self.dropped += 1;
            return false;
        }
        let mut buf = match self.spares.pop() {
            Some(b) => b,
            None if self.held + MAX_FRAME > self.budget => {
                self.dropped += 1;
                return false;
            }
            None => {
                // Every buffer is MAX_FRAME bytes and never grows: held = buffers × MAX_FRAME.
                self.held += MAX_FRAME;
                Vec::with_capacity(MAX_FRAME)
            }
        };
        buf.clear();
        buf.extend_from_slice(frame);
        self.last_arrival = Some(now);
        self.queue.push_back((now + self.delay, buf));
        true
    }

    /// The next frame whose time has come, if any. Hand the buffer back with [`recycle`](Self::recycle).
    pub fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.queue.front().is_some_and(|(due, _)| *due <= now) {
            self.queue.pop_front().map(|(_, f)| f)
        } else {
            None
        }
    }

    /// Returns a delivered frame's buffer for reuse (it stays counted in the budget).
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.spares.push(buf);
    }

    /// When the head frame is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.front().map(|(due, _)| *due)
    }

    /// Bytes of buffer held (queued and spare); never above the budget.
    pub fn held_bytes(&self) -> usize {
        self.held
    }

    /// Frames queued.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Frames refused (too long, or over the budget).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// Counters of one direction.
#[derive(Debug, Default)]
pub struct DirectionStats {
    /// Frames sent on after the delay.
    pub forwarded: AtomicU64,
    /// Frames dropped: queue full or too long.
    pub dropped: AtomicU64,
    /// Frames the output socket refused.
    pub send_errors: AtomicU64,
}

/// Two forwarding threads (a→b and b→a) with a delay queue each; stopped on drop.
#[derive(Debug)]
pub struct DelayLine {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// a→b, then b→a.
    pub stats: [Arc<DirectionStats>; 2],
}

impl DelayLine {
    /// Forwards datagrams read on `a` to `b` and on `b` to `a`, each `delay` later, each direction
    /// holding at most `budget` bytes.
    pub fn start(a: OwnedFd, b: OwnedFd, delay: Duration, budget: usize) -> Result<DelayLine> {
        for fd in [&a, &b] {
            let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
            fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stats = [Arc::default(), Arc::default()];
        let mut threads = Vec::new();
        for (i, (from, to)) in [
            (a.try_clone()?, b.try_clone()?),
            (b.try_clone()?, a.try_clone()?),
        ]
        .into_iter()
        .enumerate()
        {
            let (stop, stats) = (stop.clone(), Arc::clone(&stats[i]));
            threads.push(
                std::thread::Builder::new()
                    .name(format!("delay-line-{i}"))
                    .spawn(move || forward(&from, &to, delay, budget, &stop, &stats))
                    .context("spawning a delay-line thread")?,
            );
        }
        Ok(DelayLine {
            stop,
            threads,
            stats,
        })
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One direction: read what arrives on `from`, send each frame on `to` once it is due.
fn forward(
    from: &OwnedFd,
    to: &OwnedFd,
    delay: Duration,
    budget: usize,
    stop: &AtomicBool,
    stats: &DirectionStats,
) {
    let mut q = DelayQueue::new(delay, budget);
    let mut buf = vec![0u8; MAX_FRAME + 1];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let wait = q
            .next_due()
            .map_or(IDLE_WAKE, |due| due.saturating_duration_since(now))
            .min(IDLE_WAKE);
        // Round up: waking a little early would only spin until the head is due.
        let ms = u16::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(from.as_fd(), PollFlags::POLLIN)];
        let readable = matches!(poll(&mut fds, PollTimeout::from(ms)), Ok(n) if n > 0);
        if readable {
            for _ in 0..READ_BURST {
                match recvfrom::<LinkAddr>(from.as_raw_fd(), &mut buf) {
                    Ok((n, addr)) => {
                        // Our own sends on this interface come back as PACKET_OUTGOING: skip them.
                        if addr.is_some_and(|a| a.pkttype() == PACKET_OUTGOING) {
                            continue;
                        }
                        if !q.push(Instant::now(), &buf[..n.min(buf.len())]) {
                            stats.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    // EAGAIN: drained (the sockets are non-blocking); anything else: retry later.
                    Err(_) => break,
                }
            }
        }
        let now = Instant::now();
        while let Some(frame) = q.pop_due(now) {
            match send(to.as_raw_fd(), &frame, MsgFlags::MSG_DONTWAIT) {
                Ok(_) => stats.forwarded.fetch_add(1, Ordering::Relaxed),
                Err(_) => stats.send_errors.fetch_add(1, Ordering::Relaxed),
            };
            q.recycle(frame);
        }
    }
}

#[cfg(test)]
#[path = "delay_line_tests.rs"]
mod tests;
