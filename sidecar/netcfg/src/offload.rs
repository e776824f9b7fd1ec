//! TAP offloads in user space: the `virtio_net_hdr` that prefixes every frame on a TAP opened
//! with `IFF_VNET_HDR`, TCP segmentation of the kernel's GSO super-frames (upload), and TCP
//! receive coalescing into GSO super-frames (download) — the same idea wireguard-go applies to
//! TUN devices, here for Ethernet frames.
//!
//! Why: at ~1500-byte frames a gigabyte is ~700,000 frames each way, and without offloads every
//! one costs its own TAP `read`/`write`. With `TUNSETOFFLOAD(CSUM | TSO4 | TSO6)` the kernel
//! hands us up to 64 KiB of one TCP flow in one read; [`segment`] cuts it into MTU-sized frames
//! for the tunnel (the peer expects ordinary Ethernet frames). In the other direction
//! [`Coalescer`] merges consecutive in-order segments of one flow from a batch of tunnel frames
//! into one write, marked `NEEDS_CSUM` so the kernel treats the checksum as done (the tunnel is
//! TLS: the bytes are exactly what the remote sender wrote).
//!
//! Everything here is pure: bytes in, bytes out, no syscalls, never panics on any input.
//! The header is little-endian: the TAP is switched to it with `TUNSETVNETLE`.

use thiserror::Error;

/// Size of the legacy `struct virtio_net_hdr` in front of every frame.
pub const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` is a partial one.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was verified.
pub const F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_ECN` (ORed into the type).
pub const GSO_ECN: u8 = 0x80;
/// The largest super-frame we build or accept (IP's 16-bit length plus the Ethernet header).
pub const MAX_SUPER_FRAME: usize = 65_535 + ETH_HDR_MAX;

const ETH_HDR: usize = 14;
const ETH_HDR_MAX: usize = 18;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const PROTO_TCP: u8 = 6;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_PSH: u8 = 0x08;
pub(crate) const TCP_ACK: u8 = 0x10;
const TCP_URG: u8 = 0x20;
const TCP_CWR: u8 = 0x80;

/// The legacy virtio-net header (`struct virtio_net_hdr` in `linux/virtio_net.h`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// `F_NEEDS_CSUM`, `F_DATA_VALID`.
    pub flags: u8,
    /// `GSO_NONE`, `GSO_TCPV4`, `GSO_TCPV6`, optionally with `GSO_ECN`.
    pub gso_type: u8,
    /// Length of the headers (Ethernet + IP + TCP) of a GSO frame.
    pub hdr_len: u16,
    /// Payload bytes per segment of a GSO frame.
    pub gso_size: u16,
    /// Where the checksummed region starts (the L4 header).
    pub csum_start: u16,
    /// Offset of the checksum field from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Reads the header at the start of `buf`.
    pub fn parse(buf: &[u8]) -> Result<VnetHdr, OffloadError> {
        let b = buf.get(..VNET_HDR_LEN).ok_or(OffloadError::Truncated)?;
        let u = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Ok(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }

    /// The header's 10 bytes.
    pub fn to_bytes(self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }
}

/// Why a frame from the TAP could not be turned into wire frames. The frame is dropped and
/// counted; the kernel only sends these if it misbehaves or the offload set is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum OffloadError {
    /// Shorter than its headers claim.
    #[error("frame truncated")]
    Truncated,
    /// A GSO type or a header layout we did not ask the kernel for.
    #[error("unsupported offload: {0}")]
    Unsupported(&'static str),
    /// Fields that contradict each other (bad checksum offsets, zero segment size, ...).
    #[error("malformed offload header: {0}")]
    Malformed(&'static str),
}

/// Where the headers of a TCP frame are.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TcpLayout {
    /// Offset of the IP header (after Ethernet and an optional VLAN tag).
    pub(crate) ip: usize,
    pub(crate) v6: bool,
    /// Offset of the TCP header.
    pub(crate) tcp: usize,
    /// Offset of the payload.
    pub(crate) payload: usize,
}

pub(crate) fn be16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

fn put16(b: &mut [u8], i: usize, v: u16) {
    b[i..i + 2].copy_from_slice(&v.to_be_bytes());
}

pub(crate) fn be32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// The L3 offset and ethertype after an optional 802.1Q tag.
fn l3_of(frame: &[u8]) -> Option<(usize, u16)> {
    let et = be16(frame.get(..ETH_HDR)?, 12);
    if et == ETHERTYPE_VLAN {
        let inner = be16(frame.get(..ETH_HDR_MAX)?, 16);
        Some((ETH_HDR_MAX, inner))
    } else {
        Some((ETH_HDR, et))
    }
}

/// Parses Ethernet / IPv4 or IPv6 (no extension headers) / TCP, checking every length.
pub(crate) fn tcp_layout(frame: &[u8]) -> Option<TcpLayout> {
    let (ip, et) = l3_of(frame)?;
    let (v6, tcp) = match et {
        ETHERTYPE_IPV4 => {
            let vihl = *frame.get(ip)?;
            let ihl = usize::from(vihl & 0x0f) * 4;
            if vihl >> 4 != 4 || ihl < 20 || frame.len() < ip + ihl || frame[ip + 9] != PROTO_TCP {
                return None;
            }
            // Fragments are never coalesced or segmented.
            if be16(frame, ip + 6) & 0x3fff != 0 {
                return None;
            }
            (false, ip + ihl)
        }
        ETHERTYPE_IPV6 => {
            if frame.len() < ip + 40 || frame[ip] >> 4 != 6 || frame[ip + 6] != PROTO_TCP {
                return None;
            }
            (true, ip + 40)
        }
        _ => return None,
    };
    let doff = usize::from(*frame.get(tcp + 12)? >> 4) * 4;
    if doff < 20 || frame.len() < tcp + doff {
        return None;
    }
    Some(TcpLayout {
        ip,
        v6,
        tcp,
        payload: tcp + doff,
    })
}

/// Ones'-complement sum of `data` added to `acc` (not folded, not inverted).
///
/// Sums native-endian 32-bit words and swaps the folded result once (RFC 1071: the sum is
/// byte-order independent up to that swap, and a 32-bit word is congruent to the sum of its
/// two 16-bit halves modulo 0xffff). The compiler vectorises this loop; the 16-bit big-endian
/// loop it replaces ran at a fifth of the speed and was ~9 % of an upload's client CPU.
fn sum_bytes(acc: u64, data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(4);
    let mut native: u64 = 0;
    for w in &mut words {
        native += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    }
    let folded = fold(native);
    let mut acc = acc
        + u64::from(if cfg!(target_endian = "little") {
            folded.swap_bytes()
        } else {
            folded
        });
    // The tail starts on a 4-byte boundary, so its 16-bit words are aligned as in the packet.
    let mut pairs = words.remainder().chunks_exact(2);
    for c in &mut pairs {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The TCP pseudo-header sum for `l4_len` bytes of TCP (header + payload).
fn pseudo_header_sum(frame: &[u8], l: &TcpLayout, l4_len: usize) -> u64 {
    let acc = if l.v6 {
        sum_bytes(0, &frame[l.ip + 8..l.ip + 40])
    } else {
        sum_bytes(0, &frame[l.ip + 12..l.ip + 20])
    };
    acc + u64::from(PROTO_TCP) + (l4_len as u64 & 0xffff) + ((l4_len as u64) >> 16)
}

fn ipv4_header_checksum(frame: &mut [u8], ip: usize) {
    let ihl = usize::from(frame[ip] & 0x0f) * 4;
    put16(frame, ip + 10, 0);
    let c = !fold(sum_bytes(0, &frame[ip..ip + ihl]));
    put16(frame, ip + 10, c);
}

/// Completes a `NEEDS_CSUM` checksum in place: the field holds the pseudo-header sum, the
/// result is the complement of the sum over everything from `csum_start`.
pub fn complete_checksum(frame: &mut [u8], hdr: &VnetHdr) -> Result<(), OffloadError> {
    let start = usize::from(hdr.csum_start);
    let field = start + usize::from(hdr.csum_offset);
    if field + 2 > frame.len() || start > frame.len() {
        return Err(OffloadError::Malformed("checksum offsets beyond the frame"));
    }
    let c = !fold(sum_bytes(0, &frame[start..]));
    put16(frame, field, c);
    Ok(())
}

/// Where [`segment_into`] builds its wire frames: each one is appended to the buffer's pending
/// bytes (after [`begin`](SegmentBuf::begin) emptied them), fixed in place, then taken by the
/// caller's `emit`. The bridge implements it over its uplink arena so a segment is written
/// once, straight where it is sent from (one copy from the TAP read, not two).
pub trait SegmentBuf {
    /// Starts a frame of `len` bytes: the pending bytes become empty, with room for `len`.
    fn begin(&mut self, len: usize);
    /// Appends to the frame being built.
    fn append(&mut self, bytes: &[u8]);
    /// The frame being built.
    fn pending(&mut self) -> &mut [u8];
}

impl SegmentBuf for Vec<u8> {
    fn begin(&mut self, len: usize) {
        self.clear();
        self.reserve(len);
    }
    fn append(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    fn pending(&mut self) -> &mut [u8] {
        self
    }
}

/// Turns one frame read from an `IFF_VNET_HDR` TAP (header stripped, given as `hdr`) into wire
/// frames: a plain frame passes through (its checksum completed if the kernel left it
/// partial); a TCP GSO frame is cut into segments of `gso_size` payload bytes with their own IP
/// and TCP headers and checksums. Each resulting frame is handed to `emit`; `scratch` is reused
/// between calls so the hot path does not allocate. Returns the number of frames emitted.
pub fn segment(
    frame: &[u8],
    hdr: &VnetHdr,
    scratch: &mut Vec<u8>,
    mut emit: impl FnMut(&[u8]),
) -> Result<usize, OffloadError> {
    segment_into(frame, hdr, scratch, |seg| emit(seg.as_slice()))
}

/// [`segment`] building every frame in `out` (each copied exactly once from `frame`) and
/// handing `out` to `emit` once the frame is complete: `emit` takes it from
/// [`SegmentBuf::pending`].
pub fn segment_into<B: SegmentBuf>(
    frame: &[u8],
    hdr: &VnetHdr,
    out: &mut B,
    mut emit: impl FnMut(&mut B),
) -> Result<usize, OffloadError> {
    if frame.len() > MAX_SUPER_FRAME {
        return Err(OffloadError::Malformed("frame larger than 64 KiB"));
    }
    let gso = hdr.gso_type & !GSO_ECN;
    if gso == GSO_NONE {
        out.begin(frame.len());
        out.append(frame);
        if hdr.flags & F_NEEDS_CSUM != 0 {
            complete_checksum(out.pending(), hdr)?;
        }
        emit(out);
        return Ok(1);
    }
    if gso != GSO_TCPV4 && gso != GSO_TCPV6 {
        return Err(OffloadError::Unsupported("GSO type other than TCPv4/TCPv6"));
    }
    let l = tcp_layout(frame).ok_or(OffloadError::Unsupported(
        "GSO frame that is not Ethernet/IP/TCP without IPv6 extension headers",
    ))?;
    if l.v6 != (gso == GSO_TCPV6) {
        return Err(OffloadError::Malformed(
            "GSO type does not match the IP version",
        ));
    }
    let mss = usize::from(hdr.gso_size);
    if mss == 0 {
        return Err(OffloadError::Malformed("zero gso_size"));
    }
    let payload = &frame[l.payload..];
    if payload.len() <= mss {
        // One segment: only the checksums need finishing.
        out.begin(frame.len());
        out.append(frame);
        finish_segment(out.pending(), &l, 0, 0);
        emit(out);
        return Ok(1);
    }
    let headers = &frame[..l.payload];
    let flags = frame[l.tcp + 13];
    let mut count = 0;
    for (i, chunk) in payload.chunks(mss).enumerate() {
        let last = (i + 1) * mss >= payload.len();
        out.begin(headers.len() + chunk.len());
        out.append(headers);
        out.append(chunk);
        // FIN and PSH belong to the last segment only, CWR to the first.
        let mut f = flags;
        if !last {
            f &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            f &= !TCP_CWR;
        }
        let seg = out.pending();
        seg[l.tcp + 13] = f;
        finish_segment(seg, &l, i * mss, i as u16);
        emit(out);
        count += 1;
    }
    Ok(count)
}

/// Fixes lengths, IPv4 id, sequence number and both checksums of one segment in `seg`, whose
/// payload starts `offset` bytes into the super-frame's payload.
fn finish_segment(seg: &mut [u8], l: &TcpLayout, offset: usize, index: u16) {
    let l4_len = seg.len() - l.tcp;
    if l.v6 {
        put16(seg, l.ip + 4, l4_len as u16);
    } else {
        let total = seg.len() - l.ip;
        put16(seg, l.ip + 2, total as u16);
        let id = be16(seg, l.ip + 4).wrapping_add(index);
        put16(seg, l.ip + 4, id);
        ipv4_header_checksum(seg, l.ip);
    }
    let seq = be32(seg, l.tcp + 4).wrapping_add(offset as u32);
    seg[l.tcp + 4..l.tcp + 8].copy_from_slice(&seq.to_be_bytes());
    put16(seg, l.tcp + 16, 0);
    let acc = pseudo_header_sum(seg, l, l4_len);
    let c = !fold(sum_bytes(acc, &seg[l.tcp..]));
    put16(seg, l.tcp + 16, c);
}

/// The flow a super-frame is being built for.
#[derive(Clone, Copy, Debug)]
struct Flow {
    layout: TcpLayout,
    /// Payload bytes of the first segment: every later one must be this long, but the last.
    seg_size: usize,
    /// The sequence number the next segment must carry.
    next_seq: u32,
    /// IPv4 id the next segment must carry when DF is not set.
    next_id: u16,
    segments: usize,
    /// A short or PSH segment was appended: nothing may follow it.
    closed: bool,
}

/// Merges consecutive in-order TCP segments of one flow, as they come out of the tunnel, into
/// GSO super-frames for an `IFF_VNET_HDR` TAP (receive coalescing, like the kernel's GRO).
/// Feed a batch with [`Coalescer::push`], then call [`Coalescer::flush`]; every frame handed
/// to `emit` starts with its `virtio_net_hdr`. Frames that cannot be merged (not TCP, flags
/// other than ACK/PSH, a gap, different headers) pass through unchanged behind an empty header.
/// Only adjacent frames are merged, so frame order is preserved exactly.
///
/// Frames are built in place at the end of the caller's buffer `out` (the batch's write arena),
/// each payload copied once from the tunnel frame: `emit` gets each finished frame, which is
/// then the last thing in `out`, and `out` keeps it. The pending super-frame is always `out`'s
/// tail, so the caller must not change `out` between `push`es of one batch; after `flush`, it may.
/// (A buffer of its own, copied into the arena when done, was a second copy of every byte:
/// ~3 % of a download's client CPU in `perf`.)
#[derive(Debug, Default)]
pub struct Coalescer {
    /// Where the pending super-frame's header starts in `out`.
    start: usize,
    flow: Option<Flow>,
}

impl Coalescer {
    /// An empty coalescer.
    pub fn new() -> Coalescer {
        Coalescer::default()
    }

    /// Adds one Ethernet frame (no virtio header) from the tunnel.
    pub fn push(&mut self, out: &mut Vec<u8>, frame: &[u8], mut emit: impl FnMut(&[u8])) {
        if self.flow.is_some() && self.try_append(out, frame) {
            return;
        }
        self.flush(out, &mut emit);
        self.start = out.len();
        out.resize(self.start + VNET_HDR_LEN, 0);
        out.extend_from_slice(frame);
        match mergeable(frame) {
            Some(layout) => {
                let ip = &frame[layout.ip..];
                let seg_size = frame.len() - layout.payload;
                let flags = frame[layout.tcp + 13];
                self.flow = Some(Flow {
                    layout,
                    seg_size,
                    next_seq: be32(frame, layout.tcp + 4).wrapping_add(seg_size as u32),
                    next_id: if layout.v6 {
                        0
                    } else {
                        be16(ip, 4).wrapping_add(1)
                    },
                    segments: 1,
                    closed: false,
                });
                if flags & TCP_PSH != 0 {
                    self.flush(out, &mut emit);
                }
            }
            None => emit(&out[self.start..]),
        }
    }

    /// Emits the pending super-frame, if any. Call at the end of every batch.
    pub fn flush(&mut self, out: &mut [u8], mut emit: impl FnMut(&[u8])) {
        let Some(flow) = self.flow.take() else {
            return;
        };
        let (hdr_at, frame_start) = (self.start, self.start + VNET_HDR_LEN);
        if flow.segments == 1 {
            // A lone segment keeps the checksum its sender computed.
            out[hdr_at..frame_start].copy_from_slice(&VnetHdr::default().to_bytes());
            emit(&out[hdr_at..]);
            return;
        }
        let l = flow.layout;
        let f = &mut out[frame_start..];
        let l4_len = f.len() - l.tcp;
        if l.v6 {
            put16(f, l.ip + 4, l4_len as u16);
        } else {
            put16(f, l.ip + 2, (f.len() - l.ip) as u16);
            ipv4_header_checksum(f, l.ip);
        }
        // The kernel's convention for CHECKSUM_PARTIAL: the field holds the folded
        // pseudo-header sum; the stack treats the payload as verified.
        let partial = fold(pseudo_header_sum(f, &l, l4_len));
        put16(f, l.tcp + 16, partial);
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: if l.v6 { GSO_TCPV6 } else { GSO_TCPV4 },
            hdr_len: l.payload as u16,
            gso_size: flow.seg_size as u16,
            csum_start: l.tcp as u16,
            csum_offset: 16,
        };
        out[hdr_at..frame_start].copy_from_slice(&hdr.to_bytes());
        emit(&out[hdr_at..]);
    }

    /// Appends `frame` to the pending super-frame (`out`'s tail) if it continues the same flow
    /// in order.
    fn try_append(&mut self, out: &mut Vec<u8>, frame: &[u8]) -> bool {
        let Some(flow) = self.flow.as_mut().filter(|f| !f.closed) else {
            return false;
        };
        let Some(l) = mergeable(frame) else {
            return false;
        };
        let c = flow.layout;
        let frame_start = self.start + VNET_HDR_LEN;
        let cur = &out[frame_start..];
        let payload_len = frame.len() - l.payload;
        if l.v6 != c.v6
            || l.ip != c.ip
            || l.tcp != c.tcp
            || l.payload != c.payload
            || payload_len > flow.seg_size
            || cur.len() + payload_len > MAX_SUPER_FRAME - ETH_HDR_MAX + l.ip
            || cur.len() - c.ip + payload_len > 65_535
        {
            return false;
        }
        // Ethernet header and everything in IP but lengths, id and checksum must match.
        if frame[..l.ip] != cur[..c.ip] {
            return false;
        }
        if l.v6 {
            if frame[l.ip..l.ip + 4] != cur[c.ip..c.ip + 4]
                || frame[l.ip + 6..l.tcp] != cur[c.ip + 6..c.tcp]
            {
                return false;
            }
        } else {
            let df = be16(frame, l.ip + 6) & 0x4000 != 0;
            if frame[l.ip..l.ip + 2] != cur[c.ip..c.ip + 2]
                || frame[l.ip + 6..l.ip + 10] != cur[c.ip + 6..c.ip + 10]
                || frame[l.ip + 12..l.tcp] != cur[c.ip + 12..c.tcp]
                || (!df && be16(frame, l.ip + 4) != flow.next_id)
            {
                return false;
            }
        }
        // Ports, ack, data offset, window and options equal; flags equal but for PSH.
        let (t, ct) = (l.tcp, c.tcp);
        if frame[t..t + 4] != cur[ct..ct + 4]
            || frame[t + 8..t + 13] != cur[ct + 8..ct + 13]
            || frame[t + 13] & !TCP_PSH != cur[ct + 13] & !TCP_PSH
            || frame[t + 14..t + 16] != cur[ct + 14..ct + 16]
            || frame[t + 18..l.payload] != cur[ct + 18..c.payload]
            || be32(frame, t + 4) != flow.next_seq
        {
            return false;
        }
        let flags = frame[t + 13];
        out.extend_from_slice(&frame[l.payload..]);
        flow.next_seq = flow.next_seq.wrapping_add(payload_len as u32);
        flow.next_id = flow.next_id.wrapping_add(1);
        flow.segments += 1;
        out[frame_start + ct + 13] |= flags & TCP_PSH;
        // A short segment or a push ends the super-frame: nothing may follow it.
        flow.closed = payload_len < flow.seg_size || flags & TCP_PSH != 0;
        true
    }
}

/// The layout of a frame that may take part in coalescing: TCP with payload and only ACK
/// (optionally PSH) set.
fn mergeable(frame: &[u8]) -> Option<TcpLayout> {
    let l = tcp_layout(frame)?;
    let flags = frame[l.tcp + 13];
    if flags & (TCP_SYN | TCP_FIN | TCP_RST | TCP_URG | TCP_CWR) != 0 || flags & TCP_ACK == 0 {
        return None;
    }
    // The IP length must cover exactly the frame (no Ethernet padding, no truncation).
    let ip_len = if l.v6 {
        usize::from(be16(frame, l.ip + 4)) + 40
    } else {
        usize::from(be16(frame, l.ip + 2))
    };
    if ip_len != frame.len() - l.ip || frame.len() == l.payload {
        return None;
    }
    Some(l)
}

#[cfg(test)]
#[path = "offload_tests.rs"]
mod tests;
