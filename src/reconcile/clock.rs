//! The reconciler's seams to time and chance, so a simulation can drive the
//! exactly-once protocol with a simulated clock and seeded jitter.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::rng::SplitMix;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Uniform random numbers for jitter. Not for anything secret.
pub trait Jitter: Send + Sync + 'static {
    /// A number in `0..=n`.
    fn up_to(&self, n: u64) -> u64;
}

impl Jitter for SplitMix {
    fn up_to(&self, n: u64) -> u64 {
        self.between(0, n)
    }
}

/// Exponential backoff with full jitter: after the `attempt`-th failure, a
/// delay drawn uniformly between `base` and `min(max, base · 2^(attempt-1))`.
pub fn backoff(attempt: u32, base: Duration, max: Duration, jitter: &dyn Jitter) -> Duration {
    let base_ms = base.as_millis() as u64;
    let ceiling =
        base_ms.saturating_mul(1u64 << attempt.saturating_sub(1).min(40)).min(max.as_millis() as u64).max(base_ms);
    Duration::from_millis(base_ms + jitter.up_to(ceiling - base_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_between_base_and_cap() {
        let j = SplitMix::seeded(7);
        let base = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        for attempt in 1..20 {
            for _ in 0..50 {
                let d = backoff(attempt, base, max, &j);
                let ceiling = (100u64 << (attempt - 1).min(40)).min(1000);
                assert!(d >= base && d.as_millis() as u64 <= ceiling, "attempt {attempt}: {d:?}");
            }
        }
        assert_eq!(backoff(1, base, max, &j), base);
    }
}
