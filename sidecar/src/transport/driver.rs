//! The tokio driver that pumps the sans-IO [`Tunnel`] over an established session's streams
//! (TLS in production, any [`SessionStream`] in the in-process tests).
//!
//! One task owns the stream and the state machine. Callers exchange Ethernet frames through
//! channels: outgoing frames are batched into one record per wake-up (many frames, one TLS write),
//! incoming frames are delivered as zero-copy `Bytes`. If the consumer falls behind, frames are
//! dropped (it is Ethernet) rather than stalling keepalives and timeout detection.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use softether_proto::tunnel::{Tunnel, TunnelError, TunnelStats};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinHandle, JoinSet};

use crate::transport::clock::now;
use crate::transport::connection::{Established, SessionStream};
use crate::transport::spread;
use crate::transport::udp_accel::{self, UdpChannel, UdpIndicator, UdpMode, UdpRunning};

/// How many frames may wait in each direction: ~3 ms at 1 Gbit/s, several times what one
/// 64 KiB read yields. Deeper queues only held more frames (RSS under load) without more
/// throughput (softether-bench, 2048 vs 256).
const CHANNEL_DEPTH: usize = 256;
/// Upper bound of frames pulled from the outgoing channel into one batch.
const MAX_BATCH_FRAMES: usize = 512;
/// Room for one stream read while the connection is quiet (keep-alives, ARP, pings): an idle
/// connection holds about this much (it held a 64 KiB read buffer plus the tunnel's before).
const READ_ROOM_QUIET: usize = 4 * 1024;
/// Room once reads fill the quiet room (bulk transfer). One TLS record carries at most 16 KiB
/// of plaintext, which is about what one read returns from the TLS stream.
const READ_ROOM_BULK: usize = 16 * 1024 + 1024;
/// How long a full queue to the TAP may hold the connection's reads before frames are dropped
/// instead: a reader that slow is stuck, and the session must keep reading its keep-alives.
const MAX_STALL: Duration = Duration::from_secs(1);

/// Why the tunnel ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TunnelExit {
    #[error("closed on request")]
    Closed,
    #[error("server {addr} closed the connection")]
    ServerClosed { addr: SocketAddr },
    #[error("session with {addr} timed out: nothing received for {idle:?}")]
    Timeout { addr: SocketAddr, idle: Duration },
    #[error("protocol error from {addr}: {source}")]
    Protocol {
        addr: SocketAddr,
        #[source]
        source: TunnelError,
    },
    #[error("I/O error with {addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Live counters, refreshed at least once per keepalive interval.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveStats {
    pub tunnel: TunnelStats,
    pub frames_dropped_in: u64,
}

impl LiveStats {
    fn add(mut self, o: LiveStats) -> LiveStats {
        let (t, u) = (&mut self.tunnel, o.tunnel);
        t.frames_in += u.frames_in;
        t.frames_out += u.frames_out;
        t.bytes_in += u.bytes_in;
        t.bytes_out += u.bytes_out;
        t.keepalives_in += u.keepalives_in;
        t.keepalives_out += u.keepalives_out;
        t.frames_out_dropped += u.frames_out_dropped;
        t.frames_in_dropped += u.frames_in_dropped;
        self.frames_dropped_in += o.frames_dropped_in;
        self
    }
}

/// Handle to a running tunnel (one or more TCP connections of one session).
pub struct TunnelHandle {
    /// Send Ethernet frames into the tunnel.
    pub outgoing: mpsc::Sender<Bytes>,
    /// Ethernet frames received from the tunnel.
    pub incoming: mpsc::Receiver<Bytes>,
    stats: Vec<watch::Receiver<LiveStats>>,
    close: watch::Sender<bool>,
    task: JoinHandle<(Result<(), TunnelExit>, LiveStats)>,
    udp: Option<UdpRunning>,
}

impl TunnelHandle {
    /// Counters summed over every connection of the session.
    pub fn stats(&self) -> LiveStats {
        self.stats
            .iter()
            .fold(LiveStats::default(), |acc, rx| acc.add(*rx.borrow()))
    }

    /// Whether frames currently go over UDP acceleration (`Off` if not negotiated).
    pub fn udp_mode(&self) -> UdpMode {
        self.udp
            .as_ref()
            .map_or(UdpMode::Off, |u| u.indicator.get())
    }

    /// The live UDP acceleration indicator, for status reports that outlive this handle's borrow.
    pub fn udp_indicator(&self) -> Option<Arc<UdpIndicator>> {
        self.udp.as_ref().map(|u| u.indicator.clone())
    }

    /// How many TCP connections carry the session.
    pub fn connections(&self) -> usize {
        self.stats.len()
    }

    /// Closes the session cleanly (TLS close_notify on every connection) and waits for the
    /// driver to finish.
    pub async fn close(self) -> (Result<(), TunnelExit>, LiveStats) {
        let _ = self.close.send(true);
        self.join().await
    }

    /// Waits for the tunnel to end by itself (server loss, timeout, protocol error).
    pub async fn join(self) -> (Result<(), TunnelExit>, LiveStats) {
        match self.task.await {
            Ok(r) => r,
            Err(e) => (
                Err(TunnelExit::Io {
                    addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                    source: std::io::Error::other(format!("tunnel task failed: {e}")),
                }),
                LiveStats::default(),
            ),
        }
    }

    /// Like [`join`](Self::join), and hands back the UDP acceleration channel (if any, and its
    /// socket still works) so a resumed session can keep using it.
    pub async fn join_keeping_udp(
        mut self,
    ) -> (Result<(), TunnelExit>, LiveStats, Option<UdpChannel>) {
        let udp = self.udp.take();
        let (result, stats) = self.join().await;
        let channel = match udp {
            Some(u) => u.finish().await,
            None => None,
        };
        (result, stats, channel)
    }

    /// True once the driver task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// Starts the driver tasks for an established session: one per TCP connection. Outgoing frames
/// are spread over the send-capable connections by flow ([`spread`]), so one flow's frames stay
/// in order; frames received on any connection are delivered in arrival order. The session
/// ends when any connection fails: the caller's reconnect logic then starts afresh.
pub fn spawn_tunnel<S: SessionStream>(mut est: Established<S>, seed: u64) -> TunnelHandle {
    let (out_tx, out_rx) = mpsc::channel(CHANNEL_DEPTH);
    let (in_tx, in_rx) = mpsc::channel(CHANNEL_DEPTH);
    // `close` is the caller's (dropping the handle also closes); `abort` is the supervisor's,
    // raised when one connection fails so the others stop too.
    let (close_tx, close_rx) = watch::channel(false);
    let (abort_tx, abort_rx) = watch::channel(false);
    // With UDP acceleration, a UDP task takes the caller's frames first (udp_accel.rs).
    let (out_rx, udp) = udp_accel::interpose(
        est.udp.take(),
        est.welcome.use_compress,
        out_rx,
        &in_tx,
        close_rx.clone(),
        abort_rx.clone(),
        CHANNEL_DEPTH,
    );
    let addr = est.server_addr;
    let timeout = est.welcome.timeout;
    // The server compresses whatever it granted, on every connection of the session.
    let compress = est.welcome.use_compress;
    let mut connections = vec![(est.stream, est.direction, est.leftover)];
    connections.extend(
        est.additional
            .into_iter()
            .map(|c| (c.stream, c.direction, c.leftover)),
    );
    let senders = connections.iter().filter(|c| c.1.can_send()).count();
    let (out_queues, spreader) = if senders > 1 {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..senders)
            .map(|_| mpsc::channel::<Bytes>(CHANNEL_DEPTH))
            .unzip();
        let spreader = tokio::spawn(spread::spread(out_rx, txs)).abort_handle();
        (rxs, Some(spreader))
    } else {
        (vec![out_rx], None)
    };
    let mut out_queues = out_queues.into_iter();
    let mut stats = Vec::with_capacity(connections.len());
    let mut drivers = JoinSet::new();
    for (i, (stream, direction, leftover)) in connections.into_iter().enumerate() {
        let (stats_tx, stats_rx) = watch::channel(LiveStats::default());
        stats.push(stats_rx);
        let driver = Driver {
            stream,
            tunnel: {
                let mut t = Tunnel::new(now(), timeout, seed.wrapping_add(i as u64));
                t.set_compress(compress);
                t.set_direction(direction.can_send(), direction.can_receive());
                t
            },
            addr,
            out_rx: direction.can_send().then(|| out_queues.next()).flatten(),
            in_tx: in_tx.clone(),
            stats_tx,
            dropped_in: 0,
        };
        drivers.spawn(driver.run(leftover, close_rx.clone(), abort_rx.clone()));
    }
    drop(in_tx);
    let task = tokio::spawn(supervise(drivers, abort_tx, spreader));
    TunnelHandle {
        outgoing: out_tx,
        incoming: in_rx,
        stats,
        close: close_tx,
        task,
        udp,
    }
}

/// Waits for every connection; the first failure closes the others and is the session's result.
/// The flow spreader, if any, ends with the connections it feeds.
async fn supervise(
    mut drivers: JoinSet<(Result<(), TunnelExit>, LiveStats)>,
    close: watch::Sender<bool>,
    spreader: Option<AbortHandle>,
) -> (Result<(), TunnelExit>, LiveStats) {
    let mut result = Ok(());
    let mut total = LiveStats::default();
    while let Some(joined) = drivers.join_next().await {
        let (r, stats) = joined.unwrap_or_else(|e| {
            (
                Err(TunnelExit::Io {
                    addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                    source: std::io::Error::other(format!("tunnel task failed: {e}")),
                }),
                LiveStats::default(),
            )
        });
        total = total.add(stats);
        if let Err(e) = r {
            if result.is_ok() {
                result = Err(e);
                let _ = close.send(true);
            }
        }
    }
    if let Some(spreader) = spreader {
        spreader.abort();
    }
    (result, total)
}

struct Driver<S> {
    stream: S,
    tunnel: Tunnel,
    addr: SocketAddr,
    /// This connection's outgoing frames (the session's, or its share of flows when several
    /// connections send); `None` on a receive-only one.
    out_rx: Option<mpsc::Receiver<Bytes>>,
    in_tx: mpsc::Sender<Bytes>,
    stats_tx: watch::Sender<LiveStats>,
    dropped_in: u64,
}

impl<S: SessionStream> Driver<S> {
    async fn run(
        mut self,
        leftover: Vec<u8>,
        close: watch::Receiver<bool>,
        abort: watch::Receiver<bool>,
    ) -> (Result<(), TunnelExit>, LiveStats) {
        let result = self.pump(leftover, close, abort).await;
        let stats = self.live_stats();
        let _ = self.stats_tx.send(stats);
        match &result {
            Ok(()) => tracing::debug!(server = %self.addr, "tunnel closed"),
            Err(e) => tracing::info!(server = %self.addr, "tunnel ended: {e}"),
        }
        (result, stats)
    }

    fn live_stats(&self) -> LiveStats {
        LiveStats {
            tunnel: self.tunnel.stats(),
            frames_dropped_in: self.dropped_in,
        }
    }

    async fn pump(
        &mut self,
        leftover: Vec<u8>,
        mut close: watch::Receiver<bool>,
        mut abort: watch::Receiver<bool>,
    ) -> Result<(), TunnelExit> {
        let addr = self.addr;
        let protocol = |source| TunnelExit::Protocol { addr, source };
        let io = |source: std::io::Error| match source.kind() {
            // A TCP FIN/RST without TLS close_notify is how a crashed or restarted server looks.
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe => TunnelExit::ServerClosed { addr },
            _ => TunnelExit::Io { addr, source },
        };
        if !leftover.is_empty() {
            self.tunnel
                .handle_input(now(), &leftover)
                .map_err(protocol)?;
        }
        // Reads go straight into the tunnel's receive buffer: TLS plaintext is copied once
        // there, and frames are zero-copy slices of it up to the TAP write.
        let mut room = READ_ROOM_QUIET;
        let mut outgoing = Vec::new();
        let mut out_rx = self.out_rx.take();
        // A received frame the full queue to the TAP did not take. While there is one, the
        // socket is not read: TCP flow control slows the server down instead of this side
        // dropping frames it already paid to decrypt (measured: a download lost ~2 % of its
        // frames here and the sender retransmitted ~10 % of its segments). Sending and timers
        // go on, so the uplink never waits for the downlink. A stall over MAX_STALL switches to
        // dropping what does not fit until the queue takes frames again.
        let mut stalled: Option<(Bytes, tokio::time::Instant)> = None;
        let mut dropping = false;
        loop {
            let at = now();
            let mut wrote = false;
            while let Some(record) = self.tunnel.poll_transmit(at) {
                self.stream.write_all(&record).await.map_err(io)?;
                wrote = true;
            }
            if wrote {
                self.stream.flush().await.map_err(io)?;
            }
            if stalled.is_none() {
                while let Some(frame) = self.tunnel.poll_frame() {
                    match self.in_tx.try_send(frame) {
                        Ok(()) => dropping = false,
                        Err(mpsc::error::TrySendError::Full(frame)) if !dropping => {
                            let until = tokio::time::Instant::now() + MAX_STALL;
                            stalled = Some((frame, until));
                            break;
                        }
                        Err(_) => self.dropped_in += 1,
                    }
                }
            }
            let stall_deadline = stalled.as_ref().map(|s| s.1);
            // Publish without waking anyone: readers poll `stats()`; this is a lock and a copy.
            let live = self.live_stats();
            self.stats_tx.send_if_modified(|s| {
                *s = live;
                false
            });
            let deadline = tokio::time::Instant::from_std(self.tunnel.poll_timeout());
            tokio::select! {
                permit = self.in_tx.reserve(), if stalled.is_some() => {
                    match (permit, stalled.take()) {
                        (Ok(permit), Some((frame, _))) => permit.send(frame),
                        _ => self.dropped_in += 1,
                    }
                }
                () = sleep_until_some(stall_deadline), if stalled.is_some() => {
                    stalled = None;
                    self.dropped_in += 1;
                    dropping = true;
                }
                read = self.stream.read_buf(self.tunnel.recv_buffer(room)), if stalled.is_none() => {
                    let n = read.map_err(io)?;
                    if n == 0 {
                        return Err(TunnelExit::ServerClosed { addr });
                    }
                    room = if n >= READ_ROOM_QUIET { READ_ROOM_BULK } else { READ_ROOM_QUIET };
                    self.tunnel.handle_received(now(), n).map_err(protocol)?;
                }
                n = next_batch(out_rx.as_mut(), &mut outgoing) => {
                    for frame in outgoing.drain(..) {
                        self.tunnel.queue_frame(&frame);
                    }
                    if n == 0 {
                        // The sender is gone: this connection only receives from now on.
                        out_rx = None;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    self.tunnel.handle_timeout(now()).map_err(|e| match e {
                        TunnelError::Timeout { idle } => TunnelExit::Timeout { addr, idle },
                        other => TunnelExit::Protocol { addr, source: other },
                    })?;
                }
                () = closed(&mut close, &mut abort) => {
                    // Flush what is queued, then close_notify + FIN: SoftEther has no logout message.
                    let at = now();
                    while let Some(record) = self.tunnel.poll_transmit(at) {
                        let _ = self.stream.write_all(&record).await;
                    }
                    let _ = tokio::time::timeout(Duration::from_secs(2), self.stream.shutdown()).await;
                    return Ok(());
                }
            }
        }
    }
}

/// Takes the next batch of outgoing frames into `frames` (empty, reused so a batch costs no
/// allocation): waits for one, then takes what is already queued (up to [`MAX_BATCH_FRAMES`]).
/// Returns how many; 0 once the sender is gone. Never resolves without a queue.
async fn next_batch(rx: Option<&mut mpsc::Receiver<Bytes>>, frames: &mut Vec<Bytes>) -> usize {
    match rx {
        Some(rx) => rx.recv_many(frames, MAX_BATCH_FRAMES).await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`; never resolves for `None`.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Resolves once the caller asked to close (or dropped the handle) or the supervisor aborted.
async fn closed(close: &mut watch::Receiver<bool>, abort: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = close.wait_for(|closed| *closed) => {}
        _ = abort.wait_for(|aborted| *aborted) => {}
    }
}
