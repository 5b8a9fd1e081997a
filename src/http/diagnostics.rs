//! `GET /diagnostics`: what each server is doing right now, and what to do about it.
//!
//! Read-only and cheap: it reads the same snapshots the request path reads, and never talks
//! to an upstream, so it answers even when every server hangs.
//!
//! Like the docs it is open unless `--strict-auth` is set, so what it shows to anyone is what
//! is safe to show anyone. Process details (PIDs, the last lines a crashed child wrote to
//! stderr, which can hold paths, tokens or customer data) appear only for a request that
//! presents the API key, or, when no key is configured, one from the same machine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Extension;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use crate::recovery::BreakerState;
use crate::upstream::oauth::AuthState;
use crate::upstream::{Status, Upstream};

/// Whether the request may see process details (see [`super::auth::privileged`]).
pub(super) fn privileged(state: &AppState, peer: Option<SocketAddr>, headers: &HeaderMap) -> bool {
    super::auth::privileged(
        state.key.as_ref(),
        state.config.trust_loopback,
        peer,
        headers,
    )
}

pub async fn diagnostics(
    State(state): State<Arc<AppState>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    let privileged = privileged(&state, peer.map(|Extension(c)| c.0), &headers);
    let mut servers = serde_json::Map::new();
    let mut connection_health = serde_json::Map::new();
    let mut issues = Vec::new();
    let mut recommendations = Vec::new();
    for upstream in &state.upstreams() {
        let report = server_report(upstream, privileged);
        let key = if upstream.name().is_empty() {
            "default"
        } else {
            upstream.name()
        };
        connection_health.insert(key.to_string(), json!(report["status"] == "ready"));
        let (i, r) = findings(&state, upstream, key, privileged);
        issues.extend(i);
        recommendations.extend(r);
        servers.insert(key.to_string(), report);
    }
    issues.extend(super::mcp::name_collisions(&state));
    let alerts = state.monitor.alerts();
    for a in &alerts {
        issues.push(format!("alert {}: {}", a.kind, a.message));
        recommendations.push(match a.kind {
            "error_rate" => format!(
                "{}: look at the servers with the highest error_rate in /metrics and at their last_error here",
                a.message
            ),
            "response_time" => format!(
                "{}: look at the slowest tools' p99 in /metrics; raise their server's timeout or its pool max",
                a.message
            ),
            _ => format!("{}: the machine is short of resources; look at the children's memory in /metrics", a.message),
        });
    }
    let alerts: Vec<Value> = alerts
        .iter()
        .map(|a| json!({"kind": a.kind, "message": a.message, "value": a.value, "threshold": a.threshold, "since_unix_ms": a.since_unix_ms}))
        .collect();
    let (samples, cost) = state.monitor.cost();
    axum::Json(json!({
        "status": super::metrics::overall_status(&state),
        "issues": issues,
        "recommendations": recommendations,
        "connection_health": connection_health,
        "alerts": alerts,
        "monitor": {
            "enabled": state.monitor.settings.enabled,
            "interval_seconds": state.monitor.settings.interval.as_secs_f64(),
            "samples": samples,
            "mean_sample_cost_ms": if samples == 0 { 0.0 } else { cost.as_secs_f64() * 1000.0 / samples as f64 },
        },
        "servers": servers,
    }))
    .into_response()
}

/// What is wrong with one server and what to do about it, from its numbers.
fn findings(
    state: &AppState,
    upstream: &Upstream,
    name: &str,
    privileged: bool,
) -> (Vec<String>, Vec<String>) {
    let mut issues = Vec::new();
    let mut recs = Vec::new();
    let view = upstream.view();
    match view.status {
        Status::Down => issues.push(format!(
            "server '{name}' is down: {}",
            view.last_error.as_deref().unwrap_or("no detail")
        )),
        Status::Reconnecting | Status::Starting => {
            issues.push(format!("server '{name}' is {}", view.status.as_str()))
        }
        _ => {}
    }
    if let Some(catalog) = upstream.catalog() {
        withheld_issues(name, &catalog, &mut issues);
    }
    if view.breaker != BreakerState::Closed {
        issues.push(format!(
            "the circuit breaker of '{name}' is {}",
            view.breaker.as_str()
        ));
    }
    if let Some(auth) = upstream.oauth()
        && matches!(auth.state(), AuthState::NeedsAuthorization { .. })
    {
        issues.push(format!(
            "server '{name}' is waiting for OAuth authorization"
        ));
        recs.push(format!(
            "open servers.{name}.oauth.authorize_url of /diagnostics{} in a browser and approve access to '{name}'",
            if privileged { "" } else { " (shown with the API key or --trust-loopback; also printed in the proxy's log)" }
        ));
    }
    let Some(m) = state.metrics.server(upstream.name()) else {
        return (issues, recs);
    };
    // Restarts in the last ten minutes.
    let ten_min = Duration::from_secs(600);
    let recent_episodes = m
        .episodes()
        .list()
        .iter()
        .filter(|e| e.started.elapsed() < ten_min)
        .count();
    if recent_episodes >= 3 {
        let tail = upstream
            .member_views()
            .iter()
            .map(|(_, v, _)| v.stderr_tail.clone())
            .find(|t| !t.is_empty());
        let said = match (privileged, tail) {
            (true, Some(tail)) => format!(": its stderr ends with \"{}\"", tail.join(" | ")),
            (false, Some(_)) => ": its stderr tail is shown to a client with the API key (or with --trust-loopback on localhost)".into(),
            _ => format!(
                ": the last cause was \"{}\"",
                view.last_error.as_deref().unwrap_or("unknown")
            ),
        };
        recs.push(format!(
            "server '{name}' failed {recent_episodes} times in 10 minutes{said}; look at its logs, or run it by hand to see it fail"
        ));
    }
    // The cache does not pay.
    let (hits, misses) = m.cache();
    if hits + misses >= 20 {
        let rate = hits as f64 / (hits + misses) as f64;
        if rate < 0.2
            && let Some(cache) = &upstream.config().cache
        {
            let ttl = cache.ttl.unwrap_or(state.config.cache_default_ttl);
            recs.push(format!(
                "cache hit rate of '{name}' is {:.0}% with TTL {}s: raise the TTL, or stop caching tools whose arguments rarely repeat",
                rate * 100.0,
                ttl.as_secs_f64()
            ));
        }
    }
    // Tools that run close to their deadline.
    let deadline = upstream.call_timeout().as_secs_f64();
    for (tool, t) in m.tools() {
        if t.latency.count() < 20 {
            continue;
        }
        if let Some(p99) = t.latency.quantile(0.99)
            && p99 > 0.8 * deadline
        {
            recs.push(format!(
                "p99 of {name}/{tool} is {p99:.1}s against a {deadline:.0}s deadline: raise the server's timeout, or look at why the tool is slow"
            ));
        }
    }
    // A pool at its maximum with calls waiting for a member.
    let (_, max) = upstream.pool_bounds();
    if view.members >= max
        && m.pool_wait.count() >= 20
        && let Some(wait) = m.pool_wait.quantile(0.99)
        && wait > 0.1
    {
        recs.push(format!(
            "pool of '{name}' is at its max of {max} with calls waiting {:.0} ms for a member (p99): raise the pool max",
            wait * 1000.0
        ));
    }
    (issues, recs)
}

/// Tools listed withheld issues at most; the rest are summed up.
const WITHHELD_LISTED: usize = 20;

/// One issue per tool the proxy does not serve because it is over a bound on listings.
fn withheld_issues(name: &str, catalog: &crate::catalog::ToolCatalog, issues: &mut Vec<String>) {
    for w in catalog.withheld.iter().take(WITHHELD_LISTED) {
        issues.push(format!(
            "tool '{}' of server '{name}' is withheld: {}; the server's other tools are served",
            w.tool, w.reason
        ));
    }
    if catalog.withheld.len() > WITHHELD_LISTED {
        issues.push(format!(
            "{} more tools of server '{name}' are withheld for being over the proxy's bounds",
            catalog.withheld.len() - WITHHELD_LISTED
        ));
    }
    if catalog.beyond_limit > 0 {
        issues.push(format!(
            "server '{name}' lists {} tools more than the {} served (MCPO_MAX_TOOLS); they are withheld",
            catalog.beyond_limit,
            catalog.tools().len()
        ));
    }
}

fn server_report(upstream: &Upstream, privileged: bool) -> Value {
    let view = upstream.view();
    let (min, max) = upstream.pool_bounds();
    let members: Vec<Value> = upstream
        .member_views()
        .into_iter()
        .map(|(index, m, in_flight)| {
            let mut member = json!({
                "index": index,
                "status": m.status.as_str(),
                "in_flight": in_flight,
                "restarts": m.restarts,
                "last_error": m.last_error,
                "consecutive_failures": m.consecutive_failures,
                "next_attempt_in_ms": m.next_attempt_at.map(|at| at.duration_since(SystemTime::now()).map_or(0, |d| d.as_millis() as u64)),
                "closing_sessions": m.closing,
            });
            if privileged {
                member["pid"] = json!(m.session.as_ref().and_then(|s| s.child_pid()));
                member["stderr_tail"] = json!(m.stderr_tail);
            }
            member
        })
        .collect();
    let since = view
        .since
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut advice = advice(
        view.status,
        view.breaker,
        view.last_error.as_deref(),
        view.restarts,
    );
    let oauth = upstream.oauth().map(|auth| {
        let state = auth.state();
        let mut o = json!({
            "state": state.as_str(),
            "storage": auth.storage_kind(),
            "redirect_uri": auth.redirect_uri(),
        });
        if privileged && let Some(path) = auth.token_path() {
            o["token_file"] = json!(path.display().to_string());
        }
        match &state {
            AuthState::NeedsAuthorization {
                authorize_url,
                until,
            } => {
                // Like PIDs: the URL carries this flow's state, so only an operator sees it.
                o["authorize_url"] = if privileged {
                    json!(authorize_url)
                } else {
                    json!("shown to a client with the API key")
                };
                o["expires_in_s"] = json!(
                    until
                        .duration_since(SystemTime::now())
                        .map_or(0, |d| d.as_secs())
                );
                advice = vec![format!(
                    "The server needs OAuth authorization: open oauth.authorize_url in a browser and approve; the browser is then sent to {}, which the proxy listens on. Calls answer 503 until then.",
                    auth.redirect_uri()
                )];
            }
            AuthState::Failed { error } => o["error"] = json!(error),
            _ => {}
        }
        o
    });
    let mut report = json!({
        "status": view.status.as_str(),
        "transport": upstream.config().transport.kind(),
        "since_unix": since,
        "tools": view.catalog.as_ref().map_or(0, |c| c.tools().len()),
        "server_info": view.catalog.as_ref().map(|c| json!({"name": c.server.name, "version": c.server.version, "protocol_version": c.server.protocol_version})),
        "restarts": view.restarts,
        "connect_attempts": view.connect_attempts,
        "last_error": view.last_error,
        "breaker": view.breaker.as_str(),
        "breaker_trips": view.breaker_trips,
        "call_timeout_secs": upstream.call_timeout().as_secs_f64(),
        "max_call_timeout_secs": upstream.longest_call().as_secs_f64(),
        "pool": {"min": min, "max": max, "members": members},
        "advice": advice,
    });
    if let Some(oauth) = oauth {
        report["oauth"] = oauth;
    }
    report
}

/// Plain sentences for the operator, from the state alone.
fn advice(
    status: Status,
    breaker: BreakerState,
    last_error: Option<&str>,
    restarts: u64,
) -> Vec<String> {
    let mut out = Vec::new();
    match status {
        Status::Down => out.push(format!(
            "The server cannot be reached or started ({}); it is retried with backoff. Check its command or URL; calls answer 503 until it is up.",
            last_error.unwrap_or("no detail")
        )),
        Status::Starting | Status::Reconnecting => {
            out.push("The server is (re)connecting; calls wait for it within their deadline.".into())
        }
        Status::Stopped => out.push("The proxy is shutting down.".into()),
        Status::Ready => {}
    }
    if breaker != BreakerState::Closed {
        out.push("The circuit breaker is not closed: the server failed most recent calls, which are answered 503 at once for a moment. Look at the server's own logs.".into());
    }
    if restarts >= 5 {
        out.push(format!(
            "The session was replaced {restarts} times; the server may be crashing or hanging repeatedly."
        ));
    }
    out
}
