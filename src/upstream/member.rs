//! One pool member: a supervisor that keeps one session with the server alive.
//!
//! The supervisor connects (spawning the child for stdio), publishes the session, and waits for
//! it to die: a child's exit is an event from its reaper, a broken session is reported by the
//! call path, a hang is found by a `ping` after a timed-out call or on an idle check. It then
//! reconnects at once; failed connects back off exponentially with full jitter. The old
//! session is closed in the background so a stuck child cannot delay its replacement.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::session::Session;
use super::{ServerShared, Status};
use crate::catalog::ToolCatalog;

/// How long a `ping` may take before the session counts as hung.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// What the member looks like right now.
#[derive(Debug, Clone)]
pub struct MemberView {
    pub status: Status,
    pub session: Option<Arc<Session>>,
    pub last_error: Option<String>,
    pub since: SystemTime,
    pub restarts: u64,
    pub connect_attempts: u64,
}

pub struct Member {
    pub index: usize,
    shared: Arc<ServerShared>,
    state: watch::Sender<MemberView>,
    wake: Notify,
    restart_requested: AtomicBool,
    check_requested: AtomicBool,
    pub in_flight: AtomicUsize,
    /// Milliseconds since the server started when this member last carried a call.
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
        self.member.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Member {
    pub fn new(index: usize, shared: Arc<ServerShared>, stop: CancellationToken) -> Arc<Self> {
        let (state, _) = watch::channel(MemberView {
            status: Status::Starting,
            session: None,
            last_error: None,
            since: SystemTime::now(),
            restarts: 0,
            connect_attempts: 0,
        });
        Arc::new(Member {
            index,
            shared,
            state,
            wake: Notify::new(),
            restart_requested: AtomicBool::new(false),
            check_requested: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            last_used_ms: AtomicU64::new(0),
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

    /// Marks a call as carried by this member.
    pub fn begin_call(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.last_used_ms
            .store(self.shared.uptime_ms(), Ordering::Relaxed);
        InFlight {
            member: self.clone(),
        }
    }

    /// Milliseconds since this member last carried a call.
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

    /// Wakes a supervisor that waits for demand (recovery disabled).
    pub fn poke(&self) {
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
        loop {
            if self.stop.is_cancelled() {
                break;
            }
            self.restart_requested.store(false, Ordering::SeqCst);
            let id = self.shared.next_session_id();
            self.publish(|v| v.connect_attempts += 1);
            let connect =
                Session::connect(id, &self.shared.config, &self.shared.settings.stdio_env);
            let outcome = tokio::select! {
                r = tokio::time::timeout(self.shared.settings.connect_timeout, connect) => r,
                _ = self.stop.cancelled() => break,
            };
            let error = match outcome {
                Ok(Ok((session, catalog))) => {
                    failures = 0;
                    let session = Arc::new(session);
                    tracing::info!(server = %name, member = self.index, session = id,
                        pid = ?session.child_pid(), tools = catalog.tools().len(), "upstream connected");
                    self.shared.publish_catalog(Arc::new(catalog));
                    self.publish(|v| {
                        v.status = Status::Ready;
                        v.session = Some(session.clone());
                        v.last_error = None;
                    });
                    let reason = self.watch_session(&session).await;
                    let stopping = self.stop.is_cancelled();
                    self.publish(|v| {
                        v.status = if stopping {
                            Status::Stopped
                        } else {
                            Status::Reconnecting
                        };
                        v.session = None;
                        if !stopping {
                            v.restarts += 1;
                            v.last_error = Some(reason.clone());
                        }
                    });
                    // Closing may wait for a stuck child to die; the replacement does not.
                    closing.spawn(async move { session.close().await });
                    if stopping {
                        break;
                    }
                    tracing::warn!(server = %name, member = self.index, session = id, %reason,
                        "upstream session ended; reconnecting");
                    if !self.shared.policy.enabled {
                        // mcpo's behaviour: reconnect only when a call needs the server.
                        tokio::select! {
                            _ = self.wake.notified() => {}
                            _ = self.stop.cancelled() => break,
                        }
                    }
                    continue;
                }
                Ok(Err(e)) => e.message,
                Err(_) => format!(
                    "no answer within {:?} while connecting (spawn, initialize, tools/list)",
                    self.shared.settings.connect_timeout
                ),
            };
            failures = failures.saturating_add(1);
            let delay = self.shared.settings.backoff.delay(failures);
            tracing::warn!(server = %name, member = self.index, error = %error, retry_in = ?delay,
                "upstream connection failed");
            self.publish(|v| {
                v.status = Status::Down;
                v.last_error = Some(error);
            });
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.wait_for_restart_request() => {}
                _ = self.stop.cancelled() => break,
            }
        }
        self.publish(|v| {
            v.status = Status::Stopped;
            v.session = None;
        });
        while closing.join_next().await.is_some() {}
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
    async fn watch_session(&self, session: &Arc<Session>) -> String {
        let idle_check = self.shared.settings.idle_ping_every;
        let mut next_idle_check = Instant::now() + idle_check;
        loop {
            tokio::select! {
                reason = session.died() => return reason,
                _ = self.wake.notified() => {
                    if self.restart_requested.swap(false, Ordering::SeqCst) {
                        return "restart requested".into();
                    }
                    if session.is_dead() {
                        return "the session broke during a call".into();
                    }
                    if self.check_requested.swap(false, Ordering::SeqCst)
                        && let Err(f) = session.ping(PING_TIMEOUT).await
                    {
                        return format!("the server stopped answering (ping: {})", f.label());
                    }
                }
                _ = session.tools_changed.notified() => {
                    match session.list_tools(&self.shared.config.name).await {
                        Ok(tools) => {
                            let identity = self.shared.catalog().map(|c| c.server.clone()).unwrap_or_default();
                            let catalog = ToolCatalog::new(identity, tools, &self.shared.config.disabled_tools);
                            tracing::info!(server = %self.shared.config.name, tools = catalog.tools().len(), "tool list changed");
                            self.shared.publish_catalog(Arc::new(catalog));
                        }
                        Err(e) => tracing::warn!(server = %self.shared.config.name, error = %e, "could not refresh the tool list"),
                    }
                }
                _ = tokio::time::sleep_until(next_idle_check), if self.shared.policy.enabled => {
                    next_idle_check = Instant::now() + idle_check;
                    // Only idle sessions are pinged: a busy one proves itself with answers.
                    if self.in_flight.load(Ordering::Relaxed) == 0
                        && self.idle_for() >= idle_check
                        && let Err(f) = session.ping(PING_TIMEOUT).await
                    {
                        return format!("an idle check found the server not answering (ping: {})", f.label());
                    }
                }
                _ = self.stop.cancelled() => return "shutting down".into(),
            }
        }
    }
}
