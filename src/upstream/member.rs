//! One pool member: a supervisor that keeps one session with the server alive.
//!
//! The supervisor connects (spawning the child for stdio), publishes the session, and waits for
//! it to end: a child's exit is an event from its reaper, a broken session is reported by the
//! call path, a hang is found by a `ping` after a timed-out call or on an idle check. It then
//! reconnects at once. Failed connects back off exponentially with full jitter, and so do
//! sessions that die before proving themselves (no call answered, gone within seconds): a
//! server that crashes right after its handshake is a crash loop, not a string of unrelated
//! accidents. The old session is closed in the background so a stuck child cannot delay its
//! replacement.
//!
//! Every wait inside the supervisor is bounded and stays cancellable: pings and tool-list
//! refreshes run beside the death watch, never in front of it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::oauth::{AuthState, OAuthHttpClient, ServerAuth, WAITING_MESSAGE};
use super::session::{ConnectError, Session};
use super::{ServerShared, Status};
use crate::catalog::ToolCatalog;
use crate::failure::Failure;

/// How long a `ping` may take before the session counts as hung.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// A session that answered no call and ended sooner than this after connecting died early.
const PROVED_AFTER: Duration = Duration::from_secs(5);
/// The longest a tool-list refresh may take before the session counts as hung.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(30);
/// `in_flight` of a retired member: no call may start on it any more.
const RETIRED: usize = usize::MAX;

/// What the member looks like right now.
#[derive(Debug, Clone)]
pub struct MemberView {
    pub status: Status,
    pub session: Option<Arc<Session>>,
    /// Why the last session ended or the last connect failed; safe to show anyone.
    pub last_error: Option<String>,
    /// The last stderr lines of a child that died while connecting or right after; shown only
    /// to a client holding the API key.
    pub stderr_tail: Vec<String>,
    pub since: SystemTime,
    pub restarts: u64,
    pub connect_attempts: u64,
    /// Consecutive failed connects and sessions that died early (what the backoff is at).
    pub consecutive_failures: u32,
    /// When the next connect is due while backing off.
    pub next_attempt_at: Option<SystemTime>,
    /// Old sessions still being closed in the background.
    pub closing: usize,
}

pub struct Member {
    pub index: usize,
    shared: Arc<ServerShared>,
    state: watch::Sender<MemberView>,
    wake: Notify,
    restart_requested: AtomicBool,
    check_requested: AtomicBool,
    /// Calls in flight, or [`RETIRED`].
    in_flight: AtomicUsize,
    /// Milliseconds since the server started when this member last carried a call (or was
    /// created).
    last_used_ms: AtomicU64,
    pub stop: CancellationToken,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("index", &self.index)
            .finish()
    }
}

/// Counts a call as in flight on a member for as long as it lives.
pub struct InFlight {
    member: Arc<Member>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.member.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How a session ended.
struct SessionEnd {
    reason: String,
    /// Asked for (restart endpoint, shutdown): says nothing about the server's health.
    requested: bool,
}

impl SessionEnd {
    fn failed(reason: impl Into<String>) -> Self {
        SessionEnd {
            reason: reason.into(),
            requested: false,
        }
    }

    fn requested(reason: impl Into<String>) -> Self {
        SessionEnd {
            reason: reason.into(),
            requested: true,
        }
    }
}

/// Awaits the future in `slot`, or never when there is none.
async fn until_done<F: Future + Unpin>(slot: &mut Option<F>) -> F::Output {
    match slot.as_mut() {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

type Pending<'a, T> = Option<Pin<Box<dyn Future<Output = T> + Send + 'a>>>;

impl Member {
    pub fn new(index: usize, shared: Arc<ServerShared>, stop: CancellationToken) -> Arc<Self> {
        let (state, _) = watch::channel(MemberView {
            status: Status::Starting,
            session: None,
            last_error: None,
            stderr_tail: Vec::new(),
            since: SystemTime::now(),
            restarts: 0,
            connect_attempts: 0,
            consecutive_failures: 0,
            next_attempt_at: None,
            closing: 0,
        });
        // A new member counts as just used: otherwise its idle time would be the server's
        // whole uptime, and the next retire tick would remove it while it connects.
        let now = shared.uptime_ms();
        Arc::new(Member {
            index,
            shared,
            state,
            wake: Notify::new(),
            restart_requested: AtomicBool::new(false),
            check_requested: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            last_used_ms: AtomicU64::new(now),
            stop,
        })
    }

    pub fn view(&self) -> MemberView {
        self.state.borrow().clone()
    }

    /// The live session, if the member is ready.
    pub fn ready_session(&self) -> Option<Arc<Session>> {
        let view = self.state.borrow();
        match (&view.status, &view.session) {
            (Status::Ready, Some(s)) if !s.is_dead() => Some(s.clone()),
            _ => None,
        }
    }

    /// Calls in flight on this member.
    pub fn in_flight(&self) -> usize {
        match self.in_flight.load(Ordering::SeqCst) {
            RETIRED => 0,
            n => n,
        }
    }

    /// Marks a call as carried by this member, unless the member was retired meanwhile.
    pub fn begin_call(self: &Arc<Self>) -> Option<InFlight> {
        self.in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n != RETIRED).then_some(n + 1)
            })
            .ok()?;
        self.last_used_ms
            .store(self.shared.uptime_ms(), Ordering::Relaxed);
        Some(InFlight {
            member: self.clone(),
        })
    }

    /// Retires the member if it carries no call and has been idle for `idle`. Atomic with
    /// [`Member::begin_call`]: a call either starts before (and the member stays) or finds the
    /// member retired (and picks another).
    pub fn retire_if_idle(&self, idle: Duration) -> bool {
        if self.idle_for() < idle || self.view().status == Status::Starting {
            return false;
        }
        let retired = self
            .in_flight
            .compare_exchange(0, RETIRED, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if retired {
            self.stop.cancel();
        }
        retired
    }

    /// How long since this member last carried a call.
    pub fn idle_for(&self) -> Duration {
        let now = self.shared.uptime_ms();
        Duration::from_millis(now.saturating_sub(self.last_used_ms.load(Ordering::Relaxed)))
    }

    /// Asks for the session to be replaced now (also skips a pending backoff).
    pub fn request_restart(&self) {
        self.restart_requested.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Asks the supervisor to check with a `ping` whether the session still answers.
    pub fn request_check(&self) {
        self.check_requested.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Tells the supervisor that the session was found broken.
    pub fn report_broken(&self, session: &Session) {
        session.mark_broken();
        self.wake.notify_one();
    }

    fn publish(&self, f: impl FnOnce(&mut MemberView)) {
        self.state.send_modify(|v| {
            let before = v.status;
            f(v);
            if v.status != before {
                v.since = SystemTime::now();
            }
        });
        self.shared.changed();
    }

    /// Keeps one session alive until `stop` is cancelled.
    pub async fn supervise(self: Arc<Self>) {
        let mut closing = JoinSet::new();
        let mut failures: u32 = 0;
        let name = self.shared.config.name.clone();
        let settings = &self.shared.settings;
        loop {
            // Closed sessions are collected as they finish, so a crash-looping member does not
            // accumulate one finished task per restart.
            while closing.try_join_next().is_some() {}
            if self.stop.is_cancelled() {
                break;
            }
            self.restart_requested.store(false, Ordering::SeqCst);
            let id = self.shared.next_session_id();
            let open = closing.len();
            self.publish(|v| {
                v.connect_attempts += 1;
                v.next_attempt_at = None;
                v.closing = open;
            });
            // Authorization comes before the connect and outside its timeout: it may wait for
            // a person.
            let oauth = match self.shared.oauth.as_deref() {
                None => Ok(None),
                Some(auth) => tokio::select! {
                    r = self.authorize(auth) => r.map(Some),
                    _ = self.stop.cancelled() => break,
                },
            };
            let outcome = match oauth {
                Err(message) => Ok(Err(ConnectError {
                    message,
                    stderr_tail: Vec::new(),
                    unauthorized: false,
                })),
                Ok(oauth) => {
                    let connect = Session::connect(
                        id,
                        &self.shared.config,
                        &settings.stdio_env,
                        settings.connect_timeout,
                        settings.listing,
                        oauth,
                    );
                    tokio::select! {
                        r = tokio::time::timeout(settings.connect_timeout, connect) => r,
                        _ = self.stop.cancelled() => break,
                    }
                }
            };
            let (error, stderr_tail, died_early) = match outcome {
                Ok(Ok((session, catalog))) => {
                    let session = Arc::new(session);
                    let connected = Instant::now();
                    tracing::info!(server = %name, member = self.index, session = id,
                        pid = ?session.child_pid(), tools = catalog.tools().len(), "upstream connected");
                    self.shared.publish_catalog(Arc::new(catalog));
                    self.shared
                        .ever_ready
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    self.publish(|v| {
                        v.status = Status::Ready;
                        v.session = Some(session.clone());
                        v.last_error = None;
                        v.stderr_tail.clear();
                    });
                    let end = self.watch_session(&session).await;
                    let stopping = self.stop.is_cancelled();
                    let lived = connected.elapsed();
                    let proved = end.requested
                        || session.answered() > 0
                        || lived >= PROVED_AFTER
                        || !self.shared.policy.enabled;
                    let tail = if proved {
                        Vec::new()
                    } else {
                        session.stderr_tail().await
                    };
                    self.publish(|v| {
                        v.status = if stopping {
                            Status::Stopped
                        } else {
                            Status::Reconnecting
                        };
                        v.session = None;
                        if !stopping {
                            v.restarts += 1;
                            v.last_error = Some(end.reason.clone());
                        }
                    });
                    // Closing waits for the calls still running on the old session (bounded by
                    // their deadline) and for a stuck child to die; the replacement does not.
                    let drain = if stopping {
                        Duration::ZERO
                    } else {
                        self.shared.call_timeout()
                    };
                    closing.spawn(async move { session.close_when_idle(drain).await });
                    if stopping {
                        break;
                    }
                    if !end.requested
                        && let Some(m) = &self.shared.metrics
                    {
                        m.mark_failing(&end.reason);
                    }
                    if proved {
                        failures = 0;
                        tracing::warn!(server = %name, member = self.index, session = id, reason = %end.reason,
                            "upstream session ended; reconnecting");
                        if !self.shared.policy.enabled {
                            // Recovery off: nothing brings the session back but an explicit
                            // restart (the API, or the proxy's own restart). Calls fail at once.
                            self.publish(|v| v.status = Status::Down);
                            tokio::select! {
                                _ = self.wait_for_restart_request() => {}
                                _ = self.stop.cancelled() => break,
                            }
                        }
                        continue;
                    }
                    // Died before answering anything: one event against the server (a crash
                    // loop opens the breaker), and the next attempt backs off.
                    tracing::debug!(server = %name, member = self.index, session = id, reason = %end.reason,
                        "a session ended before answering any call: counted against the server");
                    self.shared.breaker.record_event(false);
                    (
                        format!(
                            "{} {:.1}s after connecting, before answering any call",
                            end.reason,
                            lived.as_secs_f64()
                        ),
                        tail,
                        true,
                    )
                }
                Ok(Err(e)) => {
                    if e.unauthorized
                        && let Some(auth) = &self.shared.oauth
                    {
                        auth.reject();
                    }
                    (e.message, e.stderr_tail, false)
                }
                Err(_) => (
                    format!(
                        "no answer within {:.1}s while connecting (spawn, initialize, tools/list)",
                        settings.connect_timeout.as_secs_f64()
                    ),
                    Vec::new(),
                    false,
                ),
            };
            failures = failures.saturating_add(1);
            let delay = settings.backoff.delay(failures);
            tracing::warn!(server = %name, member = self.index, error = %error, retry_in = ?delay,
                "upstream connection failed");
            self.publish(|v| {
                // A session that died early leaves a server that does start: calls wait for the
                // next one (the breaker refuses them at once if it keeps happening). A server
                // that cannot be started or reached is down: calls are answered 503 at once.
                v.status = if died_early {
                    Status::Reconnecting
                } else {
                    Status::Down
                };
                v.last_error = Some(error);
                v.stderr_tail = stderr_tail;
                v.consecutive_failures = failures;
                v.next_attempt_at = Some(SystemTime::now() + delay);
            });
            if !self.shared.policy.enabled {
                // Recovery off: a server that cannot be started stays down until the proxy
                // is restarted, or asked to restart it.
                tokio::select! {
                    _ = self.wait_for_restart_request() => {}
                    _ = self.stop.cancelled() => break,
                }
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.wait_for_restart_request() => {}
                _ = self.stop.cancelled() => break,
            }
        }
        self.publish(|v| {
            v.status = Status::Stopped;
            v.session = None;
            v.next_attempt_at = None;
        });
        // Each close is bounded (the child gets a grace period, then SIGKILL).
        while closing.join_next().await.is_some() {}
    }

    /// The server's authorized HTTP client, from [`ServerAuth::client`]. While a person is
    /// being waited for, the member is down with [`WAITING_MESSAGE`], so calls are answered
    /// 503 at once with what to do rather than waiting out their deadline.
    async fn authorize(&self, auth: &ServerAuth) -> Result<OAuthHttpClient, String> {
        let mut state = auth.subscribe();
        let client = auth.client(self.shared.settings.connect_timeout);
        tokio::pin!(client);
        let mut shown_waiting = false;
        loop {
            let waiting = matches!(
                *state.borrow_and_update(),
                AuthState::NeedsAuthorization { .. }
            );
            if waiting && !shown_waiting {
                shown_waiting = true;
                self.publish(|v| {
                    v.status = Status::Down;
                    v.last_error = Some(WAITING_MESSAGE.into());
                    v.next_attempt_at = None;
                });
            }
            tokio::select! {
                result = &mut client => {
                    if shown_waiting && result.is_ok() {
                        // Authorized: calls wait for the connect that follows.
                        self.publish(|v| {
                            v.status = Status::Reconnecting;
                            v.last_error = None;
                        });
                    }
                    return result.map_err(|e| crate::redact::urls_in(&e.to_string()));
                }
                changed = state.changed() => {
                    if changed.is_err() {
                        return client.await.map_err(|e| crate::redact::urls_in(&e.to_string()));
                    }
                }
            }
        }
    }

    async fn wait_for_restart_request(&self) {
        loop {
            self.wake.notified().await;
            if self.restart_requested.load(Ordering::SeqCst) {
                return;
            }
        }
    }

    /// Runs while the session is healthy; returns why it must be replaced.
    async fn watch_session(&self, session: &Arc<Session>) -> SessionEnd {
        let name = &self.shared.config.name;
        let idle_check = self.shared.settings.idle_ping_every;
        let mut next_idle_check = Instant::now() + idle_check;
        let mut ping: Pending<'_, (Result<(), Failure>, &'static str)> = None;
        let refresh_within = self.shared.settings.connect_timeout.min(REFRESH_TIMEOUT);
        let mut refresh: Pending<'_, Result<crate::catalog::Listing, String>> = None;
        loop {
            tokio::select! {
                reason = session.died() => return SessionEnd::failed(reason),
                _ = self.stop.cancelled() => return SessionEnd::requested("shutting down"),
                _ = self.wake.notified() => {
                    if self.restart_requested.swap(false, Ordering::SeqCst) {
                        return SessionEnd::requested("restart requested");
                    }
                    if session.is_dead() {
                        return SessionEnd::failed("the session broke during a call");
                    }
                    if self.check_requested.swap(false, Ordering::SeqCst) && ping.is_none() {
                        let s = session.clone();
                        ping = Some(Box::pin(async move { (s.ping(PING_TIMEOUT).await, "ping after a timed-out call") }));
                    }
                }
                (result, why) = until_done(&mut ping) => {
                    ping = None;
                    if let Err(f) = result {
                        return SessionEnd::failed(format!("the server stopped answering ({why}: {})", f.describe()));
                    }
                }
                _ = session.tools_changed.notified(), if refresh.is_none() => {
                    refresh = Some(Box::pin(session.list_tools(name, refresh_within, self.shared.settings.listing.max_tools)));
                }
                listed = until_done(&mut refresh) => {
                    refresh = None;
                    match listed {
                        Ok(listing) => {
                            let identity = self.shared.catalog().map(|c| c.server.clone()).unwrap_or_default();
                            let catalog = ToolCatalog::new(identity, listing, &self.shared.config.disabled_tools, self.shared.settings.listing);
                            tracing::info!(server = %name, tools = catalog.tools().len(), "tool list changed");
                            self.shared.publish_catalog(Arc::new(catalog));
                        }
                        Err(e) => {
                            // A server that announces a change and then cannot list its tools
                            // is not one to keep sending calls to.
                            tracing::warn!(server = %name, error = %e, "could not refresh the tool list; replacing the session");
                            return SessionEnd::failed(format!("tools/list after tools/list_changed failed: {e}"));
                        }
                    }
                }
                _ = tokio::time::sleep_until(next_idle_check), if self.shared.policy.enabled => {
                    next_idle_check = Instant::now() + idle_check;
                    // Only idle sessions are pinged: a busy one proves itself with answers.
                    if ping.is_none() && self.in_flight() == 0 && self.idle_for() >= idle_check {
                        let s = session.clone();
                        ping = Some(Box::pin(async move { (s.ping(PING_TIMEOUT).await, "idle check") }));
                    }
                }
            }
        }
    }
}
