//! A sliding window of the last hour in 5-second slots: requests, errors and a latency
//! histogram per slot. "Errors in the last hour", "error rate", recent percentiles and the
//! status page's charts are all read from it, so they describe now, not the whole uptime.

use std::time::Duration;

use tokio::time::Instant;

use super::histogram::{BOUNDS, bucket_of, quantile};

/// Length of one slot.
pub const SLOT: Duration = Duration::from_secs(5);
/// Slots kept: one hour.
const SLOTS: usize = 720;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Which slot (counted from the window's start) this holds; stale ones are reused.
    index: u64,
    requests: u32,
    errors: u32,
    latency: [u32; BOUNDS.len() + 1],
}

/// Totals over a stretch of the window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    pub requests: u64,
    pub errors: u64,
    pub latency: [u64; BOUNDS.len() + 1],
}

impl Totals {
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }

    pub fn quantile(&self, q: f64) -> Option<f64> {
        quantile(&self.latency, q)
    }

    fn add(&mut self, slot: &Slot) {
        self.requests += u64::from(slot.requests);
        self.errors += u64::from(slot.errors);
        for (t, s) in self.latency.iter_mut().zip(slot.latency.iter()) {
            *t += u64::from(*s);
        }
    }
}

/// One point of a chart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Seconds before now at which the point's stretch ends.
    pub ago_secs: u64,
    pub totals: Totals,
}

#[derive(Debug)]
pub struct Window {
    start: Instant,
    slots: Box<[Slot; SLOTS]>,
}

impl Window {
    pub fn new(start: Instant) -> Self {
        Window {
            start,
            slots: Box::new([Slot::default(); SLOTS]),
        }
    }

    fn index_at(&self, at: Instant) -> u64 {
        (at.saturating_duration_since(self.start).as_secs() / SLOT.as_secs()) + 1
    }

    pub fn record(&mut self, at: Instant, error: bool, latency: Duration) {
        let index = self.index_at(at);
        let slot = &mut self.slots[(index % SLOTS as u64) as usize];
        if slot.index != index {
            *slot = Slot {
                index,
                ..Slot::default()
            };
        }
        slot.requests = slot.requests.saturating_add(1);
        if error {
            slot.errors = slot.errors.saturating_add(1);
        }
        let b = bucket_of(latency);
        slot.latency[b] = slot.latency[b].saturating_add(1);
    }

    /// Totals over the last `span` (rounded up to whole slots, at most an hour).
    pub fn totals(&self, now: Instant, span: Duration) -> Totals {
        let newest = self.index_at(now);
        let count = span
            .as_secs()
            .div_ceil(SLOT.as_secs())
            .clamp(1, SLOTS as u64);
        let mut totals = Totals::default();
        for index in newest.saturating_sub(count - 1)..=newest {
            let slot = &self.slots[(index % SLOTS as u64) as usize];
            if slot.index == index {
                totals.add(slot);
            }
        }
        totals
    }

    /// Points of `step` each over the last `span`, oldest first.
    pub fn series(&self, now: Instant, span: Duration, step: Duration) -> Vec<Point> {
        let newest = self.index_at(now);
        let per_point = step.as_secs().div_ceil(SLOT.as_secs()).max(1);
        let points = span
            .as_secs()
            .div_ceil(step.as_secs().max(1))
            .clamp(1, SLOTS as u64);
        let mut out = Vec::with_capacity(points as usize);
        for p in (0..points).rev() {
            let last = newest.saturating_sub(p * per_point);
            let mut totals = Totals::default();
            for index in last.saturating_sub(per_point - 1)..=last {
                let slot = &self.slots[(index % SLOTS as u64) as usize];
                if slot.index == index && index > 0 {
                    totals.add(slot);
                }
            }
            out.push(Point {
                ago_secs: p * per_point * SLOT.as_secs(),
                totals,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn slides_and_forgets() {
        let start = Instant::now();
        let mut w = Window::new(start);
        w.record(start, false, Duration::from_millis(2));
        w.record(start, true, Duration::from_millis(2));
        let t = w.totals(start, Duration::from_secs(60));
        assert_eq!((t.requests, t.errors), (2, 1));
        assert_eq!(t.error_rate(), 0.5);
        // Ten minutes later the last minute is empty, the last hour is not.
        let later = start + Duration::from_secs(600);
        w.record(later, false, Duration::from_millis(2));
        assert_eq!(w.totals(later, Duration::from_secs(60)).requests, 1);
        assert_eq!(w.totals(later, Duration::from_secs(3600)).requests, 3);
        // Two hours on, the first slots are reused: nothing of them counts.
        let much_later = start + Duration::from_secs(7200);
        assert_eq!(w.totals(much_later, Duration::from_secs(3600)).requests, 0);
        let series = w.series(later, Duration::from_secs(900), Duration::from_secs(30));
        assert_eq!(series.len(), 30);
        assert_eq!(series.iter().map(|p| p.totals.requests).sum::<u64>(), 3);
        assert_eq!(series.last().unwrap().totals.requests, 1);
    }
}
