//! DHCPv6 retransmission (RFC 8415 §15): RT doubles from IRT up to MRT with ±10 % jitter,
//! bounded by a count (MRC) and/or a duration (MRD).

use crate::retransmit::SeededRng;
use std::time::{Duration, Instant};

/// One message kind's parameters (RFC 8415 §7.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// IRT.
    pub initial: Duration,
    /// MRT; `None`: no ceiling.
    pub max: Option<Duration>,
    /// MRC; `None`: unlimited.
    pub max_count: Option<u32>,
}

impl Timing {
    /// SOLICIT: IRT 1 s, MRT 3600 s, no count limit.
    pub const SOLICIT: Timing = Timing::new(1, Some(3600), None);
    /// REQUEST: IRT 1 s, MRT 30 s, at most 10 transmissions.
    pub const REQUEST: Timing = Timing::new(1, Some(30), Some(10));
    /// RENEW: IRT 10 s, MRT 600 s (bounded by T2).
    pub const RENEW: Timing = Timing::new(10, Some(600), None);
    /// REBIND: IRT 10 s, MRT 600 s (bounded by the lease's valid lifetime).
    pub const REBIND: Timing = Timing::new(10, Some(600), None);
    /// INFORMATION-REQUEST: IRT 1 s, MRT 3600 s, no count limit.
    pub const INFORMATION_REQUEST: Timing = Timing::new(1, Some(3600), None);

    const fn new(initial: u64, max: Option<u64>, max_count: Option<u32>) -> Self {
        Timing {
            initial: Duration::from_secs(initial),
            max: match max {
                Some(m) => Some(Duration::from_secs(m)),
                None => None,
            },
            max_count,
        }
    }

    /// The same schedule divided by `factor` (tests and fast probes); never below 1 ms.
    pub fn scaled_down(self, factor: u32) -> Timing {
        let f = factor.max(1);
        let scale = |d: Duration| (d / f).max(Duration::from_millis(1));
        Timing {
            initial: scale(self.initial),
            max: self.max.map(scale),
            ..self
        }
    }
}

/// Where one exchange is in its schedule.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retrans {
    pub timing: Timing,
    /// Transaction id (24 bits).
    pub xid: u32,
    /// When the first message of the exchange went out (for the Elapsed Time option).
    pub started: Instant,
    pub sent: u32,
    pub next_send: Instant,
    /// The previous RT.
    rt: Duration,
    /// MRD: no transmission at or after this instant.
    pub end: Option<Instant>,
}

impl Retrans {
    pub(crate) fn new(timing: Timing, xid: u32, now: Instant, end: Option<Instant>) -> Self {
        Retrans {
            timing,
            xid: xid & 0x00ff_ffff,
            started: now,
            sent: 0,
            next_send: now,
            rt: Duration::ZERO,
            end,
        }
    }

    /// True when the schedule is used up (MRC sent and its wait over, or MRD reached).
    pub(crate) fn exhausted(&self, now: Instant) -> bool {
        self.end.is_some_and(|end| now >= end)
            || self
                .timing
                .max_count
                .is_some_and(|mrc| self.sent >= mrc && now >= self.next_send)
    }

    /// Records a transmission at `now` and schedules the next one. `strictly_later`: the
    /// first Solicit's RT must be greater than IRT (RFC 8415 §18.2.1), so its jitter is
    /// positive.
    pub(crate) fn sent_at(&mut self, now: Instant, rng: &mut SeededRng, strictly_later: bool) {
        let t = self.timing;
        let positive = strictly_later && self.sent == 0;
        // RFC 8415 §15: RT = IRT + RAND*IRT, then RT = 2*RTprev + RAND*RTprev, and past MRT
        // RT = MRT + RAND*MRT, with RAND uniform in [-0.1, +0.1].
        let mut rt = if self.sent == 0 {
            plus_rand(t.initial, t.initial, rng, positive)
        } else {
            plus_rand(self.rt.saturating_mul(2), self.rt, rng, false)
        };
        if let Some(max) = t.max {
            if rt > max {
                rt = plus_rand(max, max, rng, false);
            }
        }
        self.rt = rt.max(Duration::from_millis(1));
        self.sent = self.sent.saturating_add(1);
        let next = now + self.rt;
        self.next_send = self.end.map_or(next, |end| next.min(end));
    }

    /// Elapsed Time option value: hundredths of a second since the first message, saturating.
    pub(crate) fn elapsed_centis(&self, now: Instant) -> u16 {
        if self.sent == 0 {
            return 0;
        }
        let centis = now.saturating_duration_since(self.started).as_millis() / 10;
        u16::try_from(centis).unwrap_or(u16::MAX)
    }
}

/// `base + RAND * scale` with RAND uniform in [-0.1, +0.1] (in thousandths), or [0, +0.1]
/// when `positive`.
fn plus_rand(base: Duration, scale: Duration, rng: &mut SeededRng, positive: bool) -> Duration {
    let r = (rng.next_u64() % 201) as i64 - 100;
    let r = if positive { r.abs() } else { r };
    let delta = scale / 1000 * r.unsigned_abs() as u32;
    if r >= 0 {
        base + delta
    } else {
        base.saturating_sub(delta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_ten_percent_jitter_up_to_mrt() {
        let now = Instant::now();
        let mut rng = SeededRng::new(9);
        let mut r = Retrans::new(Timing::SOLICIT, 0xabcd_ef12, now, None);
        assert_eq!(r.xid, 0xcd_ef12);
        let mut t = now;
        let mut rts = Vec::new();
        for _ in 0..16 {
            r.sent_at(t, &mut rng, true);
            rts.push((r.next_send - t).as_secs_f64());
            t = r.next_send;
        }
        assert!(rts[0] > 1.0 && rts[0] <= 1.1, "{rts:?}");
        for pair in rts.windows(2).take(8) {
            let ratio = pair[1] / pair[0];
            assert!((1.899..=2.101).contains(&ratio), "{rts:?}");
        }
        assert!(rts[15] >= 3240.0 && rts[15] <= 3960.0, "{rts:?}");
    }

    #[test]
    fn count_and_duration_bounds() {
        let now = Instant::now();
        let mut rng = SeededRng::new(1);
        let mut r = Retrans::new(Timing::REQUEST, 1, now, None);
        let mut t = now;
        for _ in 0..10 {
            assert!(!r.exhausted(t));
            r.sent_at(t, &mut rng, false);
            t = r.next_send;
        }
        assert!(r.exhausted(t));
        let end = now + Duration::from_secs(15);
        let mut r = Retrans::new(Timing::RENEW, 1, now, Some(end));
        r.sent_at(now, &mut rng, false);
        r.sent_at(r.next_send, &mut rng, false);
        assert_eq!(r.next_send, end);
        assert!(r.exhausted(end));
        assert_eq!(r.elapsed_centis(now + Duration::from_secs(1000)), u16::MAX);
    }
}
