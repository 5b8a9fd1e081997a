//! `mcpo fake-server`: a small, honest MCP server built on rmcp.
//!
//! It is what the README's demo, the integration tests and (later) the chaos harness run
//! against, so it is deliberately plain: every tool has a real JSON Schema and annotations,
//! answers exactly what its description says, and covers the shapes the proxy must carry
//! (`$defs`/`enum`/`oneOf` input, an `outputSchema`, tool errors and JSON-RPC errors).
//!
//! It can also misbehave on purpose. Faults come from a chaos run's hub (`--hub`, see `wire`
//! and `hub_client`) or from the HTTP form's control API (`control`), and live in one
//! [`FaultState`] (`faults`). Where each kind acts:
//!
//! | kind | stdio | streamable HTTP | legacy SSE (`sse`) |
//! | --- | --- | --- | --- |
//! | hang, latency, jsonrpc-error, tool-error | MCP handler | MCP handler | MCP handler |
//! | slow-start | `initialize` | `initialize` | `initialize` |
//! | garbage | the answer's frame replaced (`stdio`) | the answer's stream: one broken event, then its end (`control`) | the answer's event replaced (`sse`) |
//! | http-error | ignored (warning) | in front of rmcp (`control`) | the POST gets the status |
//! | reset | ignored (warning) | the answer's stream is cut (`control`) | the session's stream is cut mid-answer; resumable |
//! | refuse | exits before the handshake | exits before listening | exits before listening |
//! | crash, session-loss (one-shots) | exits; session-loss ignored | exits; forgets sessions | exits; forgets sessions, ends their streams |

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorCode, ErrorData,
    GetPromptRequestParams, GetPromptResponse, GetPromptResult, Implementation,
    InitializeRequestParams, InitializeResult, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams,
    ReadResourceResponse, ReadResourceResult, ServerCapabilities, ServerConfig,
};
use rmcp::service::{RequestContext, RoleServer, ServiceExt};
use serde_json::{Map, Value, json};

pub mod control;
pub mod faults;
pub mod garbage;
pub mod hub_client;
pub mod sse;
pub mod stdio;
pub mod wire;

use faults::{FaultState, RequestRef, Transport};
use wire::WireKind;

/// Errors of the fake server's command.
#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    #[error("unknown transport {0:?}: use stdio, streamable-http or sse")]
    Transport(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("MCP session failed: {0}")]
    Mcp(String),
    #[error("refusing to start: a refuse fault is in force for {id:?}")]
    Refused { id: String },
    #[error("--extra-tools {path}: {message}")]
    ExtraTools { path: String, message: String },
}

/// The fake server's handler.
#[derive(Clone)]
pub struct FakeServer {
    id: String,
    tools: Arc<ListToolsResult>,
    /// `slow` holds this while it works: the fake models a server that does one piece of
    /// heavy work at a time, as many single-threaded stdio servers do, which is what a pool
    /// of several processes is for.
    busy: Arc<tokio::sync::Mutex<()>>,
    /// Calls that were cancelled by the client (`notifications/cancelled`) while working.
    pub cancelled: Arc<std::sync::atomic::AtomicU64>,
    /// Whether the tool `bonus` is listed (flipped by `toggle_bonus`).
    bonus: Arc<std::sync::atomic::AtomicBool>,
    /// The state `incr` changes.
    counter: Arc<std::sync::atomic::AtomicU64>,
    /// Where each `incr` is also written down (`--journal`): a count that outlives the
    /// process, for tests that kill it mid-call and must know how often the tool ran.
    journal: Option<Arc<std::path::PathBuf>>,
    /// The faults in force, shared with the HTTP layer and the stdout writer.
    pub faults: FaultState,
    /// Told whenever the tool list changes, for `subscriptions/listen` (protocol 2026-07-28,
    /// where change notifications travel only on a subscription).
    list_changed: tokio::sync::broadcast::Sender<()>,
    /// When this session's handshake finished (one per handler: [`FakeServer::for_session`]),
    /// for faults scoped to the sessions alive when they arrived.
    born: Arc<std::sync::OnceLock<tokio::time::Instant>>,
}

impl FakeServer {
    pub fn new(id: &str, faults: FaultState) -> Self {
        let tools =
            serde_json::from_value(json!({ "tools": tool_definitions() })).unwrap_or_else(|e| {
                tracing::error!(error = %e, "built-in tool definitions do not parse");
                ListToolsResult::default()
            });
        FakeServer {
            id: id.to_string(),
            tools: Arc::new(tools),
            busy: Arc::new(tokio::sync::Mutex::new(())),
            cancelled: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            bonus: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            counter: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            journal: None,
            faults,
            list_changed: tokio::sync::broadcast::channel(16).0,
            born: Arc::default(),
        }
    }

    /// The handler of a new session: everything shared with this one but the moment its
    /// handshake finishes.
    pub fn for_session(&self) -> Self {
        FakeServer {
            born: Arc::default(),
            ..self.clone()
        }
    }

    /// A request on this session, as the faults see it.
    fn on<'a>(&self, tool: Option<&'a str>, request: Option<u64>) -> RequestRef<'a> {
        RequestRef {
            tool,
            request,
            born: self.born.get().copied(),
        }
    }
}

impl FakeServer {
    /// Adds the tools of a JSON file (an array of tool definitions) to the listing.
    fn list_extra_tools(&mut self, path: &std::path::Path) -> Result<(), FakeError> {
        let fail = |message: String| FakeError::ExtraTools {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let extra: Vec<rmcp::model::Tool> =
            serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
        Arc::make_mut(&mut self.tools).tools.extend(extra);
        Ok(())
    }
}

/// The tools, written as the JSON a real server would list, so that what is tested is the
/// wire format and not a derive macro's idea of it.
pub fn tool_definitions() -> Value {
    json!([
        {
            "name": "echo",
            "description": "Echoes back the message it is given.",
            "inputSchema": {
                "type": "object",
                "properties": {"message": {"type": "string", "description": "Text to echo back"}},
                "required": ["message"]
            },
            "annotations": {"readOnlyHint": true, "idempotentHint": true, "openWorldHint": false}
        },
        {
            "name": "add",
            "description": "Adds two integers.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "a": {"type": "integer", "description": "First addend"},
                    "b": {"type": "integer", "description": "Second addend"}
                },
                "required": ["a", "b"]
            },
            "annotations": {"readOnlyHint": true, "idempotentHint": true, "openWorldHint": false}
        },
        {
            "name": "slow",
            "description": "Works for the given number of milliseconds, then says so. The server does one such piece of work at a time; further calls queue behind it.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "ms": {"type": "integer", "minimum": 0, "maximum": 600000, "description": "Milliseconds to wait"},
                    "tag": {"type": "string", "maxLength": 64, "description": "Optional text repeated in the answer, in brackets"}
                },
                "required": ["ms"]
            },
            "annotations": {"readOnlyHint": true, "idempotentHint": true, "openWorldHint": false}
        },
        {
            "name": "progress",
            "description": "Works for steps x every_ms milliseconds, sending notifications/progress after each step (when the request asked for it with a progress token), then says how many steps it made.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "steps": {"type": "integer", "minimum": 1, "maximum": 1000, "description": "How many steps"},
                    "every_ms": {"type": "integer", "minimum": 0, "maximum": 60000, "description": "Milliseconds per step"},
                    "tag": {"type": "string", "maxLength": 64, "description": "Optional text repeated in the answer, in brackets"}
                },
                "required": ["steps", "every_ms"]
            },
            "annotations": {"readOnlyHint": true, "idempotentHint": true, "openWorldHint": false}
        },
        {
            "name": "sleep",
            "description": "Waits the given number of milliseconds, then says so. Unlike `slow`, any number of these run at once: each only holds its call open.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "ms": {"type": "integer", "minimum": 0, "maximum": 600000, "description": "Milliseconds to wait"},
                    "tag": {"type": "string", "maxLength": 64, "description": "Optional text repeated in the answer, in brackets"}
                },
                "required": ["ms"]
            },
            "annotations": {"readOnlyHint": true, "idempotentHint": true, "openWorldHint": false}
        },
        {
            "name": "measure_shape",
            "description": "Computes the area of a circle or a rectangle.",
            "inputSchema": {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": {
                    "Unit": {"type": "string", "enum": ["cm", "m", "in"], "description": "Length unit"},
                    "Circle": {
                        "type": "object",
                        "properties": {
                            "kind": {"const": "circle"},
                            "radius": {"type": "number", "exclusiveMinimum": 0}
                        },
                        "required": ["kind", "radius"],
                        "additionalProperties": false
                    },
                    "Rectangle": {
                        "type": "object",
                        "properties": {
                            "kind": {"const": "rectangle"},
                            "width": {"type": "number", "minimum": 0},
                            "height": {"type": "number", "minimum": 0}
                        },
                        "required": ["kind", "width", "height"],
                        "additionalProperties": false
                    }
                },
                "properties": {
                    "shape": {"oneOf": [{"$ref": "#/$defs/Circle"}, {"$ref": "#/$defs/Rectangle"}]},
                    "unit": {"$ref": "#/$defs/Unit", "default": "cm"},
                    "label": {"type": ["string", "null"], "maxLength": 40, "default": null}
                },
                "required": ["shape"]
            },
            "annotations": {"readOnlyHint": true, "idempotentHint": true, "openWorldHint": false}
        },
        {
            "name": "stats",
            "description": "Summarises a list of numbers.",
            "inputSchema": {
                "type": "object",
                "properties": {"numbers": {"type": "array", "items": {"type": "number"}, "minItems": 1}},
                "required": ["numbers"]
            },
            "outputSchema": {
                "type": "object",
                "properties": {
                    "count": {"type": "integer"},
                    "sum": {"type": "number"},
                    "mean": {"type": "number"}
                },
                "required": ["count", "sum", "mean"]
            },
            "annotations": {"readOnlyHint": true, "idempotentHint": true, "openWorldHint": false}
        },
        {
            "name": "fail",
            "description": "Reports a tool error (isError) with the given message.",
            "inputSchema": {
                "type": "object",
                "properties": {"message": {"type": "string"}},
                "required": ["message"]
            },
            "annotations": {"readOnlyHint": true, "idempotentHint": true, "openWorldHint": false}
        },
        {
            "name": "toggle_bonus",
            "description": "Adds the tool `bonus` to the tool list, or removes it, and sends notifications/tools/list_changed.",
            "inputSchema": {"type": "object", "properties": {}},
            "annotations": {"readOnlyHint": false, "idempotentHint": false, "openWorldHint": false}
        },
        {
            "name": "request_meta",
            "description": "Returns the `_meta` object the call carried (forwarded headers show up here).",
            "inputSchema": {"type": "object", "properties": {}},
            "annotations": {"readOnlyHint": true, "idempotentHint": true, "openWorldHint": false}
        },
        {
            "name": "whoami",
            "description": "Says which fake server process answered: its id and PID.",
            "inputSchema": {"type": "object", "properties": {}},
            "annotations": {"readOnlyHint": true, "idempotentHint": true, "openWorldHint": false}
        },
        {
            "name": "incr",
            "description": "Adds one to this process's counter and returns the new value, after working `ms` milliseconds (default 0). Not idempotent: each call changes state.",
            "inputSchema": {
                "type": "object",
                "properties": {"ms": {"type": "integer", "minimum": 0, "maximum": 600000, "description": "Milliseconds to work after counting"}}
            },
            "annotations": {"readOnlyHint": false, "idempotentHint": false, "openWorldHint": false}
        },
        {
            "name": "announce_then_freeze",
            "description": "Sends notifications/tools/list_changed, answers, then stops its own process (SIGSTOP): a server that announces a change and then hangs.",
            "inputSchema": {"type": "object", "properties": {}},
            "annotations": {"readOnlyHint": false, "idempotentHint": false, "openWorldHint": false}
        },
        {
            "name": "jsonrpc_error",
            "description": "Answers with a JSON-RPC error of the given code.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "code": {"type": "integer"},
                    "message": {"type": "string"},
                    "data": {}
                },
                "required": ["code", "message"]
            },
            "annotations": {"readOnlyHint": true, "idempotentHint": true, "openWorldHint": false}
        }
    ])
}

fn text(s: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(s.into())])
}

fn invalid(message: impl Into<String>) -> ErrorData {
    ErrorData::new(ErrorCode(-32602), message.into(), None)
}

fn int_arg(args: &Map<String, Value>, key: &str) -> Result<i64, ErrorData> {
    args.get(key)
        .and_then(Value::as_i64)
        .ok_or_else(|| invalid(format!("argument '{key}' must be an integer")))
}

/// ` [TAG]` when the call has a `tag` (the chaos harness makes answers unique with it).
fn tag_suffix(args: &Map<String, Value>) -> String {
    args.get("tag")
        .and_then(Value::as_str)
        .map(|t| format!(" [{t}]"))
        .unwrap_or_default()
}

fn str_arg<'a>(args: &'a Map<String, Value>, key: &str) -> Result<&'a str, ErrorData> {
    args.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("argument '{key}' must be a string")))
}

impl FakeServer {
    async fn run_tool(
        &self,
        name: &str,
        args: &Map<String, Value>,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<CallToolResult, ErrorData> {
        match name {
            "echo" => Ok(text(str_arg(args, "message")?)),
            "add" => {
                let sum = int_arg(args, "a")?
                    .checked_add(int_arg(args, "b")?)
                    .ok_or_else(|| invalid("the sum overflows a 64-bit integer"))?;
                Ok(text(sum.to_string()))
            }
            "sleep" => {
                let ms = int_arg(args, "ms")?.clamp(0, 600_000) as u64;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
                    _ = cancel.cancelled() => {
                        self.cancelled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        return Err(ErrorData::new(ErrorCode(-32800), "request cancelled", None));
                    }
                }
                Ok(text(format!("slept {ms} ms{}", tag_suffix(args))))
            }
            "slow" => {
                let ms = int_arg(args, "ms")?.clamp(0, 600_000) as u64;
                let _working = self.busy.lock().await;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
                    _ = cancel.cancelled() => {
                        self.cancelled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        return Err(ErrorData::new(ErrorCode(-32800), "request cancelled", None));
                    }
                }
                Ok(text(format!(
                    "slept {ms} ms in process {}{}",
                    std::process::id(),
                    tag_suffix(args)
                )))
            }
            "measure_shape" => {
                let shape = args
                    .get("shape")
                    .and_then(Value::as_object)
                    .ok_or_else(|| invalid("argument 'shape' must be an object"))?;
                let num = |k: &str| shape.get(k).and_then(Value::as_f64).unwrap_or(0.0);
                let area = match shape.get("kind").and_then(Value::as_str) {
                    Some("circle") => std::f64::consts::PI * num("radius").powi(2),
                    Some("rectangle") => num("width") * num("height"),
                    _ => return Err(invalid("shape.kind must be circle or rectangle")),
                };
                let unit = args.get("unit").and_then(Value::as_str).unwrap_or("cm");
                Ok(text(
                    json!({"area": area, "unit": format!("{unit}^2")}).to_string(),
                ))
            }
            "stats" => {
                let numbers: Vec<f64> = args
                    .get("numbers")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_f64).collect())
                    .unwrap_or_default();
                let sum: f64 = numbers.iter().sum();
                let count = numbers.len();
                let mean = if count == 0 { 0.0 } else { sum / count as f64 };
                let structured = json!({"count": count, "sum": sum, "mean": mean});
                let mut result = text(structured.to_string());
                result.structured_content = Some(structured);
                Ok(result)
            }
            "whoami" => Ok(text(
                json!({"id": self.id, "pid": std::process::id()}).to_string(),
            )),
            "incr" => {
                let n = self
                    .counter
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                    + 1;
                self.journal("incr");
                let ms = args
                    .get("ms")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
                    .clamp(0, 600_000) as u64;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
                    _ = cancel.cancelled() => {
                        self.cancelled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        return Err(cancelled());
                    }
                }
                Ok(text(n.to_string()))
            }
            "fail" => Ok(CallToolResult::error(vec![ContentBlock::text(
                str_arg(args, "message")?.to_string(),
            )])),
            "jsonrpc_error" => {
                let code = i32::try_from(int_arg(args, "code")?)
                    .map_err(|_| invalid("argument 'code' must fit in 32 bits"))?;
                Err(ErrorData::new(
                    ErrorCode(code),
                    str_arg(args, "message")?.to_string(),
                    args.get("data").cloned(),
                ))
            }
            other => Err(invalid(format!("unknown tool '{other}'"))),
        }
    }
}

impl FakeServer {
    /// Writes `what` down in the journal, if there is one: one line `PID what`, appended with
    /// a single write so concurrent calls and processes do not interleave.
    fn journal(&self, what: &str) {
        let Some(path) = &self.journal else { return };
        use std::io::Write as _;
        let line = format!("{} {what}\n", std::process::id());
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path.as_ref())
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the journal");
        }
    }
}

/// The error of a request its client cancelled while a fault held it.
fn cancelled() -> ErrorData {
    ErrorData::new(ErrorCode(-32800), "request cancelled", None)
}

impl FakeServer {
    /// Applies the faults that act on a tool call's answer: latency first, then an error in
    /// place of the answer (`Some` is that error), and on stdio a garbage mark on the answer
    /// with JSON-RPC id `rpc_id`, which the stdout writer replaces when it writes it.
    async fn call_faults(
        &self,
        on: RequestRef<'_>,
        rpc_id: &rmcp::model::RequestId,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Option<Result<CallToolResult, ErrorData>> {
        // On HTTP a broken answer is the HTTP layer's business (see `control`, `sse`).
        let on_stdio = self.faults.transport() == Transport::Stdio;
        let hits = self
            .faults
            .hits(on, |k| match k {
                WireKind::Latency { .. } | WireKind::JsonrpcError { .. } | WireKind::ToolError => {
                    true
                }
                WireKind::Garbage { .. } => on_stdio,
                _ => false,
            })
            .await;
        let id = serde_json::to_string(rpc_id).unwrap_or_default();
        let delay: Duration = hits
            .iter()
            .filter_map(|f| match f.kind {
                WireKind::Latency { min_ms, max_ms } => {
                    self.faults.note_applied(f, on.request);
                    let pick = self.faults.value_draw(f, on.request, &id);
                    Some(faults::latency(min_ms, max_ms, pick))
                }
                _ => None,
            })
            .sum();
        if !delay.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = cancel.cancelled() => return Some(Err(cancelled())),
            }
        }
        // The first error in the list takes the answer; only the faults that acted count as
        // applied (a garbage mark counts when the writer replaces the answer).
        let mut answer = None;
        for fault in hits {
            match &fault.kind {
                WireKind::Garbage { .. } => {
                    let pick = self.faults.value_draw(&fault, on.request, &id);
                    let mark = faults::GarbageMark::new(&fault, on.request, pick);
                    self.faults.mark_garbage(id.clone(), mark);
                }
                WireKind::JsonrpcError { code, message } if answer.is_none() => {
                    self.faults.note_applied(&fault, on.request);
                    answer = Some(Err(ErrorData::new(
                        ErrorCode(*code),
                        message
                            .clone()
                            .unwrap_or_else(|| "injected fault: jsonrpc-error".into()),
                        None,
                    )));
                }
                WireKind::ToolError if answer.is_none() => {
                    self.faults.note_applied(&fault, on.request);
                    answer = Some(Ok(CallToolResult::error(vec![ContentBlock::text(
                        "injected fault: tool-error",
                    )])));
                }
                _ => {}
            }
        }
        answer
    }
}

impl rmcp::ServerHandler for FakeServer {
    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        // A slow-start window open now delays this handshake; one that opens later does not
        // touch a server that has started.
        if let Some((fault, delay)) = self.faults.slow_start() {
            self.faults.note_applied(&fault, None);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = context.ct.cancelled() => return Err(cancelled()),
            }
        }
        // What rmcp's default `initialize` does.
        context.peer.set_peer_info(request.clone());
        let _ = self.born.set(tokio::time::Instant::now());
        self.negotiate_initialize(&request)
    }

    async fn ping(&self, context: RequestContext<RoleServer>) -> Result<(), ErrorData> {
        self.faults
            .hold_while_hung(self.on(None, None), &context.ct)
            .await
            .map_err(|_| cancelled())
    }

    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_prompts()
                .build(),
        );
        info.server_info =
            Implementation::new(format!("fake-{}", self.id), env!("CARGO_PKG_VERSION"));
        info.instructions = Some(format!(
            "A fake MCP server ({}) for tests and demos: echo, add, slow, sleep, measure_shape, stats, fail, toggle_bonus, request_meta, whoami, incr, announce_then_freeze, jsonrpc_error.",
            self.id
        ));
        info
    }

    fn accepted_subscription_filter(
        &self,
        requested: &rmcp::model::SubscriptionFilter,
    ) -> Option<rmcp::model::SubscriptionFilter> {
        (requested.tools_list_changed == Some(true)).then(|| {
            rmcp::model::SubscriptionFilter::builder()
                .tools_list_changed()
                .build()
        })
    }

    async fn listen(&self, context: rmcp::service::SubscriptionContext) -> Result<(), ErrorData> {
        let mut changes = self.list_changed.subscribe();
        loop {
            tokio::select! {
                change = changes.recv() => {
                    if change.is_err() {
                        return Ok(());
                    }
                    let note = rmcp::model::ServerNotification::ToolListChangedNotification(
                        Default::default(),
                    );
                    if context.sink().send(note).await.is_err() {
                        return Ok(());
                    }
                }
                _ = context.cancelled() => return Ok(()),
            }
        }
    }

    /// One resource that names the instance (`fake://{id}/identity`), so that a test can see
    /// which server a read reached.
    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        serde_json::from_value(json!({"resources": [{
            "uri": format!("fake://{}/identity", self.id),
            "name": "identity",
            "mimeType": "text/plain",
        }]}))
        .map_err(|e| ErrorData::internal_error(e.to_string(), None))
    }

    /// `fake://{id}/echo/{text}`: reads back `text`.
    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        serde_json::from_value(json!({"resourceTemplates": [{
            "uriTemplate": format!("fake://{}/echo/{{text}}", self.id),
            "name": "echo",
            "mimeType": "text/plain",
        }]}))
        .map_err(|e| ErrorData::internal_error(e.to_string(), None))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let own = format!("fake://{}/", self.id);
        let text = match request.uri.strip_prefix(&own) {
            Some("identity") => format!("fake-{}", self.id),
            Some(rest) if rest.starts_with("echo/") => rest["echo/".len()..].to_string(),
            _ => {
                return Err(ErrorData::resource_not_found(
                    format!("no resource {}", request.uri),
                    None,
                ));
            }
        };
        serde_json::from_value::<ReadResourceResult>(json!({"contents": [{
            "uri": request.uri, "mimeType": "text/plain", "text": text,
        }]}))
        .map(Into::into)
        .map_err(|e| ErrorData::internal_error(e.to_string(), None))
    }

    /// `greet`, with an optional `name`.
    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        serde_json::from_value(json!({"prompts": [{
            "name": "greet",
            "description": "A greeting from this fake.",
            "arguments": [{"name": "name", "required": false}],
        }]}))
        .map_err(|e| ErrorData::internal_error(e.to_string(), None))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        if request.name != "greet" {
            return Err(ErrorData::invalid_params(
                format!("no prompt {}", request.name),
                None,
            ));
        }
        let name = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("world");
        serde_json::from_value::<GetPromptResult>(json!({"messages": [{
            "role": "user",
            "content": {"type": "text", "text": format!("hello {name} from fake-{}", self.id)},
        }]}))
        .map(Into::into)
        .map_err(|e| ErrorData::internal_error(e.to_string(), None))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.faults
            .hold_while_hung(self.on(None, None), &context.ct)
            .await
            .map_err(|_| cancelled())?;
        let mut tools = (*self.tools).clone();
        if self.bonus.load(std::sync::atomic::Ordering::SeqCst)
            && let Ok(bonus) = serde_json::from_value(json!({
                "name": "bonus",
                "description": "Listed only after toggle_bonus.",
                "inputSchema": {"type": "object", "properties": {}}
            }))
        {
            tools.tools.push(bonus);
        }
        Ok(tools)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let harness_request = request
            .arguments
            .as_ref()
            .and_then(|args| wire::request_of(&request.name, args));
        // Over HTTP the HTTP layer counts the call as it arrives, before its own faults.
        if self.faults.transport() == Transport::Stdio {
            self.faults.note_call(&request.name, harness_request);
        }
        let on = self.on(Some(&request.name), harness_request);
        self.faults
            .hold_while_hung(on, &context.ct)
            .await
            .map_err(|_| cancelled())?;
        if let Some(answer) = self.call_faults(on, &context.id, &context.ct).await {
            return answer.map(Into::into);
        }
        match request.name.as_ref() {
            "toggle_bonus" => {
                let now = !self
                    .bonus
                    .fetch_xor(true, std::sync::atomic::Ordering::SeqCst);
                // Both ways a client may listen: the plain notification (up to 2025-11-25)
                // and every open subscription (2026-07-28).
                let _ = self.list_changed.send(());
                if let Err(e) = context.peer.notify_tool_list_changed().await {
                    tracing::warn!(error = %e, "could not send tools/list_changed");
                }
                return Ok(text(if now { "bonus listed" } else { "bonus removed" }).into());
            }
            "announce_then_freeze" => {
                if let Err(e) = context.peer.notify_tool_list_changed().await {
                    tracing::warn!(error = %e, "could not send tools/list_changed");
                }
                // Give the notification and this answer time to be written, then stop.
                tokio::spawn(async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    // SAFETY: raise(3) stops this very process; it touches no memory.
                    unsafe {
                        libc::raise(libc::SIGSTOP);
                    }
                });
                return Ok(text("announced a change; freezing now").into());
            }
            "bonus" if self.bonus.load(std::sync::atomic::Ordering::SeqCst) => {
                return Ok(text("bonus").into());
            }
            _ => {}
        }
        if request.name == "progress" {
            let args = request.arguments.unwrap_or_default();
            return self.progress(&args, &context).await.map(Into::into);
        }
        if request.name == "request_meta" {
            // rmcp moves the request's `_meta` into the context.
            let meta = serde_json::to_value(&context.meta).unwrap_or(Value::Null);
            return Ok(text(meta.to_string()).into());
        }
        let args = request.arguments.unwrap_or_default();
        self.run_tool(&request.name, &args, &context.ct)
            .await
            .map(Into::into)
    }
}

impl FakeServer {
    /// `progress`: a long call that says it is alive, as long-running tools should.
    async fn progress(
        &self,
        args: &Map<String, Value>,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let steps = int_arg(args, "steps")?.clamp(1, 1000);
        let every = Duration::from_millis(int_arg(args, "every_ms")?.clamp(0, 60_000) as u64);
        let token = context.meta.get_progress_token();
        for step in 1..=steps {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = context.ct.cancelled() => {
                    self.cancelled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Err(ErrorData::new(ErrorCode(-32800), "request cancelled", None));
                }
            }
            if let Some(token) = &token {
                let mut note =
                    rmcp::model::ProgressNotificationParam::new(token.clone(), step as f64);
                note.total = Some(steps as f64);
                let _ = context.peer.notify_progress(note).await;
            }
        }
        Ok(text(format!(
            "progressed {steps} steps{}",
            tag_suffix(args)
        )))
    }
}

/// Runs the fake server until its input closes (stdio) or it is killed (HTTP).
pub async fn run(args: &crate::cli::FakeServerArgs) -> Result<(), FakeError> {
    let transport = match args.transport.as_str() {
        "stdio" => Transport::Stdio,
        "streamable-http" | "streamable_http" | "http" => Transport::StreamableHttp,
        "sse" => Transport::Sse,
        other => return Err(FakeError::Transport(other.to_string())),
    };
    let faults = FaultState::new(transport);
    let mut server = FakeServer::new(&args.id, faults.clone());
    server.journal = args.journal.clone().map(Arc::new);
    if let Some(path) = &args.extra_tools {
        server.list_extra_tools(path)?;
    }
    match transport {
        Transport::Stdio => {
            join_hub(
                args,
                &faults,
                Arc::new(|| tracing::warn!("session-loss needs HTTP sessions; ignored on stdio")),
            )
            .await;
            refuse_if_asked(args, &faults)?;
            let (stdin, stdout) = rmcp::transport::stdio();
            let stdout = stdio::InjectingWriter::new(stdout, faults);
            let running = server
                .serve((stdin, stdout))
                .await
                .map_err(|e| FakeError::Mcp(e.to_string()))?;
            if let Some(ms) = args.die_after_ms {
                // A server that crashes shortly after every handshake: a crash loop.
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    std::process::exit(3);
                });
            }
            running
                .waiting()
                .await
                .map_err(|e| FakeError::Mcp(e.to_string()))?;
            Ok(())
        }
        Transport::StreamableHttp => {
            let fake = control::HttpFake::new(server);
            let forget = Arc::clone(&fake);
            join_hub(args, &faults, Arc::new(move || forget.forget_sessions())).await;
            refuse_if_asked(args, &faults)?;
            let addr = format!("{}:{}", args.host, args.port);
            let (listener, local) = crate::net::bind(&addr)
                .await
                .map_err(|source| FakeError::Bind { addr, source })?;
            // The address on stdout lets whoever started us (tests, the harness) find the port.
            println!("fake-server listening on http://{local}/mcp");
            axum::serve(listener, fake.router())
                .await
                .map_err(|e| FakeError::Mcp(e.to_string()))
        }
        Transport::Sse => {
            let fake = sse::SseFake::new(server);
            let forget = Arc::clone(&fake);
            join_hub(args, &faults, Arc::new(move || forget.forget_sessions())).await;
            refuse_if_asked(args, &faults)?;
            let addr = format!("{}:{}", args.host, args.port);
            let (listener, local) = crate::net::bind(&addr)
                .await
                .map_err(|source| FakeError::Bind { addr, source })?;
            println!("fake-server listening on http://{local}/sse");
            axum::serve(listener, fake.router())
                .await
                .map_err(|e| FakeError::Mcp(e.to_string()))
        }
    }
}

/// Joins the fault hub if there is one. A hub that cannot be reached is not fatal: the fake
/// serves without faults, which a run's report shows as faults that never bit.
async fn join_hub(
    args: &crate::cli::FakeServerArgs,
    faults: &FaultState,
    on_session_loss: hub_client::OnSessionLoss,
) {
    let Some(addr) = &args.hub else {
        return;
    };
    let who = hub_client::Identity {
        id: &args.id,
        transport: faults.transport().wire_name(),
    };
    if let Err(e) = hub_client::join(addr, who, faults, on_session_loss).await {
        tracing::warn!("{e}; serving without faults");
    }
}

/// A refuse window open at start-up: exit before the handshake (stdio) or before listening
/// (HTTP), as a server that cannot start would.
fn refuse_if_asked(
    args: &crate::cli::FakeServerArgs,
    faults: &FaultState,
) -> Result<(), FakeError> {
    if faults.refuses() {
        return Err(FakeError::Refused {
            id: args.id.clone(),
        });
    }
    Ok(())
}
