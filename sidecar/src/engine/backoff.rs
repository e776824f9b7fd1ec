//! The reconnect delay policy: exponential backoff with jitter, as a pure value.
//!
//! No clock and no randomness source inside: the caller seeds the generator, so a test can
//! replay any schedule exactly.

use std::time::Duration;

use softether_proto::error::RetryClass;

/// Ceiling for ordinary failures.
pub const DEFAULT_CAP: Duration = Duration::from_secs(60);
/// Minimum wait after the server said it is busy / has too many sessions (retry class Slow);
/// the official client waits 60 s too.
pub const SLOW_FLOOR: Duration = Duration::from_secs(60);

/// Reconnect delays: `base * 2^n` capped at `cap`, each scaled by a factor in [0.8, 1.2]
/// (then capped again) so that many clients dropped together do not come back together.
/// Slow-class failures wait at least [`SLOW_FLOOR`] plus up to 10 % jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    /// `base` is `--reconnect-delay`; a zero base is raised to 1 ms so doubling still grows.
    pub fn new(base: Duration, cap: Duration, seed: u64) -> Self {
        Self {
            base: base.max(Duration::from_millis(1)),
            cap: cap.max(base),
            attempt: 0,
            rng: seed,
        }
    }

    /// The delay before the next attempt after a failure of `class`; `None` for
    /// [`RetryClass::Never`] (do not retry).
    pub fn next_delay(&mut self, class: RetryClass) -> Option<Duration> {
        let nominal = self
            .base
            .checked_mul(1u32 << self.attempt.min(20))
            .unwrap_or(self.cap)
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let factor = 0.8 + 0.4 * self.unit();
        let jittered = nominal.mul_f64(factor).min(self.cap);
        match class {
            RetryClass::Never => None,
            RetryClass::Normal => Some(jittered),
            RetryClass::Slow => {
                Some(jittered.max(SLOW_FLOOR) + SLOW_FLOOR.mul_f64(0.1 * self.unit()))
            }
        }
    }

    /// After a session that worked, start again from `base`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// How many failures since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// A duration drawn uniformly from [`lo`, `hi`] with the same seeded generator.
    pub fn jitter(&mut self, lo: Duration, hi: Duration) -> Duration {
        lo + hi.saturating_sub(lo).mul_f64(self.unit())
    }

    /// SplitMix64 step mapped to [0, 1).
    fn unit(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn doubles_within_jitter_and_caps() {
        let mut b = Backoff::new(S(5), DEFAULT_CAP, 42);
        let mut nominal = S(5);
        for _ in 0..10 {
            let d = b.next_delay(RetryClass::Normal).unwrap();
            assert!(d >= nominal.mul_f64(0.8), "{d:?} < 0.8 * {nominal:?}");
            assert!(d <= nominal.mul_f64(1.2).min(DEFAULT_CAP), "{d:?}");
            nominal = (nominal * 2).min(DEFAULT_CAP);
        }
        assert!(b.next_delay(RetryClass::Normal).unwrap() <= DEFAULT_CAP);
    }

    #[test]
    fn same_seed_same_schedule_different_seed_differs() {
        let run = |seed| {
            let mut b = Backoff::new(S(1), DEFAULT_CAP, seed);
            (0..8)
                .map(|_| b.next_delay(RetryClass::Normal).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn slow_waits_at_least_a_minute_and_never_stops() {
        let mut b = Backoff::new(S(1), DEFAULT_CAP, 1);
        for _ in 0..5 {
            let d = b.next_delay(RetryClass::Slow).unwrap();
            assert!(d >= SLOW_FLOOR && d <= SLOW_FLOOR.mul_f64(1.1), "{d:?}");
        }
        assert_eq!(b.next_delay(RetryClass::Never), None);
    }

    #[test]
    fn reset_starts_over_and_huge_attempts_do_not_overflow() {
        let mut b = Backoff::new(S(2), DEFAULT_CAP, 3);
        for _ in 0..100 {
            b.next_delay(RetryClass::Normal);
        }
        assert_eq!(b.attempts(), 100);
        b.reset();
        let d = b.next_delay(RetryClass::Normal).unwrap();
        assert!(d <= S(2).mul_f64(1.2));
        let mut zero = Backoff::new(Duration::ZERO, DEFAULT_CAP, 3);
        assert!(zero.next_delay(RetryClass::Normal).unwrap() <= Duration::from_millis(2));
    }
}
