//! UDP acceleration (§11; UdpAccel.c): an optional UDP side channel that carries the session's
//! Ethernet frames, one per datagram, once both ends have proven two-way UDP reachability for
//! 10 s. TCP stays up for keep-alives and takes the frames again whenever UDP goes quiet.
//!
//! Sans-IO like the rest of the crate: the caller owns the socket and the clock. It feeds received
//! datagrams to [`UdpAccel::handle_datagram`], asks [`UdpAccel::is_ready`] per frame to decide
//! between UDP ([`UdpAccel::send_frame`]) and TCP, sends every [`Transmit`] from
//! [`UdpAccel::poll_transmit`] (data and keep-alives) and wakes at [`UdpAccel::poll_timeout`].
//!
//! Negotiation: [`UdpAccelOffer`] adds the client's fields to the login pack,
//! [`UdpAccelGrant`] is what the Welcome returns (`Welcome::udp_accel`).

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::compress::Deflater;
use crate::prng::SplitMix64;
use crate::udp_accel_codec::{Codec, MAX_PADDING};
pub use crate::udp_accel_codec::{
    Header, HEADER_LEN, V1_IV_LEN, V1_KEY_LEN, V2_IV_LEN, V2_KEY_LEN, V2_TAG_LEN,
};
pub use crate::udp_accel_negotiate::{UdpAccelGrant, UdpAccelOffer};

/// Received datagrams whose sender tick is this much older than the newest are dropped
/// (`UDP_ACCELERATION_WINDOW_SIZE_MSEC`); an echo of our tick older than this does not count as
/// a sign of life.
pub const WINDOW: Duration = Duration::from_secs(30);
/// The link must have been alive this long before frames use it (`UDP_ACCELERATION_REQUIRE_CONTINUOUS`).
pub const REQUIRE_CONTINUOUS: Duration = Duration::from_secs(10);
/// Largest frame carried (`UDP_ACCELERATION_SUPPORTED_MAX_PAYLOAD_SIZE`, `MAX_PACKET_SIZE`).
pub const MAX_FRAME: usize = 1600;
/// Receive buffer of upstream (`UDP_ACCELERATION_TMP_BUF_SIZE`); longer datagrams are not ours.
pub const MAX_DATAGRAM: usize = 2048;
/// Keep-alives are padded as if the limit were 1000 bytes (`UdpAccelPoll`).
const KEEPALIVE_MAX_SIZE: usize = 1000;
/// `MTU_FOR_PPPOE` (1454) minus IP and UDP headers: padding never grows a datagram past this.
const MAX_UDP_PAYLOAD_V4: usize = 1454 - 20 - 8;
const MAX_UDP_PAYLOAD_V6: usize = 1454 - 40 - 8;

/// Keep-alive interval and dead-link timeout (`UDP_ACCELERATION_KEEPALIVE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    /// Shortest gap between two keep-alives (each gap is random in min..max).
    pub keepalive_min: Duration,
    /// Longest gap between two keep-alives.
    pub keepalive_max: Duration,
    /// No echo of our tick for longer than this: the link is dead.
    pub dead_after: Duration,
}

impl Timers {
    /// The timers for `udp_accel_fast_disconnect_detect`.
    pub fn of(fast_disconnect_detect: bool) -> Timers {
        if fast_disconnect_detect {
            Timers::FAST
        } else {
            Timers::NORMAL
        }
    }

    /// Builds ≤ 8534: keep-alive every 1–3 s, dead after 9 s.
    pub const NORMAL: Timers = Timers {
        keepalive_min: Duration::from_millis(1000),
        keepalive_max: Duration::from_millis(3000),
        dead_after: Duration::from_millis(9000),
    };
    /// `udp_accel_fast_disconnect_detect`: keep-alive every 0.5–1 s, dead after 2.1 s.
    pub const FAST: Timers = Timers {
        keepalive_min: Duration::from_millis(500),
        keepalive_max: Duration::from_millis(1000),
        dead_after: Duration::from_millis(2100),
    };
}

/// Why a grant cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UdpAccelError {
    /// The server reported a UDP address of another family than the TCP connection's.
    #[error(
        "server's UDP endpoint {server} is not in the address family of the TCP peer {tcp_peer}"
    )]
    AddressFamily {
        /// The UDP address the server reported.
        server: IpAddr,
        /// The TCP connection's peer.
        tcp_peer: IpAddr,
    },
    /// The server granted a version this client does not speak.
    #[error("UDP acceleration version {0} is not supported")]
    Version(u32),
}

/// Everything one end of the channel needs; [`UdpAccel::client`] derives it from the
/// negotiation, a fake server in tests builds it with the roles swapped.
#[derive(Clone)]
pub struct Endpoint {
    /// 1 (RC4 + SHA-1) or 2 (ChaCha20-Poly1305).
    pub version: u32,
    /// false: plaintext datagrams.
    pub use_encryption: bool,
    /// Version 1 key this end encrypts with.
    pub my_key_v1: [u8; V1_KEY_LEN],
    /// Version 2 key this end encrypts with.
    pub my_key_v2: [u8; V2_KEY_LEN],
    /// Version 1 key the peer encrypts with (we decrypt with it).
    pub peer_key_v1: [u8; V1_KEY_LEN],
    /// Version 2 key the peer encrypts with (we decrypt with it).
    pub peer_key_v2: [u8; V2_KEY_LEN],
    /// Required in received datagrams.
    pub my_cookie: u32,
    /// Put in sent datagrams.
    pub your_cookie: u32,
    /// Where datagrams go until a newer one arrives from elsewhere.
    pub peer: SocketAddr,
    /// Also sprayed with keep-alives while the link is not up (the reported address).
    pub alternate: Option<SocketAddr>,
    /// Keep-alive schedule and dead-link timeout.
    pub timers: Timers,
}

impl Endpoint {
    /// The server's end of a negotiation (what `ServerAccept` sets up), for fake servers in tests.
    pub fn server_side(offer: &UdpAccelOffer, grant: &UdpAccelGrant, client: SocketAddr) -> Self {
        Endpoint {
            version: grant.version,
            use_encryption: grant.use_encryption,
            my_key_v1: grant.server_key_v1,
            my_key_v2: *grant.server_key_v2,
            peer_key_v1: offer.key_v1,
            peer_key_v2: *offer.key_v2,
            my_cookie: grant.server_cookie,
            your_cookie: grant.client_cookie,
            peer: client,
            alternate: None,
            timers: Timers::of(grant.fast_disconnect_detect),
        }
    }
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub dest: SocketAddr,
    /// The sealed datagram.
    pub payload: Vec<u8>,
}

/// What the channel looks like right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// No sign of life from the peer yet.
    Probing,
    /// Alive, but not yet for [`REQUIRE_CONTINUOUS`]; frames still go over TCP.
    Stabilising,
    /// Frames go over UDP.
    Active,
    /// Was alive, went quiet for longer than the dead-link timeout; frames go over TCP.
    Lost,
}

/// Counters since the channel was created.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpAccelStats {
    /// Datagrams accepted.
    pub datagrams_in: u64,
    /// Datagrams sealed for sending.
    pub datagrams_out: u64,
    /// Ethernet frames received over UDP.
    pub frames_in: u64,
    /// Ethernet frames sent over UDP.
    pub frames_out: u64,
    /// Frame bytes received over UDP.
    pub bytes_in: u64,
    /// Frame bytes sent over UDP.
    pub bytes_out: u64,
    /// Keep-alives (empty datagrams) accepted.
    pub keepalives_in: u64,
    /// Keep-alives sent.
    pub keepalives_out: u64,
    /// Failed authentication / integrity check, wrong cookie, malformed or oversized.
    pub rejected: u64,
    /// Sender tick outside the 30 s window.
    pub stale: u64,
    /// Frames received with the compression flag that did not inflate.
    pub compressed_dropped: u64,
    /// Times the link went from active to lost.
    pub lost: u64,
}

/// One end of the UDP acceleration channel.
#[derive(Debug)]
pub struct UdpAccel {
    codec: Codec,
    my_cookie: u32,
    your_cookie: u32,
    peer: SocketAddr,
    alternate: Option<SocketAddr>,
    timers: Timers,
    max_payload: usize,
    tick_origin: Instant,
    rng: SplitMix64,
    /// Highest tick received from the peer (echoed back as `your_tick`).
    last_recv_your_tick: u64,
    /// Highest of our own ticks the peer has echoed.
    last_recv_my_tick: u64,
    /// Peer tick of the datagram that last set `peer`.
    last_set_src_tick: u64,
    last_alive: Option<Instant>,
    stable_since: Option<Instant>,
    was_active: bool,
    next_keepalive: Instant,
    transmit: VecDeque<Transmit>,
    frames: VecDeque<Bytes>,
    stats: UdpAccelStats,
    /// `Some` when the session compresses (`use_compress`): frames sent over UDP are zlib streams
    /// with flag 1, as `UdpAccelSendBlock` sends the session's compressed blocks.
    deflater: Option<Deflater>,
    /// The compressed frame of the datagram being sealed (reused).
    scratch: Vec<u8>,
}

impl UdpAccel {
    /// The client end after a Welcome granted acceleration. `tcp_peer` is the server's address
    /// of the TCP connection (the primary UDP destination, as upstream master does; the IP the
    /// server reported is the alternate). `tick_origin` must be the same for every channel of
    /// the process so our ticks never go backwards; `iv` seeds the first IV (random); `seed`
    /// drives padding and keep-alive jitter.
    pub fn client(
        offer: &UdpAccelOffer,
        grant: &UdpAccelGrant,
        tcp_peer: IpAddr,
        tick_origin: Instant,
        now: Instant,
        iv: [u8; V1_IV_LEN],
        seed: u64,
    ) -> Result<UdpAccel, UdpAccelError> {
        let tcp_peer = tcp_peer.to_canonical();
        let reported = grant.server_ip.unwrap_or(tcp_peer);
        if reported.is_ipv6() != tcp_peer.is_ipv6() {
            return Err(UdpAccelError::AddressFamily {
                server: reported,
                tcp_peer,
            });
        }
        let peer = SocketAddr::new(tcp_peer, grant.server_port);
        let alternate = SocketAddr::new(reported, grant.server_port);
        let endpoint = Endpoint {
            version: grant.version,
            use_encryption: grant.use_encryption,
            my_key_v1: offer.key_v1,
            my_key_v2: *offer.key_v2,
            peer_key_v1: grant.server_key_v1,
            peer_key_v2: *grant.server_key_v2,
            my_cookie: grant.client_cookie,
            your_cookie: grant.server_cookie,
            peer,
            alternate: (alternate != peer).then_some(alternate),
            timers: Timers::of(grant.fast_disconnect_detect),
        };
        UdpAccel::new(&endpoint, tick_origin, now, iv, seed)
    }

    /// Either end, from explicit parameters.
    pub fn new(
        e: &Endpoint,
        tick_origin: Instant,
        now: Instant,
        iv: [u8; V1_IV_LEN],
        seed: u64,
    ) -> Result<UdpAccel, UdpAccelError> {
        let codec = match (e.use_encryption, e.version) {
            (false, 1 | 2) => Codec::Plain,
            (true, 1) => Codec::v1(e.my_key_v1, e.peer_key_v1, iv),
            (true, 2) => {
                let mut iv2 = [0u8; V2_IV_LEN];
                iv2.copy_from_slice(&iv[..V2_IV_LEN]);
                Codec::v2(&e.my_key_v2, &e.peer_key_v2, iv2)
            }
            (_, v) => return Err(UdpAccelError::Version(v)),
        };
        Ok(UdpAccel {
            codec,
            my_cookie: e.my_cookie,
            your_cookie: e.your_cookie,
            peer: e.peer,
            alternate: e.alternate,
            timers: e.timers,
            max_payload: if e.peer.is_ipv6() {
                MAX_UDP_PAYLOAD_V6
            } else {
                MAX_UDP_PAYLOAD_V4
            },
            tick_origin,
            rng: SplitMix64::new(seed),
            last_recv_your_tick: 0,
            last_recv_my_tick: 0,
            last_set_src_tick: 0,
            last_alive: None,
            stable_since: None,
            was_active: false,
            // The first keep-alive goes out at once so the server learns our (NAT) address.
            next_keepalive: now,
            transmit: VecDeque::new(),
            frames: VecDeque::new(),
            stats: UdpAccelStats::default(),
            deflater: None,
            scratch: Vec::new(),
        })
    }

    /// Our millisecond tick: time since the process-wide origin, never 0 (`a->Now ?: 1`).
    fn tick(&self, now: Instant) -> u64 {
        let ms = now.saturating_duration_since(self.tick_origin).as_millis();
        u64::try_from(ms).unwrap_or(u64::MAX).max(1)
    }

    fn alive(&self, now: Instant) -> bool {
        self.last_alive
            .is_some_and(|t| now.saturating_duration_since(t) <= self.timers.dead_after)
    }

    /// `UdpAccelIsSendReady(a, true)`: a datagram echoing one of our recent ticks arrived within
    /// the dead-link timeout, and the link has been alive without a gap for 10 s.
    pub fn is_ready(&self, now: Instant) -> bool {
        self.alive(now)
            && self
                .stable_since
                .is_some_and(|t| now.saturating_duration_since(t) >= REQUIRE_CONTINUOUS)
    }

    /// The link's state at `now`.
    pub fn state(&self, now: Instant) -> LinkState {
        match (self.last_alive, self.alive(now), self.is_ready(now)) {
            (None, ..) => LinkState::Probing,
            (_, _, true) => LinkState::Active,
            (_, true, false) => LinkState::Stabilising,
            (Some(_), false, _) => LinkState::Lost,
        }
    }

    /// Where datagrams go now (learnt from the newest datagram received).
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Counters since the channel was created.
    pub fn stats(&self) -> UdpAccelStats {
        self.stats
    }

    /// Feeds one received datagram from `src`. Anything not from our peer (wrong key, cookie,
    /// format) is counted and ignored. Returns whether it was accepted.
    pub fn handle_datagram(&mut self, now: Instant, src: SocketAddr, datagram: &[u8]) -> bool {
        if datagram.len() > MAX_DATAGRAM {
            self.stats.rejected += 1;
            return false;
        }
        self.handle_datagram_owned(now, src, BytesMut::from(datagram))
    }

    /// [`handle_datagram`](Self::handle_datagram) on a buffer the caller hands over: decrypted in
    /// place, and a raw frame is a slice of it (no copy). A receive loop that reads many
    /// datagrams into one large buffer and splits them off gets frames without an allocation each.
    pub fn handle_datagram_owned(
        &mut self,
        now: Instant,
        src: SocketAddr,
        mut buf: BytesMut,
    ) -> bool {
        if buf.len() > MAX_DATAGRAM {
            self.stats.rejected += 1;
            return false;
        }
        let Some((h, payload)) = self.codec.open(&mut buf) else {
            self.stats.rejected += 1;
            return false;
        };
        if h.cookie != self.my_cookie {
            self.stats.rejected += 1;
            return false;
        }
        let window = WINDOW.as_millis() as u64;
        if self.last_recv_your_tick.saturating_sub(h.my_tick) >= window {
            self.stats.stale += 1;
            return false;
        }
        self.stats.datagrams_in += 1;
        self.last_recv_my_tick = self.last_recv_my_tick.max(h.your_tick);
        self.last_recv_your_tick = self.last_recv_your_tick.max(h.my_tick);
        if payload.is_empty() {
            self.stats.keepalives_in += 1;
        } else if h.flag != 0 {
            // Compressed sessions send zlib payloads (flag 1): inflate, or drop and count.
            match crate::compress::inflate(&buf[payload]) {
                Some(frame) => {
                    self.stats.frames_in += 1;
                    self.stats.bytes_in += frame.len() as u64;
                    self.frames.push_back(Bytes::from(frame));
                }
                None => self.stats.compressed_dropped += 1,
            }
        } else if payload.len() > MAX_FRAME {
            self.stats.rejected += 1;
        } else {
            self.stats.frames_in += 1;
            self.stats.bytes_in += payload.len() as u64;
            self.frames.push_back(buf.freeze().slice(payload));
        }
        // NAT traversal: the datagram carrying the newest peer tick names the peer's address.
        if self.last_set_src_tick < self.last_recv_your_tick {
            self.last_set_src_tick = self.last_recv_your_tick;
            self.peer = src;
        }
        // A sign of life only if the peer echoes one of our ticks from the last 30 s.
        if self.last_recv_my_tick != 0 && self.last_recv_my_tick + window >= self.tick(now) {
            if !self.alive(now) {
                self.stable_since = Some(now);
            }
            self.last_alive = Some(self.last_alive.map_or(now, |t| t.max(now)));
        }
        true
    }

    /// Next Ethernet frame received over UDP.
    pub fn poll_frame(&mut self) -> Option<Bytes> {
        self.frames.pop_front()
    }

    /// Compress every frame sent over UDP (the Welcome's `use_compress`): the payload is one zlib
    /// stream with flag 1, as upstream sends a compressed session's blocks. Received frames are
    /// inflated by their flag either way.
    pub fn set_compress(&mut self, on: bool) {
        self.deflater = on.then(Deflater::default);
    }

    /// Sends `frame` over UDP if the link [is ready](Self::is_ready); otherwise returns false and
    /// the caller sends it over TCP. Empty or oversized frames are refused too.
    pub fn send_frame(&mut self, now: Instant, frame: &[u8]) -> bool {
        let mut datagram = Vec::new();
        match self.send_frame_into(now, frame, &mut datagram) {
            Some(dest) => {
                self.transmit.push_back(Transmit {
                    dest,
                    payload: datagram,
                });
                true
            }
            None => false,
        }
    }

    /// [`send_frame`](Self::send_frame) for batching senders: seals the datagram into `out`
    /// (cleared first, its capacity reused) instead of queueing it, and returns where it goes.
    /// `None`: the frame goes over TCP.
    pub fn send_frame_into(
        &mut self,
        now: Instant,
        frame: &[u8],
        out: &mut Vec<u8>,
    ) -> Option<SocketAddr> {
        if frame.is_empty() || frame.len() > MAX_FRAME || !self.is_ready(now) {
            return None;
        }
        let flag = match self.deflater.as_mut() {
            Some(d) => {
                d.deflate_into(frame, &mut self.scratch);
                1
            }
            None => 0,
        };
        let payload = std::mem::take(&mut self.scratch);
        let payload_ref: &[u8] = if flag == 1 { &payload } else { frame };
        self.seal_into(now, payload_ref, flag, self.max_payload, out);
        self.scratch = payload;
        self.stats.frames_out += 1;
        self.stats.bytes_out += frame.len() as u64;
        self.stats.datagrams_out += 1;
        Some(self.peer)
    }

    fn seal_into(
        &mut self,
        now: Instant,
        payload: &[u8],
        flag: u8,
        max_size: usize,
        out: &mut Vec<u8>,
    ) {
        let header = Header {
            cookie: self.your_cookie,
            my_tick: self.tick(now),
            your_tick: self.last_recv_your_tick,
            flag,
        };
        let size = self.codec.overhead() + payload.len();
        let padding = if self.codec.pads() && size < max_size {
            let room = (max_size - size).min(MAX_PADDING) as u64;
            self.rng.below(room) as usize
        } else {
            0
        };
        self.codec.seal_into(&header, payload, padding, out);
    }

    fn queue(&mut self, dest: SocketAddr, payload: Vec<u8>) {
        self.stats.datagrams_out += 1;
        self.transmit.push_back(Transmit { dest, payload });
    }

    /// Sends a keep-alive if one is due (`UdpAccelPoll`): to the peer, and while the link is not
    /// up also to the alternate address.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.was_active && !self.is_ready(now) {
            self.stats.lost += 1;
        }
        self.was_active = self.is_ready(now);
        if now < self.next_keepalive {
            return;
        }
        let (lo, hi) = (self.timers.keepalive_min, self.timers.keepalive_max);
        let span = hi.saturating_sub(lo).as_millis() as u64;
        self.next_keepalive = now + lo + Duration::from_millis(self.rng.below(span));
        let mut datagram = Vec::new();
        self.seal_into(now, &[], 0, KEEPALIVE_MAX_SIZE, &mut datagram);
        self.stats.keepalives_out += 1;
        if let Some(alt) = self
            .alternate
            .filter(|&a| a != self.peer && !self.is_ready(now))
        {
            self.queue(alt, datagram.clone());
        }
        self.queue(self.peer, datagram);
    }

    /// Next datagram to send (data or keep-alive).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmit.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must run next: the next keep-alive, or the
    /// moment readiness changes.
    pub fn poll_timeout(&self, now: Instant) -> Instant {
        let mut at = self.next_keepalive;
        if let Some(t) = self.last_alive {
            let death = t + self.timers.dead_after + Duration::from_millis(1);
            if death > now {
                at = at.min(death);
            }
        }
        if let Some(t) = self.stable_since.filter(|_| self.alive(now)) {
            let ready = t + REQUIRE_CONTINUOUS;
            if ready > now {
                at = at.min(ready);
            }
        }
        at
    }
}

/// Unspecified address of the family of `ip` (for [`UdpAccelOffer::reported_ip`]).
pub fn unspecified_like(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

#[cfg(test)]
#[path = "udp_accel_tests.rs"]
mod tests;
