//! Upstream MCP servers: connecting, supervising and calling them.
//!
//! Each configured server gets one [`Upstream`], whose supervisor task owns the live
//! [`Session`]: it connects (spawning the child for stdio), lists the tools, watches the
//! session, and reconnects as soon as it dies, with exponential backoff and full jitter between
//! failed attempts. The request path never connects anything itself; it asks for the current
//! session, waiting (within the call's deadline) while one is being started.
//!
//! Architecture invariant: this module knows nothing of HTTP. It returns tool results as JSON
//! and failures as [`classify::Failure`].

pub mod child;
pub mod classify;
mod session;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rand::RngExt as _;
use rmcp::model::JsonObject;
use serde_json::Value;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use classify::Failure;
pub use session::{ConnectError, Session};

use crate::catalog::{ToolCatalog, ToolEntry};
use crate::config::ServerConfig;

/// First delay between failed connection attempts; doubled each time up to [`BACKOFF_MAX`].
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How many times one call may be sent again after a failure that makes it safe to.
const MAX_CALL_ATTEMPTS: u32 = 3;

/// Where a server is in its life.
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
    /// The proxy is shutting down.
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

/// A consistent picture of one upstream, replaced as a whole on every change.
#[derive(Debug, Clone)]
pub struct UpstreamView {
    pub status: Status,
    pub session: Option<Arc<Session>>,
    /// The most recent tool listing; kept while reconnecting so routes do not flicker.
    pub catalog: Option<Arc<ToolCatalog>>,
    pub last_error: Option<String>,
    pub since: SystemTime,
    /// Sessions that ended and were replaced.
    pub restarts: u64,
    pub connect_attempts: u64,
}

/// Settings the supervisor needs besides the server's own config.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub stdio_env: BTreeMap<String, String>,
    pub connect_timeout: Duration,
    pub call_timeout: Duration,
}

/// One configured upstream server.
pub struct Upstream {
    pub config: ServerConfig,
    settings: UpstreamSettings,
    state: watch::Sender<UpstreamView>,
    /// Wakes the supervisor: a session was found broken, or a restart was asked for.
    wake: Notify,
    restart_requested: std::sync::atomic::AtomicBool,
    next_session: AtomicU64,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.config.name)
            .finish()
    }
}

impl Upstream {
    pub fn new(config: ServerConfig, settings: UpstreamSettings) -> Arc<Self> {
        let (state, _) = watch::channel(UpstreamView {
            status: Status::Starting,
            session: None,
            catalog: None,
            last_error: None,
            since: SystemTime::now(),
            restarts: 0,
            connect_attempts: 0,
        });
        Arc::new(Upstream {
            config,
            settings,
            state,
            wake: Notify::new(),
            restart_requested: Default::default(),
            next_session: AtomicU64::new(1),
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The current picture.
    pub fn view(&self) -> UpstreamView {
        self.state.borrow().clone()
    }

    /// Subscribes to changes of the picture.
    pub fn watch(&self) -> watch::Receiver<UpstreamView> {
        self.state.subscribe()
    }

    /// The deadline of one call.
    pub fn call_timeout(&self) -> Duration {
        self.config.timeout.unwrap_or(self.settings.call_timeout)
    }

    /// Asks the supervisor to replace the session now (also skips a pending backoff).
    pub fn request_restart(&self) {
        self.restart_requested.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Waits until the first connection attempt has finished, either way.
    pub async fn first_attempt_done(&self) {
        let mut rx = self.state.subscribe();
        let _ = rx.wait_for(|v| v.status != Status::Starting).await;
    }

    /// Calls `tool` within the server's deadline, sending again only when that cannot run the
    /// tool twice: the failure happened before the request reached the server, or the tool is
    /// declared idempotent and its session broke under it.
    pub async fn call_tool(
        &self,
        tool: &ToolEntry,
        arguments: Option<JsonObject>,
    ) -> Result<Value, Failure> {
        let deadline = self.call_timeout();
        let until = Instant::now() + deadline;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let session = self.ready_session(until, deadline).await?;
            let call = session.call_tool(&tool.name, arguments.clone());
            let failure = match tokio::time::timeout_at(until, call).await {
                Ok(Ok(result)) => return Ok(result),
                Ok(Err(failure)) => failure,
                Err(_) => {
                    // The call future was dropped, which sent `notifications/cancelled`.
                    return Err(Failure::Timeout { after: deadline });
                }
            };
            if failure.breaks_session() {
                tracing::warn!(server = %self.name(), session = session.id, failure = %failure.label(),
                    "session broke during a call; replacing it");
                session.mark_broken();
                self.wake.notify_one();
            }
            let safe = failure.is_before_send()
                || (tool.is_idempotent() && matches!(failure, Failure::TransportClosed { .. }));
            if !safe || attempt >= MAX_CALL_ATTEMPTS || Instant::now() >= until {
                return Err(failure);
            }
            tracing::debug!(server = %self.name(), tool = %tool.name, attempt, "sending the call again");
        }
    }

    /// The live session, waiting while one is being connected, up to `until`.
    async fn ready_session(
        &self,
        until: Instant,
        deadline: Duration,
    ) -> Result<Arc<Session>, Failure> {
        let mut rx = self.state.subscribe();
        loop {
            {
                let view = rx.borrow_and_update();
                match view.status {
                    Status::Ready => match &view.session {
                        Some(s) if !s.is_dead() => return Ok(s.clone()),
                        _ => self.wake.notify_one(),
                    },
                    Status::Down => {
                        return Err(Failure::Unavailable {
                            reason: view
                                .last_error
                                .clone()
                                .unwrap_or_else(|| "the server is down".into()),
                        });
                    }
                    Status::Stopped => {
                        return Err(Failure::Unavailable {
                            reason: "the proxy is shutting down".into(),
                        });
                    }
                    Status::Starting | Status::Reconnecting => {}
                }
            }
            match tokio::time::timeout_at(until, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    return Err(Failure::Unavailable {
                        reason: "the server's supervisor has stopped".into(),
                    });
                }
                Err(_) => return Err(Failure::Timeout { after: deadline }),
            }
        }
    }

    fn publish(&self, f: impl FnOnce(&mut UpstreamView)) {
        self.state.send_modify(|v| {
            let before = v.status;
            f(v);
            if v.status != before {
                v.since = SystemTime::now();
            }
        });
    }

    /// Keeps the server connected until `shutdown` is cancelled. Owned by the serve loop.
    pub async fn supervise(self: Arc<Self>, shutdown: CancellationToken) {
        let mut failures: u32 = 0;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            self.restart_requested.store(false, Ordering::SeqCst);
            let id = self.next_session.fetch_add(1, Ordering::Relaxed);
            self.publish(|v| v.connect_attempts += 1);
            let connect = Session::connect(id, &self.config, &self.settings.stdio_env);
            let outcome = tokio::select! {
                r = tokio::time::timeout(self.settings.connect_timeout, connect) => r,
                _ = shutdown.cancelled() => break,
            };
            let error = match outcome {
                Ok(Ok((session, catalog))) => {
                    failures = 0;
                    let session = Arc::new(session);
                    tracing::info!(server = %self.name(), session = id, pid = ?session.child_pid(),
                        tools = catalog.tools().len(), "upstream connected");
                    self.publish(|v| {
                        v.status = Status::Ready;
                        v.session = Some(session.clone());
                        v.catalog = Some(Arc::new(catalog));
                        v.last_error = None;
                    });
                    let reason = self.watch_session(&session, &shutdown).await;
                    let stopping = shutdown.is_cancelled();
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
                    session.close().await;
                    if stopping {
                        return;
                    }
                    tracing::warn!(server = %self.name(), session = id, %reason, "upstream session ended; reconnecting");
                    continue;
                }
                Ok(Err(e)) => e.message,
                Err(_) => format!(
                    "no answer within {:?} while connecting (spawn, initialize, tools/list)",
                    self.settings.connect_timeout
                ),
            };
            failures = failures.saturating_add(1);
            let delay = backoff_delay(failures);
            tracing::warn!(server = %self.name(), error = %error, retry_in = ?delay, "upstream connection failed");
            self.publish(|v| {
                v.status = Status::Down;
                v.last_error = Some(error);
            });
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.wake_for_restart() => {}
                _ = shutdown.cancelled() => break,
            }
        }
        self.publish(|v| {
            v.status = Status::Stopped;
            v.session = None;
        });
    }

    /// Waits until a restart is explicitly requested (ignoring wake-ups about broken sessions,
    /// which mean nothing while there is no session).
    async fn wake_for_restart(&self) {
        loop {
            self.wake.notified().await;
            if self.restart_requested.load(Ordering::SeqCst) {
                return;
            }
        }
    }

    /// Runs while the session is healthy; returns why it must be replaced.
    async fn watch_session(&self, session: &Arc<Session>, shutdown: &CancellationToken) -> String {
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
                }
                _ = session.tools_changed.notified() => {
                    match session.list_tools(self.name()).await {
                        Ok(tools) => {
                            let identity = self.view().catalog.map(|c| c.server.clone()).unwrap_or_default();
                            let catalog = ToolCatalog::new(identity, tools, &self.config.disabled_tools);
                            tracing::info!(server = %self.name(), tools = catalog.tools().len(), "tool list changed");
                            self.publish(|v| v.catalog = Some(Arc::new(catalog)));
                        }
                        Err(e) => tracing::warn!(server = %self.name(), error = %e, "could not refresh the tool list"),
                    }
                }
                _ = shutdown.cancelled() => return "shutting down".into(),
            }
        }
    }
}

/// Exponential backoff with full jitter: a random delay between zero and
/// `min(BACKOFF_MAX, BACKOFF_BASE * 2^(failures-1))`, so that many proxies (or pool members)
/// restarting together do not retry in lockstep.
pub fn backoff_delay(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    let ceiling = BACKOFF_BASE.saturating_mul(1u32 << exp).min(BACKOFF_MAX);
    let millis = ceiling.as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(0..=millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for failures in 1u32..40 {
            let ceiling = BACKOFF_BASE
                .saturating_mul(1 << failures.saturating_sub(1).min(16))
                .min(BACKOFF_MAX);
            for _ in 0..20 {
                assert!(backoff_delay(failures) <= ceiling);
            }
        }
        // Full jitter spreads the delays instead of repeating one value.
        let samples: std::collections::BTreeSet<_> = (0..50).map(|_| backoff_delay(10)).collect();
        assert!(samples.len() > 5);
    }
}
