//! Exponential backoff with full jitter (the AWS Architecture Blog's "full jitter"): a random
//! delay between zero and `min(max, base * 2^(n-1))`, so that many proxies or pool members
//! restarting at once do not retry in lockstep.

use std::time::Duration;

use rand::RngExt as _;

/// Backoff settings.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    /// The ceiling of the delay after `failures` consecutive failures (at least 1).
    pub fn ceiling(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(20);
        self.base.saturating_mul(1u32 << exp).min(self.max)
    }

    /// A random delay in `[0, ceiling(failures)]`.
    pub fn delay(&self, failures: u32) -> Duration {
        let ceiling = self.ceiling(failures).as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(0..=ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_doubling_and_is_capped() {
        let b = Backoff::default();
        assert_eq!(b.ceiling(1), Duration::from_millis(100));
        assert_eq!(b.ceiling(2), Duration::from_millis(200));
        assert_eq!(b.ceiling(4), Duration::from_millis(800));
        assert_eq!(b.ceiling(40), Duration::from_secs(5));
        for failures in 1u32..40 {
            for _ in 0..20 {
                assert!(b.delay(failures) <= b.ceiling(failures));
            }
        }
        // Full jitter spreads the delays instead of repeating one value.
        let samples: std::collections::BTreeSet<_> = (0..50).map(|_| b.delay(10)).collect();
        assert!(samples.len() > 5);
    }
}
