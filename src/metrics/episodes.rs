//! Recovery episodes: a server goes from healthy to failing (its session died, a call failed
//! for a reason that counts against it, or its breaker opened), and the episode ends at its
//! next successful call. The recovery success rate is the share of episodes started in the
//! last hour that ended within the recovery target.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Episodes kept (the last hour's, at most this many).
const KEEP: usize = 500;
const HOUR: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    pub started: Instant,
    pub started_unix_ms: u64,
    pub reason: String,
    pub ended: Option<Instant>,
}

impl Episode {
    /// How long it lasted; `None` while it goes on.
    pub fn duration(&self) -> Option<Duration> {
        self.ended
            .map(|e| e.saturating_duration_since(self.started))
    }
}

#[derive(Debug, Clone, Default)]
pub struct Episodes {
    list: VecDeque<Episode>,
    /// Episodes since start, including ones no longer kept.
    total: u64,
}

/// The recovery success rate and what it was computed from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecoveryRate {
    /// Recovered within the target / decided; 1.0 when nothing was decided.
    pub rate: f64,
    /// Episodes of the last hour that ended within the target.
    pub recovered: u64,
    /// Episodes of the last hour whose fate is known: ended, or open longer than the target.
    pub decided: u64,
    /// Episodes of the last hour still open.
    pub open: u64,
}

impl Episodes {
    pub fn open(&mut self, reason: &str) {
        let now = Instant::now();
        self.list
            .retain(|e| e.ended.is_none() || now.duration_since(e.started) < HOUR);
        while self.list.len() >= KEEP {
            self.list.pop_front();
        }
        self.list.push_back(Episode {
            started: now,
            started_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            reason: reason.to_string(),
            ended: None,
        });
        self.total += 1;
    }

    pub fn close(&mut self) {
        if let Some(e) = self.list.back_mut()
            && e.ended.is_none()
        {
            e.ended = Some(Instant::now());
        }
    }

    pub fn list(&self) -> &VecDeque<Episode> {
        &self.list
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// The recovery success rate over episodes started in the last hour. An open episode
    /// younger than the target is not decided yet and counts neither way.
    pub fn recovery_rate(&self, target: Duration) -> RecoveryRate {
        let now = Instant::now();
        let mut r = RecoveryRate {
            rate: 1.0,
            recovered: 0,
            decided: 0,
            open: 0,
        };
        for e in self
            .list
            .iter()
            .filter(|e| now.duration_since(e.started) < HOUR)
        {
            match e.duration() {
                Some(d) => {
                    r.decided += 1;
                    if d <= target {
                        r.recovered += 1;
                    }
                }
                None => {
                    r.open += 1;
                    if now.duration_since(e.started) > target {
                        r.decided += 1;
                    }
                }
            }
        }
        if r.decided > 0 {
            r.rate = r.recovered as f64 / r.decided as f64;
        }
        r
    }

    /// Adds another server's counts into these (for the whole proxy's rate).
    pub fn merge_rate(a: RecoveryRate, b: RecoveryRate) -> RecoveryRate {
        let decided = a.decided + b.decided;
        let recovered = a.recovered + b.recovered;
        RecoveryRate {
            rate: if decided == 0 {
                1.0
            } else {
                recovered as f64 / decided as f64
            },
            recovered,
            decided,
            open: a.open + b.open,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rate_counts_decided_episodes_only() {
        let target = Duration::from_secs(10);
        let mut e = Episodes::default();
        assert_eq!(e.recovery_rate(target).rate, 1.0);
        e.open("crash");
        tokio::time::advance(Duration::from_secs(2)).await;
        e.close();
        e.open("crash");
        tokio::time::advance(Duration::from_secs(30)).await;
        e.close();
        e.open("crash");
        // One quick, one slow, one open for 1 s (undecided).
        tokio::time::advance(Duration::from_secs(1)).await;
        let r = e.recovery_rate(target);
        assert_eq!((r.recovered, r.decided, r.open), (1, 2, 1));
        assert_eq!(r.rate, 0.5);
        // Open past the target: now decided, and not recovered.
        tokio::time::advance(Duration::from_secs(20)).await;
        let r = e.recovery_rate(target);
        assert_eq!((r.recovered, r.decided), (1, 3));
        assert_eq!(e.total(), 3);
    }
}
