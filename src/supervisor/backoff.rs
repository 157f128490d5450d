//! Restart backoff: exponential from about a second, with jitter, capped;
//! reset once a child has run for a stable period. At the cap the unit is
//! called Faulty (it keeps retrying, but it needs a human).

use std::time::{Duration, Instant};

pub const BASE: Duration = Duration::from_secs(1);
pub const CAP: Duration = Duration::from_secs(60);
/// A child that ran this long before failing starts over at `BASE`.
pub const STABLE: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub struct Backoff {
    /// Consecutive failures.
    pub failures: u32,
    seed: u64,
}

impl Backoff {
    pub fn new(seed: u64) -> Backoff {
        Backoff { failures: 0, seed: seed | 1 }
    }

    fn rand(&mut self) -> u64 {
        // xorshift64: jitter only, no need for quality.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed
    }

    /// The delay before the next start, after a failure of a child that had
    /// been running since `started`.
    pub fn on_failure(&mut self, started: Instant, now: Instant) -> Duration {
        if now.saturating_duration_since(started) >= STABLE {
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        let exp = BASE.saturating_mul(1u32 << (self.failures - 1).min(16));
        let base = exp.min(CAP);
        // +-20 % jitter, so restarting siblings do not move in lock step.
        let span = base.as_millis() as u64 / 5;
        let jitter = if span == 0 { 0 } else { self.rand() % (2 * span + 1) };
        (base + Duration::from_millis(jitter)).saturating_sub(Duration::from_millis(span)).min(CAP + CAP / 5)
    }

    /// Whether the delay has reached its cap: the unit is Faulty.
    pub fn at_cap(&self) -> bool {
        self.failures > 0 && BASE.saturating_mul(1u32 << (self.failures - 1).min(16)) >= CAP
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_resets() {
        let t0 = Instant::now();
        let mut b = Backoff::new(42);
        let delays: Vec<Duration> = (0..10).map(|_| b.on_failure(t0, t0)).collect();
        assert!(delays[0] >= Duration::from_millis(800) && delays[0] <= Duration::from_millis(1200), "{delays:?}");
        assert!(delays[3] >= Duration::from_millis(6400) && delays[3] <= Duration::from_millis(9600), "{delays:?}");
        assert!(delays.iter().all(|d| *d <= CAP + CAP / 5), "{delays:?}");
        assert!(!Backoff::new(1).at_cap());
        assert!(b.at_cap());
        // A long healthy run starts over.
        let d = b.on_failure(t0, t0 + STABLE);
        assert!(d <= Duration::from_millis(1200), "{d:?}");
        assert!(!b.at_cap());
    }
}
