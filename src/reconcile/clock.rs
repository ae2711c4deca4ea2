//! The reconciler's seams to time and chance, so a simulation can drive the
//! exactly-once protocol with a simulated clock and seeded jitter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

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

/// xorshift64* behind an atomic: cheap, seedable, good enough to spread
/// retries apart.
#[derive(Debug)]
pub struct XorShift(AtomicU64);

impl XorShift {
    pub fn seeded(seed: u64) -> Self {
        Self(AtomicU64::new(seed | 1))
    }

    /// Seeded from the clock and the process id.
    pub fn from_entropy() -> Self {
        let t = Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64;
        Self::seeded(t ^ (u64::from(std::process::id()) << 32))
    }
}

impl Jitter for XorShift {
    fn up_to(&self, n: u64) -> u64 {
        let mut x = self.0.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0.store(x, Ordering::Relaxed);
        let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        if n == u64::MAX {
            r
        } else {
            r % (n + 1)
        }
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

/// RFC 3339 UTC with microseconds, as every internal event writes times.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Reads a time written by [`rfc3339`] (or any RFC 3339 time).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_between_base_and_cap() {
        let j = XorShift::seeded(7);
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

    #[test]
    fn the_same_seed_gives_the_same_jitter() {
        let (a, b) = (XorShift::seeded(42), XorShift::seeded(42));
        let xs: Vec<u64> = (0..10).map(|_| a.up_to(1000)).collect();
        let ys: Vec<u64> = (0..10).map(|_| b.up_to(1000)).collect();
        assert_eq!(xs, ys);
    }
}
