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
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Extension;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use crate::recovery::BreakerState;
use crate::upstream::{Status, Upstream};

/// Whether the request may see process details.
fn privileged(state: &AppState, peer: Option<SocketAddr>, headers: &HeaderMap) -> bool {
    match &state.key {
        Some(key) => key
            .check(
                headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok()),
            )
            .is_ok(),
        None => peer.is_some_and(|p| p.ip().is_loopback()),
    }
}

pub async fn diagnostics(
    State(state): State<Arc<AppState>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    let privileged = privileged(&state, peer.map(|Extension(c)| c.0), &headers);
    let mut servers = serde_json::Map::new();
    let mut ready = 0;
    for upstream in &state.upstreams {
        let report = server_report(upstream, privileged);
        if report["status"] == "ready" {
            ready += 1;
        }
        let key = if upstream.name().is_empty() {
            "default"
        } else {
            upstream.name()
        };
        servers.insert(key.to_string(), report);
    }
    let overall = match (ready, state.upstreams.len()) {
        (r, n) if r == n => "ok",
        (0, _) => "down",
        _ => "degraded",
    };
    axum::Json(json!({"status": overall, "servers": servers})).into_response()
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
    json!({
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
        "pool": {"min": min, "max": max, "members": members},
        "advice": advice(view.status, view.breaker, view.last_error.as_deref(), view.restarts),
    })
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
