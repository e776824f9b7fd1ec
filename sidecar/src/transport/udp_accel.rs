//! UDP acceleration I/O (§11): the client's UDP socket and one task that sits in front of the
//! TCP tunnel driver.
//!
//! ```text
//! caller.outgoing ──► UDP task ──(link active)──► UDP socket ──► server
//!                        └──────(otherwise)──────► TCP driver channel
//! server ──► UDP socket ──► UDP task ──► caller.incoming ◄── TCP driver
//! ```
//! The protocol decisions (readiness, keep-alives, peer address, crypto) are
//! `softether_proto::udp_accel`'s; this module only moves bytes and keeps time. UDP never ends a
//! session: socket errors are counted and the link simply goes quiet, so frames fall back to TCP
//! until echoes come back.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use ring::rand::{SecureRandom, SystemRandom};
use softether_proto::udp_accel::{
    unspecified_like, LinkState, UdpAccel, UdpAccelGrant, UdpAccelOffer,
};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use super::udp_batch::{RecvSlab, SendBatch, BATCH};

/// Receive batches read per wake-up before timers and the caller get their turn.
const RECV_ROUNDS: usize = 4;
/// Consecutive receive errors after which the socket is given up (`MAX_NUM_IGNORE_ERRORS`).
const MAX_RECV_ERRORS: u32 = 1024;
/// A channel without frames either way for this long gives its batch buffers back (the
/// engine's rule for the TCP path too): most CNI attachments are idle, and keep-alives need none.
const IDLE_RELEASE: std::time::Duration = std::time::Duration::from_secs(1);

/// The current time from tokio's clock, so paused-time tests drive the protocol too.
fn clock() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Every channel's ticks count from here, so they never go backwards within the process (the
/// server drops datagrams whose tick is 30 s older than the newest it has seen).
fn tick_origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(clock)
}

/// Whether UDP acceleration is used, for `status` and `probe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpMode {
    /// Not requested, refused by the server, or the channel has ended.
    Off,
    Probing,
    Stabilising,
    Active,
    Lost,
}

impl UdpMode {
    pub fn as_str(self) -> &'static str {
        match self {
            UdpMode::Off => "off",
            UdpMode::Probing => "probing",
            UdpMode::Stabilising => "stabilising",
            UdpMode::Active => "active",
            UdpMode::Lost => "lost",
        }
    }

    fn from_link(s: LinkState) -> Self {
        match s {
            LinkState::Probing => UdpMode::Probing,
            LinkState::Stabilising => UdpMode::Stabilising,
            LinkState::Active => UdpMode::Active,
            LinkState::Lost => UdpMode::Lost,
        }
    }
}

/// The live [`UdpMode`] of one session, shared with whoever reports it (lock-free).
#[derive(Debug, Default)]
pub struct UdpIndicator(AtomicU8);

impl UdpIndicator {
    pub fn get(&self) -> UdpMode {
        match self.0.load(Ordering::Relaxed) {
            1 => UdpMode::Probing,
            2 => UdpMode::Stabilising,
            3 => UdpMode::Active,
            4 => UdpMode::Lost,
            _ => UdpMode::Off,
        }
    }

    fn set(&self, m: UdpMode) {
        let v = match m {
            UdpMode::Off => 0,
            UdpMode::Probing => 1,
            UdpMode::Stabilising => 2,
            UdpMode::Active => 3,
            UdpMode::Lost => 4,
        };
        self.0.store(v, Ordering::Relaxed);
    }
}

/// A UDP socket opened before the login and the offer that announces it.
#[derive(Debug)]
pub struct UdpSetup {
    socket: UdpSocket,
    pub offer: UdpAccelOffer,
}

/// Opens the socket on the TCP connection's local address (ephemeral port), like the official
/// client, with fresh random keys, offering versions up to `max_version`. `None` (logged) if that
/// fails: the session runs on TCP only.
pub async fn prepare(local_ip: IpAddr, max_version: u32) -> Option<UdpSetup> {
    let socket = match UdpSocket::bind(SocketAddr::new(local_ip, 0)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("UDP acceleration off: cannot bind a UDP socket on {local_ip}: {e}");
            return None;
        }
    };
    enlarge_buffers(&socket);
    let port = socket.local_addr().ok()?.port();
    let rng = SystemRandom::new();
    let (mut k1, mut k2) = ([0u8; 20], [0u8; 128]);
    if rng.fill(&mut k1).is_err() || rng.fill(&mut k2).is_err() {
        tracing::warn!("UDP acceleration off: no secure random source for its keys");
        return None;
    }
    let mut offer = UdpAccelOffer::new(port, k1, k2);
    // 0 = "use my TCP source address": right behind NAT, and what the server does anyway.
    offer.reported_ip = unspecified_like(local_ip);
    offer.max_version = max_version;
    Some(UdpSetup { socket, offer })
}

/// Socket buffers like upstream's best effort (`UDP_MAX_BUFFER_SIZE`, ~11 MiB): bursts of
/// datagrams must not overflow the default ~200 KiB while the task is busy. Past the
/// system's rmem_max/wmem_max only with CAP_NET_ADMIN; otherwise the kernel caps it.
fn enlarge_buffers(socket: &UdpSocket) {
    use nix::sys::socket::{setsockopt, sockopt};
    const SIZE: usize = 4 << 20;
    if setsockopt(socket, sockopt::RcvBufForce, &SIZE).is_err() {
        let _ = setsockopt(socket, sockopt::RcvBuf, &SIZE);
    }
    if setsockopt(socket, sockopt::SndBufForce, &SIZE).is_err() {
        let _ = setsockopt(socket, sockopt::SndBuf, &SIZE);
    }
}

/// A granted channel: the socket and the protocol state, ready to run next to the tunnel.
#[derive(Debug)]
pub struct UdpChannel {
    socket: UdpSocket,
    accel: UdpAccel,
    pub version: u32,
    pub server: SocketAddr,
}

impl UdpSetup {
    /// Combines the offer with the Welcome's grant; `None` (logged) when the server did not
    /// grant acceleration or the grant is unusable.
    pub fn accept(self, grant: Option<&UdpAccelGrant>, tcp_peer: SocketAddr) -> Option<UdpChannel> {
        let Some(grant) = grant else {
            tracing::info!("the server did not grant UDP acceleration; frames use TCP only");
            return None;
        };
        let now = clock();
        let mut iv = [0u8; 20];
        let rng = SystemRandom::new();
        let mut seed = [0u8; 8];
        if rng.fill(&mut iv).is_err() || rng.fill(&mut seed).is_err() {
            return None;
        }
        let seed = u64::from_le_bytes(seed);
        match UdpAccel::client(
            &self.offer,
            grant,
            tcp_peer.ip(),
            tick_origin(),
            now,
            iv,
            seed,
        ) {
            Ok(accel) => Some(UdpChannel {
                server: accel.peer(),
                socket: self.socket,
                accel,
                version: grant.version,
            }),
            Err(e) => {
                tracing::warn!("UDP acceleration off: {e}");
                None
            }
        }
    }
}

impl UdpChannel {
    /// `RC4` or `ChaCha20-Poly1305`, as the server's session details call it.
    pub fn cipher_name(&self) -> &'static str {
        if self.version > 1 {
            "ChaCha20-Poly1305"
        } else {
            "RC4"
        }
    }
}

/// Where the UDP task sends and delivers frames.
struct UdpPlumbing {
    /// The caller's outgoing frames.
    pub from_caller: mpsc::Receiver<Bytes>,
    /// The TCP driver's input, for frames UDP cannot take now.
    pub to_tcp: mpsc::Sender<Bytes>,
    /// The caller's incoming frames.
    pub to_caller: mpsc::Sender<Bytes>,
    pub indicator: Arc<UdpIndicator>,
}

/// A running UDP task.
#[derive(Debug)]
pub struct UdpRunning {
    pub indicator: Arc<UdpIndicator>,
    task: tokio::task::JoinHandle<Option<UdpChannel>>,
}

impl UdpRunning {
    /// Waits for the task (it ends with the session) and takes the channel back, unless its
    /// socket failed: a resumed session keeps using it, as the server keeps its side.
    pub async fn finish(self) -> Option<UdpChannel> {
        self.task.await.ok().flatten()
    }
}

/// Puts the UDP task (if the session has a channel) between the caller's outgoing frames and
/// the TCP drivers: returns the receiver the drivers read instead of `from_caller`, and the
/// running task. The task ends with the session (`close` or `abort`). `compress`: the session
/// compresses (the Welcome's `use_compress`), so frames sent over UDP are compressed too.
pub(crate) fn interpose(
    udp: Option<UdpChannel>,
    compress: bool,
    from_caller: mpsc::Receiver<Bytes>,
    to_caller: &mpsc::Sender<Bytes>,
    close: watch::Receiver<bool>,
    abort: watch::Receiver<bool>,
    depth: usize,
) -> (mpsc::Receiver<Bytes>, Option<UdpRunning>) {
    let Some(mut ch) = udp else {
        return (from_caller, None);
    };
    ch.accel.set_compress(compress);
    let (to_tcp, tcp_rx) = mpsc::channel(depth);
    let indicator = Arc::new(UdpIndicator::default());
    let io = UdpPlumbing {
        from_caller,
        to_tcp,
        to_caller: to_caller.clone(),
        indicator: indicator.clone(),
    };
    let task = tokio::spawn(run(ch, io, close, abort));
    (tcp_rx, Some(UdpRunning { indicator, task }))
}

/// Runs the channel until the caller closes, the session stops, or the TCP side is gone; hands
/// the channel back unless its socket failed.
async fn run(
    mut ch: UdpChannel,
    mut io: UdpPlumbing,
    mut close: watch::Receiver<bool>,
    mut abort: watch::Receiver<bool>,
) -> Option<UdpChannel> {
    let mut batch = Vec::with_capacity(BATCH);
    let mut sends = SendBatch::default();
    let mut slab = RecvSlab::default();
    let mut socket_ok = true;
    let mut recv_errors = 0u32;
    let mut send_errors = 0u64;
    let mut dropped_in = 0u64;
    let mut last_mode = UdpMode::Off;
    let (mut last_frame, mut holding) = (clock(), false);
    tracing::info!(server = %ch.server, version = ch.version, cipher = ch.cipher_name(), "UDP acceleration negotiated");
    loop {
        let now = clock();
        if socket_ok {
            ch.accel.handle_timeout(now);
            flush(&mut ch).await;
        }
        let mode = if socket_ok {
            UdpMode::from_link(ch.accel.state(now))
        } else {
            UdpMode::Off
        };
        if mode != last_mode {
            tracing::info!(server = %ch.accel.peer(), "UDP acceleration {}", mode.as_str());
            last_mode = mode;
        }
        io.indicator.set(mode);
        if holding && now.duration_since(last_frame) >= IDLE_RELEASE {
            sends.release();
            slab.release();
            holding = false;
        }
        let mut deadline = ch.accel.poll_timeout(now);
        if holding {
            deadline = deadline.min(last_frame + IDLE_RELEASE);
        }
        let deadline = tokio::time::Instant::from_std(deadline);
        tokio::select! {
            n = io.from_caller.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    // The caller is gone; dropping `to_tcp` lets the drivers see the end too.
                    break;
                }
                let now = clock();
                (last_frame, holding) = (now, true);
                for frame in batch.drain(..) {
                    if socket_ok {
                        if sends.is_full() {
                            send_errors += sends.flush(&ch.socket).await;
                        }
                        // Sealed straight into the batch's reused buffer: no allocation per frame.
                        if sends.push_with(|buf| ch.accel.send_frame_into(now, &frame, buf)).is_some() {
                            continue;
                        }
                    }
                    if io.to_tcp.send(frame).await.is_err() {
                        break;
                    }
                }
                if socket_ok && sends.len() > 0 {
                    send_errors += sends.flush(&ch.socket).await;
                }
            }
            r = ch.socket.readable(), if socket_ok => {
                if let Err(e) = r {
                    tracing::warn!("UDP acceleration off: the socket failed: {e}");
                    socket_ok = false;
                    continue;
                }
                let now = clock();
                // Drain what is queued, a batch per system call, before the next round of timers:
                // under load the socket buffer fills faster than one datagram per wake-up empties it.
                for _ in 0..RECV_ROUNDS {
                    match slab.try_recv(&ch.socket, |src, d| {
                        ch.accel.handle_datagram_owned(now, src, d);
                    }) {
                        Ok(_) => recv_errors = 0,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            recv_errors += 1;
                            tracing::debug!("UDP acceleration receive error: {e}");
                            if recv_errors >= MAX_RECV_ERRORS {
                                tracing::warn!("UDP acceleration off after {recv_errors} receive errors: {e}");
                                socket_ok = false;
                            }
                            break;
                        }
                    }
                }
                while let Some(frame) = ch.accel.poll_frame() {
                    (last_frame, holding) = (now, true);
                    if io.to_caller.try_send(frame).is_err() {
                        dropped_in += 1;
                    }
                }
            },
            _ = tokio::time::sleep_until(deadline), if socket_ok => {}
            () = stopped(&mut close, &mut abort) => break,
            _ = io.to_tcp.closed() => break,
        }
    }
    io.indicator.set(UdpMode::Off);
    let s = ch.accel.stats();
    tracing::debug!(
        frames_in = s.frames_in,
        frames_out = s.frames_out,
        keepalives_in = s.keepalives_in,
        rejected = s.rejected,
        compressed_dropped = s.compressed_dropped,
        send_errors,
        dropped_in,
        "UDP acceleration channel stopped"
    );
    socket_ok.then_some(ch)
}

/// Resolves once the session closes or aborts (a dropped sender counts as both).
async fn stopped(close: &mut watch::Receiver<bool>, abort: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = close.wait_for(|s| *s) => {}
        _ = abort.wait_for(|s| *s) => {}
    }
}

/// Sends every queued datagram. Errors (a firewall's EPERM, an unreachable network) are logged
/// at debug and otherwise ignored: the link then dies by the protocol's own rule.
async fn flush(ch: &mut UdpChannel) {
    while let Some(t) = ch.accel.poll_transmit() {
        if let Err(e) = ch.socket.send_to(&t.payload, t.dest).await {
            tracing::debug!(dest = %t.dest, "UDP acceleration send error: {e}");
        }
    }
}

#[cfg(test)]
#[path = "udp_accel_tests.rs"]
mod tests;
