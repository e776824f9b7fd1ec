//! Spreading a multi-connection session's outgoing frames over its TCP connections by flow: every
//! frame of one TCP/UDP flow takes the same connection, so the server receives a flow's frames
//! in the order they were sent, while different flows use different connections (and cores).
//!
//! Why not "whichever connection is free first" (what the C client does): frames of one flow
//! then race each other over different connections and reach the server's hub out of order,
//! which the receiving TCP takes as loss (duplicate ACKs, spurious retransmits). The server side
//! does the same for its own sending: SoftEther picks a connection per block, so the order of
//! downlink frames is up to the server.

use bytes::Bytes;
use tokio::sync::mpsc;

/// Which of `n` connections `frame` (an Ethernet frame) takes: a hash of its IP addresses,
/// protocol and ports (TCP/UDP), else of its addresses, else of its MAC addresses (ARP and other
/// non-IP frames). Pure, never panics; `n` of 0 or 1 gives 0.
pub fn connection_for(frame: &[u8], n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    (fnv1a(flow_bytes(frame)) % n as u64) as usize
}

/// The bytes that name the frame's flow.
fn flow_bytes(frame: &[u8]) -> [&[u8]; 2] {
    const ETH: usize = 14;
    let ethertype = frame.get(12..14).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let macs = frame.get(..12).unwrap_or(frame);
    let (addrs, proto, l4) = match ethertype {
        Some(0x0800) => {
            let Some(ip) = frame.get(ETH..ETH + 20) else {
                return [macs, &[]];
            };
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            // Only the first fragment carries ports; all fragments hash by addresses alone.
            let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
            let l4 = if fragment { None } else { Some(ETH + ihl) };
            (&frame[ETH + 12..ETH + 20], ip[9], l4)
        }
        Some(0x86dd) => {
            let Some(ip) = frame.get(ETH..ETH + 40) else {
                return [macs, &[]];
            };
            (&frame[ETH + 8..ETH + 40], ip[6], Some(ETH + 40))
        }
        _ => return [macs, &[]],
    };
    let ports = match (proto, l4) {
        (6 | 17, Some(at)) => frame.get(at..at + 4).unwrap_or(&[]),
        _ => &[],
    };
    [addrs, ports]
}

fn fnv1a(parts: [&[u8]; 2]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in parts.into_iter().flatten() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Moves frames from the session's one outgoing queue to the per-connection queues, by flow,
/// until the caller's side closes or every connection is gone.
pub async fn spread(mut from: mpsc::Receiver<Bytes>, to: Vec<mpsc::Sender<Bytes>>) {
    let mut batch = Vec::new();
    while from.recv_many(&mut batch, 256).await > 0 {
        for frame in batch.drain(..) {
            let i = connection_for(&frame, to.len());
            if to[i].send(frame).await.is_err() {
                // That connection ended, so does the session: nothing left to spread to.
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn tcp(sport: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(sport, 443, 1, 1000)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    fn udp6(sport: u16) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .udp(sport, 53)
            .write(&mut out, b"q")
            .unwrap();
        out
    }

    #[test]
    fn every_frame_of_a_flow_takes_the_same_connection() {
        for sport in 40000..40050 {
            let first = connection_for(&tcp(sport, b""), 4);
            assert_eq!(connection_for(&tcp(sport, &[7; 1400]), 4), first);
            assert!(first < 4);
            assert_eq!(
                connection_for(&udp6(sport), 3),
                connection_for(&udp6(sport), 3)
            );
        }
    }

    #[test]
    fn flows_spread_over_all_connections() {
        let mut used = [0u32; 4];
        for sport in 40000..40400 {
            used[connection_for(&tcp(sport, b"x"), 4)] += 1;
        }
        assert!(used.iter().all(|n| *n > 50), "{used:?}");
    }

    #[test]
    fn odd_frames_never_panic_and_one_connection_is_always_zero() {
        let frame = tcp(1, b"abc");
        for n in 0..frame.len() {
            assert!(connection_for(&frame[..n], 3) < 3);
        }
        let mut fragment = frame.clone();
        fragment[20] = 0x20; // more fragments
        assert!(connection_for(&fragment, 5) < 5);
        assert_eq!(connection_for(&frame, 1), 0);
        assert_eq!(connection_for(&frame, 0), 0);
    }

    #[tokio::test]
    async fn the_spreader_keeps_each_flows_order() {
        let (tx, rx) = mpsc::channel(16);
        let (outs, mut ins): (Vec<_>, Vec<_>) = (0..3).map(|_| mpsc::channel(1024)).unzip();
        let task = tokio::spawn(spread(rx, outs));
        for seq in 0..100u8 {
            for sport in [1000, 2000, 3000, 4000] {
                tx.send(Bytes::from(tcp(sport, &[seq]))).await.unwrap();
            }
        }
        drop(tx);
        task.await.unwrap();
        let mut seen = 0;
        for rx in &mut ins {
            let mut last: std::collections::HashMap<u16, u8> = Default::default();
            while let Ok(frame) = rx.try_recv() {
                let sport = u16::from_be_bytes([frame[34], frame[35]]);
                let seq = frame[frame.len() - 1];
                if let Some(prev) = last.insert(sport, seq) {
                    assert!(seq > prev, "flow {sport} reordered");
                }
                seen += 1;
            }
        }
        assert_eq!(seen, 400);
    }
}
