//! One UDP-acceleration datagram (§11.2; `UdpAccelSend` / `UdpAccelProcessRecvPacket` in
//! UdpAccel.c): the inner header, and its three wire modes.
//!
//! ```text
//! inner     = cookie u32 | my_tick u64 | your_tick u64 | size u16 | flag u8 | payload | padding
//! plaintext = inner (no padding)
//! v1        = IV(20) | RC4(key = SHA-1(sender_key20 | IV), inner | 20 zero bytes)
//! v2        = IV(12) | ChaCha20-Poly1305(key = sender_key128[..32], nonce = IV, no AAD, inner) | tag(16)
//! ```
//! All integers big-endian. Each side encrypts with the key it announced and decrypts with the
//! peer's. The next IV is the last 20 bytes (v1) or the first 12 bytes (v2) of the previous
//! datagram's ciphertext, exactly as upstream chains it.

use std::ops::Range;

use rc4::{KeyInit, StreamCipher};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};

/// Version 1 key (RC4 + SHA-1): 20 bytes, one per direction.
pub const V1_KEY_LEN: usize = 20;
/// Version 2 key field: 128 bytes, of which ChaCha20-Poly1305 uses the first 32.
pub const V2_KEY_LEN: usize = 128;
/// Version 1 per-datagram IV (random, sent in clear, hashed with the key for RC4).
pub const V1_IV_LEN: usize = 20;
/// Version 2 nonce (random, sent in clear).
pub const V2_IV_LEN: usize = 12;
/// Version 2 Poly1305 tag at the end of each datagram.
pub const V2_TAG_LEN: usize = 16;
/// cookie + my_tick + your_tick + size + flag.
pub const HEADER_LEN: usize = 4 + 8 + 8 + 2 + 1;
/// Padding is `rand() % min(room, 32)`, i.e. 0..=31 zero bytes (`UDP_ACCELERATION_MAX_PADDING_SIZE`).
pub const MAX_PADDING: usize = 32;

/// The inner header of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The receiver's cookie (client→server carries `udp_acceleration_server_cookie`).
    pub cookie: u32,
    /// Sender's millisecond tick, never 0.
    pub my_tick: u64,
    /// Highest tick the sender has received from us (0 before the first).
    pub your_tick: u64,
    /// 1 = payload is zlib-compressed, 0 = raw Ethernet frame.
    pub flag: u8,
}

/// Keys and IV chaining of one side, per negotiated mode.
// One per session, never moved on the data path: boxing the ring keys would buy nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Codec {
    Plain,
    V1 {
        send_key: [u8; V1_KEY_LEN],
        recv_key: [u8; V1_KEY_LEN],
        next_iv: [u8; V1_IV_LEN],
    },
    V2 {
        seal: LessSafeKey,
        open: LessSafeKey,
        next_iv: [u8; V2_IV_LEN],
    },
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Codec::Plain => "Codec::Plain",
            Codec::V1 { .. } => "Codec::V1(<keys redacted>)",
            Codec::V2 { .. } => "Codec::V2(<keys redacted>)",
        })
    }
}

fn v2_key(key: &[u8; V2_KEY_LEN]) -> LessSafeKey {
    // Upstream hands the 128-byte buffer to OpenSSL, whose ChaCha20-Poly1305 reads 32 bytes.
    let unbound = UnboundKey::new(&CHACHA20_POLY1305, &key[..32])
        .expect("a 32-byte key is valid for ChaCha20-Poly1305");
    LessSafeKey::new(unbound)
}

/// `UdpAccelCalcKeyV1`: the per-datagram RC4 key is SHA-1(common key ‖ IV).
pub(crate) fn v1_packet_key(common: &[u8; V1_KEY_LEN], iv: &[u8]) -> [u8; 20] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(common);
    ctx.update(iv);
    let mut out = [0u8; 20];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

fn rc4(key: &[u8; 20], data: &mut [u8]) {
    let mut cipher = rc4::Rc4::<rc4::consts::U20>::new(key.into());
    cipher.apply_keystream(data);
}

impl Codec {
    pub(crate) fn v1(send_key: [u8; 20], recv_key: [u8; 20], first_iv: [u8; 20]) -> Self {
        Codec::V1 {
            send_key,
            recv_key,
            next_iv: first_iv,
        }
    }

    pub(crate) fn v2(send_key: &[u8; 128], recv_key: &[u8; 128], first_iv: [u8; 12]) -> Self {
        Codec::V2 {
            seal: v2_key(send_key),
            open: v2_key(recv_key),
            next_iv: first_iv,
        }
    }

    /// Datagram bytes besides payload and padding.
    pub(crate) fn overhead(&self) -> usize {
        HEADER_LEN
            + match self {
                Codec::Plain => 0,
                Codec::V1 { .. } => V1_IV_LEN + V1_IV_LEN,
                Codec::V2 { .. } => V2_IV_LEN + V2_TAG_LEN,
            }
    }

    /// Whether padding is added (encrypted modes only).
    pub(crate) fn pads(&self) -> bool {
        !matches!(self, Codec::Plain)
    }

    /// Builds one datagram; `padding` zero bytes go between payload and the v1 check bytes / the
    /// v2 tag (ignored in plaintext mode).
    #[cfg(test)]
    pub(crate) fn seal(&mut self, h: &Header, payload: &[u8], padding: usize) -> Vec<u8> {
        let mut out = Vec::new();
        self.seal_into(h, payload, padding, &mut out);
        out
    }

    /// [`seal`](Self::seal) into `out` (cleared first), so the data path reuses one buffer.
    pub(crate) fn seal_into(
        &mut self,
        h: &Header,
        payload: &[u8],
        padding: usize,
        out: &mut Vec<u8>,
    ) {
        let padding = if self.pads() {
            padding.min(MAX_PADDING - 1)
        } else {
            0
        };
        out.clear();
        out.reserve(self.overhead() + payload.len() + padding);
        let iv_len = match self {
            Codec::Plain => 0,
            Codec::V1 { next_iv, .. } => {
                out.extend_from_slice(next_iv);
                V1_IV_LEN
            }
            Codec::V2 { next_iv, .. } => {
                out.extend_from_slice(next_iv);
                V2_IV_LEN
            }
        };
        out.extend_from_slice(&h.cookie.to_be_bytes());
        out.extend_from_slice(&h.my_tick.to_be_bytes());
        out.extend_from_slice(&h.your_tick.to_be_bytes());
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        out.push(h.flag);
        out.extend_from_slice(payload);
        out.resize(out.len() + padding, 0);
        match self {
            Codec::Plain => {}
            Codec::V1 {
                send_key, next_iv, ..
            } => {
                // Integrity check of v1: the receiver requires these 20 bytes to decrypt to zero.
                out.resize(out.len() + V1_IV_LEN, 0);
                let key = v1_packet_key(send_key, &out[..V1_IV_LEN]);
                rc4(&key, &mut out[iv_len..]);
                next_iv.copy_from_slice(&out[out.len() - V1_IV_LEN..]);
            }
            Codec::V2 { seal, next_iv, .. } => {
                let nonce = Nonce::assume_unique_for_key(*next_iv);
                let tag = seal
                    .seal_in_place_separate_tag(nonce, Aad::empty(), &mut out[iv_len..])
                    .expect("ChaCha20-Poly1305 seals any datagram-sized input");
                next_iv.copy_from_slice(&out[iv_len..iv_len + V2_IV_LEN]);
                out.extend_from_slice(tag.as_ref());
            }
        }
    }

    /// Decrypts `datagram` in place and parses it. Returns the header and where the payload
    /// lies in `datagram`, or `None` for anything upstream would drop (short, forged, corrupt).
    pub(crate) fn open(&self, datagram: &mut [u8]) -> Option<(Header, Range<usize>)> {
        let (start, end) = match self {
            Codec::Plain => (0, datagram.len()),
            Codec::V1 { recv_key, .. } => {
                if datagram.len() < V1_IV_LEN {
                    return None;
                }
                let (iv, body) = datagram.split_at_mut(V1_IV_LEN);
                rc4(&v1_packet_key(recv_key, iv), body);
                (V1_IV_LEN, datagram.len())
            }
            Codec::V2 { open, .. } => {
                if datagram.len() < V2_IV_LEN + V2_TAG_LEN {
                    return None;
                }
                let (iv, body) = datagram.split_at_mut(V2_IV_LEN);
                let nonce = Nonce::assume_unique_for_key(iv.try_into().ok()?);
                let plain = open.open_in_place(nonce, Aad::empty(), body).ok()?;
                (V2_IV_LEN, V2_IV_LEN + plain.len())
            }
        };
        let (header, payload) = parse_inner(&datagram[start..end])?;
        if let Codec::V1 { .. } = self {
            // After the payload: any padding, then exactly 20 bytes that must be zero.
            let rest = &datagram[start + payload.end..end];
            if rest.len() < V1_IV_LEN || rest[rest.len() - V1_IV_LEN..].iter().any(|&b| b != 0) {
                return None;
            }
        }
        Some((header, start + payload.start..start + payload.end))
    }
}

fn parse_inner(inner: &[u8]) -> Option<(Header, Range<usize>)> {
    let fixed: &[u8; HEADER_LEN] = inner.get(..HEADER_LEN)?.try_into().ok()?;
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&fixed[at..at + 8]);
        u64::from_be_bytes(b)
    };
    let header = Header {
        cookie: u32::from_be_bytes([fixed[0], fixed[1], fixed[2], fixed[3]]),
        my_tick: u64_at(4),
        your_tick: u64_at(12),
        flag: fixed[22],
    };
    let size = usize::from(u16::from_be_bytes([fixed[20], fixed[21]]));
    let payload = HEADER_LEN..HEADER_LEN.checked_add(size)?;
    if payload.end > inner.len() {
        return None;
    }
    Some((header, payload))
}
