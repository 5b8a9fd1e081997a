//! Faults for the fake server over streamable HTTP, switched on through a small control API.
//!
//! `POST /control/fault` with a JSON [`FaultSpec`] starts a fault (for `for_ms`, or until
//! cleared); `POST /control/clear` ends them all; `GET /control/stats` tells how many MCP
//! requests and tool calls reached the server, so a test can measure what the proxy sent.
//! The MCP endpoint itself is `/mcp`, served by rmcp; faults act in front of it, the way a
//! failing load balancer or a restarting server would look to the proxy.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::RngExt as _;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;
use tower::ServiceExt as _;

use super::FakeServer;

/// One fault, as posted to `/control/fault`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// `http-error`, `hang`, `latency`, `session-loss`, `crash`.
    pub kind: String,
    /// Share of requests affected (default all).
    #[serde(default)]
    pub probability: Option<f64>,
    /// For `http-error`.
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// For `latency`.
    #[serde(default)]
    pub ms: Option<u64>,
    /// How long the fault lasts; absent means until cleared.
    #[serde(default)]
    pub for_ms: Option<u64>,
}

#[derive(Debug, Clone)]
struct ActiveFault {
    spec: FaultSpec,
    until: Option<Instant>,
}

type McpService = StreamableHttpService<FakeServer, LocalSessionManager>;

/// The fake's HTTP state: the MCP service (replaced to forget every session), faults, counters.
pub struct HttpFake {
    server: FakeServer,
    service: std::sync::RwLock<McpService>,
    faults: std::sync::Mutex<Vec<ActiveFault>>,
    requests: AtomicU64,
    tool_calls: AtomicU64,
}

fn new_service(server: &FakeServer) -> McpService {
    let server = server.clone();
    let config = StreamableHttpServerConfig::default().disable_allowed_hosts();
    StreamableHttpService::new(move || Ok(server.clone()), Default::default(), config)
}

impl HttpFake {
    pub fn new(server: FakeServer) -> Arc<Self> {
        Arc::new(HttpFake {
            service: std::sync::RwLock::new(new_service(&server)),
            server,
            faults: std::sync::Mutex::new(Vec::new()),
            requests: AtomicU64::new(0),
            tool_calls: AtomicU64::new(0),
        })
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/control/fault", post(set_fault))
            .route("/control/clear", post(clear))
            .route("/control/stats", get(stats))
            .route("/mcp", axum::routing::any(mcp))
            .with_state(self)
    }

    /// The faults in force now, dropping the ones that ended.
    fn active(&self) -> Vec<FaultSpec> {
        let now = Instant::now();
        let Ok(mut faults) = self.faults.lock() else {
            return Vec::new();
        };
        faults.retain(|f| f.until.is_none_or(|u| now < u));
        faults.iter().map(|f| f.spec.clone()).collect()
    }

    fn hang_until(&self) -> Option<Option<Instant>> {
        let now = Instant::now();
        let faults = self.faults.lock().ok()?;
        faults
            .iter()
            .find(|f| f.spec.kind == "hang" && f.until.is_none_or(|u| now < u))
            .map(|f| f.until)
    }
}

fn hit(probability: Option<f64>) -> bool {
    let p = probability.unwrap_or(1.0);
    p >= 1.0 || rand::rng().random_bool(p.clamp(0.0, 1.0))
}

async fn set_fault(State(fake): State<Arc<HttpFake>>, body: Bytes) -> Response {
    let spec: FaultSpec = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => return (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).into_response(),
    };
    match spec.kind.as_str() {
        "session-loss" => {
            // A fresh session manager knows none of the old session ids: every request that
            // carries one now gets 404, as from a server that restarted.
            if let Ok(mut service) = fake.service.write() {
                *service = new_service(&fake.server);
            }
            return StatusCode::NO_CONTENT.into_response();
        }
        "crash" => {
            tracing::warn!("fake server crashing on request");
            std::process::exit(1);
        }
        "http-error" | "hang" | "latency" => {}
        other => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("unknown fault kind {other:?}"),
            )
                .into_response();
        }
    }
    let until = spec
        .for_ms
        .map(|ms| Instant::now() + Duration::from_millis(ms));
    if let Ok(mut faults) = fake.faults.lock() {
        faults.push(ActiveFault { spec, until });
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn clear(State(fake): State<Arc<HttpFake>>) -> StatusCode {
    if let Ok(mut faults) = fake.faults.lock() {
        faults.clear();
    }
    StatusCode::NO_CONTENT
}

async fn stats(State(fake): State<Arc<HttpFake>>) -> Response {
    axum::Json(json!({
        "requests": fake.requests.load(Ordering::Relaxed),
        "tool_calls": fake.tool_calls.load(Ordering::Relaxed),
        "cancelled": fake.server.cancelled.load(Ordering::Relaxed),
    }))
    .into_response()
}

async fn mcp(State(fake): State<Arc<HttpFake>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 16 * 1024 * 1024).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    fake.requests.fetch_add(1, Ordering::Relaxed);
    let is_tool_call = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .is_some_and(|v| v.get("method").and_then(|m| m.as_str()) == Some("tools/call"));
    if is_tool_call {
        fake.tool_calls.fetch_add(1, Ordering::Relaxed);
        // Faults act on tool calls: the handshake and notifications pass, as a server that
        // fails under its real work would let them.
        if let Some(until) = fake.hang_until() {
            match until {
                Some(until) => tokio::time::sleep_until(until).await,
                None => std::future::pending::<()>().await,
            }
        }
        for fault in fake.active() {
            match fault.kind.as_str() {
                "latency" => {
                    tokio::time::sleep(Duration::from_millis(fault.ms.unwrap_or(100))).await
                }
                "http-error" if hit(fault.probability) => {
                    let status = StatusCode::from_u16(fault.status.unwrap_or(500))
                        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    let mut response = (status, "injected fault").into_response();
                    if let Some(secs) = fault.retry_after
                        && let Ok(v) = header::HeaderValue::from_str(&secs.to_string())
                    {
                        response.headers_mut().insert(header::RETRY_AFTER, v);
                    }
                    return response;
                }
                _ => {}
            }
        }
    }
    let service = match fake.service.read() {
        Ok(s) => s.clone(),
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let request = Request::from_parts(parts, Body::from(bytes));
    match service.oneshot(request).await {
        Ok(response) => response.map(Body::new),
        Err(never) => match never {},
    }
}
