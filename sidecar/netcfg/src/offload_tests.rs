//! Segmentation and coalescing checked against `etherparse` as an independent parser: every
//! frame we produce must parse, carry valid IP and TCP checksums, and together carry exactly
//! the bytes that went in.

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

use super::*;

const SRC: [u8; 6] = [0x5e, 0, 0, 0, 0, 1];
const DST: [u8; 6] = [0x5e, 0, 0, 0, 0, 2];

struct Tcp {
    v6: bool,
    vlan: bool,
    seq: u32,
    psh: bool,
    fin: bool,
    options: Vec<u8>,
    id: u16,
    df: bool,
}

impl Default for Tcp {
    fn default() -> Self {
        Tcp {
            v6: false,
            vlan: false,
            seq: 1000,
            psh: false,
            fin: false,
            options: Vec::new(),
            id: 7,
            df: true,
        }
    }
}

fn payload(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ salt)
        .collect()
}

/// One frame with valid checksums, built by etherparse.
fn frame(t: &Tcp, data: &[u8]) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(SRC, DST);
    let mut out = Vec::new();
    let vlan = etherparse::VlanId::try_new(5).unwrap();
    // Every arm is the same builder step (IP headers), so one path finishes all four.
    let ip = match (t.vlan, t.v6) {
        (false, false) => eth.ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64),
        (false, true) => eth.ipv6(v6(1), v6(2), 64),
        (true, false) => eth.single_vlan(vlan).ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64),
        (true, true) => eth.single_vlan(vlan).ipv6(v6(1), v6(2), 64),
    };
    let mut b = ip.tcp(40000, 443, t.seq, 64000).ack(555);
    if t.psh {
        b = b.psh();
    }
    if t.fin {
        b = b.fin();
    }
    if !t.options.is_empty() {
        b = b.options_raw(&t.options).unwrap();
    }
    b.write(&mut out, data).unwrap();
    if !t.v6 {
        // etherparse writes id 0 and DF set; set ours and fix the header checksum.
        let (l3, _) = l3_of(&out).unwrap();
        put16(&mut out, l3 + 4, t.id);
        let frag = if t.df { 0x4000 } else { 0 };
        put16(&mut out, l3 + 6, frag);
        ipv4_header_checksum(&mut out, l3);
    }
    out
}

fn v6(last: u8) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0xfd;
    a[1] = 0x42;
    a[15] = last;
    a
}

/// What a TSO read from the TAP looks like: one oversized frame, partial TCP checksum.
fn super_frame(t: &Tcp, data: &[u8], mss: u16) -> (Vec<u8>, VnetHdr) {
    let mut f = frame(t, data);
    let l = tcp_layout(&f).unwrap();
    let partial = fold(pseudo_header_sum(&f, &l, f.len() - l.tcp));
    put16(&mut f, l.tcp + 16, partial);
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: if t.v6 { GSO_TCPV6 } else { GSO_TCPV4 },
        hdr_len: l.payload as u16,
        gso_size: mss,
        csum_start: l.tcp as u16,
        csum_offset: 16,
    };
    (f, hdr)
}

/// Parses a frame with etherparse and checks both checksums; returns (seq, flags psh/fin, payload).
fn check(frame: &[u8]) -> (u32, bool, bool, Vec<u8>) {
    let p = SlicedPacket::from_ethernet(frame).expect("etherparse parses our frame");
    let Some(TransportSlice::Tcp(tcp)) = p.transport else {
        panic!("not TCP")
    };
    match p.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header();
            assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
            assert_eq!(
                usize::from(h.total_len()),
                frame.len() - l3_of(frame).unwrap().0
            );
            let c = tcp.calc_checksum_ipv4(h.source(), h.destination()).unwrap();
            assert_eq!(tcp.checksum(), c, "TCP checksum (IPv4)");
        }
        Some(NetSlice::Ipv6(ip)) => {
            let h = ip.header();
            let c = tcp.calc_checksum_ipv6(h.source(), h.destination()).unwrap();
            assert_eq!(tcp.checksum(), c, "TCP checksum (IPv6)");
        }
        _ => panic!("not IP"),
    }
    (
        tcp.sequence_number(),
        tcp.psh(),
        tcp.fin(),
        tcp.payload().to_vec(),
    )
}

fn segment_all(f: &[u8], hdr: &VnetHdr) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut scratch = Vec::new();
    let n = segment(f, hdr, &mut scratch, |s| out.push(s.to_vec())).unwrap();
    assert_eq!(n, out.len());
    out
}

/// Coalesces `frames` as one batch into an arena that already holds another write (the
/// coalescer builds at the arena's end, not at its start), and returns the writes.
fn coalesce_all(frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut c = Coalescer::new();
    let earlier = [0xee; 7];
    let mut arena = earlier.to_vec();
    let mut out = Vec::new();
    for f in frames {
        c.push(&mut arena, f, |s| out.push(s.to_vec()));
    }
    c.flush(&mut arena, |s| out.push(s.to_vec()));
    assert_eq!(arena[..7], earlier, "earlier writes stay as they were");
    assert_eq!(arena.len(), 7 + out.iter().map(Vec::len).sum::<usize>());
    out
}

#[test]
fn vnet_header_round_trips() {
    let h = VnetHdr {
        flags: 1,
        gso_type: 4,
        hdr_len: 0x1234,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
    };
    assert_eq!(VnetHdr::parse(&h.to_bytes()).unwrap(), h);
    assert_eq!(VnetHdr::parse(&[0u8; 9]), Err(OffloadError::Truncated));
}

#[test]
fn tso_segments_carry_valid_checksums_and_the_same_bytes() {
    for (v6, vlan) in [(false, false), (true, false), (false, true), (true, true)] {
        let data = payload(10_000, 3);
        let t = Tcp {
            v6,
            vlan,
            psh: true,
            ..Tcp::default()
        };
        let (f, hdr) = super_frame(&t, &data, 1448);
        let segs = segment_all(&f, &hdr);
        assert_eq!(segs.len(), 10_000usize.div_ceil(1448));
        let mut joined = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            let (seq, psh, _, p) = check(s);
            assert_eq!(seq, 1000 + (i * 1448) as u32);
            assert_eq!(psh, i == segs.len() - 1, "PSH only on the last segment");
            if i < segs.len() - 1 {
                assert_eq!(p.len(), 1448);
            }
            if !v6 {
                let (l3, _) = l3_of(s).unwrap();
                assert_eq!(be16(s, l3 + 4), 7 + i as u16, "IPv4 ids count up");
            }
            joined.extend_from_slice(&p);
        }
        assert_eq!(joined, data, "v6={v6} vlan={vlan}");
    }
}

#[test]
fn fin_stays_on_the_last_segment_and_options_are_copied() {
    // Timestamps option: kind 8, len 10, padded with two NOPs.
    let options = vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
    let t = Tcp {
        fin: true,
        options: options.clone(),
        ..Tcp::default()
    };
    let data = payload(3000, 9);
    let (f, hdr) = super_frame(&t, &data, 1000);
    let segs = segment_all(&f, &hdr);
    assert_eq!(segs.len(), 3);
    for (i, s) in segs.iter().enumerate() {
        let (_, _, fin, _) = check(s);
        assert_eq!(fin, i == 2);
        let l = tcp_layout(s).unwrap();
        assert_eq!(&s[l.tcp + 20..l.payload], &options[..]);
    }
}

#[test]
fn a_gso_frame_of_one_segment_and_a_partial_checksum_frame_are_completed() {
    let data = payload(500, 1);
    let (f, hdr) = super_frame(&Tcp::default(), &data, 1448);
    let segs = segment_all(&f, &hdr);
    assert_eq!(segs.len(), 1);
    check(&segs[0]);
    let plain = VnetHdr {
        gso_type: GSO_NONE,
        ..hdr
    };
    let segs = segment_all(&f, &plain);
    assert_eq!(check(&segs[0]).3, data);
    // No offload at all: passed through untouched.
    let good = frame(&Tcp::default(), &data);
    assert_eq!(segment_all(&good, &VnetHdr::default()), vec![good]);
}

#[test]
fn bad_offload_headers_are_errors_not_panics() {
    let (f, hdr) = super_frame(&Tcp::default(), &payload(4000, 2), 1448);
    let mut scratch = Vec::new();
    let zero = VnetHdr { gso_size: 0, ..hdr };
    assert!(segment(&f, &zero, &mut scratch, |_| {}).is_err());
    let wrong = VnetHdr {
        gso_type: GSO_TCPV6,
        ..hdr
    };
    assert!(segment(&f, &wrong, &mut scratch, |_| {}).is_err());
    let udp = VnetHdr { gso_type: 3, ..hdr };
    assert!(segment(&f, &udp, &mut scratch, |_| {}).is_err());
    let beyond = VnetHdr {
        gso_type: GSO_NONE,
        csum_start: 60_000,
        ..hdr
    };
    assert!(segment(&f, &beyond, &mut scratch, |_| {}).is_err());
    assert!(segment(&f[..40], &hdr, &mut scratch, |_| {}).is_err());
}

#[test]
fn coalescing_in_order_segments_and_segmenting_again_gives_the_same_frames() {
    for v6 in [false, true] {
        let t = Tcp {
            v6,
            psh: true,
            ..Tcp::default()
        };
        let (f, hdr) = super_frame(&t, &payload(20_000, 5), 1448);
        let segs = segment_all(&f, &hdr);
        let merged = coalesce_all(&segs);
        assert_eq!(merged.len(), 1, "one super-frame (v6={v6})");
        let h = VnetHdr::parse(&merged[0]).unwrap();
        assert_eq!(h.gso_type, if v6 { GSO_TCPV6 } else { GSO_TCPV4 });
        assert_eq!(h.gso_size, 1448);
        assert_eq!(h.flags, F_NEEDS_CSUM);
        let again = segment_all(&merged[0][VNET_HDR_LEN..], &h);
        assert_eq!(again, segs, "v6={v6}");
    }
}

#[test]
fn frames_that_do_not_continue_the_flow_are_not_merged_and_order_is_kept() {
    let data = payload(1448, 1);
    let at = |seq: u32| {
        frame(
            &Tcp {
                seq,
                id: (seq / 1448) as u16,
                ..Tcp::default()
            },
            &data,
        )
    };
    // A gap: 0, 1448, (missing 2896), 4344.
    let frames = vec![at(0), at(1448), at(4344)];
    let out = coalesce_all(&frames);
    assert_eq!(out.len(), 2);
    assert_eq!(VnetHdr::parse(&out[0]).unwrap().gso_type, GSO_TCPV4);
    assert_eq!(VnetHdr::parse(&out[1]).unwrap(), VnetHdr::default());
    assert_eq!(&out[1][VNET_HDR_LEN..], &frames[2][..]);

    // Another flow in between splits the run.
    let mut other = at(1448);
    let l = tcp_layout(&other).unwrap();
    put16(&mut other, l.tcp, 40001);
    let out = coalesce_all(&[at(0), other.clone(), at(1448)]);
    assert_eq!(out.len(), 3);
    assert_eq!(&out[1][VNET_HDR_LEN..], &other[..]);

    // SYN, non-TCP and garbage pass through untouched.
    let mut syn = at(0);
    syn[l.tcp + 13] |= TCP_SYN;
    let arp = vec![0xffu8; 42];
    let out = coalesce_all(&[syn.clone(), arp.clone(), vec![1, 2, 3]]);
    assert_eq!(out.len(), 3);
    assert_eq!(&out[0][VNET_HDR_LEN..], &syn[..]);
    assert_eq!(&out[1][VNET_HDR_LEN..], &arp[..]);
}

#[test]
fn a_short_or_pushed_segment_ends_the_super_frame() {
    let full = payload(1000, 1);
    let short = payload(400, 2);
    let mk = |seq: u32, data: &[u8], psh: bool| {
        frame(
            &Tcp {
                seq,
                psh,
                id: (seq / 1000) as u16,
                ..Tcp::default()
            },
            data,
        )
    };
    let frames = vec![
        mk(0, &full, false),
        mk(1000, &short, false),
        mk(1400, &full, false),
        mk(2400, &full, true),
        mk(3400, &full, false),
    ];
    let out = coalesce_all(&frames);
    assert_eq!(out.len(), 3, "0+1000(short) | 1400+2400(psh) | 3400");
    let mut bytes = Vec::new();
    for o in &out {
        let h = VnetHdr::parse(o).unwrap();
        for s in segment_all(&o[VNET_HDR_LEN..], &h) {
            bytes.extend_from_slice(&check(&s).3);
        }
    }
    let want: Vec<u8> = [&full[..], &short, &full, &full, &full].concat();
    assert_eq!(bytes, want);
}

#[test]
fn ipv4_without_df_needs_consecutive_ids() {
    let data = payload(1000, 1);
    let mk = |seq: u32, id: u16| {
        frame(
            &Tcp {
                seq,
                id,
                df: false,
                ..Tcp::default()
            },
            &data,
        )
    };
    assert_eq!(coalesce_all(&[mk(0, 10), mk(1000, 11)]).len(), 1);
    assert_eq!(coalesce_all(&[mk(0, 10), mk(1000, 20)]).len(), 2);
}

#[test]
fn super_frames_stay_within_64_kib() {
    let data = payload(1448, 1);
    let frames: Vec<Vec<u8>> = (0..100u32)
        .map(|i| {
            frame(
                &Tcp {
                    seq: i * 1448,
                    ..Tcp::default()
                },
                &data,
            )
        })
        .collect();
    let out = coalesce_all(&frames);
    assert!(out.len() >= 3);
    for o in &out {
        assert!(o.len() - VNET_HDR_LEN - ETH_HDR <= 65_535);
    }
    let total: usize = out
        .iter()
        .map(|o| {
            let h = VnetHdr::parse(o).unwrap();
            segment_all(&o[VNET_HDR_LEN..], &h).len()
        })
        .sum();
    assert_eq!(total, 100);
}

#[test]
fn random_bytes_never_panic() {
    // A small seeded generator: the same inputs on every run.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let base = frame(&Tcp::default(), &payload(3000, 4));
    let mut scratch = Vec::new();
    let mut c = Coalescer::new();
    let mut arena = Vec::new();
    for round in 0..20_000 {
        if round % 64 == 0 {
            c.flush(&mut arena, |_| {});
            arena.clear();
        }
        let mut f = base.clone();
        let flips = next() % 8;
        for _ in 0..flips {
            let i = (next() as usize) % f.len();
            f[i] = next() as u8;
        }
        f.truncate((next() as usize) % (f.len() + 1));
        let hdr_bytes = next().to_le_bytes();
        let mut hb = [0u8; VNET_HDR_LEN];
        hb[..8].copy_from_slice(&hdr_bytes);
        hb[8] = next() as u8;
        let hdr = VnetHdr::parse(&hb).unwrap();
        let _ = segment(&f, &hdr, &mut scratch, |_| {});
        c.push(&mut arena, &f, |_| {});
    }
    c.flush(&mut arena, |_| {});
}

/// The word-wise sum against RFC 1071's 16-bit big-endian definition, at every length around
/// the word and pair boundaries and with a carried-in accumulator.
#[test]
fn word_wise_sum_equals_the_16_bit_definition() {
    fn reference(mut acc: u64, data: &[u8]) -> u64 {
        for pair in data.chunks(2) {
            acc += u64::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
        acc
    }
    let bytes: Vec<u8> = (0..1600u32)
        .map(|i| ((i * 7919) >> 3) as u8 ^ 0xa5)
        .collect();
    let all_ones = vec![0xffu8; 1600];
    for data in [&bytes, &all_ones] {
        for len in (0..80).chain([1447, 1448, 1449, 1450, 1500, 1600]) {
            for acc in [0, 1, 0xffff, 0x1_2345_6789] {
                assert_eq!(
                    fold(sum_bytes(acc, &data[..len])),
                    fold(reference(acc, &data[..len])),
                    "length {len}, accumulator {acc:#x}"
                );
            }
        }
    }
}
