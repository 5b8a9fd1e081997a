//! `mcpo fake-server`: a small, honest MCP server built on rmcp.
//!
//! It is what the README's demo, the integration tests and (later) the chaos harness run
//! against, so it is deliberately plain: every tool has a real JSON Schema and annotations,
//! answers exactly what its description says, and covers the shapes the proxy must carry
//! (`$defs`/`enum`/`oneOf` input, an `outputSchema`, tool errors and JSON-RPC errors).

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorCode, ErrorData,
    Implementation, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::{RequestContext, RoleServer, ServiceExt};
use serde_json::{Map, Value, json};

pub mod control;
pub mod wire;

/// Errors of the fake server's command.
#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    #[error("unknown transport {0:?}: use stdio or streamable-http")]
    Transport(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("MCP session failed: {0}")]
    Mcp(String),
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
}

impl FakeServer {
    pub fn new(id: &str) -> Self {
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
        }
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
                "properties": {"ms": {"type": "integer", "minimum": 0, "maximum": 600000, "description": "Milliseconds to wait"}},
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
            "description": "Adds one to this process's counter and returns the new value. Not idempotent: each call changes state.",
            "inputSchema": {"type": "object", "properties": {}},
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
                    "slept {ms} ms in process {}",
                    std::process::id()
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

impl rmcp::ServerHandler for FakeServer {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(ServerCapabilities::builder().enable_tools().build());
        info.server_info =
            Implementation::new(format!("fake-{}", self.id), env!("CARGO_PKG_VERSION"));
        info.instructions = Some(format!(
            "A fake MCP server ({}) for tests and demos: echo, add, slow, measure_shape, stats, fail, toggle_bonus, request_meta, whoami, incr, announce_then_freeze, jsonrpc_error.",
            self.id
        ));
        info
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
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
        match request.name.as_ref() {
            "toggle_bonus" => {
                let now = !self
                    .bonus
                    .fetch_xor(true, std::sync::atomic::Ordering::SeqCst);
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

/// Runs the fake server until its input closes (stdio) or it is killed (HTTP).
pub async fn run(args: &crate::cli::FakeServerArgs) -> Result<(), FakeError> {
    let (transport, host, port) = (args.transport.as_str(), &args.host, args.port);
    let server = FakeServer::new(&args.id);
    match transport {
        "stdio" => {
            let running = server
                .serve(rmcp::transport::stdio())
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
        "streamable-http" | "streamable_http" | "http" => {
            let addr = format!("{host}:{port}");
            let (listener, local) = crate::net::bind(&addr)
                .await
                .map_err(|source| FakeError::Bind { addr, source })?;
            let app = control::HttpFake::new(server).router();
            // The address on stdout lets whoever started us (tests, the harness) find the port.
            println!("fake-server listening on http://{local}/mcp");
            axum::serve(listener, app)
                .await
                .map_err(|e| FakeError::Mcp(e.to_string()))
        }
        other => Err(FakeError::Transport(other.to_string())),
    }
}
