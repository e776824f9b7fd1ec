//! RSASSA-PKCS1-v1_5 with SHA-1 for certificate authentication (authtype 3, §5.3).
//!
//! `ring` 0.17 verifies SHA-1 PKCS#1 signatures but deliberately cannot create them, and it
//! exposes no raw private-key operation. So this module parses a PKCS#1/PKCS#8 RSA private key,
//! builds the EMSA-PKCS1-v1_5 encoding itself and runs a fixed-window Montgomery
//! exponentiation with masked table lookups and a masked final subtraction (no secret-dependent
//! branches; no blinding, since no randomness source is available here). Every signature is
//! verified with `ring` before it is returned, which also guards against arithmetic faults.
//!
//! Callers holding keys elsewhere (HSM, agent) implement [`CertSigner`] themselves.

use ring::signature::{RsaPublicKeyComponents, RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY};

/// DER DigestInfo prefix for SHA-1 (RFC 8017 §9.2 note 1).
const SHA1_DIGEST_INFO: [u8; 15] = [
    0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14,
];

/// Produces the `sign` field of a certificate login.
pub trait CertSigner: Send + Sync {
    /// RSASSA-PKCS1-v1_5 signature with SHA-1 over `message` (the raw 20-byte hello random);
    /// the result is exactly as long as the modulus.
    fn sign_pkcs1_sha1(&self, message: &[u8]) -> Result<Vec<u8>, SignError>;
}

/// Why a certificate login could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The key is not a DER RSA private key (what is wrong with it).
    #[error("RSA private key is not valid DER (PKCS#1 RSAPrivateKey or PKCS#8): {0}")]
    BadKey(&'static str),
    /// The modulus size in bits is not one SoftEther accepts.
    #[error("RSA modulus of {0} bits is not supported by SoftEther (1024/1536/2048/3072/4096)")]
    UnsupportedSize(usize),
    /// The signature did not verify against the public key.
    #[error("RSA signature failed self-verification (key inconsistent or arithmetic fault)")]
    Fault,
    /// An external signer failed (its message).
    #[error("signing failed: {0}")]
    Other(String),
}

/// An RSA private key usable as a [`CertSigner`].
pub struct RsaPrivateKey {
    n: Vec<u64>,
    d: Vec<u64>,
    n_bytes: Vec<u8>,
    e_bytes: Vec<u8>,
    m0inv: u64,
    r2: Vec<u64>,
}

impl std::fmt::Debug for RsaPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaPrivateKey")
            .field("bits", &(self.n_bytes.len() * 8))
            .finish_non_exhaustive()
    }
}

impl Drop for RsaPrivateKey {
    fn drop(&mut self) {
        self.d.iter_mut().for_each(|l| *l = 0);
    }
}

struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    fn read(&mut self, tag: u8) -> Result<&'a [u8], SignError> {
        let bad = SignError::BadKey("truncated or unexpected DER");
        let (&t, rest) = self.0.split_first().ok_or(bad.clone())?;
        let (&first, mut rest) = rest.split_first().ok_or(bad.clone())?;
        if t != tag {
            return Err(bad);
        }
        let len = if first < 0x80 {
            first as usize
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 || rest.len() < n {
                return Err(bad);
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | b as usize);
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return Err(bad);
        }
        let (value, tail) = rest.split_at(len);
        self.0 = tail;
        Ok(value)
    }

    fn uint(&mut self) -> Result<&'a [u8], SignError> {
        let v = self.read(0x02)?;
        let start = v.iter().position(|&b| b != 0).unwrap_or(v.len());
        Ok(&v[start..])
    }
}

fn to_limbs(be: &[u8], limbs: usize) -> Vec<u64> {
    let mut out = vec![0u64; limbs];
    for (i, b) in be.iter().rev().enumerate() {
        if let Some(l) = out.get_mut(i / 8) {
            *l |= (*b as u64) << (8 * (i % 8));
        }
    }
    out
}

fn to_be(limbs: &[u64], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    for (i, o) in out.iter_mut().rev().enumerate() {
        *o = (limbs.get(i / 8).copied().unwrap_or(0) >> (8 * (i % 8))) as u8;
    }
    out
}

/// `a - b` into `out`, returning the borrow.
fn sub(out: &mut [u64], a: &[u64], b: &[u64]) -> u64 {
    let mut borrow = 0u64;
    for i in 0..out.len() {
        let (d1, b1) = a[i].overflowing_sub(b[i]);
        let (d2, b2) = d1.overflowing_sub(borrow);
        out[i] = d2;
        borrow = u64::from(b1 | b2);
    }
    borrow
}

/// Montgomery product `a * b * R^-1 mod n` (CIOS), constant-flow.
fn mont_mul(a: &[u64], b: &[u64], n: &[u64], m0inv: u64) -> Vec<u64> {
    let l = n.len();
    let mut t = vec![0u64; l + 2];
    for &ai in a.iter().take(l) {
        let mut carry = 0u128;
        for j in 0..l {
            let s = t[j] as u128 + (ai as u128) * (b[j] as u128) + carry;
            t[j] = s as u64;
            carry = s >> 64;
        }
        let s = t[l] as u128 + carry;
        t[l] = s as u64;
        t[l + 1] = (s >> 64) as u64;
        let m = t[0].wrapping_mul(m0inv);
        let s = t[0] as u128 + (m as u128) * (n[0] as u128);
        let mut carry = s >> 64;
        for j in 1..l {
            let s = t[j] as u128 + (m as u128) * (n[j] as u128) + carry;
            t[j - 1] = s as u64;
            carry = s >> 64;
        }
        let s = t[l] as u128 + carry;
        t[l - 1] = s as u64;
        t[l] = t[l + 1] + (s >> 64) as u64;
    }
    let mut reduced = vec![0u64; l];
    let borrow = sub(&mut reduced, &t[..l], n);
    // Keep t if t < n, i.e. the subtraction borrowed and there was no overflow limb.
    let keep_t = (u64::from(t[l] == 0) & borrow).wrapping_neg();
    (0..l)
        .map(|i| (t[i] & keep_t) | (reduced[i] & !keep_t))
        .collect()
}

impl RsaPrivateKey {
    /// Parses a DER RSA private key, either PKCS#8 `PrivateKeyInfo` or PKCS#1 `RSAPrivateKey`.
    pub fn from_der(der: &[u8]) -> Result<Self, SignError> {
        let mut outer = Der(der);
        let mut seq = Der(outer.read(0x30)?);
        let _version = seq.uint()?;
        if seq.0.first() == Some(&0x30) {
            // PKCS#8: AlgorithmIdentifier, then the PKCS#1 key in an OCTET STRING.
            let _alg = seq.read(0x30)?;
            let inner = seq.read(0x04)?;
            return Self::from_der(inner);
        }
        let n = seq.uint()?;
        let e = seq.uint()?;
        let d = seq.uint()?;
        Self::from_components(n, e, d)
    }

    fn from_components(n: &[u8], e: &[u8], d: &[u8]) -> Result<Self, SignError> {
        let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
        if ![1024, 1536, 2048, 3072, 4096].contains(&bits) {
            return Err(SignError::UnsupportedSize(bits));
        }
        if n.last().is_none_or(|b| b & 1 == 0) || e.is_empty() || d.is_empty() || d.len() > n.len()
        {
            return Err(SignError::BadKey("inconsistent RSA components"));
        }
        let limbs = n.len().div_ceil(8);
        let n_l = to_limbs(n, limbs);
        // -n^-1 mod 2^64 by Newton iteration (n odd).
        let mut inv: u64 = 1;
        for _ in 0..6 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(n_l[0].wrapping_mul(inv)));
        }
        // R^2 mod n by repeated doubling of 1.
        let mut r2 = vec![0u64; limbs];
        r2[0] = 1;
        let mut tmp = vec![0u64; limbs];
        for _ in 0..(2 * 64 * limbs) {
            let mut carry = 0u64;
            for l in r2.iter_mut() {
                let next = *l >> 63;
                *l = (*l << 1) | carry;
                carry = next;
            }
            let borrow = sub(&mut tmp, &r2, &n_l);
            if carry == 1 || borrow == 0 {
                r2.copy_from_slice(&tmp);
            }
        }
        let key = RsaPrivateKey {
            n: n_l,
            d: to_limbs(d, limbs),
            n_bytes: n.to_vec(),
            e_bytes: e.to_vec(),
            m0inv: inv.wrapping_neg(),
            r2,
        };
        // Reject keys whose d does not match (n, e) right away rather than at login.
        key.sign_pkcs1_sha1(b"softether-proto key check")?;
        Ok(key)
    }

    /// Modulus length in bytes (= signature length).
    pub fn modulus_len(&self) -> usize {
        self.n_bytes.len()
    }

    /// Big-endian modulus and public exponent.
    pub fn public_components(&self) -> (&[u8], &[u8]) {
        (&self.n_bytes, &self.e_bytes)
    }

    fn private_op(&self, input_be: &[u8]) -> Vec<u8> {
        let l = self.n.len();
        let m = to_limbs(input_be, l);
        let one = {
            let mut v = vec![0u64; l];
            v[0] = 1;
            v
        };
        let base = mont_mul(&m, &self.r2, &self.n, self.m0inv);
        let mut table = vec![mont_mul(&one, &self.r2, &self.n, self.m0inv)];
        for i in 1..16 {
            table.push(mont_mul(&table[i - 1], &base, &self.n, self.m0inv));
        }
        let mut acc = table[0].clone();
        for window in (0..l * 16).rev() {
            for _ in 0..4 {
                acc = mont_mul(&acc, &acc, &self.n, self.m0inv);
            }
            let idx = (self.d[window / 16] >> (4 * (window % 16))) & 0xf;
            let mut sel = vec![0u64; l];
            for (j, entry) in table.iter().enumerate() {
                let mask = u64::from(j as u64 == idx).wrapping_neg();
                for (s, e) in sel.iter_mut().zip(entry) {
                    *s |= e & mask;
                }
            }
            acc = mont_mul(&acc, &sel, &self.n, self.m0inv);
        }
        to_be(
            &mont_mul(&acc, &one, &self.n, self.m0inv),
            self.n_bytes.len(),
        )
    }
}

impl CertSigner for RsaPrivateKey {
    fn sign_pkcs1_sha1(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let k = self.n_bytes.len();
        let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, message);
        let t_len = SHA1_DIGEST_INFO.len() + digest.as_ref().len();
        let mut em = vec![0xffu8; k];
        em[0] = 0;
        em[1] = 1;
        em[k - t_len - 1] = 0;
        em[k - t_len..k - 20].copy_from_slice(&SHA1_DIGEST_INFO);
        em[k - 20..].copy_from_slice(digest.as_ref());
        let sig = self.private_op(&em);
        let public = RsaPublicKeyComponents {
            n: &self.n_bytes,
            e: &self.e_bytes,
        };
        public
            .verify(&RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY, message, &sig)
            .map_err(|_| SignError::Fault)?;
        Ok(sig)
    }
}

#[cfg(any(test, feature = "testing"))]
pub mod test_keys {
    //! Throw-away keys generated with `openssl genrsa` for tests only.
    /// 1024-bit key, PKCS#1 `RSAPrivateKey` DER.
    pub const RSA_1024_PKCS1_DER: &[u8] = include_bytes!("../testdata/rsa1024.pkcs1.der");
    /// 2048-bit key, PKCS#8 DER.
    pub const RSA_2048_PKCS8_DER: &[u8] = include_bytes!("../testdata/rsa2048.pkcs8.der");
    /// Self-signed certificate for [`RSA_2048_PKCS8_DER`], DER.
    pub const RSA_2048_CERT_DER: &[u8] = include_bytes!("../testdata/rsa2048.cert.der");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_ring_verifies() {
        for der in [test_keys::RSA_1024_PKCS1_DER, test_keys::RSA_2048_PKCS8_DER] {
            let key = RsaPrivateKey::from_der(der).unwrap();
            let random = [0x5a; 20];
            let sig = key.sign_pkcs1_sha1(&random).unwrap();
            assert_eq!(sig.len(), key.modulus_len());
            let (n, e) = key.public_components();
            RsaPublicKeyComponents { n, e }
                .verify(&RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY, &random, &sig)
                .unwrap();
            // PKCS#1 v1.5 is deterministic.
            assert_eq!(sig, key.sign_pkcs1_sha1(&random).unwrap());
        }
    }

    #[test]
    fn matches_openssl_reference_signature() {
        // `openssl dgst -sha1 -sign rsa2048.pem` over 20 bytes 00..13.
        let key = RsaPrivateKey::from_der(test_keys::RSA_2048_PKCS8_DER).unwrap();
        let msg: Vec<u8> = (0u8..20).collect();
        let expected = include_bytes!("../testdata/rsa2048.sig-00-13.bin");
        assert_eq!(key.sign_pkcs1_sha1(&msg).unwrap(), expected.to_vec());
    }

    #[test]
    fn rejects_garbage_and_mismatched_keys() {
        assert!(RsaPrivateKey::from_der(&[]).is_err());
        assert!(RsaPrivateKey::from_der(&[0x30, 0x82, 0xff]).is_err());
        let der = test_keys::RSA_1024_PKCS1_DER;
        for cut in [1, 10, der.len() / 2, der.len() - 1] {
            assert!(RsaPrivateKey::from_der(&der[..cut]).is_err(), "cut {cut}");
        }
        assert!(format!("{:?}", RsaPrivateKey::from_der(der).unwrap()).contains("1024"));
    }
}
