//! The load of a chaos run: open loop, so that a slow proxy cannot hide its slowness.
//!
//! Request `i` is sent at `start + i / rate` whether or not earlier ones have been answered
//! (no coordinated omission: a closed loop would send fewer requests exactly while the proxy
//! struggles, and the numbers would look better than what users see). Each request has the
//! client deadline of the scenario; one with no answer by then is hung. Every request is
//! recorded with the time it was meant to leave and the time it left: latency runs from the
//! first (wrk2's rule), and the difference, the send lag, shows a harness that fell behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::RngExt as _;
use rand::SeedableRng as _;
use rand::rngs::ChaCha8Rng;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::answers;
use super::caller::Caller;
use super::scenario::{CallSpec, LoadSpec};
use super::verdict::{Outcome, RequestRecord};

/// Counters for progress display, updated as requests go and come back.
#[derive(Debug, Default)]
pub struct LoadCounters {
    pub sent: AtomicU64,
    pub answered: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    pub in_flight: AtomicU64,
    /// The latest send time (ms on the run's clock) of a request that succeeded, for showing
    /// recoveries as they happen.
    pub last_success_sent_ms: AtomicU64,
}

/// Which call each request makes: a weighted draw from the scenario's calls, from a generator
/// seeded with the run's seed (the same seed sends the same sequence of calls).
pub struct CallPicker {
    rng: ChaCha8Rng,
    cumulative: Vec<u64>,
}

impl CallPicker {
    pub fn new(calls: &[CallSpec], seed: u64) -> Self {
        let mut total = 0u64;
        let cumulative = calls
            .iter()
            .map(|c| {
                total += u64::from(c.weight.max(1));
                total
            })
            .collect();
        CallPicker {
            rng: ChaCha8Rng::seed_from_u64(seed.rotate_left(17) ^ 0x5eed),
            cumulative,
        }
    }

    pub fn pick(&mut self) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(1);
        let draw = self.rng.random_range(0..total);
        self.cumulative.iter().position(|&c| draw < c).unwrap_or(0)
    }
}

/// What to send, where and when.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    pub load: LoadSpec,
    /// Seeds the choice of calls.
    pub seed: u64,
    /// The run's time zero; records are timed from it.
    pub clock: Instant,
    /// When the first request goes.
    pub start: Instant,
    /// No request is sent at or after `clock + end`.
    pub end: Duration,
}

/// Sends the plan's load, then waits for the answers (each bounded by the client deadline).
/// Stops sending early, and drops requests in flight, when `stop` is cancelled.
///
/// Every request gets arguments unique to it and is checked against the answer it must get
/// (`answers`). A request due while `load.max_in_flight` are unanswered is not sent and is
/// recorded as `not-sent`, as is one that failed for want of file descriptors.
pub async fn drive(
    caller: Caller,
    plan: LoadPlan,
    counters: Arc<LoadCounters>,
    stop: CancellationToken,
) -> Vec<RequestRecord> {
    let LoadPlan {
        load,
        seed,
        clock,
        start,
        end,
    } = plan;
    let mut picker = CallPicker::new(&load.calls, seed);
    let calls = Arc::new(load.calls);
    let interval = Duration::from_secs_f64(1.0 / load.rate.max(0.001));
    let slots = Arc::new(Semaphore::new(load.max_in_flight.max(1)));
    let mut tasks = JoinSet::new();
    let mut records = Vec::new();
    let mut id = 0u64;
    loop {
        let at = start + interval.mul_f64(id as f64);
        if at >= clock + end {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {}
            _ = stop.cancelled() => break,
        }
        let call = picker.pick();
        let request_id = id;
        id += 1;
        let intended_at = at.saturating_duration_since(clock);
        let not_sent = RequestRecord {
            id: request_id,
            call,
            intended_at,
            sent_at: clock.elapsed(),
            answered_at: None,
            status: None,
            outcome: Outcome::NotSent,
        };
        let spec = &calls[call];
        // The parser refuses calls whose answers cannot be checked, so this only fails for a
        // plan built by hand; such a request is the harness's failure, never the proxy's.
        let Ok((args, expected)) = answers::prepare(&spec.tool, &spec.args, request_id) else {
            records.push(not_sent);
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            records.push(not_sent);
            continue;
        };
        let (caller, calls, counters) = (caller.clone(), calls.clone(), counters.clone());
        let deadline = load.deadline;
        tasks.spawn(async move {
            let _slot = slot;
            let spec = &calls[call];
            let sent_at = clock.elapsed();
            counters.sent.fetch_add(1, Ordering::Relaxed);
            counters.in_flight.fetch_add(1, Ordering::Relaxed);
            let reply = caller
                .call(&spec.server, &spec.tool, &args, deadline, &expected)
                .await;
            let (status, outcome) = (reply.status, reply.outcome);
            let answered_at =
                (!matches!(outcome, Outcome::Hung | Outcome::NotSent)).then(|| clock.elapsed());
            counters.in_flight.fetch_sub(1, Ordering::Relaxed);
            if answered_at.is_some() {
                counters.answered.fetch_add(1, Ordering::Relaxed);
            }
            if outcome == Outcome::Success {
                counters.succeeded.fetch_add(1, Ordering::Relaxed);
                counters
                    .last_success_sent_ms
                    .fetch_max(sent_at.as_millis() as u64, Ordering::Relaxed);
            } else {
                counters.failed.fetch_add(1, Ordering::Relaxed);
            }
            RequestRecord {
                id: request_id,
                call,
                intended_at,
                sent_at,
                answered_at,
                status,
                outcome,
            }
        });
        // Collect finished requests as we go so the set does not grow with the run.
        while let Some(done) = tasks.try_join_next() {
            if let Ok(record) = done {
                records.push(record);
            }
        }
    }
    // Requests in flight get their deadline; a stop (Ctrl-C) cuts them short and drops them.
    let mut aborted = false;
    loop {
        tokio::select! {
            next = tasks.join_next() => match next {
                Some(Ok(record)) => records.push(record),
                Some(Err(_)) => {}
                None => break,
            },
            _ = stop.cancelled(), if !aborted => {
                aborted = true;
                tasks.abort_all();
            }
        }
    }
    records.sort_by_key(|r| r.id);
    records
}
