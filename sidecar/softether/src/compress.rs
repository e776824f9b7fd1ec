//! `use_compress` (§10.4): every block payload is one independent zlib (RFC 1950) stream of one
//! Ethernet frame, as `NewBlock` makes it with `compress2` at the default level; received blocks
//! are inflated into a `MAX_PACKET_SIZE` (1600-byte) buffer, and anything that does not fit or
//! does not inflate is not a frame (upstream then hands on an empty block, which goes nowhere).

use std::io::{Read, Write};

use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use flate2::Compression;

/// Largest inflated frame (`MAX_PACKET_SIZE`).
pub const MAX_INFLATED: usize = 1600;

/// One frame as a zlib stream at the default level (`Z_DEFAULT_COMPRESSION` = 6).
pub fn deflate(frame: &[u8]) -> Vec<u8> {
    let mut enc = ZlibEncoder::new(Vec::with_capacity(frame.len() + 16), Compression::default());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(frame);
    enc.finish().unwrap_or_default()
}

/// A reusable zlib compressor for the data path: the same stream as [`deflate`], without
/// allocating the deflate state for every frame.
pub struct Deflater(flate2::Compress);

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deflater")
    }
}

impl Default for Deflater {
    fn default() -> Self {
        Deflater(flate2::Compress::new(Compression::default(), true))
    }
}

impl Deflater {
    /// Appends `frame` as one complete zlib stream to `out` (cleared first).
    pub fn deflate_into(&mut self, frame: &[u8], out: &mut Vec<u8>) {
        out.clear();
        // Stored blocks cost 5 bytes per 64 KiB plus the 6-byte zlib envelope: this always fits.
        out.reserve(frame.len() + frame.len() / 1000 + 64);
        self.0.reset();
        let mut input = frame;
        loop {
            let before = self.0.total_in();
            let status = self
                .0
                .compress_vec(input, out, flate2::FlushCompress::Finish);
            let consumed = (self.0.total_in() - before) as usize;
            input = &input[consumed..];
            match status {
                Ok(flate2::Status::StreamEnd) => return,
                // Output full (cannot happen with the reserve above, but never loop forever).
                Ok(_) => out.reserve(out.capacity().max(64)),
                Err(_) => {
                    out.clear();
                    return;
                }
            }
        }
    }
}

/// The frame inside a zlib stream; `None` if it is corrupt, truncated, empty or longer than
/// [`MAX_INFLATED`]. Never allocates more than that, whatever the input claims.
pub fn inflate(block: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(MAX_INFLATED);
    let mut dec = ZlibDecoder::new(block).take(MAX_INFLATED as u64 + 1);
    dec.read_to_end(&mut out).ok()?;
    if out.is_empty() || out.len() > MAX_INFLATED {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_limits() {
        let frame: Vec<u8> = (0..1514u32).map(|i| (i % 7) as u8).collect();
        let z = deflate(&frame);
        assert!(z.len() < frame.len() / 4);
        // zlib header (CMF 0x78) with the default-level flag byte, as compress2 writes it.
        assert_eq!(&z[..2], &[0x78, 0x9c]);
        assert_eq!(inflate(&z).unwrap(), frame);
        assert!(inflate(&deflate(&vec![0; MAX_INFLATED + 1])).is_none());
        assert_eq!(
            inflate(&deflate(&vec![1; MAX_INFLATED])).unwrap().len(),
            MAX_INFLATED
        );
        assert!(inflate(&z[..z.len() - 3]).is_none());
        assert!(inflate(b"not zlib").is_none());
        assert!(inflate(&deflate(&[])).is_none());
    }

    #[test]
    fn reusable_deflater_makes_the_same_streams() {
        let mut d = Deflater::default();
        let mut out = Vec::new();
        for frame in [
            (0..1514u32).map(|i| (i % 7) as u8).collect::<Vec<_>>(),
            (0..1600u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
                .collect(),
            vec![0x42; 60],
        ] {
            d.deflate_into(&frame, &mut out);
            assert_eq!(
                out,
                deflate(&frame),
                "byte-identical to the one-shot stream"
            );
            assert_eq!(inflate(&out).unwrap(), frame);
        }
    }

    #[test]
    fn known_answer_from_zlib() {
        // C zlib (what compress2 produces), via Python: zlib.compress(b"\xff"*6 + b"\x5e\x00\x00\x00\x00\x01\x08\x06", 6)
        let frame = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x5e, 0, 0, 0, 0, 1, 8, 6,
        ];
        let z = deflate(&frame);
        assert_eq!(inflate(&z).unwrap(), frame);
        let c_zlib = hex_bytes(KAT);
        assert_eq!(inflate(&c_zlib).unwrap(), frame);
    }

    const KAT: &str = "789cfbff1f04e218808091830d0047d20668";

    fn hex_bytes(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
