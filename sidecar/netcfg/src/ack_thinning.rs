//! TCP ACK thinning within one batch of frames: a pure ACK is left out when a later pure ACK of
//! the same connection in the same batch acknowledges more.
//!
//! Why: during a bulk transfer the receiver acknowledges every second segment, so a gigabyte
//! carries ~350,000 pure ACKs back to the sender. Each costs a TAP write or read and, worse,
//! the local TCP stack's ACK processing runs inside that syscall (measured with `perf` on an
//! upload: 22 % of the client's CPU was the iperf3 sender's `tcp_ack` under our TAP writes). A
//! cumulative ACK carries everything an earlier one said, so when both are in the same batch,
//! only the later one is useful; the kernel already copes with such "stretch" ACKs, which
//! receivers with GRO send all the time. The same rule as `sch_cake`'s conservative ACK filter:
//! - both frames are IPv4 or IPv6 TCP without payload, flags exactly ACK (no SYN/FIN/RST/PSH/
//!   URG/ECE/CWR), between the same MAC, address and port pairs;
//! - their options are only NOP, EOL and timestamps (a SACK block is loss information: kept);
//! - the later ACK number is strictly after the earlier one. A duplicate ACK (same number) is a
//!   loss signal to the sender's fast retransmit and is never dropped;
//! - a frame of the connection that does not qualify (data, SACK, FIN, ...) ends the run: no
//!   ACK before it is dropped because of an ACK after it.
//!
//! Pure: bytes in, a decision out; never panics on any input.

use crate::offload::{be16, be32, tcp_layout, TCP_ACK};

/// Connections tracked per batch; further ones are passed through unthinned. A batch is at most
/// a few hundred frames, so this bounds the work without mattering in practice.
const MAX_FLOWS: usize = 32;

/// Addresses and ports of one direction of a TCP connection, with the MAC pair.
#[derive(Clone, Copy, PartialEq, Eq)]
struct FlowKey {
    macs: [u8; 12],
    /// Source then destination address; IPv4 uses the first 8 bytes.
    addrs: [u8; 32],
    ports: [u8; 4],
    v6: bool,
}

/// The newest qualifying ACK of a connection in the current batch.
#[derive(Clone, Copy)]
struct LastAck {
    key: FlowKey,
    /// The caller's index for that frame.
    index: usize,
    ack: u32,
}

/// Decides, frame by frame in batch order, which earlier pure ACK a frame makes redundant.
/// Call [`AckThinner::clear`] between batches: only ACKs sent together are compared.
#[derive(Default)]
pub struct AckThinner {
    last: Vec<LastAck>,
}

impl AckThinner {
    /// An empty thinner.
    pub fn new() -> AckThinner {
        AckThinner::default()
    }

    /// Considers `frame` (an Ethernet frame, no virtio header), which the caller knows as
    /// `index`. Returns the index of an earlier frame of this batch that `frame` makes
    /// redundant: the caller leaves that one out.
    pub fn push(&mut self, frame: &[u8], index: usize) -> Option<usize> {
        let (key, ack) = match classify(frame)? {
            Kind::PureAck(key, ack) => (key, ack),
            Kind::Other(key) => {
                self.last.retain(|l| l.key != key);
                return None;
            }
        };
        match self.last.iter_mut().find(|l| l.key == key) {
            Some(last) => {
                let redundant = (ack.wrapping_sub(last.ack) as i32 > 0).then_some(last.index);
                *last = LastAck { key, index, ack };
                redundant
            }
            None => {
                if self.last.len() < MAX_FLOWS {
                    self.last.push(LastAck { key, index, ack });
                }
                None
            }
        }
    }

    /// Forgets the batch (keeps its small buffer).
    pub fn clear(&mut self) {
        self.last.clear();
    }
}

enum Kind {
    /// A pure ACK that may be thinned, with its ACK number.
    PureAck(FlowKey, u32),
    /// Another TCP frame of the connection: it ends the connection's run.
    Other(FlowKey),
}

/// `None` for anything that is not TCP (it does not affect any connection's run).
fn classify(frame: &[u8]) -> Option<Kind> {
    let l = tcp_layout(frame)?;
    let mut key = FlowKey {
        macs: [0; 12],
        addrs: [0; 32],
        ports: [0; 4],
        v6: l.v6,
    };
    key.macs.copy_from_slice(&frame[..12]);
    key.ports.copy_from_slice(&frame[l.tcp..l.tcp + 4]);
    let ip_len = if l.v6 {
        key.addrs.copy_from_slice(&frame[l.ip + 8..l.ip + 40]);
        usize::from(be16(frame, l.ip + 4)) + 40
    } else {
        key.addrs[..8].copy_from_slice(&frame[l.ip + 12..l.ip + 20]);
        usize::from(be16(frame, l.ip + 2))
    };
    // Ethernet may pad a short frame: the IP length says where the segment ends.
    let qualifies = l.ip + ip_len == l.payload
        && frame[l.tcp + 13] == TCP_ACK
        && only_timestamps(&frame[l.tcp + 20..l.payload]);
    Some(if qualifies {
        Kind::PureAck(key, be32(frame, l.tcp + 8))
    } else {
        Kind::Other(key)
    })
}

/// Whether TCP options hold nothing but NOP, EOL and a timestamp.
fn only_timestamps(options: &[u8]) -> bool {
    let mut i = 0;
    while i < options.len() {
        match options[i] {
            0 => return true,
            1 => i += 1,
            8 if options.get(i + 1) == Some(&10) && i + 10 <= options.len() => i += 10,
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
#[path = "ack_thinning_tests.rs"]
mod tests;
