//! Faults for the fake server over streamable HTTP, switched on through a small control API.
//!
//! `POST /control/fault` with a JSON [`FaultSpec`] starts a fault (for `for_ms`, or until
//! cleared); `POST /control/clear` ends them all (the hub's too); `GET /control/stats` tells how many MCP
//! requests and tool calls reached the server, so a test can measure what the proxy sent.
//! The MCP endpoint itself is `/mcp`, served by rmcp. The faults that only HTTP can show
//! (`http-error`, `reset`, a broken event for `garbage`) act in front of it, the way a failing
//! load balancer or a restarting server would look to the proxy; the others act in the MCP
//! handler, as on stdio.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use serde::Deserialize;
use serde_json::json;
use tower::ServiceExt as _;

use super::FakeServer;
use super::faults::{FaultState, GarbageMark, RequestRef};
use super::wire::WireKind;

/// One fault, as posted to `/control/fault`. Parameters are named as in `wire::WireKind`
/// (plus `ms`, a fixed latency, which came first).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// `http-error`, `hang`, `latency`, `jsonrpc-error`, `tool-error`, `reset`, `garbage`,
    /// `slow-start`, or the one-shots `session-loss` and `crash`.
    pub kind: String,
    /// Share of requests affected (default all).
    #[serde(default)]
    pub probability: Option<f64>,
    /// Bare tool names the fault is limited to (default every tool).
    #[serde(default)]
    pub tools: Option<Vec<String>>,
    /// For `http-error`.
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// For `latency`: a fixed delay, or a range.
    #[serde(default)]
    pub ms: Option<u64>,
    #[serde(default)]
    pub min_ms: Option<u64>,
    #[serde(default)]
    pub max_ms: Option<u64>,
    /// For `jsonrpc-error`.
    #[serde(default)]
    pub code: Option<i32>,
    #[serde(default)]
    pub message: Option<String>,
    /// For `slow-start`.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// For `garbage`: the forms it may take (default every one).
    #[serde(default)]
    pub forms: Option<Vec<super::wire::GarbageForm>>,
    /// How long the fault lasts; absent means until cleared.
    #[serde(default)]
    pub for_ms: Option<u64>,
}

impl FaultSpec {
    /// The windowed kind this spec describes, or why it cannot be one.
    fn windowed_kind(&self) -> Result<WireKind, String> {
        Ok(match self.kind.as_str() {
            "http-error" => WireKind::HttpError {
                status: self.status.unwrap_or(500),
                retry_after: self.retry_after,
            },
            "hang" => WireKind::Hang,
            "latency" => {
                let min_ms = self.min_ms.or(self.ms).unwrap_or(100);
                WireKind::Latency {
                    min_ms,
                    max_ms: self.max_ms.or(self.ms).unwrap_or(min_ms),
                }
            }
            "jsonrpc-error" => WireKind::JsonrpcError {
                code: self.code.unwrap_or(-32603),
                message: self.message.clone(),
            },
            "tool-error" => WireKind::ToolError,
            "reset" => WireKind::Reset,
            "garbage" => WireKind::Garbage {
                forms: self.forms.clone().unwrap_or_default(),
            },
            "slow-start" => WireKind::SlowStart {
                delay_ms: self.delay_ms.unwrap_or(1000),
            },
            "refuse" => {
                return Err(
                    "refuse acts only at start-up; this server has started (use the hub)".into(),
                );
            }
            other => return Err(format!("unknown fault kind {other:?}")),
        })
    }
}

type McpService = StreamableHttpService<FakeServer, LocalSessionManager>;

/// The fake's HTTP state: the MCP service (replaced to forget every session), counters.
/// The faults are the server's [`FaultState`], shared with its MCP handler.
pub struct HttpFake {
    server: FakeServer,
    service: std::sync::RwLock<McpService>,
    requests: AtomicU64,
    tool_calls: AtomicU64,
}

fn new_service(server: &FakeServer) -> McpService {
    let server = server.clone();
    let config = StreamableHttpServerConfig::default().disable_allowed_hosts();
    StreamableHttpService::new(move || Ok(server.for_session()), Default::default(), config)
}

impl HttpFake {
    pub fn new(server: FakeServer) -> Arc<Self> {
        Arc::new(HttpFake {
            service: std::sync::RwLock::new(new_service(&server)),
            server,
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

    fn faults(&self) -> &FaultState {
        &self.server.faults
    }

    /// Forgets every session: a fresh session manager knows none of the old session ids, so
    /// every request that carries one now gets 404, as from a server that restarted.
    pub fn forget_sessions(&self) {
        match self.service.write() {
            Ok(mut service) => *service = new_service(&self.server),
            Err(poisoned) => *poisoned.into_inner() = new_service(&self.server),
        }
    }
}

async fn set_fault(State(fake): State<Arc<HttpFake>>, body: Bytes) -> Response {
    apply_fault(fake.faults(), &body, &|| fake.forget_sessions())
}

/// Carries out a `POST /control/fault` (shared by both HTTP forms of the fake): a one-shot
/// acts now (`forget_sessions` for `session-loss`), a windowed kind joins the faults in force.
pub(crate) fn apply_fault(
    faults: &FaultState,
    body: &[u8],
    forget_sessions: &dyn Fn(),
) -> Response {
    let spec: FaultSpec = match serde_json::from_slice(body) {
        Ok(s) => s,
        Err(e) => return (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).into_response(),
    };
    match spec.kind.as_str() {
        "session-loss" => {
            forget_sessions();
            return StatusCode::NO_CONTENT.into_response();
        }
        "crash" => {
            tracing::warn!("fake server crashing on request");
            std::process::exit(1);
        }
        _ => {}
    }
    let kind = match spec.windowed_kind() {
        Ok(k) => k,
        Err(message) => return (StatusCode::UNPROCESSABLE_ENTITY, message).into_response(),
    };
    faults.add_local(
        kind,
        spec.probability.unwrap_or(1.0),
        spec.tools.unwrap_or_default(),
        spec.for_ms,
    );
    StatusCode::NO_CONTENT.into_response()
}

async fn clear(State(fake): State<Arc<HttpFake>>) -> StatusCode {
    fake.faults().clear();
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

/// The start of an answer that a `reset` cuts off: an SSE event that never ends. It carries
/// no `id:` line on purpose: an event id would let the client resume the stream with a GET
/// (SEP-1699), which would test resumption instead of a cut connection.
const RESET_PREFIX: &str =
    "data: {\"jsonrpc\":\"2.0\",\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"cut o";

/// How long the cut-off answer's first part is left to reach the client before the
/// connection is dropped: without the pause hyper may see the body's error before it has
/// written the part, and the client would see a plain close instead of a close mid-body.
pub(crate) const RESET_AFTER: Duration = Duration::from_millis(50);

/// The answer of a `tools/call` that a fault of the HTTP layer takes over, if one does:
/// `http-error`, `reset`, `garbage`. The rest (hang, latency, errors in the answer) act in
/// the MCP handler, the same way on every transport.
async fn http_fault(fake: &HttpFake, on: RequestRef<'_>, rpc_id: &str) -> Option<Response> {
    let hits = fake
        .faults()
        .hits(on, |k| {
            matches!(
                k,
                WireKind::HttpError { .. } | WireKind::Reset | WireKind::Garbage { .. }
            )
        })
        .await;
    // One answer can carry one fault: the first that hit.
    let fault = hits.into_iter().next()?;
    let pick = fake.faults().value_draw(&fault, on.request, rpc_id);
    let garbage = GarbageMark::new(&fault, on.request, pick);
    fake.faults().note_applied(&fault, on.request);
    Some(match fault.kind {
        WireKind::HttpError {
            status,
            retry_after,
        } => http_error(status, retry_after),
        WireKind::Reset => {
            let cut = futures::stream::unfold(0u8, |step| async move {
                match step {
                    0 => Some((Ok(Bytes::from_static(RESET_PREFIX.as_bytes())), 1)),
                    1 => {
                        tokio::time::sleep(RESET_AFTER).await;
                        Some((
                            Err(std::io::Error::new(
                                std::io::ErrorKind::ConnectionReset,
                                "injected reset",
                            )),
                            2,
                        ))
                    }
                    _ => None,
                }
            });
            sse_response(Body::from_stream(cut))
        }
        // The call never reaches the server, so the garbage is made from a stand-in answer;
        // one event, in a stream that then ends without the answer.
        _ => {
            let answer = super::garbage::stand_in(rpc_id);
            let data = super::garbage::mangle(garbage.form, garbage.pick, &answer);
            sse_response(Body::from(format!("data: {data}\n\n")))
        }
    })
}

/// The answer of an `http-error` fault: the status, and `Retry-After` when it has one.
pub(crate) fn http_error(status: u16, retry_after: Option<u64>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, "injected fault").into_response();
    if let Some(secs) = retry_after
        && let Ok(v) = header::HeaderValue::from_str(&secs.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

pub(crate) fn sse_response(body: Body) -> Response {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    response
}

async fn mcp(State(fake): State<Arc<HttpFake>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 16 * 1024 * 1024).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    fake.requests.fetch_add(1, Ordering::Relaxed);
    let message = serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_default();
    if message.get("method").and_then(|m| m.as_str()) == Some("tools/call") {
        fake.tool_calls.fetch_add(1, Ordering::Relaxed);
        let tool = message
            .pointer("/params/name")
            .and_then(|n| n.as_str())
            .unwrap_or_default();
        let request = message
            .pointer("/params/arguments")
            .and_then(|a| a.as_object())
            .and_then(|args| super::wire::request_of(tool, args));
        fake.faults().note_call(tool, request);
        let rpc_id = message
            .get("id")
            .map(|id| id.to_string())
            .unwrap_or_default();
        if let Some(response) = http_fault(&fake, RequestRef::call(tool, request), &rpc_id).await {
            return response;
        }
    }
    let service = match fake.service.read() {
        Ok(s) => s.clone(),
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    // Protocol 2026-07-28 clients need `resultType` on every result (see `result_type`).
    let tag = crate::result_type::wants_result_type(&parts.headers);
    let request = Request::from_parts(parts, Body::from(bytes));
    let response = match service.oneshot(request).await {
        Ok(response) => response.map(Body::new),
        Err(never) => match never {},
    };
    if tag {
        crate::result_type::tag_results(response).await
    } else {
        response
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;
    use crate::fake::faults::Transport;

    /// Serves a fresh HTTP fake on 127.0.0.1 and returns it with its address.
    async fn serve() -> std::io::Result<(Arc<HttpFake>, std::net::SocketAddr)> {
        let fake = HttpFake::new(FakeServer::new(
            "t",
            FaultState::new(Transport::StreamableHttp),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Arc::clone(&fake).router();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((fake, addr))
    }

    /// Posts a `tools/call` of `echo` by hand and returns every byte that came back before
    /// the server closed the connection (`Connection: close` asks it to, once done).
    async fn raw_tool_call(addr: std::net::SocketAddr) -> std::io::Result<String> {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}"#;
        let request = format!(
            "POST /mcp HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
            .await
            .map_err(std::io::Error::other)??;
        Ok(String::from_utf8_lossy(&answer).into_owned())
    }

    #[tokio::test]
    async fn reset_closes_the_connection_in_the_middle_of_the_body() -> std::io::Result<()> {
        let (fake, addr) = serve().await?;
        fake.faults().add_local(WireKind::Reset, 1.0, vec![], None);
        let answer = raw_tool_call(addr).await?;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("transfer-encoding: chunked"), "{answer}");
        assert!(answer.contains(RESET_PREFIX), "{answer}");
        // A finished chunked body ends with the zero-length chunk; this one never does.
        assert!(!answer.ends_with("0\r\n\r\n"), "{answer}");
        Ok(())
    }

    #[tokio::test]
    async fn garbage_is_a_whole_answer_with_a_broken_event() -> std::io::Result<()> {
        let (fake, addr) = serve().await?;
        fake.faults().add_local(
            WireKind::Garbage {
                forms: vec![super::super::wire::GarbageForm::Text],
            },
            1.0,
            vec![],
            None,
        );
        let answer = raw_tool_call(addr).await?;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("text/event-stream"), "{answer}");
        assert!(
            answer.ends_with("data: this is not json-rpc\n\n"),
            "{answer}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn http_error_and_tool_filter() -> std::io::Result<()> {
        let (fake, addr) = serve().await?;
        fake.faults().add_local(
            WireKind::HttpError {
                status: 503,
                retry_after: Some(2),
            },
            1.0,
            vec!["echo".into()],
            None,
        );
        let answer = raw_tool_call(addr).await?;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("retry-after: 2"), "{answer}");
        fake.faults().clear();
        fake.faults().add_local(
            WireKind::HttpError {
                status: 503,
                retry_after: None,
            },
            1.0,
            vec!["add".into()],
            None,
        );
        // Not a call of `add`: it reaches rmcp, which wants a session first.
        let answer = raw_tool_call(addr).await?;
        assert!(!answer.starts_with("HTTP/1.1 503"), "{answer}");
        Ok(())
    }

    #[test]
    fn control_specs_map_onto_wire_kinds() -> Result<(), String> {
        let spec = |v: serde_json::Value| -> Result<WireKind, String> {
            serde_json::from_value::<FaultSpec>(v)
                .map_err(|e| e.to_string())?
                .windowed_kind()
        };
        assert_eq!(
            spec(json!({"kind": "latency", "ms": 300}))?,
            WireKind::Latency {
                min_ms: 300,
                max_ms: 300
            }
        );
        assert_eq!(
            spec(json!({"kind": "latency", "min_ms": 10, "max_ms": 20}))?,
            WireKind::Latency {
                min_ms: 10,
                max_ms: 20
            }
        );
        assert_eq!(
            spec(json!({"kind": "jsonrpc-error", "code": -32601}))?,
            WireKind::JsonrpcError {
                code: -32601,
                message: None
            }
        );
        assert_eq!(
            spec(json!({"kind": "slow-start", "delay_ms": 5}))?,
            WireKind::SlowStart { delay_ms: 5 }
        );
        assert!(spec(json!({"kind": "refuse"})).is_err());
        assert!(spec(json!({"kind": "nope"})).is_err());
        assert!(spec(json!({"kind": "hang", "bogus": 1})).is_err());
        Ok(())
    }
}
