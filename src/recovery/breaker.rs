//! A circuit breaker per upstream server: closed, open after a run of failures (calls are
//! answered at once with 503 and `Retry-After`), half-open to let one probe through.
//!
//! It opens on either of two signals: a run of consecutive failures (a server that is simply
//! down), or a high failure ratio over the recent window (a server failing most but not all
//! calls, where successes keep interrupting any run). Time comes from tokio's clock so tests
//! can pause it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Breaker settings.
#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub consecutive_failures: u32,
    /// Outcomes remembered for the ratio.
    pub window: usize,
    /// Outcomes needed before the ratio is trusted.
    pub min_calls: usize,
    /// Failure share over the window that opens the breaker.
    pub failure_ratio: f64,
    /// How long the breaker stays open before letting a probe through.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            consecutive_failures: 5,
            window: 20,
            min_calls: 10,
            failure_ratio: 0.5,
            open_for: Duration::from_millis(500),
        }
    }
}

/// The breaker's state as shown in diagnostics and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
enum Phase {
    Closed,
    Open {
        until: Instant,
    },
    /// Probing: `since` is when the last probe was let through (`None`: no probe out).
    HalfOpen {
        since: Option<Instant>,
    },
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    window: VecDeque<bool>,
    consecutive: u32,
    trips: u64,
    /// Bumped on every change of phase. A call's outcome is counted only in the epoch it was
    /// admitted in: calls that went out before the breaker opened and come back (timed out)
    /// after it closed again say nothing about the server as it is now.
    epoch: u64,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

/// Permission to send one call. Recording its outcome consumes it; dropping it unrecorded
/// (the client went away) frees a half-open probe slot without counting anything.
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    probe: bool,
    done: bool,
    epoch: u64,
}

impl Permit<'_> {
    /// Records whether the server behaved healthily for this call.
    pub fn record(mut self, healthy: bool) {
        self.done = true;
        self.breaker.record(self.probe, self.epoch, Some(healthy));
    }

    /// Gives the permit back without a verdict: the call failed for a reason that says nothing
    /// about the server's health (the session it ran on ended, which is counted once, as an
    /// event, by the supervisor). A half-open probe slot is freed.
    pub fn release(mut self) {
        self.done = true;
        self.breaker.record(self.probe, self.epoch, None);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.breaker.record(self.probe, self.epoch, None);
        }
    }
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig) -> Self {
        CircuitBreaker {
            config,
            inner: Mutex::new(Inner {
                phase: Phase::Closed,
                window: VecDeque::with_capacity(config.window),
                consecutive: 0,
                trips: 0,
                epoch: 0,
            }),
        }
    }

    /// Asks to send a call: a permit, or how long until the breaker may let calls through.
    pub fn admit(&self) -> Result<Permit<'_>, Duration> {
        let Ok(mut inner) = self.inner.lock() else {
            // A poisoned lock means a panic elsewhere; fail open rather than refuse forever.
            return Ok(Permit {
                breaker: self,
                probe: false,
                done: false,
                epoch: 0,
            });
        };
        let now = Instant::now();
        match inner.phase {
            Phase::Closed => Ok(Permit {
                breaker: self,
                probe: false,
                done: false,
                epoch: inner.epoch,
            }),
            Phase::Open { until } if now < until => Err(until - now),
            Phase::Open { .. } | Phase::HalfOpen { since: None } => {
                if matches!(inner.phase, Phase::Open { .. }) {
                    inner.epoch += 1;
                }
                inner.phase = Phase::HalfOpen { since: Some(now) };
                Ok(Permit {
                    breaker: self,
                    probe: true,
                    done: false,
                    epoch: inner.epoch,
                })
            }
            // One probe at a time; the others wait rather than pile onto a server that may
            // still be failing. But a probe is a real call and may take its whole deadline:
            // once it has been out for `open_for`, another may go, so that a server that is
            // back is not kept waiting behind one slow call.
            Phase::HalfOpen { since: Some(t) } if now.duration_since(t) >= self.config.open_for => {
                inner.phase = Phase::HalfOpen { since: Some(now) };
                Ok(Permit {
                    breaker: self,
                    probe: true,
                    done: false,
                    epoch: inner.epoch,
                })
            }
            Phase::HalfOpen { since: Some(t) } => {
                Err(self.config.open_for.saturating_sub(now.duration_since(t)))
            }
        }
    }

    fn record(&self, probe: bool, epoch: u64, healthy: Option<bool>) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if epoch != inner.epoch {
            // Admitted before the last change of phase: old news.
            return;
        }
        let Some(healthy) = healthy else {
            if probe && matches!(inner.phase, Phase::HalfOpen { .. }) {
                inner.phase = Phase::HalfOpen { since: None };
            }
            return;
        };
        if probe {
            // Only while still probing: a late probe's outcome does not undo what a later one
            // (or the breaker reopening) has decided meanwhile.
            if matches!(inner.phase, Phase::HalfOpen { .. }) {
                if healthy {
                    inner.phase = Phase::Closed;
                    inner.epoch += 1;
                    inner.window.clear();
                    inner.consecutive = 0;
                } else {
                    self.open(&mut inner);
                }
            }
            return;
        }
        if !matches!(inner.phase, Phase::Closed) {
            // A call admitted before the breaker opened; its outcome is old news.
            return;
        }
        if inner.window.len() == self.config.window {
            inner.window.pop_front();
        }
        inner.window.push_back(healthy);
        inner.consecutive = if healthy { 0 } else { inner.consecutive + 1 };
        // Only a failure opens the breaker. A success that fills the window to `min_calls`
        // must not trip it on the failures before it: right after a server recovers, that
        // shed the first healthy calls (seen in the mixed scenario: beta's breaker opened
        // 0.3 s after its 503 window had cleared, on a success).
        if healthy {
            return;
        }
        let failures = inner.window.iter().filter(|ok| !**ok).count();
        let ratio_trips = inner.window.len() >= self.config.min_calls
            && failures as f64 >= self.config.failure_ratio * inner.window.len() as f64;
        if inner.consecutive >= self.config.consecutive_failures || ratio_trips {
            self.open(&mut inner);
        }
    }

    /// Records an event that is not a call: a session of the server died right after it
    /// connected (a crash loop). While the breaker is closed it counts like one failed call;
    /// while it is open or probing it keeps it open, because the server is still unhealthy.
    pub fn record_event(&self, healthy: bool) {
        let probing = {
            let Ok(inner) = self.inner.lock() else {
                return;
            };
            !matches!(inner.phase, Phase::Closed)
        };
        if probing {
            if !healthy && let Ok(mut inner) = self.inner.lock() {
                self.open(&mut inner);
            }
            return;
        }
        let epoch = self.inner.lock().map(|i| i.epoch).unwrap_or(0);
        self.record(false, epoch, Some(healthy));
    }

    fn open(&self, inner: &mut Inner) {
        inner.epoch += 1;
        inner.phase = Phase::Open {
            until: Instant::now() + self.config.open_for,
        };
        inner.window.clear();
        inner.consecutive = 0;
        inner.trips += 1;
        tracing::warn!(open_for = ?self.config.open_for, "circuit breaker opened");
    }

    pub fn state(&self) -> BreakerState {
        match self.inner.lock().map(|i| match i.phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { until } if Instant::now() < until => BreakerState::Open,
            Phase::Open { .. } | Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }) {
            Ok(s) => s,
            Err(_) => BreakerState::Closed,
        }
    }

    /// How many times the breaker has opened.
    pub fn trips(&self) -> u64 {
        self.inner.lock().map(|i| i.trips).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Duration>;

    /// Records `n` failures; the error is the wait of a refused admission.
    fn fail(b: &CircuitBreaker, n: usize) -> TestResult {
        for _ in 0..n {
            b.admit()?.record(false);
        }
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn opens_on_a_run_then_probes_then_closes() -> TestResult {
        let b = CircuitBreaker::new(BreakerConfig::default());
        fail(&b, 4)?;
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&b, 1)?;
        assert_eq!(b.state(), BreakerState::Open);
        // Open for exactly `open_for` (the clock is paused): refused until then, not after.
        assert_eq!(b.admit().err(), Some(Duration::from_millis(500)));
        tokio::time::advance(Duration::from_millis(499)).await;
        assert_eq!(b.admit().err(), Some(Duration::from_millis(1)));
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_millis(2)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let probe = b.admit()?;
        // Only one probe at a time.
        assert!(b.admit().is_err());
        probe.record(true);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.admit().is_ok());
        assert_eq!(b.trips(), 1);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn opens_on_a_high_failure_ratio_and_reopens_on_a_failed_probe() -> TestResult {
        let b = CircuitBreaker::new(BreakerConfig::default());
        // 80% failures, never five in a row; the tenth, a failure, opens it.
        for i in 0..10 {
            b.admit()?.record(i % 5 == 0);
        }
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_millis(600)).await;
        b.admit()?.record(false);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.trips(), 2);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn released_permits_count_nothing_and_events_count_once() -> TestResult {
        let b = CircuitBreaker::new(BreakerConfig::default());
        // Fifty calls that failed because their session ended: no verdict on the server.
        for _ in 0..50 {
            b.admit()?.release();
        }
        assert_eq!(b.state(), BreakerState::Closed);
        // Five sessions that died right after connecting: a crash loop opens the breaker; four
        // do not.
        for _ in 0..4 {
            b.record_event(false);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        b.record_event(false);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.trips(), 1);
        // Another early death while open keeps it open past the original time.
        tokio::time::advance(Duration::from_millis(400)).await;
        b.record_event(false);
        tokio::time::advance(Duration::from_millis(200)).await;
        assert_eq!(b.state(), BreakerState::Open);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_probe_does_not_hold_a_recovered_server_closed() -> TestResult {
        let b = CircuitBreaker::new(BreakerConfig::default());
        fail(&b, 5)?;
        tokio::time::advance(Duration::from_millis(501)).await;
        // A probe that will take its whole deadline (the server was slow when it went).
        let slow = b.admit()?;
        assert!(b.admit().is_err(), "one probe at a time");
        tokio::time::advance(Duration::from_millis(501)).await;
        // Half a second later another probe may go; it succeeds: closed.
        b.admit()?.record(true);
        assert_eq!(b.state(), BreakerState::Closed);
        // The slow one times out afterwards: old news, the breaker stays closed.
        slow.record(false);
        assert_eq!(b.state(), BreakerState::Closed);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn calls_admitted_before_an_opening_do_not_count_after_it() -> TestResult {
        let b = CircuitBreaker::new(BreakerConfig::default());
        // Ten calls go out to a server that is about to hang.
        let in_flight: Vec<_> = (0..10).map(|_| b.admit()).collect::<Result<_, _>>()?;
        fail(&b, 5)?;
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_millis(501)).await;
        b.admit()?.record(true);
        assert_eq!(b.state(), BreakerState::Closed);
        // They time out now, after the server came back: they must not reopen the breaker.
        for p in in_flight {
            p.record(false);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.trips(), 1);
        Ok(())
    }

    /// The names the status page's CSS classes and the metrics' labels use.
    #[test]
    fn states_are_named_as_the_status_page_and_metrics_expect() {
        assert_eq!(BreakerState::Closed.as_str(), "closed");
        assert_eq!(BreakerState::Open.as_str(), "open");
        assert_eq!(BreakerState::HalfOpen.as_str(), "half_open");
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_may_go_the_moment_open_for_has_passed() -> TestResult {
        let b = CircuitBreaker::new(BreakerConfig::default());
        fail(&b, 5)?;
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.admit().is_ok());
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_share_under_the_ratio_keeps_it_closed() -> TestResult {
        let b = CircuitBreaker::new(BreakerConfig::default());
        // 40% failures over the window, never five in a row: under the 50% ratio.
        for i in 0..20 {
            b.admit()?.record(i % 5 < 3);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.trips(), 0);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_probe_of_an_earlier_round_decides_nothing() -> TestResult {
        let b = CircuitBreaker::new(BreakerConfig::default());
        fail(&b, 5)?;
        tokio::time::advance(Duration::from_millis(501)).await;
        // Round one: a slow probe, then another after `open_for`, which fails: open again.
        let slow = b.admit()?;
        tokio::time::advance(Duration::from_millis(501)).await;
        b.admit()?.record(false);
        assert_eq!(b.state(), BreakerState::Open);
        // Round two: a probe goes out; meanwhile the slow probe of round one succeeds.
        tokio::time::advance(Duration::from_millis(501)).await;
        let current = b.admit()?;
        slow.record(true);
        assert_eq!(
            b.state(),
            BreakerState::HalfOpen,
            "old news does not close it"
        );
        current.record(false);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.trips(), 3);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_frees_the_slot() -> TestResult {
        let b = CircuitBreaker::new(BreakerConfig::default());
        fail(&b, 5)?;
        tokio::time::advance(Duration::from_secs(1)).await;
        drop(b.admit()?);
        assert!(b.admit().is_ok(), "a new probe may go");
        Ok(())
    }

    /// A success never opens the breaker, even the one that fills the window to `min_calls`
    /// with half of it failures: the server just answered well.
    #[test]
    fn a_success_that_fills_the_window_does_not_open_it() {
        let b = CircuitBreaker::new(BreakerConfig::default());
        // 5 failures and 4 successes, alternating (never 5 failures in a row): 9 calls, under
        // `min_calls`.
        for i in 0..9 {
            let permit = b.admit().expect("closed");
            permit.record(i % 2 == 1);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        b.admit().expect("closed").record(true);
        assert_eq!(b.state(), BreakerState::Closed, "opened on a success");
        assert_eq!(b.trips(), 0);
        // The next failure makes it 6 of 11: that one opens it.
        b.admit().expect("closed").record(false);
        assert_eq!(b.state(), BreakerState::Open);
    }
}
