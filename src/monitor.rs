//! The monitor: samples the proxy's own CPU and memory, the machine's, and each stdio child's,
//! every `interval`, and raises alerts when a threshold is crossed.
//!
//! An alert is logged once when it is raised and once when it clears, never once per sample,
//! and is listed (in `/metrics` `active_errors` and in `/diagnostics`) while it is active. The
//! error-rate and response-time alerts read the metrics registry over the last ten intervals
//! (five minutes by default), so they follow what clients see now.
//!
//! Architecture invariant: imports `metrics` only; the children to sample come from a closure
//! the caller provides.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Requests needed in the window before an error rate can raise an alert.
const MIN_REQUESTS: u64 = 5;

/// Thresholds and cadence, from the config file's `"monitor"` object and `MCPO_*` variables.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorSettings {
    pub enabled: bool,
    pub interval: Duration,
    /// Percent of the machine's CPU.
    pub cpu_usage_warning: f64,
    /// Percent of the machine's memory.
    pub memory_usage_warning: f64,
    /// Share of failed calls.
    pub error_rate_warning: f64,
    /// Seconds, mean response time.
    pub response_time_warning: f64,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        MonitorSettings {
            enabled: true,
            interval: Duration::from_secs(30),
            cpu_usage_warning: 70.0,
            memory_usage_warning: 80.0,
            error_rate_warning: 0.05,
            response_time_warning: 5.0,
        }
    }
}

impl MonitorSettings {
    /// The span over which error rate and response time are judged.
    pub fn window(&self) -> Duration {
        (self.interval * 10).max(Duration::from_secs(10))
    }
}

/// One child process's use.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildSample {
    pub server: String,
    pub pid: u32,
    pub rss_bytes: u64,
    pub cpu_percent: f64,
}

/// One look at the process and the machine.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sample {
    pub at_unix_ms: u64,
    /// Percent of one core.
    pub process_cpu_percent: f64,
    pub process_rss_bytes: u64,
    pub system_cpu_percent: f64,
    pub system_memory_percent: f64,
    pub children: Vec<ChildSample>,
    /// How long taking this sample took: the monitor's own cost.
    pub cost: Duration,
}

/// A threshold crossed.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// `cpu_usage`, `memory_usage`, `error_rate` or `response_time`.
    pub kind: &'static str,
    pub message: String,
    pub value: f64,
    pub threshold: f64,
    pub since_unix_ms: u64,
}

/// The monitor's state, read by the views.
#[derive(Debug)]
pub struct Monitor {
    pub settings: MonitorSettings,
    latest: RwLock<Option<Sample>>,
    alerts: Mutex<BTreeMap<&'static str, Alert>>,
    samples: std::sync::atomic::AtomicU64,
    cost_micros: std::sync::atomic::AtomicU64,
}

/// The stdio children to sample: (server, pid).
pub type Children = Box<dyn Fn() -> Vec<(String, u32)> + Send + Sync>;

impl Monitor {
    pub fn new(settings: MonitorSettings) -> Arc<Self> {
        Arc::new(Monitor {
            settings,
            latest: RwLock::new(None),
            alerts: Mutex::new(BTreeMap::new()),
            samples: Default::default(),
            cost_micros: Default::default(),
        })
    }

    pub fn latest(&self) -> Option<Sample> {
        self.latest.read().ok().and_then(|s| s.clone())
    }

    pub fn alerts(&self) -> Vec<Alert> {
        self.alerts
            .lock()
            .map(|a| a.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Samples taken and their total cost, for judging the monitor's own overhead.
    pub fn cost(&self) -> (u64, Duration) {
        use std::sync::atomic::Ordering;
        (
            self.samples.load(Ordering::Relaxed),
            Duration::from_micros(self.cost_micros.load(Ordering::Relaxed)),
        )
    }

    /// Samples and judges every interval until `stop`.
    pub async fn run(
        self: Arc<Self>,
        metrics: Arc<Metrics>,
        children: Children,
        stop: CancellationToken,
    ) {
        if !self.settings.enabled {
            return;
        }
        let system = match System::new() {
            Ok(s) => Arc::new(Mutex::new(s)),
            Err(e) => {
                tracing::warn!(error = %e, "the monitor cannot read system statistics; alerts on CPU and memory are off");
                return;
            }
        };
        let mut tick = tokio::time::interval(self.settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            let pids = children();
            let system = system.clone();
            let sample = tokio::task::spawn_blocking(move || take_sample(&system, pids))
                .await
                .ok()
                .flatten();
            if let Some(sample) = &sample {
                use std::sync::atomic::Ordering;
                self.samples.fetch_add(1, Ordering::Relaxed);
                self.cost_micros
                    .fetch_add(sample.cost.as_micros() as u64, Ordering::Relaxed);
            }
            if let Ok(mut latest) = self.latest.write() {
                latest.clone_from(&sample);
            }
            self.judge(sample.as_ref(), &metrics);
        }
    }

    /// Raises and clears alerts from the sample and the registry.
    pub fn judge(&self, sample: Option<&Sample>, metrics: &Metrics) {
        let s = &self.settings;
        let recent = metrics.recent(s.window());
        let mut readings: Vec<(&'static str, Option<f64>, f64, String)> = Vec::new();
        if let Some(sample) = sample {
            readings.push((
                "cpu_usage",
                Some(sample.system_cpu_percent),
                s.cpu_usage_warning,
                format!(
                    "CPU use {:.0}% (warning at {:.0}%)",
                    sample.system_cpu_percent, s.cpu_usage_warning
                ),
            ));
            readings.push((
                "memory_usage",
                Some(sample.system_memory_percent),
                s.memory_usage_warning,
                format!(
                    "memory use {:.0}% (warning at {:.0}%)",
                    sample.system_memory_percent, s.memory_usage_warning
                ),
            ));
        }
        let rate = (recent.requests >= MIN_REQUESTS).then(|| recent.error_rate());
        readings.push((
            "error_rate",
            rate,
            s.error_rate_warning,
            format!(
                "{:.1}% of the last {:.0}s's {} calls failed (warning at {:.1}%)",
                rate.unwrap_or(0.0) * 100.0,
                s.window().as_secs_f64(),
                recent.requests,
                s.error_rate_warning * 100.0
            ),
        ));
        let mean = (recent.requests > 0).then(|| {
            // The window keeps buckets, not sums: the mean of bucket midpoints is close enough
            // to judge a threshold of seconds.
            mean_of_buckets(&recent.latency)
        });
        readings.push((
            "response_time",
            mean,
            s.response_time_warning,
            format!(
                "mean response time {:.2}s over the last {:.0}s (warning at {:.1}s)",
                mean.unwrap_or(0.0),
                s.window().as_secs_f64(),
                s.response_time_warning
            ),
        ));
        let Ok(mut alerts) = self.alerts.lock() else {
            return;
        };
        for (kind, value, threshold, message) in readings {
            let over = value.is_some_and(|v| v > threshold);
            match (over, alerts.contains_key(kind)) {
                (true, false) => {
                    tracing::warn!(alert = kind, %message, "alert raised");
                    alerts.insert(
                        kind,
                        Alert {
                            kind,
                            message,
                            value: value.unwrap_or(0.0),
                            threshold,
                            since_unix_ms: unix_ms(),
                        },
                    );
                }
                (true, true) => {
                    if let Some(a) = alerts.get_mut(kind) {
                        a.value = value.unwrap_or(a.value);
                        a.message = message;
                    }
                }
                (false, true) => {
                    // An error-rate alert with too few calls to judge stays as it is.
                    if value.is_none() && kind == "error_rate" && recent.requests > 0 {
                        continue;
                    }
                    alerts.remove(kind);
                    tracing::info!(alert = kind, "alert cleared");
                }
                (false, false) => {}
            }
        }
    }
}

fn mean_of_buckets(counts: &[u64]) -> f64 {
    use crate::metrics::histogram::BOUNDS;
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let mut sum = 0.0;
    for (i, &c) in counts.iter().enumerate() {
        let lower = if i == 0 { 0.0 } else { BOUNDS[i - 1] };
        let upper = BOUNDS.get(i).copied().unwrap_or(lower * 2.0);
        sum += c as f64 * (lower + upper) / 2.0;
    }
    sum / total as f64
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn take_sample(system: &Mutex<System>, children: Vec<(String, u32)>) -> Option<Sample> {
    let started = Instant::now();
    let mut system = system.lock().ok()?;
    let me = Pid::from_u32(std::process::id());
    let mut pids: Vec<Pid> = children.iter().map(|(_, p)| Pid::from_u32(*p)).collect();
    pids.push(me);
    system.refresh_cpu_usage();
    system.refresh_memory();
    system.refresh_processes_specifics(
        ProcessesToUpdate::Some(&pids),
        true,
        ProcessRefreshKind::nothing().with_cpu().with_memory(),
    );
    let own = system.process(me);
    let total = system.total_memory().max(1);
    let sample = Sample {
        at_unix_ms: unix_ms(),
        process_cpu_percent: own.map_or(0.0, |p| f64::from(p.cpu_usage())),
        process_rss_bytes: own.map_or(0, |p| p.memory()),
        system_cpu_percent: f64::from(system.global_cpu_usage()),
        system_memory_percent: system.used_memory() as f64 * 100.0 / total as f64,
        children: children
            .into_iter()
            .filter_map(|(server, pid)| {
                let p = system.process(Pid::from_u32(pid))?;
                Some(ChildSample {
                    server,
                    pid,
                    rss_bytes: p.memory(),
                    cpu_percent: f64::from(p.cpu_usage()),
                })
            })
            .collect(),
        cost: started.elapsed(),
    };
    Some(sample)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::FailureClass;
    use crate::metrics::RequestClass;

    #[tokio::test]
    async fn error_rate_alert_is_raised_once_and_cleared_once() {
        let metrics = Metrics::new(["a"], true, Duration::from_secs(10));
        let monitor = Monitor::new(MonitorSettings {
            interval: Duration::from_secs(1),
            ..MonitorSettings::default()
        });
        let a = metrics.server("a").unwrap();
        for _ in 0..10 {
            a.record_request(
                "echo",
                RequestClass::Failure(FailureClass::HttpStatus),
                Duration::from_millis(5),
            );
        }
        monitor.judge(None, &metrics);
        monitor.judge(None, &metrics);
        let alerts = monitor.alerts();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].kind, "error_rate");
        assert!(
            alerts[0].message.contains("100.0%"),
            "{}",
            alerts[0].message
        );
        // Errors drowned by successes: cleared.
        for _ in 0..400 {
            a.record_request("echo", RequestClass::Success, Duration::from_millis(5));
        }
        monitor.judge(None, &metrics);
        assert!(monitor.alerts().is_empty());
    }

    #[test]
    fn a_sample_reads_this_process() {
        let system = Mutex::new(System::new().unwrap());
        let s = take_sample(&system, vec![("me".into(), std::process::id())]).unwrap();
        assert!(s.process_rss_bytes > 0);
        assert!(s.system_memory_percent > 0.0 && s.system_memory_percent <= 100.0);
        assert_eq!(s.children.len(), 1);
    }
}
