//! The bridge's side of the TAP offloads ([`netcfg::offload`]): what changes when every TAP
//! read and write carries a `virtio_net_hdr`.
//!
//! Upload: one read returns a TCP super-frame of up to 64 KiB; [`netcfg::offload::segment_into`]
//! cuts it into wire frames (the server expects ordinary Ethernet frames), each written once,
//! straight into one shared arena, so a burst costs one allocation per `ARENA` bytes, not one
//! per frame, and one copy per byte from the TAP read.
//! Download: a batch of tunnel frames goes through a [`Coalescer`], so consecutive in-order
//! segments of one TCP flow cost one TAP write instead of one each. Measured with
//! `tests/bench` (README, "Performance"): the syscalls per GB, not the crypto, were the cost.
//!
//! Memory: the 64 KiB read buffer and the batch buffers exist only while frames flow; an idle
//! session gives them back ([`UplinkCutter::release`], [`DownlinkBatch::release`]), which is
//! what keeps an idle CNI attachment small (README, "Performance": daemon RSS per attachment).

use std::io;

use bytes::{Bytes, BytesMut};
use netcfg::ack_thinning::AckThinner;
use netcfg::offload::{self, Coalescer, SegmentBuf, VnetHdr, MAX_SUPER_FRAME, VNET_HDR_LEN};
use netcfg::TapOffload;

/// Uplink arena: refilled when a segment no longer fits. A chunk is freed only when every frame
/// cut from it has been sent.
const ARENA: usize = 64 * 1024;

/// The uplink's buffers for a TAP with a `virtio_net_hdr`, allocated when frames arrive and
/// released when the TAP goes idle.
pub struct UplinkCutter {
    /// One read: the header and a super-frame (empty while released).
    read: Vec<u8>,
    arena: Arena,
    /// The largest wire frame the tunnel may carry (MTU + Ethernet + VLAN).
    max_frame: usize,
    /// Frames dropped: malformed offload headers, or segments over `max_frame`.
    pub dropped: u64,
}

/// Where segments are built: the unsent tail of a shared chunk; a finished segment is split
/// off as its own `Bytes`.
struct Arena(BytesMut);

impl SegmentBuf for Arena {
    fn begin(&mut self, len: usize) {
        // Whatever is pending is a dropped segment; after `split` nothing is.
        self.0.clear();
        if self.0.capacity() < len {
            self.0 = BytesMut::with_capacity(ARENA.max(len));
        }
    }
    fn append(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
    fn pending(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl UplinkCutter {
    pub fn new(max_frame: usize) -> UplinkCutter {
        UplinkCutter {
            read: Vec::new(),
            arena: Arena(BytesMut::new()),
            max_frame,
            dropped: 0,
        }
    }

    /// Where the next TAP read goes (allocated here after a [`release`](Self::release)).
    pub fn read_buf(&mut self) -> &mut [u8] {
        if self.read.is_empty() {
            self.read = vec![0; VNET_HDR_LEN + MAX_SUPER_FRAME];
        }
        &mut self.read
    }

    /// Gives the read buffer and the arena's unused tail back (the TAP is idle).
    pub fn release(&mut self) {
        self.read = Vec::new();
        self.arena = Arena(BytesMut::new());
    }

    /// Cuts the `n` bytes just read into wire frames appended to `out`.
    pub fn cut(&mut self, n: usize, out: &mut Vec<Bytes>) {
        let UplinkCutter {
            read,
            arena,
            max_frame,
            dropped,
        } = self;
        let read = &read[..n.min(read.len())];
        let hdr = match VnetHdr::parse(read) {
            Ok(hdr) => hdr,
            Err(e) => {
                *dropped += 1;
                return tracing::debug!("TAP frame without its offload header: {e}");
            }
        };
        let frame = &read[VNET_HDR_LEN..];
        let emitted = offload::segment_into(frame, &hdr, arena, |arena| {
            if arena.0.len() > *max_frame {
                // Only a TAP MTU above the tunnel's would produce these: drop like a NIC (the
                // next `begin` discards the bytes).
                *dropped += 1;
                return;
            }
            out.push(arena.0.split().freeze());
        });
        if let Err(e) = emitted {
            *dropped += 1;
            tracing::debug!("dropping a TAP frame: {e}");
        }
    }
}

/// The downlink's frames of one batch, in the form the TAP takes them: the frames themselves
/// (plain TAP), or each behind a `virtio_net_hdr`, consecutive TCP segments coalesced when the
/// TAP has offloads.
pub struct DownlinkBatch {
    mode: TapOffload,
    plain: Vec<Bytes>,
    /// Header-carrying frames back to back; `ends[i]` is where frame `i` ends.
    arena: Vec<u8>,
    ends: Vec<usize>,
    coalescer: Coalescer,
    /// `None` with `--no-ack-thinning`.
    thinner: Option<AckThinner>,
    /// Per write: a pure ACK made redundant by a later one of this batch (grown only up to the
    /// last such write; the rest are written).
    skip: Vec<bool>,
}

/// The coalescer's `emit` for the write arena: it builds the writes in place, back to back, so
/// each ends where the previous one did plus its length.
fn record_end(ends: &mut Vec<usize>) -> impl FnMut(&[u8]) + '_ {
    move |write| ends.push(ends.last().copied().unwrap_or(0) + write.len())
}

/// Arena capacity kept between batches; a larger one (a burst) is released.
const ARENA_KEEP: usize = 512 * 1024;

impl DownlinkBatch {
    pub fn new(mode: TapOffload, ack_thinning: bool) -> DownlinkBatch {
        DownlinkBatch {
            mode,
            plain: Vec::new(),
            arena: Vec::new(),
            ends: Vec::new(),
            coalescer: Coalescer::new(),
            thinner: ack_thinning.then(AckThinner::new),
            skip: Vec::new(),
        }
    }

    /// Adds one Ethernet frame from the tunnel.
    pub fn push(&mut self, frame: &Bytes) {
        self.push_write(frame);
        // A pure ACK is never merged, so it is the batch's last write now.
        let writes = self.len();
        let Some(thinner) = &mut self.thinner else {
            return;
        };
        if let Some(i) = thinner.push(frame, writes.saturating_sub(1)) {
            self.skip.resize(writes, false);
            self.skip[i] = true;
        }
    }

    /// How many of the batch's writes are left out as redundant ACKs.
    pub fn thinned(&self) -> usize {
        self.skip.iter().filter(|s| **s).count()
    }

    fn push_write(&mut self, frame: &Bytes) {
        let DownlinkBatch {
            mode,
            plain,
            arena,
            ends,
            coalescer,
            ..
        } = self;
        match mode {
            TapOffload::Plain => plain.push(frame.clone()),
            TapOffload::Header => {
                arena.extend_from_slice(&VnetHdr::default().to_bytes());
                arena.extend_from_slice(frame);
                ends.push(arena.len());
            }
            TapOffload::Offload => coalescer.push(arena, frame, record_end(ends)),
        }
    }

    /// Ends the batch: the pending super-frame is completed.
    pub fn finish(&mut self) {
        let DownlinkBatch {
            arena,
            ends,
            coalescer,
            ..
        } = self;
        coalescer.flush(arena, record_end(ends));
    }

    /// How many TAP writes the batch takes.
    pub fn len(&self) -> usize {
        self.plain.len() + self.ends.len()
    }

    /// Whether the batch has nothing to write.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`th write; `None` for a pure ACK a later one of the batch made redundant.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        if self.skip.get(i) == Some(&true) {
            return None;
        }
        if let Some(frame) = self.plain.get(i) {
            return Some(frame);
        }
        let i = i - self.plain.len();
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.arena[start..self.ends[i]])
    }

    /// Gives every buffer back (the tunnel is idle): the next batch allocates what it needs.
    pub fn release(&mut self) {
        debug_assert!(self.is_empty(), "release between batches only");
        *self = DownlinkBatch::new(self.mode, self.thinner.is_some());
    }

    /// Forgets the written batch, keeping the buffers unless a burst grew them.
    pub fn clear(&mut self) {
        self.plain.clear();
        self.ends.clear();
        self.arena.clear();
        self.skip.clear();
        if let Some(thinner) = &mut self.thinner {
            thinner.clear();
        }
        if self.arena.capacity() > ARENA_KEEP {
            self.arena = Vec::new();
        }
    }
}

/// Removes the pure ACKs of `batch` that a later ACK of the batch supersedes
/// ([`AckThinner`]); returns how many.
pub fn thin_acks(batch: &mut Vec<Bytes>, thinner: &mut AckThinner) -> usize {
    thinner.clear();
    // Allocated only once an ACK is found redundant: most batches (data, or one ACK) have none.
    let mut redundant: Vec<bool> = Vec::new();
    for (i, frame) in batch.iter().enumerate() {
        if let Some(earlier) = thinner.push(frame, i) {
            redundant.resize(batch.len(), false);
            redundant[earlier] = true;
        }
    }
    let thinned = redundant.iter().filter(|r| **r).count();
    if thinned > 0 {
        let mut flags = redundant.into_iter();
        batch.retain(|_| !flags.next().unwrap_or(false));
    }
    thinned
}

/// Whether a failed TAP write only loses that frame (the kernel refused it, e.g. larger than
/// the MTU): dropped like a NIC would.
pub fn frame_refused(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidInput
}

/// An Ethernet/IPv4/TCP segment of one test flow carrying `payload` bytes at `seq`.
#[cfg(test)]
pub(crate) fn tcp_segment(seq: u32, payload: usize) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 20 + payload];
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    let total = (20 + 20 + payload) as u16;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
    let tcp = &mut f[34..54];
    tcp[0..2].copy_from_slice(&1000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&2000u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x10; // ACK
    for (i, b) in f[54..].iter_mut().enumerate() {
        *b = (seq as usize + i) as u8;
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_tap_gets_the_frames_unchanged() {
        let mut batch = DownlinkBatch::new(TapOffload::Plain, true);
        let frames: Vec<Bytes> = (0..3).map(|i| tcp_segment(i * 100, 100).into()).collect();
        frames.iter().for_each(|f| batch.push(f));
        batch.finish();
        assert_eq!(batch.len(), 3);
        assert_eq!(batch.get(2).unwrap(), &frames[2][..]);
    }

    #[test]
    fn a_header_tap_gets_each_frame_behind_an_empty_header() {
        let mut batch = DownlinkBatch::new(TapOffload::Header, true);
        let frames: Vec<Bytes> = (0..3).map(|i| tcp_segment(i * 100, 100).into()).collect();
        frames.iter().for_each(|f| batch.push(f));
        batch.finish();
        assert_eq!(batch.len(), 3);
        assert_eq!(&batch.get(1).unwrap()[..VNET_HDR_LEN], &[0; VNET_HDR_LEN]);
        assert_eq!(&batch.get(1).unwrap()[VNET_HDR_LEN..], &frames[1][..]);
    }

    #[test]
    fn an_offload_tap_gets_one_write_per_flow_run_and_the_cutter_restores_the_frames() {
        let mut batch = DownlinkBatch::new(TapOffload::Offload, true);
        let frames: Vec<Bytes> = (0..20)
            .map(|i| tcp_segment(i * 1448, 1448).into())
            .collect();
        frames.iter().for_each(|f| batch.push(f));
        batch.finish();
        assert_eq!(batch.len(), 1, "20 in-order segments, one super-frame");
        // What the pod's kernel would read back from the uplink side of an offload TAP.
        let mut cutter = UplinkCutter::new(1518);
        let super_frame = batch.get(0).unwrap().to_vec();
        cutter.read_buf()[..super_frame.len()].copy_from_slice(&super_frame);
        let mut out = Vec::new();
        cutter.cut(super_frame.len(), &mut out);
        assert_eq!(cutter.dropped, 0);
        assert_eq!(out.len(), 20);
        for (got, sent) in out.iter().zip(&frames) {
            assert_eq!(got[54..], sent[54..], "payload");
            assert_eq!(got[38..42], sent[38..42], "sequence number");
            assert!(got.len() <= 1518);
        }
        batch.clear();
        assert!(batch.is_empty());
    }

    /// A TSO super-frame of `segments` × 1448 payload bytes, as the pod's kernel hands it over.
    fn super_frame(cutter: &mut UplinkCutter, segments: u32) -> usize {
        let frame = tcp_segment(0, 1448 * segments as usize);
        let hdr = VnetHdr {
            gso_type: offload::GSO_TCPV4,
            gso_size: 1448,
            ..VnetHdr::default()
        };
        cutter.read_buf()[..VNET_HDR_LEN].copy_from_slice(&hdr.to_bytes());
        cutter.read_buf()[VNET_HDR_LEN..VNET_HDR_LEN + frame.len()].copy_from_slice(&frame);
        VNET_HDR_LEN + frame.len()
    }

    #[test]
    fn segments_are_consecutive_slices_of_one_arena_chunk() {
        let mut cutter = UplinkCutter::new(1518);
        let n = super_frame(&mut cutter, 30);
        let mut out = Vec::new();
        cutter.cut(n, &mut out);
        assert_eq!(out.len(), 30);
        // Built in place: each frame starts where the previous one ended (no per-frame
        // allocation, no scratch copy), until the 64 KiB chunk is full.
        let in_first_chunk = (ARENA / out[0].len()).min(out.len());
        for pair in out[..in_first_chunk].windows(2) {
            assert_eq!(
                pair[0].as_ptr().wrapping_add(pair[0].len()),
                pair[1].as_ptr()
            );
        }
        for (i, seg) in out.iter().enumerate() {
            assert_eq!(&seg[54..], &tcp_segment(1448 * i as u32, 1448)[54..]);
        }
    }

    #[test]
    fn a_released_cutter_keeps_sent_frames_intact_and_reallocates_on_demand() {
        let mut cutter = UplinkCutter::new(1518);
        let n = super_frame(&mut cutter, 3);
        let mut out = Vec::new();
        cutter.cut(n, &mut out);
        cutter.release();
        assert!(
            cutter.read.is_empty(),
            "the 64 KiB read buffer is given back"
        );
        assert_eq!(cutter.arena.0.capacity(), 0);
        // Frames cut before the release still own their bytes.
        assert_eq!(&out[2][54..], &tcp_segment(2 * 1448, 1448)[54..]);
        let n = super_frame(&mut cutter, 2);
        cutter.cut(n, &mut out);
        assert_eq!(out.len(), 5);
        assert_eq!(cutter.dropped, 0);
    }

    #[test]
    fn a_released_downlink_batch_starts_empty_and_works_again() {
        let mut batch = DownlinkBatch::new(TapOffload::Offload, true);
        let frames: Vec<Bytes> = (0..4).map(|i| tcp_segment(i * 1448, 1448).into()).collect();
        frames.iter().for_each(|f| batch.push(f));
        batch.finish();
        batch.clear();
        batch.release();
        assert_eq!(batch.arena.capacity(), 0);
        frames.iter().for_each(|f| batch.push(f));
        batch.finish();
        assert_eq!(batch.len(), 1);
    }

    #[test]
    fn segments_over_the_tunnel_frame_limit_and_garbage_are_dropped_not_sent() {
        let mut cutter = UplinkCutter::new(1518);
        let mut out = Vec::new();
        // Plain frame (GSO_NONE) of 9000 bytes: over the limit.
        let big = tcp_segment(0, 9000 - 54);
        cutter.read_buf()[..VNET_HDR_LEN].fill(0);
        cutter.read_buf()[VNET_HDR_LEN..VNET_HDR_LEN + big.len()].copy_from_slice(&big);
        cutter.cut(VNET_HDR_LEN + big.len(), &mut out);
        // Shorter than the header.
        cutter.cut(3, &mut out);
        // A GSO header on something that is not TCP.
        let hdr = VnetHdr {
            gso_type: offload::GSO_TCPV4,
            gso_size: 100,
            ..VnetHdr::default()
        };
        cutter.read_buf()[..VNET_HDR_LEN].copy_from_slice(&hdr.to_bytes());
        cutter.read_buf()[VNET_HDR_LEN..VNET_HDR_LEN + 60].fill(0xff);
        cutter.cut(VNET_HDR_LEN + 60, &mut out);
        assert!(out.is_empty());
        assert_eq!(cutter.dropped, 3);
    }

    /// A pure ACK (no payload) of the test flow acknowledging `ack`.
    fn pure_ack(ack: u32) -> Bytes {
        let mut f = tcp_segment(0, 0);
        f[14 + 20 + 8..14 + 20 + 12].copy_from_slice(&ack.to_be_bytes());
        f.into()
    }

    #[test]
    fn every_tap_mode_skips_the_acks_a_later_one_supersedes_and_keeps_the_order() {
        for mode in [TapOffload::Plain, TapOffload::Header, TapOffload::Offload] {
            let mut batch = DownlinkBatch::new(mode, true);
            let data: Bytes = tcp_segment(0, 1000).into();
            for frame in [
                pure_ack(1),
                pure_ack(2),
                data.clone(),
                pure_ack(3),
                pure_ack(4),
            ] {
                batch.push(&frame);
            }
            batch.finish();
            let header = if mode == TapOffload::Plain {
                0
            } else {
                VNET_HDR_LEN
            };
            let written: Vec<&[u8]> = (0..batch.len())
                .filter_map(|i| batch.get(i))
                .map(|w| &w[header..])
                .collect();
            // The data segment ends the first run: ACK 2 stays, ACK 1 and 3 go.
            let (ack2, ack4) = (pure_ack(2), pure_ack(4));
            assert_eq!(written, vec![&ack2[..], &data[..], &ack4[..]], "{mode:?}");
            assert_eq!(batch.thinned(), 2);
            batch.clear();
            assert_eq!(batch.thinned(), 0);
        }
    }

    #[test]
    fn without_thinning_every_ack_is_written() {
        let mut batch = DownlinkBatch::new(TapOffload::Offload, false);
        (1..=5).for_each(|n| batch.push(&pure_ack(n)));
        batch.finish();
        assert_eq!((0..batch.len()).filter_map(|i| batch.get(i)).count(), 5);
        assert_eq!(batch.thinned(), 0);
    }

    #[test]
    fn the_uplink_batch_loses_only_superseded_acks() {
        let mut thinner = AckThinner::new();
        let data: Bytes = tcp_segment(0, 1000).into();
        let mut batch = vec![pure_ack(1), data.clone(), pure_ack(2), pure_ack(3)];
        assert_eq!(thin_acks(&mut batch, &mut thinner), 1);
        assert_eq!(batch, vec![pure_ack(1), data, pure_ack(3)]);
        // The thinner starts afresh for each batch.
        let mut next = vec![pure_ack(4)];
        assert_eq!(thin_acks(&mut next, &mut thinner), 0);
        assert_eq!(next.len(), 1);
    }
}
