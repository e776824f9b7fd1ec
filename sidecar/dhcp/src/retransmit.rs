//! Retransmit schedule (RFC 2131 §4.1) and the deterministic generator behind xids and jitter.

use std::time::Duration;

/// SplitMix64: a tiny deterministic generator. Not a randomness source: the caller seeds it, so
/// runs are reproducible and the client stays free of ambient entropy.
#[derive(Debug, Clone)]
pub(crate) struct SeededRng(u64);

impl SeededRng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
}

/// Doubling backoff with jitter: `initial * 2^attempt`, capped at `max`, then ± jitter.
///
/// RFC 2131 asks for ±1 s around 4, 8, 16, 32, 64 s. With a shorter `initial` (tests, fast probes)
/// ±1 s would swamp the interval, so the jitter is `min(1 s, initial / 4)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
}

impl Backoff {
    pub(crate) fn jitter_bound(&self) -> Duration {
        (self.initial / 4).min(Duration::from_secs(1))
    }

    /// Delay before the next transmission after `attempt` (0-based) transmissions already went out.
    pub(crate) fn delay(&self, attempt: u32, rng: &mut SeededRng) -> Duration {
        let base = self
            .initial
            .checked_mul(1u32 << attempt.min(20))
            .unwrap_or(self.max)
            .min(self.max);
        let bound_ms = self.jitter_bound().as_millis() as u64;
        if bound_ms == 0 {
            return base;
        }
        let offset = rng.next_u64() % (2 * bound_ms + 1);
        if offset >= bound_ms {
            base + Duration::from_millis(offset - bound_ms)
        } else {
            base.saturating_sub(Duration::from_millis(bound_ms - offset))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2131_schedule_with_one_second_jitter() {
        let b = Backoff {
            initial: Duration::from_secs(4),
            max: Duration::from_secs(64),
        };
        let mut rng = SeededRng::new(7);
        for _ in 0..200 {
            for (attempt, base) in [(0, 4), (1, 8), (2, 16), (3, 32), (4, 64), (5, 64), (40, 64)] {
                let d = b.delay(attempt, &mut rng);
                let base = Duration::from_secs(base);
                assert!(d >= base - Duration::from_secs(1) && d <= base + Duration::from_secs(1));
            }
        }
    }

    #[test]
    fn short_initial_scales_jitter() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(800),
        };
        let mut rng = SeededRng::new(1);
        for _ in 0..200 {
            let d = b.delay(0, &mut rng);
            assert!(d >= Duration::from_millis(75) && d <= Duration::from_millis(125));
        }
    }

    #[test]
    fn same_seed_same_sequence() {
        let (mut a, mut b) = (SeededRng::new(42), SeededRng::new(42));
        assert!((0..10).all(|_| a.next_u32() == b.next_u32()));
        assert_ne!(SeededRng::new(1).next_u64(), SeededRng::new(2).next_u64());
    }
}
