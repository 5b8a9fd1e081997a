//! `GET /metrics` (the improved-mcpo guide's JSON, or the Prometheus exposition), `GET /healthz`
//! and `GET /readyz`. Every number is read from the one registry (`crate::metrics`) and the
//! live state of the upstreams; nothing is estimated.
//!
//! Definitions (also in docs/observability.md):
//! - `avg_response_time`: mean end-to-end seconds since start; `p50`/`p95`/`p99`: over the
//!   last hour;
//! - `total_requests`: tool calls answered since start; `cache_hit_rate`: hits / (hits + misses)
//!   of cacheable calls since start (1.0 when nothing is cacheable);
//! - `total_errors_last_hour`: failed calls in the last hour (sliding window; a failure is
//!   anything but a success or a request the proxy refused as invalid);
//! - `error_rate`: failed / all calls over the monitor's window (ten intervals, 5 min by
//!   default);
//! - a recovery episode starts when a server goes from healthy to failing (its session died, a
//!   call failed for a reason that counts against it, or its breaker opened) and ends at its
//!   next successful call; `recovery_success_rate` is the share of episodes started in the last
//!   hour that ended within `MCPO_RECOVERY_TARGET` (10 s); open ones younger than that are not
//!   counted yet.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use crate::metrics::episodes::{Episodes, RecoveryRate};
use crate::metrics::prometheus::{self, Live, ServerLive, SystemLive};
use crate::metrics::{RequestClass, ServerMetrics};
use crate::recovery::BreakerState;
use crate::upstream::{Status, Upstream};

const HOUR: Duration = Duration::from_secs(3600);

/// The whole proxy's health, from its servers and alerts.
pub fn overall_status(state: &AppState) -> &'static str {
    let (mut ready, mut down) = (0, 0);
    for u in &state.upstreams() {
        match u.view().status {
            Status::Ready => ready += 1,
            Status::Down | Status::Stopped => down += 1,
            _ => {}
        }
    }
    let n = state.upstreams().len();
    if n > 0 && down == n {
        "unhealthy"
    } else if ready == n && state.monitor.alerts().is_empty() {
        "healthy"
    } else {
        "degraded"
    }
}

/// The recovery success rate over every server.
pub fn recovery_rate(state: &AppState) -> RecoveryRate {
    state
        .metrics
        .servers()
        .iter()
        .map(|s| s.episodes().recovery_rate(state.metrics.recovery_target))
        .fold(
            RecoveryRate {
                rate: 1.0,
                recovered: 0,
                decided: 0,
                open: 0,
            },
            Episodes::merge_rate,
        )
}

fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn breaker_code(b: BreakerState) -> u8 {
    match b {
        BreakerState::Closed => 0,
        BreakerState::Open => 1,
        BreakerState::HalfOpen => 2,
    }
}

fn server_live(u: &Upstream, state: &AppState) -> ServerLive {
    let view = u.view();
    let children_rss = state.monitor.latest().map(|s| {
        s.children
            .iter()
            .filter(|c| c.server == u.name())
            .map(|c| c.rss_bytes)
            .sum()
    });
    ServerLive {
        name: u.name().to_string(),
        up: view.status == Status::Ready,
        pool_size: view.members,
        in_flight: u.in_flight(),
        breaker_state: breaker_code(view.breaker),
        breaker_opened: view.breaker_trips,
        restarts: view.restarts,
        children_rss_bytes: children_rss,
    }
}

/// What the monitor window says now: (errors in the last hour, error rate).
fn error_figures(state: &AppState) -> (u64, f64) {
    let hour = state.metrics.recent(HOUR);
    let window = state.metrics.recent(state.monitor.settings.window());
    (hour.errors, window.error_rate())
}

/// The snapshot the Prometheus view adds to the registry.
fn live(state: &AppState) -> Live {
    let (errors_last_hour, error_rate) = error_figures(state);
    Live {
        servers: state
            .upstreams()
            .iter()
            .map(|u| server_live(u, state))
            .collect(),
        system: state.monitor.latest().map(|s| SystemLive {
            process_cpu_percent: s.process_cpu_percent,
            process_rss_bytes: s.process_rss_bytes,
            system_cpu_percent: s.system_cpu_percent,
            system_memory_percent: s.system_memory_percent,
        }),
        errors_last_hour,
        error_rate,
        recovery_success_rate: recovery_rate(state).rate,
        active_alerts: state.monitor.alerts().len(),
    }
}

fn percentiles(counts: &[u64]) -> Value {
    let q = |p: f64| crate::metrics::histogram::quantile(counts, p).map(round);
    json!({"p50": q(0.5), "p95": q(0.95), "p99": q(0.99)})
}

fn episodes_json(m: &ServerMetrics, target: Duration) -> Value {
    let e = m.episodes();
    let rate = e.recovery_rate(target);
    let recent: Vec<Value> = e
        .list()
        .iter()
        .rev()
        .take(20)
        .map(|ep| {
            json!({
                "started_unix_ms": ep.started_unix_ms,
                "reason": ep.reason,
                "duration_seconds": ep.duration().map(|d| round(d.as_secs_f64())),
                "ended": ep.ended.is_some(),
            })
        })
        .collect();
    json!({
        "total": e.total(),
        "last_hour": {"recovered_within_target": rate.recovered, "decided": rate.decided, "open": rate.open},
        "recovery_success_rate": round(rate.rate),
        "recent": recent,
    })
}

fn server_json(state: &AppState, u: &Upstream, history: bool) -> Value {
    let Some(m) = state.metrics.server(u.name()) else {
        return json!({});
    };
    let live = server_live(u, state);
    let hour = m.recent(HOUR);
    let window = m.recent(state.monitor.settings.window());
    let (hits, misses) = m.cache();
    let mut tools = serde_json::Map::new();
    for (name, t) in m.tools() {
        let mut outcomes = serde_json::Map::new();
        for class in RequestClass::all() {
            let n = t.count(class);
            if n > 0 {
                outcomes.insert(class.label().to_string(), json!(n));
            }
        }
        let counts = t.latency.counts();
        let mean = if t.latency.count() == 0 {
            0.0
        } else {
            t.latency.sum_secs() / t.latency.count() as f64
        };
        tools.insert(
            name,
            json!({
                "requests": t.requests(),
                "outcomes": outcomes,
                "avg_response_time": round(mean),
                "latency": percentiles(&counts),
            }),
        );
    }
    let view = u.view();
    let mut out = json!({
        "status": view.status.as_str(),
        "requests": m.requests(),
        "requests_last_hour": hour.requests,
        "errors_last_hour": hour.errors,
        "error_rate": round(window.error_rate()),
        "latency_last_hour": percentiles(&hour.latency),
        "retries": m.retries(),
        "restarts": live.restarts,
        "breaker": view.breaker.as_str(),
        "breaker_opened": live.breaker_opened,
        "pool": {
            "size": live.pool_size,
            "in_flight": live.in_flight,
            "wait_seconds": percentiles(&m.pool_wait.counts()),
        },
        "cache": {"hits": hits, "misses": misses},
        "episodes": episodes_json(&m, state.metrics.recovery_target),
        "tools": tools,
    });
    if let Some(rss) = live.children_rss_bytes {
        out["children_rss_bytes"] = json!(rss);
    }
    if history {
        let points: Vec<Value> = m
            .series(Duration::from_secs(900), Duration::from_secs(15))
            .iter()
            .map(|p| {
                json!({
                    "ago_seconds": p.ago_secs,
                    "requests": p.totals.requests,
                    "errors": p.totals.errors,
                    "p50": p.totals.quantile(0.5).map(round),
                    "p99": p.totals.quantile(0.99).map(round),
                })
            })
            .collect();
        out["history"] = json!({"step_seconds": 15, "points": points});
    }
    out
}

/// The guide's JSON, with per-server detail.
pub fn metrics_json(state: &AppState, history: bool) -> Value {
    let metrics = &state.metrics;
    let hour = metrics.recent(HOUR);
    let total_requests: u64 = metrics.servers().iter().map(|s| s.requests()).sum();
    let (hits, misses) = metrics.servers().iter().fold((0, 0), |(h, m), s| {
        let (a, b) = s.cache();
        (h + a, m + b)
    });
    let cache_hit_rate = if hits + misses == 0 {
        1.0
    } else {
        hits as f64 / (hits + misses) as f64
    };
    // Exact sums live in the per-tool histograms (since start); the window keeps buckets only.
    let (sum, count) = metrics
        .servers()
        .iter()
        .flat_map(|s| s.tools())
        .fold((0.0, 0u64), |(s, c), (_, t)| {
            (s + t.latency.sum_secs(), c + t.latency.count())
        });
    let mean = if count == 0 { 0.0 } else { sum / count as f64 };
    let (errors_last_hour, error_rate) = error_figures(state);
    let rate = recovery_rate(state);
    let status = overall_status(state);
    let alerts: Vec<Value> = state
        .monitor
        .alerts()
        .iter()
        .map(|a| {
            json!({"kind": a.kind, "message": a.message, "value": round(a.value),
                   "threshold": a.threshold, "since_unix_ms": a.since_unix_ms})
        })
        .collect();
    let lat = percentiles(&hour.latency);
    let mut servers = serde_json::Map::new();
    for u in &state.upstreams() {
        let key = if u.name().is_empty() {
            "default"
        } else {
            u.name()
        };
        servers.insert(key.to_string(), server_json(state, u, history));
    }
    let mut custom = serde_json::Map::new();
    for (collector, values) in metrics.custom() {
        let mut c = serde_json::Map::new();
        for v in values {
            let value = if v.labels.is_empty() {
                json!(v.value)
            } else {
                json!({"labels": v.labels.iter().cloned().collect::<HashMap<_, _>>(), "value": v.value})
            };
            c.insert(v.name.clone(), value);
        }
        custom.insert(collector, Value::Object(c));
    }
    let system = state.monitor.latest().map(|s| {
        json!({
            "process_cpu_percent": round(s.process_cpu_percent),
            "process_rss_bytes": s.process_rss_bytes,
            "system_cpu_percent": round(s.system_cpu_percent),
            "system_memory_percent": round(s.system_memory_percent),
            "sampled_at_unix_ms": s.at_unix_ms,
        })
    });
    json!({
        "performance": {
            "avg_response_time": round(mean),
            "total_requests": total_requests,
            "cache_hit_rate": round(cache_hit_rate),
            "requests_last_hour": hour.requests,
            "p50": lat["p50"], "p95": lat["p95"], "p99": lat["p99"],
        },
        "error_recovery": {
            "total_errors_last_hour": errors_last_hour,
            "recovery_success_rate": round(rate.rate),
            "recovery_target_seconds": metrics.recovery_target.as_secs_f64(),
            "episodes_last_hour": {"recovered_within_target": rate.recovered, "decided": rate.decided, "open": rate.open},
            "system_status": status,
        },
        "system_health": {
            "overall_status": status,
            "error_rate": round(error_rate),
            "error_rate_window_seconds": state.monitor.settings.window().as_secs_f64(),
            "active_errors": alerts,
            "system": system,
        },
        "servers": servers,
        "cache": {"hits": hits, "misses": misses, "entries": state.cache.entries()},
        "custom": custom,
        "metrics_enabled": metrics.enabled,
        "uptime_seconds": round(metrics.started.elapsed().as_secs_f64()),
    })
}

pub async fn metrics(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let format = query.get("format").map(String::as_str);
    let openmetrics =
        accept.contains("application/openmetrics-text") || format == Some("openmetrics");
    let prometheus = openmetrics
        || format == Some("prometheus")
        || (format.is_none() && accept.contains("text/plain"));
    if prometheus {
        let text = prometheus::encode(&state.metrics, live(&state), openmetrics);
        let content_type = if openmetrics {
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        } else {
            "text/plain; version=0.0.4; charset=utf-8"
        };
        return ([(header::CONTENT_TYPE, content_type)], text).into_response();
    }
    let history = query
        .get("history")
        .is_some_and(|v| v != "0" && v != "false");
    axum::Json(metrics_json(&state, history)).into_response()
}

/// The process serves HTTP.
pub async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// Every configured server has been ready at least once and none is down.
pub async fn readyz(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let mut reasons = Vec::new();
    if state.lame_duck.is_cancelled() {
        reasons.push(
            "the proxy is shutting down: it finishes the calls it has and should get no new ones"
                .to_string(),
        );
    }
    for u in &state.upstreams() {
        let view = u.view();
        let name = if u.name().is_empty() {
            "default"
        } else {
            u.name()
        };
        if !u.ever_ready() {
            reasons.push(format!(
                "server '{name}' has not been ready yet ({})",
                view.last_error
                    .unwrap_or_else(|| view.status.as_str().to_string())
            ));
        } else if matches!(view.status, Status::Down | Status::Stopped) {
            reasons.push(format!(
                "server '{name}' is down ({})",
                view.last_error.unwrap_or_else(|| "no detail".into())
            ));
        }
    }
    if reasons.is_empty() {
        axum::Json(json!({"status": "ready"})).into_response()
    } else if withholds_reasons(&state, &headers) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({
                "status": "not ready",
                "detail": format!(
                    "{} reason(s), shown with the API key (--strict-auth)",
                    reasons.len()
                ),
            })),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "not ready", "reasons": reasons})),
        )
            .into_response()
    }
}

/// Under `--strict-auth` the probe stays open, but server names and errors are for the key's
/// holder only (without it, they are as open as the tool listing, as in mcpo).
fn withholds_reasons(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(key) = state.key.as_ref() else {
        return false;
    };
    state.config.strict_auth
        && key
            .check(
                headers
                    .get(axum::http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok()),
            )
            .is_err()
}
