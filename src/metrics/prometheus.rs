//! The registry in the Prometheus text exposition (and OpenMetrics), through the
//! `prometheus-client` crate: a collector encodes the same numbers the JSON view reads, plus a
//! snapshot of the live gauges that the caller takes from the upstreams and the monitor.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{Metrics, RequestClass};

/// One server's present state, read at scrape time.
#[derive(Debug, Clone, Default)]
pub struct ServerLive {
    pub name: String,
    /// 1 when the server serves calls now.
    pub up: bool,
    pub pool_size: usize,
    pub in_flight: usize,
    /// 0 closed, 1 open, 2 half-open.
    pub breaker_state: u8,
    pub breaker_opened: u64,
    pub restarts: u64,
    /// Resident memory of the server's child processes, when sampled.
    pub children_rss_bytes: Option<u64>,
}

/// The process and the machine, when the monitor samples them.
#[derive(Debug, Clone, Default)]
pub struct SystemLive {
    pub process_cpu_percent: f64,
    pub process_rss_bytes: u64,
    pub system_cpu_percent: f64,
    pub system_memory_percent: f64,
}

/// Everything a scrape shows besides the registry's counters.
#[derive(Debug, Clone, Default)]
pub struct Live {
    pub servers: Vec<ServerLive>,
    pub system: Option<SystemLive>,
    pub errors_last_hour: u64,
    pub error_rate: f64,
    pub recovery_success_rate: f64,
    pub active_alerts: usize,
}

#[derive(Debug)]
struct Scrape {
    metrics: Arc<Metrics>,
    live: Live,
}

/// Encodes the registry and `live`: Prometheus text 0.0.4, or OpenMetrics when `openmetrics`.
pub fn encode(metrics: &Arc<Metrics>, live: Live, openmetrics: bool) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape {
        metrics: metrics.clone(),
        live,
    }));
    let mut out = String::new();
    let result = if openmetrics {
        prometheus_client::encoding::text::encode(&mut out, &registry)
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "cannot encode the Prometheus exposition");
    }
    out
}

type Labels<'a, const N: usize> = [(&'static str, &'a str); N];

fn counter<const N: usize>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(Labels<'_, N>, f64)],
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in values {
        m.encode_family(labels)?
            .encode_counter::<NoLabelSet, _, f64>(v, None)?;
    }
    Ok(())
}

fn gauge<const N: usize>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(Labels<'_, N>, f64)],
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in values {
        m.encode_family(labels)?.encode_gauge(v)?;
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let servers = self.metrics.servers();
        // Requests by outcome class, per server and tool.
        let mut requests = Vec::new();
        let mut tools_of = Vec::new();
        for s in &servers {
            let tools = s.tools();
            for (tool, t) in &tools {
                for class in RequestClass::all() {
                    let n = t.count(class);
                    if n > 0 {
                        requests.push(((s.name.clone(), tool.clone(), class.label()), n as f64));
                    }
                }
            }
            tools_of.push((s.clone(), tools));
        }
        {
            let mut m = encoder.encode_descriptor(
                "mcpo_requests",
                "Tool calls answered by the proxy, by server, tool and outcome class",
                None,
                MetricType::Counter,
            )?;
            for ((server, tool, class), n) in &requests {
                let labels = [
                    ("server", server.as_str()),
                    ("tool", tool.as_str()),
                    ("class", class),
                ];
                m.encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, f64>(n, None)?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "mcpo_request_duration_seconds",
                "End-to-end duration of tool calls, by server and tool",
                None,
                MetricType::Histogram,
            )?;
            for (s, tools) in &tools_of {
                for (tool, t) in tools {
                    let labels = [("server", s.name.as_str()), ("tool", tool.as_str())];
                    m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                        t.latency.sum_secs(),
                        t.latency.count(),
                        &t.latency.cumulative(),
                        None,
                    )?;
                }
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "mcpo_pool_wait_seconds",
                "Time calls waited for a ready pool member, by server",
                None,
                MetricType::Histogram,
            )?;
            for s in &servers {
                m.encode_family(&[("server", s.name.as_str())])?
                    .encode_histogram::<NoLabelSet>(
                        s.pool_wait.sum_secs(),
                        s.pool_wait.count(),
                        &s.pool_wait.cumulative(),
                        None,
                    )?;
            }
        }
        let per_server = |f: &dyn Fn(&super::ServerMetrics) -> f64| -> Vec<(Labels<'_, 1>, f64)> {
            servers
                .iter()
                .map(|s| ([("server", s.name.as_str())], f(s)))
                .collect()
        };
        counter(
            &mut encoder,
            "mcpo_retries",
            "Calls sent again after a failure, by server",
            &per_server(&|s| s.retries() as f64),
        )?;
        counter(
            &mut encoder,
            "mcpo_cache_hits",
            "Tool calls answered from the result cache, by server",
            &per_server(&|s| s.cache().0 as f64),
        )?;
        counter(
            &mut encoder,
            "mcpo_cache_misses",
            "Cacheable tool calls that went upstream, by server",
            &per_server(&|s| s.cache().1 as f64),
        )?;
        counter(
            &mut encoder,
            "mcpo_recovery_episodes",
            "Times a server went from healthy to failing, by server",
            &per_server(&|s| s.episodes().total() as f64),
        )?;
        let live = &self.live;
        let by_server = |f: &dyn Fn(&ServerLive) -> f64| -> Vec<(Labels<'_, 1>, f64)> {
            live.servers
                .iter()
                .map(|s| ([("server", s.name.as_str())], f(s)))
                .collect()
        };
        counter(
            &mut encoder,
            "mcpo_breaker_opened",
            "Times the circuit breaker opened, by server",
            &by_server(&|s| s.breaker_opened as f64),
        )?;
        counter(
            &mut encoder,
            "mcpo_restarts",
            "Upstream sessions replaced (children restarted), by server",
            &by_server(&|s| s.restarts as f64),
        )?;
        gauge(
            &mut encoder,
            "mcpo_server_up",
            "1 when the server serves calls now",
            &by_server(&|s| f64::from(u8::from(s.up))),
        )?;
        gauge(
            &mut encoder,
            "mcpo_breaker_state",
            "Circuit breaker: 0 closed, 1 open, 2 half-open",
            &by_server(&|s| f64::from(s.breaker_state)),
        )?;
        gauge(
            &mut encoder,
            "mcpo_pool_size",
            "Pool members (sessions) per server",
            &by_server(&|s| s.pool_size as f64),
        )?;
        gauge(
            &mut encoder,
            "mcpo_in_flight",
            "Tool calls in flight per server",
            &by_server(&|s| s.in_flight as f64),
        )?;
        let children: Vec<(Labels<'_, 1>, f64)> = live
            .servers
            .iter()
            .filter_map(|s| Some(([("server", s.name.as_str())], s.children_rss_bytes? as f64)))
            .collect();
        if !children.is_empty() {
            gauge(
                &mut encoder,
                "mcpo_child_resident_memory_bytes",
                "Resident memory of a server's child processes",
                &children,
            )?;
        }
        gauge(
            &mut encoder,
            "mcpo_errors_last_hour",
            "Failed tool calls in the last hour (sliding window)",
            &[([], live.errors_last_hour as f64)],
        )?;
        gauge(
            &mut encoder,
            "mcpo_error_rate",
            "Share of tool calls that failed over the monitor's window",
            &[([], live.error_rate)],
        )?;
        gauge(
            &mut encoder,
            "mcpo_recovery_success_rate",
            "Share of the last hour's recovery episodes that ended within the target",
            &[([], live.recovery_success_rate)],
        )?;
        gauge(
            &mut encoder,
            "mcpo_active_alerts",
            "Monitor alerts raised and not cleared",
            &[([], live.active_alerts as f64)],
        )?;
        if let Some(sys) = &live.system {
            gauge(
                &mut encoder,
                "mcpo_process_cpu_percent",
                "CPU use of the proxy process (percent of one core)",
                &[([], sys.process_cpu_percent)],
            )?;
            gauge(
                &mut encoder,
                "mcpo_process_resident_memory_bytes",
                "Resident memory of the proxy process",
                &[([], sys.process_rss_bytes as f64)],
            )?;
            gauge(
                &mut encoder,
                "mcpo_system_cpu_percent",
                "CPU use of the whole machine",
                &[([], sys.system_cpu_percent)],
            )?;
            gauge(
                &mut encoder,
                "mcpo_system_memory_percent",
                "Memory use of the whole machine",
                &[([], sys.system_memory_percent)],
            )?;
        }
        gauge(
            &mut encoder,
            "mcpo_uptime_seconds",
            "Seconds since the proxy started",
            &[([], self.metrics.started.elapsed().as_secs_f64())],
        )?;
        for (collector, values) in self.metrics.custom() {
            for v in values {
                let name = format!("mcpo_custom_{}_{}", sanitize(&collector), sanitize(&v.name));
                let mut m = encoder.encode_descriptor(
                    &name,
                    &v.help,
                    None,
                    if v.counter {
                        MetricType::Counter
                    } else {
                        MetricType::Gauge
                    },
                )?;
                let labels: Vec<(String, String)> = v.labels.clone();
                let mut f = m.encode_family(&labels)?;
                if v.counter {
                    f.encode_counter::<NoLabelSet, _, f64>(&v.value, None)?;
                } else {
                    f.encode_gauge(&v.value)?;
                }
            }
        }
        Ok(())
    }
}

/// A metric name part of `[a-z0-9_]`.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn exposition_has_the_counters_and_histograms() {
        let m = Metrics::new(["a"], true, Duration::from_secs(10));
        let a = m.server("a").unwrap();
        a.record_request("echo", RequestClass::Success, Duration::from_millis(3));
        a.record_request("echo", RequestClass::Success, Duration::from_millis(3));
        let text = encode(
            &m,
            Live {
                servers: vec![ServerLive {
                    name: "a".into(),
                    up: true,
                    ..ServerLive::default()
                }],
                ..Live::default()
            },
            false,
        );
        assert!(
            text.contains(r#"mcpo_requests_total{server="a",tool="echo",class="success"} 2"#),
            "{text}"
        );
        assert!(
            text.contains("mcpo_request_duration_seconds_bucket"),
            "{text}"
        );
        assert!(text.contains(r#"mcpo_server_up{server="a"} 1"#), "{text}");
    }
}
