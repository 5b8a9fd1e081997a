//! What to do about a failure: the recovery policy, as data plus small mechanisms.
//!
//! `upstream::classify` says what happened ([`Failure`]); a [`RecoveryStrategy`] registered for
//! that class says what to do about it ([`Decision`]): send the call again (and after how
//! long, and whether that spends the retry budget), and whether the session should be kept,
//! checked or replaced. The call path in `upstream` carries the decision out. Library users
//! can register their own strategy for a class, as the Python mcpo guide promises for
//! `recovery_strategies`.
//!
//! Architecture invariant: this module decides, it does not act; it knows nothing of sessions,
//! processes or HTTP.

pub mod backoff;
pub mod breaker;
pub mod budget;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use crate::failure::{Failure, FailureClass};

pub use backoff::Backoff;
pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker};
pub use budget::RetryBudget;

/// What the call path knows when it asks for a decision.
#[derive(Debug)]
pub struct FailureContext<'a> {
    pub failure: &'a Failure,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Whether running the tool twice is harmless (annotations or the config say so).
    pub idempotent: bool,
    /// Time left before the call's deadline.
    pub time_left: Duration,
    /// Whether the session the call ran on has ended (its child died, its connection closed,
    /// it was lost). Sending again after such an event is a replay on a new session, bounded
    /// by the calls that were in flight, not a retry against a failing server.
    pub session_ended: bool,
}

/// What to do with the session a failure happened on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAction {
    Keep,
    /// Ask the server with a `ping` whether it still answers; replace it if not.
    Check,
    Replace,
}

/// What to do about one failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub session: SessionAction,
    /// Send the call again after this delay.
    pub retry_after: Option<Duration>,
    /// Whether that retry spends the retry budget (it may reach a server that is failing).
    pub budgeted: bool,
}

impl Decision {
    pub const FAIL: Decision = Decision {
        session: SessionAction::Keep,
        retry_after: None,
        budgeted: true,
    };

    pub fn fail_and(session: SessionAction) -> Decision {
        Decision {
            session,
            ..Decision::FAIL
        }
    }

    pub fn retry(session: SessionAction, after: Duration, budgeted: bool) -> Decision {
        Decision {
            session,
            retry_after: Some(after),
            budgeted,
        }
    }
}

/// A way to handle one class of failure.
pub trait RecoveryStrategy: Send + Sync + 'static {
    fn decide(&self, ctx: &FailureContext<'_>) -> Decision;
}

impl<F> RecoveryStrategy for F
where
    F: Fn(&FailureContext<'_>) -> Decision + Send + Sync + 'static,
{
    fn decide(&self, ctx: &FailureContext<'_>) -> Decision {
        self(ctx)
    }
}

/// The strategies in force, one per class, plus the limits every retry obeys.
#[derive(Clone)]
pub struct RecoveryPolicy {
    /// False turns recovery off entirely (mcpo's behaviour, for comparison): no retries, no
    /// breaker, no proactive restarts.
    pub enabled: bool,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    strategies: HashMap<FailureClass, Arc<dyn RecoveryStrategy>>,
}

impl std::fmt::Debug for RecoveryPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoveryPolicy")
            .field("enabled", &self.enabled)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

/// A short pause before sending again to a server that just failed, growing per attempt.
fn retry_pause(attempt: u32) -> Duration {
    Backoff {
        base: Duration::from_millis(25),
        max: Duration::from_millis(500),
    }
    .delay(attempt)
}

impl RecoveryPolicy {
    /// The standard strategies.
    pub fn standard(max_attempts: u32) -> Self {
        let mut policy = RecoveryPolicy {
            enabled: true,
            max_attempts: max_attempts.max(1),
            strategies: HashMap::new(),
        };
        // The server answered: its answer is the result.
        policy.register(FailureClass::Tool, |_: &FailureContext<'_>| Decision::FAIL);
        policy.register(FailureClass::JsonRpc, |_: &FailureContext<'_>| {
            Decision::FAIL
        });
        policy.register(FailureClass::CircuitOpen, |_: &FailureContext<'_>| {
            Decision::FAIL
        });
        policy.register(FailureClass::SessionEnded, |_: &FailureContext<'_>| {
            Decision::FAIL
        });
        policy.register(FailureClass::Unavailable, |_: &FailureContext<'_>| {
            Decision::FAIL
        });
        // The deadline is spent; find out whether the server hangs.
        policy.register(FailureClass::Timeout, |_: &FailureContext<'_>| {
            Decision::fail_and(SessionAction::Check)
        });
        // Rejected before the tool ran: a new session and the same call are always safe.
        policy.register(FailureClass::SessionExpired, |_: &FailureContext<'_>| {
            Decision::retry(SessionAction::Replace, Duration::ZERO, false)
        });
        policy.register(FailureClass::Connect, |_: &FailureContext<'_>| {
            Decision::retry(SessionAction::Replace, Duration::ZERO, false)
        });
        // The pipe broke mid-call: the tool may have run, so only idempotent tools go again.
        // When the session is known to have ended, the replay is owed to that one event and
        // does not spend the retry budget (which exists to protect a failing server).
        policy.register(FailureClass::TransportClosed, |ctx: &FailureContext<'_>| {
            if ctx.idempotent {
                Decision::retry(SessionAction::Replace, Duration::ZERO, !ctx.session_ended)
            } else {
                Decision::fail_and(SessionAction::Replace)
            }
        });
        // A garbled stream cannot be trusted for the next call either.
        policy.register(FailureClass::Protocol, |_: &FailureContext<'_>| {
            Decision::fail_and(SessionAction::Replace)
        });
        policy.register(FailureClass::HttpStatus, |ctx: &FailureContext<'_>| {
            let Failure::HttpStatus {
                status,
                retry_after,
            } = ctx.failure
            else {
                return Decision::FAIL;
            };
            let transient = matches!(status, 429 | 500 | 502 | 503 | 504);
            if !transient || !ctx.idempotent {
                return Decision::FAIL;
            }
            let pause = retry_after.unwrap_or_else(|| retry_pause(ctx.attempt));
            if pause >= ctx.time_left {
                return Decision::FAIL;
            }
            Decision::retry(SessionAction::Keep, pause, true)
        });
        policy
    }

    /// Recovery off: every failure is answered as it is.
    pub fn disabled() -> Self {
        RecoveryPolicy {
            enabled: false,
            max_attempts: 1,
            strategies: HashMap::new(),
        }
    }

    /// Replaces the strategy for one class of failure.
    pub fn register(&mut self, class: FailureClass, strategy: impl RecoveryStrategy) {
        self.strategies.insert(class, Arc::new(strategy));
    }

    /// Replaces the strategy for one class with a shared one.
    pub fn register_shared(&mut self, class: FailureClass, strategy: Arc<dyn RecoveryStrategy>) {
        self.strategies.insert(class, strategy);
    }

    /// The decision for a failure, within the attempt limit.
    pub fn decide(&self, ctx: &FailureContext<'_>) -> Decision {
        if !self.enabled {
            return Decision::FAIL;
        }
        let mut decision = self
            .strategies
            .get(&ctx.failure.class())
            .map_or(Decision::FAIL, |s| s.decide(ctx));
        if ctx.attempt >= self.max_attempts {
            decision.retry_after = None;
        }
        decision
    }
}

impl Default for RecoveryPolicy {
    fn default() -> Self {
        RecoveryPolicy::standard(3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(failure: &Failure, attempt: u32, idempotent: bool) -> FailureContext<'_> {
        FailureContext {
            failure,
            attempt,
            idempotent,
            time_left: Duration::from_secs(10),
            session_ended: false,
        }
    }

    #[test]
    fn standard_decisions() {
        let p = RecoveryPolicy::standard(3);
        let tool = Failure::Tool {
            message: "x".into(),
        };
        assert_eq!(p.decide(&ctx(&tool, 1, true)), Decision::FAIL);
        let closed = Failure::TransportClosed { detail: "x".into() };
        assert!(p.decide(&ctx(&closed, 1, true)).retry_after.is_some());
        let d = p.decide(&ctx(&closed, 1, false));
        assert_eq!((d.retry_after, d.session), (None, SessionAction::Replace));
        let expired = Failure::SessionExpired;
        let d = p.decide(&ctx(&expired, 1, false));
        assert!(
            d.retry_after.is_some() && !d.budgeted,
            "always safe, never budgeted"
        );
        let storm = Failure::HttpStatus {
            status: 500,
            retry_after: None,
        };
        assert!(p.decide(&ctx(&storm, 1, true)).retry_after.is_some());
        assert!(p.decide(&ctx(&storm, 1, false)).retry_after.is_none());
        let bad = Failure::HttpStatus {
            status: 400,
            retry_after: None,
        };
        assert!(p.decide(&ctx(&bad, 1, true)).retry_after.is_none());
        // The attempt limit holds whatever the strategy says.
        assert!(p.decide(&ctx(&expired, 3, true)).retry_after.is_none());
        let timeout = Failure::Timeout {
            after: Duration::from_secs(1),
        };
        assert_eq!(
            p.decide(&ctx(&timeout, 1, true)).session,
            SessionAction::Check
        );
    }

    #[test]
    fn custom_strategies_replace_the_standard_ones() {
        let mut p = RecoveryPolicy::standard(5);
        p.register(FailureClass::Tool, |ctx: &FailureContext<'_>| {
            if ctx.attempt < 2 {
                Decision::retry(SessionAction::Keep, Duration::ZERO, true)
            } else {
                Decision::FAIL
            }
        });
        let tool = Failure::Tool {
            message: "flaky".into(),
        };
        assert!(p.decide(&ctx(&tool, 1, false)).retry_after.is_some());
        assert!(p.decide(&ctx(&tool, 2, false)).retry_after.is_none());
    }

    #[test]
    fn a_replay_after_a_session_ended_does_not_spend_the_budget() {
        let p = RecoveryPolicy::standard(3);
        let closed = Failure::TransportClosed { detail: "x".into() };
        let mut c = ctx(&closed, 1, true);
        // The pipe broke on a live session: a retry that may reach a failing server.
        assert!(p.decide(&c).budgeted);
        // The session is known to have ended: the replay is owed to that one event.
        c.session_ended = true;
        let d = p.decide(&c);
        assert!(d.retry_after.is_some() && !d.budgeted, "{d:?}");
    }

    #[test]
    fn http_retries_pause_with_jitter_under_a_growing_ceiling() {
        let p = RecoveryPolicy::standard(10);
        let storm = Failure::HttpStatus {
            status: 503,
            retry_after: None,
        };
        // Attempt 5: the ceiling is 25 ms doubled four times.
        let pauses: Vec<Duration> = (0..50)
            .filter_map(|_| p.decide(&ctx(&storm, 5, true)).retry_after)
            .collect();
        assert_eq!(pauses.len(), 50);
        assert!(pauses.iter().all(|d| *d <= Duration::from_millis(400)));
        assert!(
            pauses.iter().any(|d| !d.is_zero()),
            "a pause, not an instant retry"
        );
        // The server's own Retry-After is honoured as it is.
        let asked = Failure::HttpStatus {
            status: 503,
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(
            p.decide(&ctx(&asked, 1, true)).retry_after,
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn a_shared_strategy_replaces_the_standard_one() {
        let mut p = RecoveryPolicy::standard(3);
        let shared: Arc<dyn RecoveryStrategy> = Arc::new(|_: &FailureContext<'_>| {
            Decision::retry(SessionAction::Check, Duration::ZERO, false)
        });
        p.register_shared(FailureClass::Tool, shared);
        let tool = Failure::Tool {
            message: "x".into(),
        };
        assert_eq!(
            p.decide(&ctx(&tool, 1, false)),
            Decision::retry(SessionAction::Check, Duration::ZERO, false)
        );
    }

    #[test]
    fn debug_shows_the_settings() {
        let shown = format!("{:?}", RecoveryPolicy::standard(4));
        assert!(
            shown.contains("enabled: true") && shown.contains("max_attempts: 4"),
            "{shown}"
        );
    }

    #[test]
    fn disabled_policy_never_recovers() {
        let p = RecoveryPolicy::disabled();
        assert_eq!(
            p.decide(&ctx(&Failure::SessionExpired, 1, true)),
            Decision::FAIL
        );
    }
}
