//! The set of upstream servers the proxy runs, which a config reload may change while calls
//! are in flight.
//!
//! Handlers read one immutable [`FleetView`] per request (an `Arc` swap, no lock held across
//! a call), so a call keeps the upstream it started on even if that server is removed or
//! replaced meanwhile. [`Fleet::apply`] brings the running set to a new list of servers:
//! added ones are started, removed ones stop taking calls at once and are stopped once their
//! calls in flight are done (each let run to its own deadline; see `retire`), changed ones are replaced the same
//! way, and unchanged ones are not touched at all (same sessions, same children).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Upstream, UpstreamSettings};
use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::recovery::RecoveryPolicy;

/// The servers serving now.
#[derive(Debug, Default)]
pub struct FleetView {
    pub upstreams: Vec<Arc<Upstream>>,
    by_name: HashMap<String, Arc<Upstream>>,
}

impl FleetView {
    fn new(upstreams: Vec<Arc<Upstream>>) -> Self {
        let by_name = upstreams
            .iter()
            .map(|u| (u.name().to_string(), u.clone()))
            .collect();
        FleetView { upstreams, by_name }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.by_name.get(name)
    }
}

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
}

struct Running {
    set: JoinSet<()>,
    /// The stop token of each running upstream, by the upstream's address.
    tokens: HashMap<usize, CancellationToken>,
}

/// How long past a call's deadline a retired server waits for its answer.
const RETIRE_GRACE: Duration = Duration::from_secs(1);

/// The running upstreams and their supervisors.
pub struct Fleet {
    current: RwLock<Arc<FleetView>>,
    running: tokio::sync::Mutex<Running>,
    settings: UpstreamSettings,
    policy: RecoveryPolicy,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    drain: Duration,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("servers", &self.view().upstreams.len())
            .finish_non_exhaustive()
    }
}

fn key(u: &Arc<Upstream>) -> usize {
    Arc::as_ptr(u) as usize
}

impl Fleet {
    /// Starts a supervisor for each server. `stop` ends them all (shutdown).
    pub fn start(
        servers: &[ServerConfig],
        settings: UpstreamSettings,
        policy: RecoveryPolicy,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
        drain: Duration,
    ) -> Arc<Fleet> {
        let fleet = Arc::new(Fleet {
            current: RwLock::new(Arc::new(FleetView::default())),
            running: tokio::sync::Mutex::new(Running {
                set: JoinSet::new(),
                tokens: HashMap::new(),
            }),
            settings,
            policy,
            metrics,
            stop,
            drain,
        });
        let mut running = Running {
            set: JoinSet::new(),
            tokens: HashMap::new(),
        };
        let upstreams = servers
            .iter()
            .map(|s| fleet.launch(s, &mut running))
            .collect();
        if let Ok(mut r) = fleet.running.try_lock() {
            *r = running;
        }
        fleet.publish(upstreams);
        fleet
    }

    /// The servers serving now.
    pub fn view(&self) -> Arc<FleetView> {
        self.current.read().map(|v| v.clone()).unwrap_or_default()
    }

    fn publish(&self, upstreams: Vec<Arc<Upstream>>) {
        if let Ok(mut current) = self.current.write() {
            *current = Arc::new(FleetView::new(upstreams));
        }
    }

    fn launch(&self, server: &ServerConfig, running: &mut Running) -> Arc<Upstream> {
        let metrics = self
            .metrics
            .enabled
            .then(|| self.metrics.ensure_server(&server.name));
        let upstream = Upstream::new(
            server.clone(),
            self.settings.clone(),
            self.policy.clone(),
            metrics,
        );
        let token = self.stop.child_token();
        running.tokens.insert(key(&upstream), token.clone());
        running.set.spawn(upstream.clone().run(token));
        upstream
    }

    /// Stops `upstream` once its calls in flight are done. A call in flight on a removed or
    /// replaced server has its own deadline, which it is let run to: the drain timeout is for
    /// shutdown, when the whole process must end; a reload ends nothing a client is owed. So
    /// the wait is bounded by the longest any call may still run (the server's deadline, with a
    /// second's grace for the answer to arrive), or the drain timeout if that is longer.
    fn retire(&self, upstream: Arc<Upstream>, running: &mut Running) {
        let Some(token) = running.tokens.remove(&key(&upstream)) else {
            return;
        };
        let bound = self
            .drain
            .max(upstream.longest_call().saturating_add(RETIRE_GRACE));
        running.set.spawn(async move {
            let deadline = tokio::time::Instant::now() + bound;
            // A call's end is not an event the pool publishes; look every 50 ms.
            // A shutdown (the parent token) ends the wait: the drain timeout governs then.
            while upstream.in_flight() > 0
                && tokio::time::Instant::now() < deadline
                && !token.is_cancelled()
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            token.cancel();
        });
    }

    /// Brings the running set to `servers` (see the module doc).
    pub async fn apply(&self, servers: &[ServerConfig]) -> ReloadSummary {
        let mut running = self.running.lock().await;
        // Finished tasks (retired upstreams) are collected as we go.
        while running.set.try_join_next().is_some() {}
        let old = self.view();
        let mut summary = ReloadSummary::default();
        let mut next = Vec::with_capacity(servers.len());
        for server in servers {
            match old.get(&server.name) {
                Some(u) if u.config() == server => {
                    summary.unchanged.push(server.name.clone());
                    next.push(u.clone());
                }
                Some(u) => {
                    summary.changed.push(server.name.clone());
                    self.retire(u.clone(), &mut running);
                    next.push(self.launch(server, &mut running));
                }
                None => {
                    summary.added.push(server.name.clone());
                    next.push(self.launch(server, &mut running));
                }
            }
        }
        for u in &old.upstreams {
            if !servers.iter().any(|s| s.name == u.name()) {
                summary.removed.push(u.name().to_string());
                self.retire(u.clone(), &mut running);
                self.metrics.remove_server(u.name());
            }
        }
        self.publish(next);
        summary
    }

    /// Waits for every supervisor to stop after `stop` was cancelled; aborts the ones still
    /// running after `grace`. Returns false when some had to be aborted.
    pub async fn stopped(&self, grace: Duration) -> bool {
        let mut running = self.running.lock().await;
        let all = async { while running.set.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all).await.is_ok() {
            return true;
        }
        running.set.abort_all();
        while running.set.join_next().await.is_some() {}
        false
    }
}
