//! A fixed-bucket latency histogram of atomics: cheap to record from many tasks at once, read by
//! the JSON view, the Prometheus view and the status page alike.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the buckets: fine where tool calls usually land, wide enough for
/// deadlines of a minute. The last bucket is everything above.
pub const BOUNDS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BOUNDS.len() + 1],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// The bucket a duration falls in.
pub fn bucket_of(d: Duration) -> usize {
    let secs = d.as_secs_f64();
    BOUNDS
        .iter()
        .position(|&b| secs <= b)
        .unwrap_or(BOUNDS.len())
}

impl Histogram {
    pub fn record(&self, d: Duration) {
        self.counts[bucket_of(d)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn sum_secs(&self) -> f64 {
        self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// Counts per bucket (not cumulative).
    pub fn counts(&self) -> [u64; BOUNDS.len() + 1] {
        std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed))
    }

    /// Cumulative `(upper bound, count)` pairs as Prometheus wants them, `+Inf` last.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        let counts = self.counts();
        let mut out = Vec::with_capacity(counts.len());
        for (i, c) in counts.iter().enumerate() {
            total += c;
            out.push((BOUNDS.get(i).copied().unwrap_or(f64::INFINITY), total));
        }
        out
    }

    /// The `q` quantile (0..=1) in seconds, interpolated within its bucket.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        quantile(&self.counts(), q)
    }
}

/// The `q` quantile of bucket counts (as [`Histogram::counts`]), interpolated linearly inside
/// the bucket it falls in; `None` when there is nothing counted.
pub fn quantile(counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
    let mut seen = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        if (seen + c) as f64 >= rank {
            let lower = if i == 0 { 0.0 } else { BOUNDS[i - 1] };
            let upper = BOUNDS
                .get(i)
                .copied()
                .unwrap_or(BOUNDS[BOUNDS.len() - 1] * 2.0);
            let within = (rank - seen as f64) / c as f64;
            return Some(lower + (upper - lower) * within);
        }
        seen += c;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_land_in_the_right_bucket() {
        let h = Histogram::default();
        for _ in 0..99 {
            h.record(Duration::from_millis(3));
        }
        h.record(Duration::from_millis(800));
        assert_eq!(h.count(), 100);
        let p50 = h.quantile(0.5).unwrap();
        assert!((0.0025..=0.005).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99).unwrap();
        assert!(p99 <= 0.005, "{p99}");
        let max = h.quantile(1.0).unwrap();
        assert!((0.5..=1.0).contains(&max), "{max}");
        assert_eq!(h.cumulative().last().unwrap().1, 100);
        assert!((h.sum_secs() - (0.297 + 0.8)).abs() < 1e-6);
        assert_eq!(Histogram::default().quantile(0.5), None);
    }
}
