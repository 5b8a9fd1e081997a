//! Upstream MCP servers: a supervised pool of sessions per server, and the call path.
//!
//! Each configured server is one [`Upstream`]: a pool of [`member::Member`]s (each a
//! supervisor keeping one session alive: a child process for stdio, an HTTP session for
//! streamable HTTP), the server's current [`ToolCatalog`], a circuit breaker and a retry
//! budget. [`Upstream::run`] owns the members (warm minimum, grown under load, idle ones
//! retired); [`Upstream::call_tool`] picks the least-loaded ready member, calls under the
//! deadline and carries out the recovery policy's decision on failure.
//!
//! Architecture invariant: this module knows nothing of HTTP. It returns tool results as JSON
//! and failures as [`classify::Failure`]; it never waits without a deadline on the call path.

pub mod child;
pub mod classify;
pub mod fleet;
mod http_client;
pub mod member;
pub mod oauth;
mod session;
pub mod sse_client;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rmcp::model::JsonObject;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use classify::Failure;
use member::Member;
pub use session::{ConnectError, Session};

use crate::catalog::{ToolCatalog, ToolEntry};
use crate::config::ServerConfig;
use crate::metrics::ServerMetrics;
use crate::recovery::{
    Backoff, BreakerConfig, BreakerState, CircuitBreaker, FailureContext, RecoveryPolicy,
    RetryBudget, SessionAction,
};

/// How often the pool looks for idle members above the minimum to retire (at most).
const POOL_TICK: Duration = Duration::from_secs(5);
/// Where each new upstream's cache epochs start.
static NEXT_EPOCH_BASE: AtomicU64 = AtomicU64::new(0);
/// How long past its cap a call is waited for before its future is dropped (rmcp's own
/// clocks end it first; this bounds the wait should they not).
const CALL_BACKSTOP: Duration = Duration::from_secs(1);

/// The "deadline" of a call with recovery off.
const NO_DEADLINE: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long a failed call waits for its session's end to be confirmed (a stdio pipe closes a
/// moment before the child's exit is reaped).
const SESSION_END_SETTLE: Duration = Duration::from_millis(50);

/// Where a server (or one pool member) is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// First connection attempt in progress.
    Starting,
    /// Connected; calls go through.
    Ready,
    /// The session died and a new one is being connected.
    Reconnecting,
    /// The last attempt failed; the next one is scheduled.
    Down,
    /// Shut down.
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Ready => "ready",
            Status::Reconnecting => "reconnecting",
            Status::Down => "down",
            Status::Stopped => "stopped",
        }
    }
}

/// Settings the supervisors need besides each server's own config.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub stdio_env: BTreeMap<String, String>,
    pub connect_timeout: Duration,
    pub call_timeout: Duration,
    /// How far progress notifications may extend a call (`--max-tool-timeout`).
    pub max_call_timeout: Duration,
    pub backoff: Backoff,
    pub pool_min: usize,
    pub pool_max: usize,
    /// A member idle this long above the pool minimum is retired.
    pub pool_idle: Duration,
    /// An idle session is pinged this often.
    pub idle_ping_every: Duration,
    pub breaker: BreakerConfig,
    pub retry_ratio: f64,
    /// What a server's tool listing may hold (`MCPO_MAX_TOOLS`, `MCPO_MAX_LISTING_BYTES`).
    pub listing: crate::catalog::ListingLimits,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        UpstreamSettings {
            stdio_env: BTreeMap::new(),
            connect_timeout: Duration::from_secs(60),
            call_timeout: Duration::from_secs(60),
            max_call_timeout: Duration::from_secs(600),
            backoff: Backoff::default(),
            pool_min: 1,
            pool_max: 1,
            pool_idle: Duration::from_secs(60),
            idle_ping_every: Duration::from_secs(30),
            breaker: BreakerConfig::default(),
            retry_ratio: 0.2,
            listing: crate::catalog::ListingLimits::default(),
        }
    }
}

/// What members of one server share.
pub struct ServerShared {
    pub config: ServerConfig,
    pub settings: UpstreamSettings,
    pub policy: RecoveryPolicy,
    /// One breaker per server: calls record their outcomes, supervisors record crash loops.
    pub breaker: CircuitBreaker,
    /// Where what happens is counted (`None` with metrics off).
    pub metrics: Option<Arc<ServerMetrics>>,
    /// The server's OAuth authorization, when its config has `"oauth"`.
    pub oauth: Option<Arc<oauth::ServerAuth>>,
    /// Changes whenever cached results of this server must no longer be served: its tool
    /// list changed, or it was restarted from the API.
    cache_epoch: AtomicU64,
    /// Whether a session was ever ready (for readiness probes).
    ever_ready: std::sync::atomic::AtomicBool,
    catalog: watch::Sender<Option<Arc<ToolCatalog>>>,
    /// Bumped on every change of any member, so waiters need one subscription.
    generation: watch::Sender<u64>,
    next_session: AtomicU64,
    started: Instant,
}

impl ServerShared {
    fn changed(&self) {
        self.generation.send_modify(|g| *g = g.wrapping_add(1));
    }

    fn publish_catalog(&self, catalog: Arc<ToolCatalog>) {
        self.cache_epoch.fetch_add(1, Ordering::SeqCst);
        self.catalog.send_replace(Some(catalog));
        self.changed();
    }

    pub fn catalog(&self) -> Option<Arc<ToolCatalog>> {
        self.catalog.borrow().clone()
    }

    fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// The deadline of one call to this server. With recovery off there is none to speak of,
    /// as in mcpo 0.0.20, which that mode reproduces for comparison: a year.
    pub fn call_timeout(&self) -> Duration {
        if !self.policy.enabled {
            return NO_DEADLINE;
        }
        self.config.timeout.unwrap_or(self.settings.call_timeout)
    }

    /// How long a call may run in all while the server reports progress on it: each
    /// `notifications/progress` gives it another [`ServerShared::call_timeout`], up to this.
    pub fn max_call_timeout(&self) -> Duration {
        if !self.policy.enabled {
            return NO_DEADLINE;
        }
        self.config
            .max_timeout
            .unwrap_or(self.settings.max_call_timeout)
            .max(self.call_timeout())
    }

    fn uptime_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// A summary of the whole server, for routes, errors and diagnostics.
#[derive(Debug, Clone)]
pub struct UpstreamView {
    pub status: Status,
    pub catalog: Option<Arc<ToolCatalog>>,
    pub last_error: Option<String>,
    pub since: SystemTime,
    pub restarts: u64,
    pub connect_attempts: u64,
    pub members: usize,
    pub breaker: BreakerState,
    /// How many times the breaker has opened since start.
    pub breaker_trips: u64,
}

/// One configured upstream server.
pub struct Upstream {
    shared: Arc<ServerShared>,
    members: RwLock<Vec<Arc<Member>>>,
    budget: RetryBudget,
    grow: mpsc::Sender<()>,
    grow_rx: std::sync::Mutex<Option<mpsc::Receiver<()>>>,
    pool_min: usize,
    pool_max: usize,
    /// What a session of this server last announced at `initialize`: kept while every session
    /// is being replaced, so that a request in that moment still knows where to go.
    capabilities: std::sync::Mutex<Option<rmcp::model::ServerCapabilities>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name())
            .finish()
    }
}

impl Upstream {
    pub fn new(
        config: ServerConfig,
        settings: UpstreamSettings,
        policy: RecoveryPolicy,
        metrics: Option<Arc<ServerMetrics>>,
    ) -> Arc<Self> {
        let pool_min = config.pool_min.unwrap_or(settings.pool_min).max(1);
        let pool_max = config.pool_max.unwrap_or(settings.pool_max).max(pool_min);
        let breaker = CircuitBreaker::new(settings.breaker);
        let budget = RetryBudget::new(settings.retry_ratio, 10.0);
        let (grow, grow_rx) = mpsc::channel(1);
        let oauth = config
            .oauth
            .clone()
            .map(|o| oauth::ServerAuth::new(&config.name, o));
        Arc::new(Upstream {
            shared: Arc::new(ServerShared {
                oauth,
                config,
                settings,
                policy,
                breaker,
                metrics,
                // Unique across upstreams, so a server replaced by a reload (same name) never
                // meets the cache entries of the one before it.
                cache_epoch: AtomicU64::new(NEXT_EPOCH_BASE.fetch_add(1 << 32, Ordering::Relaxed)),
                ever_ready: std::sync::atomic::AtomicBool::new(false),
                catalog: watch::channel(None).0,
                generation: watch::channel(0).0,
                next_session: AtomicU64::new(1),
                started: Instant::now(),
            }),
            members: RwLock::new(Vec::new()),
            capabilities: std::sync::Mutex::new(None),
            budget,
            grow,
            grow_rx: std::sync::Mutex::new(Some(grow_rx)),
            pool_min,
            pool_max,
        })
    }

    pub fn name(&self) -> &str {
        &self.shared.config.name
    }

    pub fn config(&self) -> &ServerConfig {
        &self.shared.config
    }

    /// The server's OAuth authorization, if it has one.
    pub fn oauth(&self) -> Option<&oauth::ServerAuth> {
        self.shared.oauth.as_deref()
    }

    /// The deadline of one call.
    pub fn call_timeout(&self) -> Duration {
        self.shared.call_timeout()
    }

    /// The longest a call started now may run (its deadline, extended by progress up to
    /// the cap).
    pub fn longest_call(&self) -> Duration {
        self.shared.max_call_timeout()
    }

    fn members(&self) -> Vec<Arc<Member>> {
        self.members.read().map(|m| m.clone()).unwrap_or_default()
    }

    /// The pool's current members' views (for diagnostics).
    pub fn member_views(&self) -> Vec<(usize, member::MemberView, usize)> {
        self.members()
            .iter()
            .map(|m| (m.index, m.view(), m.in_flight()))
            .collect()
    }

    /// The pool's bounds.
    pub fn pool_bounds(&self) -> (usize, usize) {
        (self.pool_min, self.pool_max)
    }

    /// The epoch cached results of this server belong to (see [`ServerShared`]).
    pub fn cache_epoch(&self) -> u64 {
        self.shared.cache_epoch.load(Ordering::SeqCst)
    }

    /// Whether the server has been ready at least once.
    pub fn ever_ready(&self) -> bool {
        self.shared.ever_ready.load(Ordering::Relaxed)
    }

    /// Calls in flight on the whole pool.
    pub fn in_flight(&self) -> usize {
        self.members().iter().map(|m| m.in_flight()).sum()
    }

    /// The stdio children of the pool: (server, pid).
    pub fn child_pids(&self) -> Vec<(String, u32)> {
        self.members()
            .iter()
            .filter_map(|m| m.view().session.and_then(|s| s.child_pid()))
            .map(|pid| (self.name().to_string(), pid))
            .collect()
    }

    /// The latest tool listing.
    pub fn catalog(&self) -> Option<Arc<ToolCatalog>> {
        self.shared.catalog()
    }

    /// A summary of the server over all pool members.
    pub fn view(&self) -> UpstreamView {
        let members = self.members();
        let views: Vec<_> = members.iter().map(|m| m.view()).collect();
        let rank = |s: Status| match s {
            Status::Ready => 0,
            Status::Reconnecting => 1,
            Status::Starting => 2,
            Status::Down => 3,
            Status::Stopped => 4,
        };
        let best = views.iter().min_by_key(|v| rank(v.status));
        UpstreamView {
            status: best.map_or(Status::Starting, |v| v.status),
            catalog: self.catalog(),
            last_error: views.iter().find_map(|v| v.last_error.clone()),
            since: best.map_or_else(SystemTime::now, |v| v.since),
            restarts: views.iter().map(|v| v.restarts).sum(),
            connect_attempts: views.iter().map(|v| v.connect_attempts).sum(),
            members: views.len(),
            breaker: self.shared.breaker.state(),
            breaker_trips: self.shared.breaker.trips(),
        }
    }

    /// Replaces every session now (the restart endpoint).
    pub fn request_restart(&self) {
        self.shared.cache_epoch.fetch_add(1, Ordering::SeqCst);
        for m in self.members() {
            m.request_restart();
        }
    }

    /// Waits until every member has finished its first connection attempt, either way.
    pub async fn first_attempt_done(&self) {
        let mut generation = self.shared.generation.subscribe();
        loop {
            let members = self.members();
            if !members.is_empty() && members.iter().all(|m| m.view().status != Status::Starting) {
                return;
            }
            if generation.changed().await.is_err() {
                return;
            }
        }
    }

    fn spawn_member(self: &Arc<Self>, set: &mut JoinSet<()>, stop: &CancellationToken) {
        let Ok(mut members) = self.members.write() else {
            return;
        };
        let index = members.iter().map(|m| m.index + 1).max().unwrap_or(0);
        let member = Member::new(index, self.shared.clone(), stop.child_token());
        members.push(member.clone());
        drop(members);
        self.shared.changed();
        set.spawn(member.supervise());
    }

    /// Runs the pool until `shutdown`: starts the warm minimum, grows on demand up to the
    /// maximum, retires members idle above the minimum, and on shutdown waits for every
    /// member to close its session (and so its child).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut set = JoinSet::new();
        for _ in 0..self.pool_min {
            self.spawn_member(&mut set, &shutdown);
        }
        let grow_rx = self.grow_rx.lock().ok().and_then(|mut g| g.take());
        let Some(mut grow_rx) = grow_rx else { return };
        let mut tick = tokio::time::interval(
            POOL_TICK
                .min(self.shared.settings.pool_idle / 2)
                .max(Duration::from_millis(100)),
        );
        loop {
            tokio::select! {
                Some(()) = grow_rx.recv() => {
                    if self.members().len() < self.pool_max {
                        tracing::info!(server = %self.name(), members = self.members().len() + 1, "growing the pool under load");
                        self.spawn_member(&mut set, &shutdown);
                    }
                }
                _ = tick.tick() => self.retire_idle(),
                Some(_) = set.join_next() => {}
                _ = shutdown.cancelled() => break,
            }
        }
        while set.join_next().await.is_some() {}
    }

    fn retire_idle(&self) {
        let Ok(mut members) = self.members.write() else {
            return;
        };
        let idle = self.shared.settings.pool_idle;
        let mut i = members.len();
        while i > 0 && members.len() > self.pool_min {
            i -= 1;
            if members[i].retire_if_idle(idle) {
                let m = members.remove(i);
                tracing::info!(server = %self.name(), member = m.index, "retiring an idle pool member");
            }
        }
        drop(members);
        self.shared.changed();
    }

    /// The least-loaded ready member with the call counted on it, waiting (until `until`)
    /// while members are connecting.
    async fn pick(
        &self,
        until: Instant,
        deadline: Duration,
        avoid: &[u64],
    ) -> Result<(Arc<Member>, Arc<Session>, member::InFlight), Failure> {
        let mut generation = self.shared.generation.subscribe();
        loop {
            generation.borrow_and_update();
            let members = self.members();
            let ready = members
                .iter()
                .filter_map(|m| m.ready_session().map(|s| (m.clone(), s)))
                // Never a session that already ended under this call (its death may not be
                // noticed yet): a replay goes to another one.
                .filter(|(_, s)| !avoid.contains(&s.id))
                .min_by_key(|(m, _)| m.in_flight());
            if let Some((member, session)) = ready {
                if member.in_flight() > 0 && members.len() < self.pool_max {
                    let _ = self.grow.try_send(());
                }
                match member.begin_call() {
                    Some(in_flight) => return Ok((member, session, in_flight)),
                    // Retired between the look and the count: look again.
                    None => continue,
                }
            }
            let all_down = !members.is_empty()
                && members
                    .iter()
                    .all(|m| matches!(m.view().status, Status::Down | Status::Stopped));
            if all_down {
                let reason = members
                    .iter()
                    .find_map(|m| m.view().last_error)
                    .unwrap_or_else(|| "the server is down".into());
                return Err(Failure::Unavailable { reason });
            }
            match tokio::time::timeout_at(until, generation.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    return Err(Failure::Unavailable {
                        reason: "the server is shutting down".into(),
                    });
                }
                Err(_) => return Err(Failure::Timeout { after: deadline }),
            }
        }
    }

    /// Whether sending `tool` twice is harmless: declared so by the server, or listed as
    /// retryable in the config.
    fn idempotent(&self, tool: &ToolEntry) -> bool {
        tool.is_idempotent() || self.shared.config.retryable_tools.contains(&tool.name)
    }

    /// Sends a read-only request (resources, prompts, completion) within the server's
    /// deadline. A session that ends under it is replaced and the request sent again on
    /// another, as for an idempotent tool call; any other failure is the answer. Reads give
    /// the breaker no verdict: it judges tool calls.
    pub async fn request(
        &self,
        request: rmcp::model::ClientRequest,
    ) -> Result<rmcp::model::ServerResult, Failure> {
        let deadline = self.call_timeout();
        let started = Instant::now();
        let until = started.checked_add(deadline).unwrap_or(started);
        let mut ended: Vec<u64> = Vec::new();
        loop {
            let (member, session, in_flight) = self.pick(until, deadline, &ended).await?;
            let left = until
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            let outcome = session.request(request.clone(), left).await;
            drop(in_flight);
            let failure = match outcome {
                Ok(result) => {
                    session.record_answer();
                    return Ok(result);
                }
                Err(f) => f,
            };
            let session_ended = session_ended_under(&session, &failure).await;
            if !session_ended
                || !self.shared.policy.enabled
                || Instant::now() >= until
                || ended.len() > self.pool_max
            {
                return Err(failure);
            }
            member.report_broken(&session);
            ended.push(session.id);
        }
    }

    /// What the server said it can do: from a live session, else what the last one said;
    /// `None` until a session has been up.
    pub fn capabilities(&self) -> Option<rmcp::model::ServerCapabilities> {
        let live = self
            .members()
            .iter()
            .find_map(|m| m.ready_session())
            .and_then(|s| s.capabilities());
        let mut last = self
            .capabilities
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if live.is_some() {
            last.clone_from(&live);
        }
        last.clone()
    }

    /// Calls `tool` within the server's deadline, recovering as the policy decides. `meta` is
    /// sent as the request's `_meta` (forwarded client headers live there, as in mcpo).
    ///
    /// The end of a session (its child died, its connection closed, the server forgot it) is
    /// one event, handled by replacing that session: the calls it takes down with it are not
    /// votes against the server (the breaker gets no verdict from them) and idempotent ones
    /// are sent again on the new session without spending the retry budget. The breaker is
    /// for a server that keeps failing while its sessions are alive.
    pub async fn call_tool(
        &self,
        tool: &ToolEntry,
        arguments: Option<JsonObject>,
        meta: Option<&JsonObject>,
    ) -> Result<Value, Failure> {
        self.call_tool_with_progress(tool, arguments, meta, None)
            .await
    }

    /// [`Upstream::call_tool`], with the call's `notifications/progress` (from whichever
    /// session carries it, replays included) sent to `progress`.
    pub async fn call_tool_with_progress(
        &self,
        tool: &ToolEntry,
        arguments: Option<JsonObject>,
        meta: Option<&JsonObject>,
        progress: Option<&session::ProgressSink>,
    ) -> Result<Value, Failure> {
        let deadline = self.call_timeout();
        let started = Instant::now();
        let until = started.checked_add(deadline).unwrap_or(started);
        // Progress may carry an answer past `until`, never past this.
        let cap = self.shared.max_call_timeout();
        let hard_until = started.checked_add(cap).unwrap_or(until);
        let policy = &self.shared.policy;
        let breaker = &self.shared.breaker;
        self.budget.deposit();
        let mut attempt = 0;
        // Sessions that ended under this call, and how many replays that cost: a replay after
        // a session's end is owed to that event, so it does not count as an attempt; it is
        // bounded instead by the pool (enough to find a live member if all died at once) and
        // by the deadline.
        let mut ended: Vec<u64> = Vec::new();
        let mut replays: u32 = 0;
        loop {
            attempt += 1;
            let permit = if policy.enabled {
                match breaker.admit() {
                    Ok(p) => Some(p),
                    Err(retry_after) => return Err(Failure::CircuitOpen { retry_after }),
                }
            } else {
                None
            };
            let waited = Instant::now();
            let (member, session, in_flight) = self.pick(until, deadline, &ended).await?;
            if let Some(m) = &self.shared.metrics {
                m.pool_wait.record(waited.elapsed());
            }
            let now = Instant::now();
            // rmcp keeps the call's clocks (the window renewed by progress, and the cap) and
            // cancels upstream when one runs out; the outer bound is a backstop.
            let window = until
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            let left = hard_until.saturating_duration_since(now).max(window);
            let outcome = tokio::time::timeout_at(
                hard_until + CALL_BACKSTOP,
                session.call_tool(&tool.name, arguments.clone(), meta, window, left, progress),
            )
            .await;
            // Whichever clock ran out, the call is reported against the deadline it was given.
            let timed_out = || Failure::Timeout {
                after: if Instant::now() >= hard_until {
                    cap
                } else {
                    deadline
                },
            };
            let outcome = match outcome {
                Ok(Err(Failure::Timeout { .. })) => Ok(Err(timed_out())),
                other => other,
            };
            drop(in_flight);
            let failure = match outcome {
                Ok(Ok(result)) => {
                    session.record_answer();
                    if let Some(m) = &self.shared.metrics {
                        m.mark_success();
                    }
                    if let Some(p) = permit {
                        p.record(true);
                    }
                    return Ok(result);
                }
                Ok(Err(failure)) => failure,
                // The call future was dropped, which sent `notifications/cancelled`.
                Err(_) => timed_out(),
            };
            if matches!(failure, Failure::Tool { .. } | Failure::JsonRpc { .. }) {
                session.record_answer();
            }
            let session_ended = session_ended_under(&session, &failure).await;
            let trips_before = breaker.trips();
            if let Some(p) = permit {
                if session_ended {
                    p.release();
                } else {
                    p.record(!failure.counts_against_server());
                }
            }
            if let Some(m) = &self.shared.metrics {
                if session_ended || failure.counts_against_server() {
                    m.mark_failing(&failure.describe());
                }
                if breaker.trips() > trips_before {
                    m.mark_failing("the circuit breaker opened");
                }
            }
            if breaker.trips() > trips_before {
                tracing::warn!(server = %self.name(), tool = %tool.name, failure = failure.label(),
                    session_ended, attempt, "this call's failure opened the circuit breaker");
            }
            let now = Instant::now();
            if session_ended {
                ended.push(session.id);
            }
            let decision = policy.decide(&FailureContext {
                failure: &failure,
                attempt: attempt - replays,
                idempotent: self.idempotent(tool),
                time_left: until.saturating_duration_since(now),
                session_ended,
            });
            if let (Some(auth), Failure::HttpStatus { status: 401, .. }) =
                (&self.shared.oauth, &failure)
            {
                // rmcp refreshes a refused token and sends again before this: a 401 that gets
                // here means the grant itself is gone, and only a person can renew it.
                auth.reject();
                member.report_broken(&session);
            }
            match decision.session {
                SessionAction::Keep => {}
                SessionAction::Check => member.request_check(),
                SessionAction::Replace => {
                    tracing::debug!(server = %self.name(), member = member.index, session = session.id,
                        failure = failure.label(), "replacing a broken session");
                    member.report_broken(&session);
                }
            }
            let give_up = match decision.retry_after {
                None => true,
                Some(_) if session_ended && replays > self.pool_max as u32 => true,
                Some(pause) => {
                    now.checked_add(pause).is_none_or(|at| at >= until)
                        || (decision.budgeted && !self.budget.try_withdraw())
                }
            };
            if session_ended && !give_up {
                replays += 1;
            }
            if give_up {
                return Err(match failure {
                    // Name the event, and say why the call was not sent again.
                    Failure::TransportClosed { .. } if session_ended => Failure::SessionEnded {
                        event: session.end_reason(SESSION_END_SETTLE).await,
                    },
                    other => other,
                });
            }
            tracing::debug!(server = %self.name(), tool = %tool.name, attempt, failure = failure.label(), "sending the call again");
            if let Some(m) = &self.shared.metrics {
                m.record_retry();
            }
            if let Some(pause) = decision.retry_after
                && !pause.is_zero()
            {
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Whether `failure` means the session it happened on ended (its child died, its connection
/// closed, the server forgot it), which is one event for the supervisor, not a verdict on
/// the server. The pipe usually closes a moment before the reaper reports the exit.
async fn session_ended_under(session: &Session, failure: &Failure) -> bool {
    match failure {
        Failure::SessionExpired => true,
        Failure::TransportClosed { .. } => {
            session.is_dead() || session.ends_within(SESSION_END_SETTLE).await
        }
        _ => session.is_dead(),
    }
}
