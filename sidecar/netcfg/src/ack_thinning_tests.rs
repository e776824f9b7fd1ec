//! ACK thinning on frames built by `etherparse`: which earlier ACK a frame makes redundant, and
//! everything that must never be dropped.

use etherparse::PacketBuilder;

use super::*;

const A: [u8; 6] = [0x5e, 0, 0, 0, 0, 1];
const B: [u8; 6] = [0x5e, 0, 0, 0, 0, 2];

/// What to vary in a built TCP frame.
#[derive(Clone)]
struct Seg {
    v6: bool,
    port: u16,
    ack: u32,
    payload: usize,
    psh: bool,
    fin: bool,
    ece: bool,
    options: Vec<u8>,
    window: u16,
    pad_to: usize,
}

impl Default for Seg {
    fn default() -> Self {
        Seg {
            v6: false,
            port: 40000,
            ack: 1000,
            payload: 0,
            psh: false,
            fin: false,
            ece: false,
            // NOP NOP TS(10): what Linux puts on every segment.
            options: vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
            window: 500,
            pad_to: 0,
        }
    }
}

fn ack(n: u32) -> Seg {
    Seg {
        ack: n,
        ..Seg::default()
    }
}

fn build(s: &Seg) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(A, B);
    let ip = if s.v6 {
        let src = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let dst = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        eth.ipv6(src, dst, 64)
    } else {
        eth.ipv4([10, 99, 0, 200], [10, 99, 0, 10], 64)
    };
    let mut b = ip.tcp(s.port, 5201, 77, s.window).ack(s.ack);
    if s.psh {
        b = b.psh();
    }
    if s.fin {
        b = b.fin();
    }
    if s.ece {
        b = b.ece();
    }
    if !s.options.is_empty() {
        b = b.options_raw(&s.options).unwrap();
    }
    let mut out = Vec::new();
    b.write(&mut out, &vec![0x5a; s.payload]).unwrap();
    if out.len() < s.pad_to {
        out.resize(s.pad_to, 0);
    }
    out
}

/// Runs a batch through a thinner; returns the indices left out, in the order decided.
fn thinned(batch: &[Seg]) -> Vec<usize> {
    let mut t = AckThinner::new();
    batch
        .iter()
        .enumerate()
        .filter_map(|(i, s)| t.push(&build(s), i))
        .collect()
}

#[test]
fn a_later_cumulative_ack_makes_the_earlier_ones_redundant() {
    assert_eq!(thinned(&[ack(1000), ack(3896), ack(6792)]), vec![0, 1]);
}

#[test]
fn ipv6_and_padded_and_optionless_acks_are_thinned_too() {
    let v6 = Seg {
        v6: true,
        ..Seg::default()
    };
    let bare = Seg {
        options: Vec::new(),
        pad_to: 60,
        ..Seg::default()
    };
    for base in [v6, bare] {
        let batch = [
            Seg {
                ack: 10,
                ..base.clone()
            },
            Seg {
                ack: 20,
                ..base.clone()
            },
        ];
        assert_eq!(thinned(&batch), vec![0]);
    }
}

#[test]
fn duplicate_acks_are_loss_signals_and_all_kept() {
    assert_eq!(
        thinned(&[ack(1000), ack(1000), ack(1000)]),
        Vec::<usize>::new()
    );
    // A window update with the same ACK number is kept as well.
    let update = Seg {
        window: 9000,
        ..ack(1000)
    };
    assert_eq!(thinned(&[ack(1000), update]), Vec::<usize>::new());
}

#[test]
fn an_older_ack_after_a_newer_one_removes_nothing() {
    assert_eq!(thinned(&[ack(5000), ack(4000)]), Vec::<usize>::new());
    // ...and the later, higher one then supersedes the reordered one only.
    assert_eq!(thinned(&[ack(5000), ack(4000), ack(6000)]), vec![1]);
}

#[test]
fn ack_numbers_compare_across_the_wrap() {
    assert_eq!(thinned(&[ack(u32::MAX - 10), ack(5)]), vec![0]);
    assert_eq!(thinned(&[ack(5), ack(u32::MAX - 10)]), Vec::<usize>::new());
}

#[test]
fn connections_are_thinned_separately() {
    let other = |n| Seg {
        port: 40001,
        ..ack(n)
    };
    assert_eq!(
        thinned(&[ack(100), other(100), ack(200), other(200)]),
        vec![0, 1]
    );
    // Swapped addresses (the other direction, here with a higher ACK) are another connection.
    let mut t = AckThinner::new();
    let a = build(&ack(100));
    let mut reversed = build(&ack(200));
    let (src, dst) = (a[26..30].to_vec(), a[30..34].to_vec());
    reversed[26..30].copy_from_slice(&dst);
    reversed[30..34].copy_from_slice(&src);
    assert_eq!(t.push(&a, 0), None);
    assert_eq!(t.push(&reversed, 1), None);
}

#[test]
fn acks_with_sack_flags_or_data_are_never_dropped_and_end_the_run() {
    // SACK permitted-length block: kind 5.
    let sack = Seg {
        options: vec![1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 9],
        ..ack(2000)
    };
    let data = Seg {
        payload: 100,
        ..ack(2000)
    };
    let psh = Seg {
        psh: true,
        ..ack(2000)
    };
    let fin = Seg {
        fin: true,
        ..ack(2000)
    };
    let ece = Seg {
        ece: true,
        ..ack(2000)
    };
    for middle in [sack, data, psh, fin, ece] {
        // Neither the ACK before it nor the frame itself goes.
        assert_eq!(
            thinned(&[ack(1000), middle.clone(), ack(3000)]),
            Vec::<usize>::new()
        );
        // A qualifying ACK after it is never the one made redundant by it.
        assert_eq!(thinned(&[middle, ack(3000), ack(4000)]), vec![1]);
    }
}

#[test]
fn non_tcp_frames_in_between_change_nothing() {
    let mut t = AckThinner::new();
    assert_eq!(t.push(&build(&ack(1)), 0), None);
    let mut arp = vec![0u8; 42];
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(t.push(&arp, 1), None);
    assert_eq!(t.push(&[], 2), None);
    assert_eq!(t.push(&build(&ack(2)), 3), Some(0));
}

#[test]
fn clear_starts_a_new_batch() {
    let mut t = AckThinner::new();
    assert_eq!(t.push(&build(&ack(1)), 0), None);
    t.clear();
    assert_eq!(t.push(&build(&ack(2)), 0), None);
}

#[test]
fn the_tracked_connections_are_bounded() {
    let mut t = AckThinner::new();
    for port in 0..(MAX_FLOWS as u16 + 10) {
        let s = Seg {
            port: 1000 + port,
            ..ack(1)
        };
        t.push(&build(&s), usize::from(port));
    }
    assert_eq!(t.last.len(), MAX_FLOWS);
}

#[test]
fn truncated_and_odd_option_lists_never_panic_and_never_qualify() {
    assert!(only_timestamps(&[]));
    assert!(only_timestamps(&[1, 1, 0, 9, 9]));
    assert!(!only_timestamps(&[8, 10, 0]));
    assert!(!only_timestamps(&[8]));
    assert!(!only_timestamps(&[2, 4, 5, 180]));
    let frame = build(&ack(1));
    let mut t = AckThinner::new();
    for n in 0..frame.len() {
        let _ = t.push(&frame[..n], n);
    }
}
