//! The bridge's side of the TAP offloads ([`netcfg::offload`]): what changes when every TAP
//! read and write carries a `virtio_net_hdr`.
//!
//! Upload: one read returns a TCP super-frame of up to 64 KiB; [`netcfg::offload::segment`]
//! cuts it into wire frames (the server expects ordinary Ethernet frames), copied into one
//! shared arena so a burst costs one allocation per `ARENA` bytes, not one per frame.
//! Download: a batch of tunnel frames goes through a [`Coalescer`], so consecutive in-order
//! segments of one TCP flow cost one TAP write instead of one each. Measured with
//! `tests/bench` (README, "Performance"): the syscalls per GB, not the crypto, were the cost.

use std::io;

use bytes::{Bytes, BytesMut};
use netcfg::offload::{self, Coalescer, VnetHdr, MAX_SUPER_FRAME, VNET_HDR_LEN};
use netcfg::TapOffload;

/// Uplink arena: refilled when a segment no longer fits. A chunk is freed only when every frame
/// cut from it has been sent.
const ARENA: usize = 64 * 1024;

/// The uplink's buffers for a TAP with a `virtio_net_hdr`, allocated once per session.
pub struct UplinkCutter {
    /// One read: the header and a super-frame.
    read: Vec<u8>,
    /// One segment being built by [`offload::segment`].
    scratch: Vec<u8>,
    arena: BytesMut,
    /// The largest wire frame the tunnel may carry (MTU + Ethernet + VLAN).
    max_frame: usize,
    /// Frames dropped: malformed offload headers, or segments over `max_frame`.
    pub dropped: u64,
}

impl UplinkCutter {
    pub fn new(max_frame: usize) -> UplinkCutter {
        UplinkCutter {
            read: vec![0; VNET_HDR_LEN + MAX_SUPER_FRAME],
            scratch: Vec::with_capacity(max_frame),
            arena: BytesMut::new(),
            max_frame,
            dropped: 0,
        }
    }

    /// Where the next TAP read goes.
    pub fn read_buf(&mut self) -> &mut [u8] {
        &mut self.read
    }

    /// Cuts the `n` bytes just read into wire frames appended to `out`.
    pub fn cut(&mut self, n: usize, out: &mut Vec<Bytes>) {
        let UplinkCutter {
            read,
            scratch,
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
        let emitted = offload::segment(frame, &hdr, scratch, |seg| {
            if seg.len() > *max_frame {
                // Only a TAP MTU above the tunnel's would produce these: drop like a NIC.
                *dropped += 1;
                return;
            }
            if arena.capacity() < seg.len() {
                *arena = BytesMut::with_capacity(ARENA.max(seg.len()));
            }
            arena.extend_from_slice(seg);
            out.push(arena.split().freeze());
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
}

/// Arena capacity kept between batches; a larger one (a burst) is released.
const ARENA_KEEP: usize = 512 * 1024;

impl DownlinkBatch {
    pub fn new(mode: TapOffload) -> DownlinkBatch {
        DownlinkBatch {
            mode,
            plain: Vec::new(),
            arena: Vec::new(),
            ends: Vec::new(),
            coalescer: Coalescer::new(),
        }
    }

    /// Adds one Ethernet frame from the tunnel.
    pub fn push(&mut self, frame: &Bytes) {
        let DownlinkBatch {
            mode,
            plain,
            arena,
            ends,
            coalescer,
        } = self;
        match mode {
            TapOffload::Plain => plain.push(frame.clone()),
            TapOffload::Header => {
                arena.extend_from_slice(&VnetHdr::default().to_bytes());
                arena.extend_from_slice(frame);
                ends.push(arena.len());
            }
            TapOffload::Offload => coalescer.push(frame, |out| {
                arena.extend_from_slice(out);
                ends.push(arena.len());
            }),
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
        coalescer.flush(|out| {
            arena.extend_from_slice(out);
            ends.push(arena.len());
        });
    }

    /// How many TAP writes the batch takes.
    pub fn len(&self) -> usize {
        self.plain.len() + self.ends.len()
    }

    /// Whether the batch has nothing to write.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`th write.
    pub fn get(&self, i: usize) -> &[u8] {
        if let Some(frame) = self.plain.get(i) {
            return frame;
        }
        let i = i - self.plain.len();
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.arena[start..self.ends[i]]
    }

    /// Forgets the written batch, keeping the buffers unless a burst grew them.
    pub fn clear(&mut self) {
        self.plain.clear();
        self.ends.clear();
        self.arena.clear();
        if self.arena.capacity() > ARENA_KEEP {
            self.arena = Vec::new();
        }
    }
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
        let mut batch = DownlinkBatch::new(TapOffload::Plain);
        let frames: Vec<Bytes> = (0..3).map(|i| tcp_segment(i * 100, 100).into()).collect();
        frames.iter().for_each(|f| batch.push(f));
        batch.finish();
        assert_eq!(batch.len(), 3);
        assert_eq!(batch.get(2), &frames[2][..]);
    }

    #[test]
    fn a_header_tap_gets_each_frame_behind_an_empty_header() {
        let mut batch = DownlinkBatch::new(TapOffload::Header);
        let frames: Vec<Bytes> = (0..3).map(|i| tcp_segment(i * 100, 100).into()).collect();
        frames.iter().for_each(|f| batch.push(f));
        batch.finish();
        assert_eq!(batch.len(), 3);
        assert_eq!(&batch.get(1)[..VNET_HDR_LEN], &[0; VNET_HDR_LEN]);
        assert_eq!(&batch.get(1)[VNET_HDR_LEN..], &frames[1][..]);
    }

    #[test]
    fn an_offload_tap_gets_one_write_per_flow_run_and_the_cutter_restores_the_frames() {
        let mut batch = DownlinkBatch::new(TapOffload::Offload);
        let frames: Vec<Bytes> = (0..20)
            .map(|i| tcp_segment(i * 1448, 1448).into())
            .collect();
        frames.iter().for_each(|f| batch.push(f));
        batch.finish();
        assert_eq!(batch.len(), 1, "20 in-order segments, one super-frame");
        // What the pod's kernel would read back from the uplink side of an offload TAP.
        let mut cutter = UplinkCutter::new(1518);
        let super_frame = batch.get(0).to_vec();
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
}
