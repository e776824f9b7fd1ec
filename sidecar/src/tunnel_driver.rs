//! The tokio driver that pumps the sans-IO [`Tunnel`] over an established TLS stream.
//!
//! One task owns the stream and the state machine. Callers exchange Ethernet frames through
//! channels: outgoing frames are batched into one record per wake-up (many frames, one TLS write),
//! incoming frames are delivered as zero-copy `Bytes`. If the consumer falls behind, frames are
//! dropped (it is Ethernet) rather than stalling keepalives and timeout detection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use softether_proto::tunnel::{Tunnel, TunnelError, TunnelStats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;

use crate::establish::Established;

/// How many frames may wait in each direction.
const CHANNEL_DEPTH: usize = 2048;
/// Upper bound of frames pulled from the outgoing channel into one batch.
const MAX_BATCH_FRAMES: usize = 512;

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

/// Handle to a running tunnel.
pub struct TunnelHandle {
    /// Send Ethernet frames into the tunnel.
    pub outgoing: mpsc::Sender<Bytes>,
    /// Ethernet frames received from the tunnel.
    pub incoming: mpsc::Receiver<Bytes>,
    stats: watch::Receiver<LiveStats>,
    close: Option<oneshot::Sender<()>>,
    task: JoinHandle<(Result<(), TunnelExit>, LiveStats)>,
}

impl TunnelHandle {
    pub fn stats(&self) -> LiveStats {
        *self.stats.borrow()
    }

    /// Closes the session cleanly (TLS close_notify) and waits for the driver to finish.
    pub async fn close(mut self) -> (Result<(), TunnelExit>, LiveStats) {
        if let Some(tx) = self.close.take() {
            let _ = tx.send(());
        }
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

    /// True once the driver task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// Starts the driver task for an established session.
pub fn spawn_tunnel(est: Established, seed: u64) -> TunnelHandle {
    let (out_tx, out_rx) = mpsc::channel(CHANNEL_DEPTH);
    let (in_tx, in_rx) = mpsc::channel(CHANNEL_DEPTH);
    let (stats_tx, stats_rx) = watch::channel(LiveStats::default());
    let (close_tx, close_rx) = oneshot::channel();
    let addr = est.server_addr;
    let tunnel = Tunnel::new(Instant::now(), est.welcome.timeout, seed);
    let driver = Driver {
        stream: est.stream,
        tunnel,
        addr,
        out_rx,
        in_tx,
        stats_tx,
        dropped_in: 0,
    };
    let task = tokio::spawn(driver.run(est.leftover, close_rx));
    TunnelHandle {
        outgoing: out_tx,
        incoming: in_rx,
        stats: stats_rx,
        close: Some(close_tx),
        task,
    }
}

struct Driver {
    stream: TlsStream<TcpStream>,
    tunnel: Tunnel,
    addr: SocketAddr,
    out_rx: mpsc::Receiver<Bytes>,
    in_tx: mpsc::Sender<Bytes>,
    stats_tx: watch::Sender<LiveStats>,
    dropped_in: u64,
}

impl Driver {
    async fn run(
        mut self,
        leftover: Vec<u8>,
        close: oneshot::Receiver<()>,
    ) -> (Result<(), TunnelExit>, LiveStats) {
        let result = self.pump(leftover, close).await;
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
        mut close: oneshot::Receiver<()>,
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
                .handle_input(Instant::now(), &leftover)
                .map_err(protocol)?;
        }
        let mut buf = vec![0u8; 64 * 1024];
        let mut outgoing_open = true;
        let mut last_stats = Instant::now();
        loop {
            let now = Instant::now();
            let mut wrote = false;
            while let Some(record) = self.tunnel.poll_transmit(now) {
                self.stream.write_all(&record).await.map_err(io)?;
                wrote = true;
            }
            if wrote {
                self.stream.flush().await.map_err(io)?;
            }
            while let Some(frame) = self.tunnel.poll_frame() {
                if self.in_tx.try_send(frame).is_err() {
                    self.dropped_in += 1;
                }
            }
            if now.duration_since(last_stats) >= Duration::from_millis(500) {
                let _ = self.stats_tx.send(self.live_stats());
                last_stats = now;
            }
            let deadline = tokio::time::Instant::from_std(self.tunnel.poll_timeout());
            tokio::select! {
                read = self.stream.read(&mut buf) => {
                    let n = read.map_err(io)?;
                    if n == 0 {
                        return Err(TunnelExit::ServerClosed { addr });
                    }
                    self.tunnel.handle_input(Instant::now(), &buf[..n]).map_err(protocol)?;
                }
                frame = self.out_rx.recv(), if outgoing_open => match frame {
                    Some(frame) => {
                        self.tunnel.queue_frame(&frame);
                        for _ in 1..MAX_BATCH_FRAMES {
                            match self.out_rx.try_recv() {
                                Ok(frame) => self.tunnel.queue_frame(&frame),
                                Err(_) => break,
                            }
                        }
                    }
                    None => outgoing_open = false,
                },
                _ = tokio::time::sleep_until(deadline) => {
                    self.tunnel.handle_timeout(Instant::now()).map_err(|e| match e {
                        TunnelError::Timeout { idle } => TunnelExit::Timeout { addr, idle },
                        other => TunnelExit::Protocol { addr, source: other },
                    })?;
                }
                _ = &mut close => {
                    // Flush what is queued, then close_notify + FIN: SoftEther has no logout message.
                    let now = Instant::now();
                    while let Some(record) = self.tunnel.poll_transmit(now) {
                        let _ = self.stream.write_all(&record).await;
                    }
                    let _ = tokio::time::timeout(Duration::from_secs(2), self.stream.shutdown()).await;
                    return Ok(());
                }
            }
        }
    }
}
