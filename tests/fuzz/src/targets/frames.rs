//! The data plane's frame code fed frames from either side: TAP reads (a `virtio_net_hdr` and
//! a possibly-GSO frame from the pod's kernel) and tunnel frames (anything the server relays).

use netcfg::ack_thinning::AckThinner;
use netcfg::offload::{self, Coalescer, VnetHdr, MAX_SUPER_FRAME, VNET_HDR_LEN};
use softether_sidecar::transport::spread::connection_for;

/// Input: frames until the input ends, each `len_hi, len_lo, frame…` (the length is cut to
/// what is left). Every frame goes:
/// - to the segmenter as a TAP read (its first 10 bytes taken as the `virtio_net_hdr`): every
///   wire frame it emits is at most a TAP read long plus headers;
/// - through one batch's [`Coalescer`]: every write starts with a header that parses and fits
///   the TAP's limit;
/// - through one batch's [`AckThinner`]: a frame only ever supersedes an earlier one;
/// - to the connection spreader, for 1 to 4 connections.
pub fn tap_frames(data: &[u8]) {
    let mut rest = data;
    let mut thinner = AckThinner::new();
    let mut coalescer = Coalescer::new();
    let mut arena = Vec::new();
    let mut scratch = Vec::new();
    let mut index = 0;
    let check_write = |out: &[u8]| {
        assert!(out.len() >= VNET_HDR_LEN, "a write without its header");
        assert!(
            out.len() <= VNET_HDR_LEN + MAX_SUPER_FRAME,
            "a write over the TAP's limit"
        );
        VnetHdr::parse(out).expect("a header we wrote parses");
    };
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let (frame, tail) = rest[2..].split_at(len);
        rest = tail;
        if let Ok(hdr) = VnetHdr::parse(frame) {
            let body = &frame[VNET_HDR_LEN..];
            let _ = offload::segment(body, &hdr, &mut scratch, |seg| {
                assert!(
                    seg.len() <= body.len() + 120,
                    "a segment longer than its source"
                );
            });
        }
        coalescer.push(&mut arena, frame, check_write);
        if let Some(earlier) = thinner.push(frame, index) {
            assert!(earlier < index, "an ACK superseded by an earlier one");
        }
        for n in 1..=4 {
            assert!(connection_for(frame, n) < n);
        }
        index += 1;
    }
    coalescer.flush(&mut arena, check_write);
}
