//! SHA-0 (FIPS 180, 1993): SHA-1 without the one-bit rotation in the message schedule.
//!
//! SoftEther hashes passwords with SHA-0 (`Sha0` / `MY_SHA0_hash` in Mayaqua/Encrypt.c). It is
//! cryptographically broken and exists here only for protocol compatibility.

const BLOCK: usize = 64;

/// Streaming SHA-0 hasher.
#[derive(Clone)]
pub struct Sha0 {
    state: [u32; 5],
    block: [u8; BLOCK],
    block_len: usize,
    total_len: u64,
}

impl Default for Sha0 {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Sha0 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The buffered block may hold password bytes.
        f.debug_struct("Sha0")
            .field("total_len", &self.total_len)
            .finish_non_exhaustive()
    }
}

impl Sha0 {
    /// A hasher with the initial SHA-0 state.
    pub fn new() -> Self {
        Sha0 {
            state: [
                0x6745_2301,
                0xEFCD_AB89,
                0x98BA_DCFE,
                0x1032_5476,
                0xC3D2_E1F0,
            ],
            block: [0; BLOCK],
            block_len: 0,
            total_len: 0,
        }
    }

    /// Feeds `data`; may be called any number of times.
    pub fn update(&mut self, mut data: &[u8]) {
        self.total_len = self.total_len.wrapping_add(data.len() as u64);
        if self.block_len > 0 {
            let take = (BLOCK - self.block_len).min(data.len());
            let (head, rest) = data.split_at(take);
            self.block[self.block_len..self.block_len + take].copy_from_slice(head);
            self.block_len += take;
            data = rest;
            if self.block_len < BLOCK {
                return;
            }
            let block = self.block;
            compress(&mut self.state, &block);
            self.block_len = 0;
        }
        let mut chunks = data.chunks_exact(BLOCK);
        for chunk in &mut chunks {
            let mut block = [0u8; BLOCK];
            block.copy_from_slice(chunk);
            compress(&mut self.state, &block);
        }
        let rest = chunks.remainder();
        self.block[..rest.len()].copy_from_slice(rest);
        self.block_len = rest.len();
    }

    /// Pads and returns the 20-byte digest.
    pub fn finalize(mut self) -> [u8; 20] {
        let bit_len = self.total_len.wrapping_mul(8);
        let mut pad = [0u8; BLOCK + 8];
        pad[0] = 0x80;
        // Pad to 56 mod 64, then the 64-bit big-endian message length in bits.
        let pad_len = if self.block_len < 56 {
            56 - self.block_len
        } else {
            120 - self.block_len
        };
        pad[pad_len..pad_len + 8].copy_from_slice(&bit_len.to_be_bytes());
        let total_len = self.total_len;
        self.update(&pad[..pad_len + 8]);
        self.total_len = total_len;
        debug_assert_eq!(self.block_len, 0);
        let mut out = [0u8; 20];
        for (dst, word) in out.chunks_exact_mut(4).zip(self.state) {
            dst.copy_from_slice(&word.to_be_bytes());
        }
        out
    }
}

fn compress(state: &mut [u32; 5], block: &[u8; BLOCK]) {
    let mut w = [0u32; 80];
    for (i, word) in block.chunks_exact(4).enumerate() {
        w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
    }
    for i in 16..80 {
        // SHA-1 rotates this left by one bit; SHA-0 does not.
        w[i] = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16];
    }
    let [mut a, mut b, mut c, mut d, mut e] = *state;
    for (i, wi) in w.iter().enumerate() {
        let (f, k) = match i {
            0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
            20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
            40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
            _ => (b ^ c ^ d, 0xCA62_C1D6),
        };
        let t = a
            .rotate_left(5)
            .wrapping_add(f)
            .wrapping_add(e)
            .wrapping_add(k)
            .wrapping_add(*wi);
        e = d;
        d = c;
        c = b.rotate_left(30);
        b = a;
        a = t;
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d, e]) {
        *s = s.wrapping_add(v);
    }
}

/// One-shot SHA-0.
pub fn sha0(data: &[u8]) -> [u8; 20] {
    let mut h = Sha0::new();
    h.update(data);
    h.finalize()
}

#[cfg(test)]
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(
            hex(&sha0(b"abc")),
            "0164b8a914cd2a5e74c4f7ff082c4d97f1edf880"
        );
        assert_eq!(hex(&sha0(b"")), "f96cea198ad1dd5617ac084a3d92c6107708c0ef");
        assert_eq!(
            hex(&sha0(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "d2516ee1acfa5baf33dfc1c471e438449ef134c8"
        );
    }

    #[test]
    fn million_a() {
        let mut h = Sha0::new();
        let chunk = [b'a'; 1000];
        for _ in 0..1000 {
            h.update(&chunk);
        }
        assert_eq!(
            hex(&h.finalize()),
            "3232affa48628a26653b5aaa44541fd90d690603"
        );
    }

    #[test]
    fn chunked_feeding_matches_one_shot() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in [0usize, 1, 55, 56, 63, 64, 65, 119, 120, 128, 999, 1000] {
            let expected = sha0(&data[..len]);
            for chunk in [1usize, 7, 63, 64, 65] {
                let mut h = Sha0::new();
                for part in data[..len].chunks(chunk) {
                    h.update(part);
                }
                assert_eq!(h.finalize(), expected, "len {len} chunk {chunk}");
            }
        }
    }

    #[test]
    fn agrees_with_extendhash_oracle() {
        let mut x: u64 = 0x1234_5678;
        for len in 0..300usize {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            assert_eq!(
                sha0(&data),
                extendhash::sha0::compute_hash(&data),
                "len {len}"
            );
        }
    }
}
