//! The MCP front end: MCP clients get the same supervised, pooled, deadline-bound upstream
//! sessions as the OpenAPI routes. `/mcp` serves every configured server's tools at once, each
//! named `{server}__{tool}`; `/{server}/mcp` serves one server's tools under their own names
//! (in single-server mode, `/mcp` does). Streamable HTTP (rmcp's server), both protocol eras.
//!
//! The endpoint's sessions belong to the proxy, not to any upstream: an upstream crash or a lost
//! upstream session is recovered behind them (`Upstream::call_tool`, the same call path as
//! `POST /{server}/{tool}`), so an MCP client never has to re-initialize because of it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use rmcp::ErrorData;
use rmcp::handler::server::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ErrorCode, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::AppState;
use super::error::upstream_answer;
use crate::catalog::{ToolEntry, ValidationStack};
use crate::http::validate::capped_text;
use crate::metrics::RequestClass;
use crate::upstream::{Failure, Upstream};

/// Separates the server from the tool in the names `/mcp` gives tools (`time__get_current_time`).
pub const SEPARATOR: &str = "__";

/// At most this many schema errors are listed in an invalid-params error.
const MAX_ERRORS: usize = 10;

type Service = StreamableHttpService<McpFront, LocalSessionManager>;

/// The endpoints' services, one per scope (every server, or one), made on first use so that a
/// server added by a reload gets its own.
#[derive(Default)]
pub struct Endpoints {
    services: Mutex<HashMap<Option<String>, Service>>,
}

impl Endpoints {
    fn service(&self, state: &Arc<AppState>, scope: Option<String>) -> Service {
        let mut services = self
            .services
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        services
            .entry(scope.clone())
            .or_insert_with(|| {
                let front = McpFront {
                    state: state.clone(),
                    scope,
                };
                // Host names are the operator's to choose (the proxy often runs behind a
                // reverse proxy or under a service name); the API key guards the endpoint.
                let config = StreamableHttpServerConfig::default().disable_allowed_hosts();
                StreamableHttpService::new(
                    move || Ok(front.clone()),
                    Arc::new(LocalSessionManager::default()),
                    config,
                )
            })
            .clone()
    }
}

/// `/mcp`: every server (config mode) or the single server.
pub async fn all(State(state): State<Arc<AppState>>, request: Request<Body>) -> Response {
    let scope = if state.config.config_mode {
        None
    } else {
        state.upstreams().first().map(|u| u.name().to_string())
    };
    serve(state, scope, request).await
}

/// `/{server}/mcp`: one server's tools under their own names.
pub async fn one(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(server): axum::extract::Path<String>,
    request: Request<Body>,
) -> Response {
    if let Err(e) = state.upstream(&server) {
        return e.into_response();
    }
    serve(state, Some(server), request).await
}

async fn serve(state: Arc<AppState>, scope: Option<String>, request: Request<Body>) -> Response {
    let service = state.mcp.service(&state, scope);
    let delete = request.method() == http::Method::DELETE;
    let mut response = match service.oneshot(request).await {
        Ok(response) => response.map(Body::new),
        Err(never) => match never {},
    };
    // rmcp answers a session's DELETE with 202, which clients (the Python SDK among them) take
    // for a failure: the session is gone, so say so as 204.
    if delete && response.status() == http::StatusCode::ACCEPTED {
        *response.status_mut() = http::StatusCode::NO_CONTENT;
    }
    response
}

/// The MCP handler of one endpoint scope.
#[derive(Clone)]
pub struct McpFront {
    state: Arc<AppState>,
    /// `None`: every server, tools named `{server}__{tool}`; `Some(name)`: that one.
    scope: Option<String>,
}

impl McpFront {
    fn upstreams(&self) -> Vec<Arc<Upstream>> {
        let all = self.state.upstreams();
        match &self.scope {
            None => all,
            Some(name) => all.into_iter().filter(|u| u.name() == name).collect(),
        }
    }

    /// The upstream and listed tool an endpoint tool name stands for.
    fn resolve(&self, name: &str) -> Option<(Arc<Upstream>, Arc<ToolEntry>)> {
        for upstream in self.upstreams() {
            let tool = match &self.scope {
                Some(_) => name,
                None => match name
                    .strip_prefix(upstream.name())
                    .and_then(|rest| rest.strip_prefix(SEPARATOR))
                {
                    Some(tool) => tool,
                    None => continue,
                },
            };
            if let Some(entry) = upstream.catalog().and_then(|c| c.tool(tool).cloned()) {
                return Some((upstream, entry));
            }
        }
        None
    }
}

impl ServerHandler for McpFront {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(ServerCapabilities::builder().enable_tools().build());
        info.server_info = Implementation::new("mcpo", env!("CARGO_PKG_VERSION"));
        info
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut tools = Vec::new();
        for upstream in self.upstreams() {
            // A server that has not listed its tools yet (starting, down) contributes none;
            // its tools appear once it is up, as its OpenAPI routes do.
            let Some(catalog) = upstream.catalog() else {
                continue;
            };
            for tool in catalog.tools() {
                let name = match &self.scope {
                    Some(_) => tool.name.clone(),
                    None => format!("{}{SEPARATOR}{}", upstream.name(), tool.name),
                };
                let mut listed = json!({"name": name, "inputSchema": tool.input_schema});
                if let Some(t) = &tool.title {
                    listed["title"] = json!(t);
                }
                if let Some(d) = &tool.description {
                    listed["description"] = json!(d);
                }
                if let Some(o) = &tool.output_schema {
                    listed["outputSchema"] = o.clone();
                }
                if let Some(a) = &tool.annotations {
                    listed["annotations"] = a.clone();
                }
                tools.push(listed);
            }
        }
        serde_json::from_value(json!({ "tools": tools }))
            .map_err(|e| ErrorData::internal_error(format!("tool list: {e}"), None))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some((upstream, tool)) = self.resolve(&request.name) else {
            return Err(ErrorData::invalid_params(
                format!("no tool named '{}'", request.name),
                None,
            ));
        };
        let started = tokio::time::Instant::now();
        let arguments = request.arguments.unwrap_or_default();
        if let Some(validator) = &tool.validator {
            let instance = Value::Object(arguments.clone());
            let stack = tool.validation_stack(|| crate::bounds::value_depth(&instance));
            let check = {
                let validator = validator.clone();
                move || -> Vec<String> {
                    validator
                        .iter_errors(&instance)
                        .take(MAX_ERRORS)
                        .map(|e| {
                            let at = e.instance_path().to_string();
                            format!("{}: {}", capped_text(&at), capped_text(&e))
                        })
                        .collect()
                }
            };
            let errors = match stack {
                ValidationStack::Inline => check(),
                ValidationStack::Deep => crate::bounds::run_deep(check)
                    .await
                    .map_err(|e| ErrorData::internal_error(format!("validation: {e}"), None))?,
                ValidationStack::Refused => vec![
                    "the arguments nest too deep to be checked against this tool's recursive schema"
                        .to_string(),
                ],
            };
            if !errors.is_empty() {
                self.record(&upstream, &tool, RequestClass::Invalid, started);
                return Err(ErrorData::invalid_params(
                    format!("arguments of '{}' do not match its schema", request.name),
                    Some(json!({ "errors": errors })),
                ));
            }
        }
        let outcome = upstream.call_tool(&tool, Some(arguments), None).await;
        let class = match &outcome {
            Ok(_) => RequestClass::Success,
            Err(f) => RequestClass::Failure(f.class()),
        };
        self.record(&upstream, &tool, class, started);
        match outcome {
            // Tool errors (`isError`) are results in MCP: passed on as they came.
            Ok(result) => serde_json::from_value::<CallToolResult>(result)
                .map(Into::into)
                .map_err(|e| ErrorData::internal_error(format!("the server's result: {e}"), None)),
            Err(failure) => Err(error_of(failure, upstream.name(), &tool.name)),
        }
    }
}

impl McpFront {
    fn record(
        &self,
        upstream: &Upstream,
        tool: &ToolEntry,
        class: RequestClass,
        started: tokio::time::Instant,
    ) {
        if self.state.metrics.enabled
            && let Some(m) = self.state.metrics.server(upstream.name())
        {
            m.record_request(&tool.name, class, started.elapsed());
        }
    }
}

/// A failed call as a JSON-RPC error: the server's own error as it came, anything else as an
/// internal error with the message the OpenAPI routes give and, in `data`, the HTTP status it
/// maps to there.
fn error_of(failure: Failure, server: &str, tool: &str) -> ErrorData {
    if let Failure::JsonRpc {
        code,
        message,
        data,
    } = failure
    {
        return ErrorData::new(ErrorCode(code), message, data);
    }
    let (status, body, retry_after) = upstream_answer(&failure, server, tool);
    let label = failure.label();
    let message = body["detail"]["message"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| format!("the call failed ({label})"));
    ErrorData::internal_error(
        message,
        Some(json!({"status": status.as_u16(), "class": label, "retryAfter": retry_after})),
    )
}
