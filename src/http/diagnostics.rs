//! `GET /diagnostics`: what each server is doing right now, and what to do about it.
//!
//! Read-only and cheap: it reads the same snapshots the request path reads, and never talks
//! to an upstream, so it answers even when every server hangs.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use crate::recovery::BreakerState;
use crate::upstream::{Status, Upstream};

pub async fn diagnostics(State(state): State<Arc<AppState>>) -> Response {
    let mut servers = serde_json::Map::new();
    let mut ready = 0;
    for upstream in &state.upstreams {
        let report = server_report(upstream);
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

fn server_report(upstream: &Upstream) -> Value {
    let view = upstream.view();
    let (min, max) = upstream.pool_bounds();
    let members: Vec<Value> = upstream
        .member_views()
        .into_iter()
        .map(|(index, m, in_flight)| {
            json!({
                "index": index,
                "status": m.status.as_str(),
                "pid": m.session.as_ref().and_then(|s| s.child_pid()),
                "in_flight": in_flight,
                "restarts": m.restarts,
                "last_error": m.last_error,
            })
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
