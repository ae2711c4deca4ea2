//! The one seeded pseudo-random generator of the project: retry jitter in
//! the reconciler, generated traffic in the benchmark, and every seeded
//! decision of the tests and the simulation draw from it, so a seed means
//! the same thing everywhere. Not for anything secret.

use std::sync::atomic::{AtomicU64, Ordering};

/// SplitMix64 behind an atomic: cheap, seedable, shared by reference
/// between tasks, and the same sequence on every platform. Any seed,
/// including 0, starts a full-quality sequence.
#[derive(Debug)]
pub struct SplitMix(AtomicU64);

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl SplitMix {
    /// A generator whose whole sequence is a function of `seed`.
    pub fn seeded(seed: u64) -> Self {
        Self(AtomicU64::new(seed))
    }

    /// Seeded from the clock and the process id, for jitter in production.
    pub fn from_entropy() -> Self {
        let t = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64;
        Self::seeded(t ^ (u64::from(std::process::id()) << 32))
    }

    pub fn next_u64(&self) -> u64 {
        let mut z = self.0.fetch_add(GOLDEN, Ordering::Relaxed).wrapping_add(GOLDEN);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`; `n` must not be 0.
    pub fn below(&self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&self, lo: u64, hi: u64) -> u64 {
        match (hi - lo).checked_add(1) {
            Some(span) => lo + self.below(span),
            None => self.next_u64(),
        }
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&self, per_mille: u32) -> bool {
        self.below(1000) < u64::from(per_mille)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// One of `items`, uniformly; `items` must not be empty.
    pub fn pick<T: Copy>(&self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// Fisher–Yates, in place.
    pub fn shuffle<T>(&self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i as u64 + 1) as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence_and_another_seed_another() {
        let (a, b, c) = (SplitMix::seeded(42), SplitMix::seeded(42), SplitMix::seeded(43));
        let xs: Vec<u64> = (0..10).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..10).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..10).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn draws_stay_in_their_ranges() {
        let r = SplitMix::seeded(7);
        for _ in 0..1000 {
            assert!((3..=9).contains(&r.between(3, 9)));
            assert!(r.below(5) < 5);
            assert!((0.0..1.0).contains(&r.unit()));
        }
        // The full range does not overflow, and still varies.
        assert_ne!(r.between(0, u64::MAX), r.between(0, u64::MAX));
        let mut v: Vec<u32> = (0..50).collect();
        r.shuffle(&mut v);
        v.sort_unstable();
        assert_eq!(v, (0..50).collect::<Vec<_>>());
    }
}
