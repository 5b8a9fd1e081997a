//! What the proxy did, counted once: the one registry that `/metrics` (JSON and Prometheus),
//! `/diagnostics`, the status page and the monitor's alerts all read, so they cannot disagree.
//!
//! Per server and tool: requests by outcome class, end-to-end latency (histogram, seconds);
//! per server: retries, the time calls waited for a pool member, cache hits and misses, a
//! sliding window of the last hour (requests, errors, latency in 5 s slots) and the recovery
//! episodes. Gauges that describe the present (pool size, calls in flight, breaker state,
//! restarts) are read from the upstreams when a view is rendered, not copied here.
//!
//! Series exist only for servers of the config and tools they list: an unknown route never
//! creates one, so the label sets stay bounded.
//!
//! Architecture invariant: this module imports only `failure`; `http` and `upstream` record
//! into it.

pub mod episodes;
pub mod histogram;
pub mod prometheus;
pub mod window;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use strum::IntoEnumIterator as _;
use tokio::time::Instant;

use crate::failure::FailureClass;
pub use episodes::{Episode, Episodes};
pub use histogram::Histogram;
pub use window::Window;

/// How one request ended, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestClass {
    Success,
    /// The proxy refused the request itself (invalid body, too large, shed): the client's
    /// doing or load shedding, not the server's health.
    Invalid,
    Failure(FailureClass),
}

impl RequestClass {
    pub fn label(self) -> &'static str {
        match self {
            RequestClass::Success => "success",
            RequestClass::Invalid => "invalid",
            RequestClass::Failure(class) => class.into(),
        }
    }

    /// Whether it counts as an error in error rates: anything but a success or the client's
    /// own mistake.
    pub fn is_error(self) -> bool {
        !matches!(self, RequestClass::Success | RequestClass::Invalid)
    }

    /// Every class, in a fixed order (the index of each in [`RequestClass::index`]).
    pub fn all() -> impl Iterator<Item = RequestClass> {
        [RequestClass::Success, RequestClass::Invalid]
            .into_iter()
            .chain(FailureClass::iter().map(RequestClass::Failure))
    }

    fn index(self) -> usize {
        match self {
            RequestClass::Success => 0,
            RequestClass::Invalid => 1,
            RequestClass::Failure(class) => 2 + class as usize,
        }
    }
}

/// Number of request classes.
const CLASSES: usize = 2 + FAILURE_CLASSES;
const FAILURE_CLASSES: usize = 11;

/// Counts of one tool.
#[derive(Debug, Default)]
pub struct ToolMetrics {
    classes: [AtomicU64; CLASSES],
    pub latency: Histogram,
}

impl ToolMetrics {
    pub fn requests(&self) -> u64 {
        self.classes.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    pub fn count(&self, class: RequestClass) -> u64 {
        self.classes[class.index()].load(Ordering::Relaxed)
    }
}

/// Everything counted for one server.
#[derive(Debug)]
pub struct ServerMetrics {
    pub name: String,
    tools: RwLock<HashMap<String, Arc<ToolMetrics>>>,
    window: Mutex<Window>,
    retries: AtomicU64,
    pub pool_wait: Histogram,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    /// Set while an episode is open, so that successes need no lock on the common path.
    failing: AtomicBool,
    episodes: Mutex<Episodes>,
}

impl ServerMetrics {
    fn new(name: &str, start: Instant) -> Self {
        ServerMetrics {
            name: name.to_string(),
            tools: RwLock::new(HashMap::new()),
            window: Mutex::new(Window::new(start)),
            retries: AtomicU64::new(0),
            pool_wait: Histogram::default(),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            episodes: Mutex::new(Episodes::default()),
        }
    }

    fn tool(&self, tool: &str) -> Option<Arc<ToolMetrics>> {
        if let Some(t) = self.tools.read().ok()?.get(tool) {
            return Some(t.clone());
        }
        let mut tools = self.tools.write().ok()?;
        Some(tools.entry(tool.to_string()).or_default().clone())
    }

    /// Counts one request to `tool` (a tool the server lists; callers never pass unknown
    /// routes) that ended as `class` after `latency`.
    pub fn record_request(&self, tool: &str, class: RequestClass, latency: Duration) {
        if let Some(t) = self.tool(tool) {
            t.classes[class.index()].fetch_add(1, Ordering::Relaxed);
            t.latency.record(latency);
        }
        if let Ok(mut w) = self.window.lock() {
            w.record(Instant::now(), class.is_error(), latency);
        }
    }

    pub fn record_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    pub fn record_cache(&self, hit: bool) {
        let counter = if hit {
            &self.cache_hits
        } else {
            &self.cache_misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// (hits, misses) since start.
    pub fn cache(&self) -> (u64, u64) {
        (
            self.cache_hits.load(Ordering::Relaxed),
            self.cache_misses.load(Ordering::Relaxed),
        )
    }

    /// The server went from healthy to failing (a session died, a call failed for a reason
    /// that counts against it, the breaker opened): opens an episode unless one is open.
    pub fn mark_failing(&self, reason: &str) {
        if self.failing.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Ok(mut e) = self.episodes.lock() {
            e.open(reason);
        }
    }

    /// A call succeeded: ends the open episode, if any.
    pub fn mark_success(&self) {
        if !self.failing.load(Ordering::Relaxed) {
            return;
        }
        if self.failing.swap(false, Ordering::SeqCst)
            && let Ok(mut e) = self.episodes.lock()
        {
            e.close();
        }
    }

    /// A copy of the recovery episodes.
    pub fn episodes(&self) -> Episodes {
        self.episodes.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Each tool's counts, by name.
    pub fn tools(&self) -> Vec<(String, Arc<ToolMetrics>)> {
        let mut tools: Vec<_> = self
            .tools
            .read()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        tools.sort_by(|a, b| a.0.cmp(&b.0));
        tools
    }

    /// Totals of the sliding window over the last `span`.
    pub fn recent(&self, span: Duration) -> window::Totals {
        self.window
            .lock()
            .map(|w| w.totals(Instant::now(), span))
            .unwrap_or_default()
    }

    /// Chart points over the last `span`, `step` each.
    pub fn series(&self, span: Duration, step: Duration) -> Vec<window::Point> {
        self.window
            .lock()
            .map(|w| w.series(Instant::now(), span, step))
            .unwrap_or_default()
    }

    /// Requests since start (all tools, all classes).
    pub fn requests(&self) -> u64 {
        self.tools().iter().map(|(_, t)| t.requests()).sum()
    }
}

/// A value a library user adds to `/metrics` (under `custom`) and to the Prometheus output
/// (as `mcpo_custom_<collector>_<name>`).
#[derive(Debug, Clone, PartialEq)]
pub struct CustomMetric {
    pub name: String,
    pub help: String,
    /// Counters only go up; gauges go both ways.
    pub counter: bool,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// The extension point for metrics: register one with [`Metrics::register`] (or through
/// `serve::Extensions`) and its values appear in every view.
pub trait MetricsCollector: Send + Sync + 'static {
    /// A short name, `[a-z0-9_]`.
    fn name(&self) -> &str;
    /// The current values; called on every view of the metrics.
    fn collect(&self) -> Vec<CustomMetric>;
}

/// Servers by name, and the order to show them in.
type ServerSet = (HashMap<String, Arc<ServerMetrics>>, Vec<String>);

/// The registry.
pub struct Metrics {
    /// False: nothing is recorded (for measuring what recording costs).
    pub enabled: bool,
    pub started: Instant,
    /// An episode recovered within this counts toward the recovery success rate.
    pub recovery_target: Duration,
    /// Servers by name, and their order (the config's); a reload adds and removes them.
    servers: RwLock<ServerSet>,
    collectors: RwLock<Vec<Arc<dyn MetricsCollector>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("enabled", &self.enabled)
            .field("servers", &self.servers().len())
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry for these servers (the only ones it will ever count).
    pub fn new<'a>(
        servers: impl IntoIterator<Item = &'a str>,
        enabled: bool,
        recovery_target: Duration,
    ) -> Arc<Self> {
        let started = Instant::now();
        let order: Vec<String> = servers.into_iter().map(str::to_string).collect();
        let by_name = order
            .iter()
            .map(|n| (n.clone(), Arc::new(ServerMetrics::new(n, started))))
            .collect();
        Arc::new(Metrics {
            enabled,
            started,
            recovery_target,
            servers: RwLock::new((by_name, order)),
            collectors: RwLock::new(Vec::new()),
        })
    }

    /// The metrics of one configured server.
    pub fn server(&self, name: &str) -> Option<Arc<ServerMetrics>> {
        self.servers.read().ok()?.0.get(name).cloned()
    }

    /// The metrics of `name`, created if the server is new (a config reload added it).
    pub fn ensure_server(&self, name: &str) -> Arc<ServerMetrics> {
        if let Some(m) = self.server(name) {
            return m;
        }
        let fresh = Arc::new(ServerMetrics::new(name, Instant::now()));
        let Ok(mut servers) = self.servers.write() else {
            return fresh;
        };
        if let Some(m) = servers.0.get(name) {
            return m.clone();
        }
        servers.0.insert(name.to_string(), fresh.clone());
        servers.1.push(name.to_string());
        fresh
    }

    /// Forgets a server a reload removed: its series go with it.
    pub fn remove_server(&self, name: &str) {
        if let Ok(mut servers) = self.servers.write() {
            servers.0.remove(name);
            servers.1.retain(|n| n != name);
        }
    }

    /// Every server's metrics, in config order.
    pub fn servers(&self) -> Vec<Arc<ServerMetrics>> {
        self.servers
            .read()
            .map(|s| s.1.iter().filter_map(|n| s.0.get(n).cloned()).collect())
            .unwrap_or_default()
    }

    pub fn register(&self, collector: Arc<dyn MetricsCollector>) {
        if let Ok(mut c) = self.collectors.write() {
            c.push(collector);
        }
    }

    /// Every custom collector's values, by collector name.
    pub fn custom(&self) -> Vec<(String, Vec<CustomMetric>)> {
        self.collectors
            .read()
            .map(|c| {
                c.iter()
                    .map(|c| (c.name().to_string(), c.collect()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Totals of every server's window over the last `span`.
    pub fn recent(&self, span: Duration) -> window::Totals {
        let mut total = window::Totals::default();
        for s in self.servers() {
            let t = s.recent(span);
            total.requests += t.requests;
            total.errors += t.errors;
            for (a, b) in total.latency.iter_mut().zip(t.latency.iter()) {
                *a += b;
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_class_has_a_slot() {
        assert_eq!(FailureClass::iter().count(), FAILURE_CLASSES);
        let indexes: std::collections::HashSet<usize> =
            RequestClass::all().map(RequestClass::index).collect();
        assert_eq!(indexes.len(), CLASSES);
        assert!(indexes.iter().all(|&i| i < CLASSES));
    }

    #[tokio::test]
    async fn requests_and_episodes_are_counted_once() {
        let m = Metrics::new(["a"], true, Duration::from_secs(10));
        let a = m.server("a").unwrap();
        assert!(m.server("nope").is_none(), "unknown servers have no series");
        a.record_request("echo", RequestClass::Success, Duration::from_millis(2));
        a.record_request(
            "echo",
            RequestClass::Failure(FailureClass::Timeout),
            Duration::from_secs(2),
        );
        a.record_request("echo", RequestClass::Invalid, Duration::from_millis(1));
        let tools = a.tools();
        assert_eq!(tools.len(), 1);
        assert_eq!(tools[0].1.requests(), 3);
        assert_eq!(
            tools[0]
                .1
                .count(RequestClass::Failure(FailureClass::Timeout)),
            1
        );
        let recent = a.recent(Duration::from_secs(60));
        assert_eq!((recent.requests, recent.errors), (3, 1));
        a.mark_failing("the server process killed by signal 9");
        a.mark_failing("again, same episode");
        a.mark_success();
        a.mark_success();
        let e = a.episodes();
        assert_eq!(e.list().len(), 1);
        assert!(e.list()[0].duration().is_some());
    }
}
