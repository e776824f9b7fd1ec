//! One tunnel session's frame pump: TAP ⇄ tunnel, with the DHCP client listening in.
//!
//! Uplink (TAP → tunnel) runs in its own task so a full tunnel queue only back-pressures the
//! TAP. Downlink (tunnel → TAP) runs in the session loop together with the DHCP timers and
//! lease events, which are rare compared to frames. Both directions drain everything that is
//! ready per wake-up (`try_recv`), and uplink frames are cut out of one shared buffer so a
//! burst costs one allocation per ~40 frames, not one per frame. Read and batch buffers are
//! given back after [`IDLE_RELEASE`] without frames: the uplink waits for readiness without
//! holding a buffer, so an idle session (most CNI attachments) keeps only a few KiB.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use dhcp_client::v6::{Ipv6Client, Ipv6Event};
use dhcp_client::{DhcpClient, Event, LostReason};
use netcfg::{AsyncTap, NetcfgError, TapOffload};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::lease_apply::NetConfigurator;
use super::status::{
    self, stop_requested, EngineStatus, LeaseEvent, StopMode, StopSignal, Traffic, TrafficSnapshot,
};
use super::tap_offload::{frame_refused, thin_acks, DownlinkBatch, UplinkCutter};
use crate::transport::clock::now;
use crate::transport::driver::TunnelHandle;
use netcfg::ack_thinning::AckThinner;

/// The pod side of the bridge: a TAP in production ([`AsyncTap`]), a channel-backed fake in
/// the in-process tests.
pub trait FramePort: Send + Sync + 'static {
    /// Waits until a frame can be read (without reading it).
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send;
    /// Reads one frame if one is queued; `Err(WouldBlock)` when none is.
    fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes one whole frame, waiting while the port is full.
    fn send(&self, frame: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
    /// Whether frames carry a `virtio_net_hdr`, and with which offloads.
    fn offload(&self) -> TapOffload {
        TapOffload::Plain
    }
}

impl FramePort for AsyncTap {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        AsyncTap::readable(self)
    }
    fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        AsyncTap::try_recv(self, buf)
    }
    fn send(&self, frame: &[u8]) -> impl Future<Output = io::Result<()>> + Send {
        AsyncTap::send(self, frame)
    }
    fn offload(&self) -> TapOffload {
        AsyncTap::offload(self)
    }
}

/// Frames taken per wake-up in each direction before yielding.
const BATCH: usize = 256;
/// How often the live session's drops, connections and rates are sampled into [`Traffic`].
const SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// Uplink buffer: refilled when less than one frame of room is left. A chunk is freed only when
/// every frame cut from it has been sent, so smaller chunks keep less memory pinned under load.
const UPLINK_BUFFER: usize = 64 * 1024;
/// A direction without frames for this long gives its buffers back (64 KiB read buffer, up to
/// 512 KiB of batch arena): measured, 100 idle CNI attachments kept ~250 KiB each otherwise.
/// Long enough that a steady flow, even a slow one, never reallocates per frame.
pub const IDLE_RELEASE: std::time::Duration = std::time::Duration::from_secs(1);

/// Why a session loop returned.
#[derive(Debug)]
pub enum SessionEnd {
    /// A stop was requested; the tunnel is still up (for the RELEASE).
    Stop(StopMode),
    /// The tunnel driver ended; `TunnelHandle::join` tells why.
    TunnelEnded,
    /// Reading or writing the TAP failed: a local problem, not worth reconnecting for.
    Tap(io::Error),
    /// Applying a lease failed: a local problem (permissions, nft missing, ...).
    Netcfg(NetcfgError),
}

/// Moves frames from the TAP into the tunnel until the tunnel closes or the TAP fails.
pub fn spawn_uplink<T: FramePort>(
    tap: Arc<T>,
    outgoing: mpsc::Sender<Bytes>,
    max_frame: usize,
    traffic: Arc<Traffic>,
    ack_thinning: bool,
) -> JoinHandle<io::Error> {
    let mut thinner = ack_thinning.then(AckThinner::new);
    if tap.offload().has_header() {
        return tokio::spawn(uplink_with_header(
            tap, outgoing, max_frame, traffic, thinner,
        ));
    }
    tokio::spawn(async move {
        let mut buf = BytesMut::new();
        let mut batch: Vec<Bytes> = Vec::with_capacity(BATCH);
        loop {
            let holding = buf.capacity() > 0;
            if let Err(e) = wait_readable(&*tap, holding).await {
                match e {
                    Idle::Released => {
                        buf = BytesMut::new();
                        continue;
                    }
                    Idle::Failed(e) => return e,
                }
            }
            while batch.len() < BATCH {
                match read_frame(&*tap, &mut buf, max_frame) {
                    Ok(()) => batch.push(buf.split().freeze()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return e,
                }
            }
            if let Err(e) = send_batch(&mut batch, &outgoing, &traffic, thinner.as_mut()).await {
                return e;
            }
        }
    })
}

/// Why [`wait_readable`] returned without a frame.
enum Idle {
    /// Nothing for [`IDLE_RELEASE`]: give the buffers back, then wait again.
    Released,
    Failed(io::Error),
}

/// Waits for the TAP to have a frame; while `holding` buffers, gives up after [`IDLE_RELEASE`].
async fn wait_readable<T: FramePort>(tap: &T, holding: bool) -> Result<(), Idle> {
    tokio::select! {
        r = tap.readable() => r.map_err(Idle::Failed),
        _ = tokio::time::sleep(IDLE_RELEASE), if holding => Err(Idle::Released),
    }
}

/// Hands a batch of wire frames to the tunnel, waiting while its queue is full; redundant ACKs
/// are left out first when `thinner` is set.
async fn send_batch(
    batch: &mut Vec<Bytes>,
    outgoing: &mpsc::Sender<Bytes>,
    traffic: &Traffic,
    thinner: Option<&mut AckThinner>,
) -> io::Result<()> {
    if let Some(thinner) = thinner {
        traffic.count_thinned(false, thin_acks(batch, thinner));
    }
    for frame in batch.drain(..) {
        traffic.count_out(frame.len());
        if outgoing.send(frame).await.is_err() {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "tunnel closed"));
        }
    }
    Ok(())
}

/// The uplink of a TAP whose reads start with a `virtio_net_hdr`: each read may be a TCP
/// super-frame, cut into wire frames before it enters the tunnel.
async fn uplink_with_header<T: FramePort>(
    tap: Arc<T>,
    outgoing: mpsc::Sender<Bytes>,
    max_frame: usize,
    traffic: Arc<Traffic>,
    mut thinner: Option<AckThinner>,
) -> io::Error {
    let mut cutter = UplinkCutter::new(max_frame);
    let mut holding = false;
    let mut batch: Vec<Bytes> = Vec::with_capacity(BATCH);
    loop {
        match wait_readable(&*tap, holding).await {
            Ok(()) => holding = true,
            Err(Idle::Released) => {
                cutter.release();
                holding = false;
                continue;
            }
            Err(Idle::Failed(e)) => return e,
        }
        while batch.len() < BATCH {
            match tap.try_recv(cutter.read_buf()) {
                Ok(n) => cutter.cut(n, &mut batch),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return e,
            }
        }
        if let Err(e) = send_batch(&mut batch, &outgoing, &traffic, thinner.as_mut()).await {
            return e;
        }
    }
}

/// Reads one queued frame into the (empty) `buf` without waiting: `Err(WouldBlock)` when none is.
fn read_frame<T: FramePort>(tap: &T, buf: &mut BytesMut, max_frame: usize) -> io::Result<()> {
    if buf.capacity() < max_frame {
        *buf = BytesMut::with_capacity(UPLINK_BUFFER.max(max_frame));
    }
    buf.resize(max_frame, 0);
    match tap.try_recv(buf) {
        Ok(n) => {
            buf.truncate(n);
            Ok(())
        }
        Err(e) => {
            buf.clear();
            Err(e)
        }
    }
}

/// State carried across the sessions of one connection.
pub struct SessionContext<'a, T: FramePort = AsyncTap> {
    pub tap: &'a Arc<T>,
    pub dhcp: Option<&'a mut DhcpClient>,
    /// Router discovery, SLAAC and DHCPv6 (`None`: IPv6 is not managed).
    pub ipv6: Option<&'a mut Ipv6Client>,
    pub net: Option<&'a mut NetConfigurator>,
    pub stop: &'a mut StopSignal,
    /// Where lease events are reported.
    pub status: &'a watch::Sender<EngineStatus>,
    pub traffic: Arc<Traffic>,
    /// When the process started, to report the time to a usable lease.
    pub started: Instant,
    /// Set once a lease was acquired in this session.
    pub got_lease: bool,
    /// Thin redundant pure ACKs in both directions ([`netcfg::ack_thinning`]).
    pub ack_thinning: bool,
}

/// Pumps frames and DHCP for one tunnel until shutdown, tunnel loss or a local failure.
pub async fn run_session<T: FramePort>(
    ctx: &mut SessionContext<'_, T>,
    tunnel: &mut TunnelHandle,
    max_frame: usize,
) -> SessionEnd {
    let mut uplink = spawn_uplink(
        ctx.tap.clone(),
        tunnel.outgoing.clone(),
        max_frame,
        ctx.traffic.clone(),
        ctx.ack_thinning,
    );
    let end = session_loop(ctx, tunnel, &mut uplink).await;
    uplink.abort();
    ctx.traffic.end_session(session_drops(tunnel));
    end
}

async fn session_loop<T: FramePort>(
    ctx: &mut SessionContext<'_, T>,
    tunnel: &mut TunnelHandle,
    uplink: &mut JoinHandle<io::Error>,
) -> SessionEnd {
    let mut frames: Vec<Bytes> = Vec::new();
    let mut to_tap = DownlinkBatch::new(ctx.tap.offload(), ctx.ack_thinning);
    let mut sampler = tokio::time::interval(SAMPLE_EVERY);
    sampler.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = (now(), ctx.traffic.snapshot());
    // Whether frames came from the tunnel since the last sampler tick (1 s), and whether the
    // batch buffers may hold memory: a tick without frames gives it back, once.
    let (mut downlink_busy, mut holding) = (false, false);
    loop {
        if let Some(end) = drive_dhcp(ctx, &tunnel.outgoing).await {
            return end;
        }
        if let Some(end) = drive_ipv6(ctx, &tunnel.outgoing).await {
            return end;
        }
        let timer = [
            ctx.dhcp.as_ref().and_then(|d| d.poll_timeout()),
            ctx.ipv6.as_ref().and_then(|v6| v6.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        .min();
        tokio::select! {
            biased;
            mode = stop_requested(ctx.stop) => {
                if mode == StopMode::Teardown {
                    release_ipv6(ctx, &tunnel.outgoing).await;
                }
                return SessionEnd::Stop(mode);
            }
            n = tunnel.incoming.recv_many(&mut frames, BATCH) => {
                if n == 0 {
                    return SessionEnd::TunnelEnded;
                }
                downlink_busy = true;
                for frame in frames.drain(..) {
                    ctx.traffic.count_in(frame.len());
                    if !divert(ctx.dhcp.as_deref_mut(), ctx.ipv6.as_deref_mut(), &frame) {
                        to_tap.push(&frame);
                    }
                }
                to_tap.finish();
                ctx.traffic.count_thinned(true, to_tap.thinned());
                for i in 0..to_tap.len() {
                    let Some(write) = to_tap.get(i) else {
                        continue;
                    };
                    // A pod that stops reading must not keep a stop request waiting.
                    let written = tokio::select! {
                        biased;
                        mode = stop_requested(ctx.stop) => return SessionEnd::Stop(mode),
                        r = ctx.tap.send(write) => r,
                    };
                    match written {
                        Ok(()) => {}
                        Err(e) if frame_refused(&e) => ctx.traffic.count_dropped_in(),
                        Err(e) => return SessionEnd::Tap(e),
                    }
                }
                to_tap.clear();
            }
            _ = sampler.tick() => {
                sample_session(&ctx.traffic, tunnel, &mut last);
                if std::mem::take(&mut downlink_busy) {
                    holding = true;
                } else if std::mem::take(&mut holding) {
                    to_tap.release();
                    frames = Vec::new();
                    // The burst's chunks (channel, tunnel and batch buffers) are free by now:
                    // hand the pages back instead of keeping the peak for good.
                    crate::memory::release_free_heap();
                }
            }
            _ = sleep_until(timer), if timer.is_some() => {
                if let Some(dhcp) = ctx.dhcp.as_deref_mut() {
                    dhcp.handle_timeout(now());
                }
                if let Some(v6) = ctx.ipv6.as_deref_mut() {
                    v6.handle_timeout(now());
                }
            }
            err = &mut *uplink => {
                return match err {
                    Ok(e) if e.kind() == io::ErrorKind::BrokenPipe => SessionEnd::TunnelEnded,
                    Ok(e) => SessionEnd::Tap(e),
                    Err(join) => SessionEnd::Tap(io::Error::other(join.to_string())),
                };
            }
        }
    }
}

/// Publishes the live session's drops, TCP connections and byte rates since `last`.
fn sample_session(traffic: &Traffic, tunnel: &TunnelHandle, last: &mut (Instant, TrafficSnapshot)) {
    let (at, snap) = (now(), traffic.snapshot());
    let secs = at.duration_since(last.0).as_secs_f64().max(0.001);
    let rate = |new: u64, old: u64| (new.saturating_sub(old) as f64 / secs) as u64;
    let rates = (
        rate(snap.bytes_in, last.1.bytes_in),
        rate(snap.bytes_out, last.1.bytes_out),
    );
    traffic.sample_session(session_drops(tunnel), tunnel.connections(), rates);
    *last = (at, snap);
}

/// The live session's dropped frames: (tunnel → TAP, TAP → tunnel).
fn session_drops(tunnel: &TunnelHandle) -> (u64, u64) {
    let stats = tunnel.stats();
    (stats.frames_dropped_in, stats.tunnel.frames_out_dropped)
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

/// Whether a frame from the tunnel is for the engine itself: DHCP replies, router
/// advertisements and DHCPv6 replies go to the clients, everything else to the TAP.
fn divert(dhcp: Option<&mut DhcpClient>, ipv6: Option<&mut Ipv6Client>, frame: &Bytes) -> bool {
    if let Some(v6) = ipv6 {
        if Ipv6Client::wants_frame(frame) {
            v6.handle_frame(now(), frame);
            return true;
        }
    }
    if let Some(dhcp) = dhcp {
        if DhcpClient::is_dhcp_reply(frame) {
            dhcp.handle_frame(now(), frame);
            return true;
        }
    }
    false
}

/// Sends due DHCP frames and acts on DHCP events.
async fn drive_dhcp<T: FramePort>(
    ctx: &mut SessionContext<'_, T>,
    outgoing: &mpsc::Sender<Bytes>,
) -> Option<SessionEnd> {
    let dhcp = ctx.dhcp.as_deref_mut()?;
    let at = now();
    while let Some(frame) = dhcp.poll_transmit(at) {
        if outgoing.send(frame.into()).await.is_err() {
            return Some(SessionEnd::TunnelEnded);
        }
    }
    let mut events = Vec::new();
    while let Some(event) = dhcp.poll_event() {
        events.push(event);
    }
    for event in events {
        if let Err(e) = on_event(ctx, event).await {
            return Some(SessionEnd::Netcfg(e));
        }
    }
    None
}

/// Sends due IPv6 frames and applies the latest IPv6 configuration. A failure to apply it is
/// logged, not fatal: IPv4 keeps working.
async fn drive_ipv6<T: FramePort>(
    ctx: &mut SessionContext<'_, T>,
    outgoing: &mpsc::Sender<Bytes>,
) -> Option<SessionEnd> {
    let v6 = ctx.ipv6.as_deref_mut()?;
    let at = now();
    while let Some(frame) = v6.poll_transmit(at) {
        if outgoing.send(frame.into()).await.is_err() {
            return Some(SessionEnd::TunnelEnded);
        }
        status::set_ipv6_solicited(ctx.status, at);
    }
    // Each event is the whole configuration: only the newest matters.
    let mut latest = None;
    while let Some(event) = v6.poll_event() {
        match event {
            Ipv6Event::Updated(settings) => latest = Some(settings),
            other => tracing::debug!(?other, "IPv6 event"),
        }
    }
    let progress = status::ipv6_progress(v6);
    let Some(settings) = latest else {
        status::set_ipv6_progress(ctx.status, progress);
        return None;
    };
    tracing::info!(
        addresses = ?settings.addresses.iter().map(|a| a.interface_address()).collect::<Vec<_>>(),
        router = ?settings.router.map(|r| r.address),
        dns = ?settings.dns_servers,
        since_start_ms = now().saturating_duration_since(ctx.started).as_millis() as u64,
        "IPv6 configuration"
    );
    let mut applied = true;
    if let Some(net) = ctx.net.as_deref_mut() {
        if let Err(e) = net.apply_ipv6(&settings).await {
            tracing::warn!("applying the IPv6 configuration: {e}");
            applied = false;
        }
    }
    // Published once installed, so an ADD answered from it reports what the pod has.
    status::set_ipv6_installed(ctx.status, progress, applied.then_some(settings));
    None
}

/// Sends the DHCPv6 Release (if addresses were leased) before a teardown closes the tunnel.
async fn release_ipv6<T: FramePort>(
    ctx: &mut SessionContext<'_, T>,
    outgoing: &mpsc::Sender<Bytes>,
) {
    if let Some(frame) = ctx.ipv6.as_deref_mut().and_then(|v6| v6.release()) {
        if outgoing.send(frame.into()).await.is_ok() {
            tracing::info!("DHCPv6 addresses released");
        }
    }
}

async fn on_event<T: FramePort>(
    ctx: &mut SessionContext<'_, T>,
    event: Event,
) -> Result<(), NetcfgError> {
    match event {
        // Each lease event is logged after its configuration is in place, so the log line
        // means "applied" (tests and operators may act on it).
        Event::Bound(lease) => {
            if let Some(net) = ctx.net.as_deref_mut() {
                net.apply_lease(&lease).await?;
            }
            tracing::info!(
                address = %lease.interface_address(),
                gateway = ?lease.default_gateway().or(lease.router),
                dns = ?lease.dns_servers,
                lease_secs = lease.lease_time.as_secs(),
                since_start_ms = now().saturating_duration_since(ctx.started).as_millis() as u64,
                "lease acquired"
            );
            ctx.got_lease = true;
            status::set_lease(ctx.status, LeaseEvent::Bound, Some(lease));
        }
        Event::Renewed(lease) => {
            if let Some(net) = ctx.net.as_deref_mut() {
                net.apply_lease(&lease).await?;
            }
            tracing::info!(
                address = %lease.interface_address(),
                lease_secs = lease.lease_time.as_secs(),
                "lease renewed"
            );
            status::set_lease(ctx.status, LeaseEvent::Renewed, Some(lease));
        }
        Event::Changed { old, new } => {
            tracing::info!(
                old = %old.interface_address(),
                new = %new.interface_address(),
                gateway = ?new.default_gateway().or(new.router),
                "lease changed, reconfiguring"
            );
            if let Some(net) = ctx.net.as_deref_mut() {
                net.apply_lease(&new).await?;
            }
            status::set_lease(ctx.status, LeaseEvent::Changed, Some(new));
        }
        Event::Lost { lease, reason } => {
            if reason == LostReason::Restarted {
                // A reconnect: keep the configuration (no leak while the tunnel is down);
                // the next ACK confirms it or replaces it.
                tracing::debug!(address = %lease.address, "asking for the previous lease again");
            } else {
                tracing::warn!(address = %lease.address, ?reason, "lease lost, removing its configuration");
                if let Some(net) = ctx.net.as_deref_mut() {
                    for e in net.remove_lease().await {
                        tracing::warn!("removing lease configuration: {e}");
                    }
                }
                status::set_lease(ctx.status, LeaseEvent::Lost, None);
            }
        }
        Event::Nak { server_id, message } => {
            tracing::info!(
                ?server_id,
                message = message.as_deref().unwrap_or(""),
                "DHCP NAK, starting over"
            );
        }
        other => tracing::debug!(?other, "DHCP event"),
    }
    Ok(())
}
