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
use crate::upstream::{Failure, Status, Upstream};

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

/// How often an endpoint session looks for a change in the tools it serves.
const LIST_CHANGE_CHECK: std::time::Duration = std::time::Duration::from_millis(500);

impl McpFront {
    /// The servers whose tools this endpoint lists now, with their catalogs: a server that is
    /// down (or never listed its tools) is left out, so that it fails nothing for the others.
    fn listed(&self) -> Vec<(Arc<Upstream>, Arc<crate::catalog::ToolCatalog>)> {
        self.upstreams()
            .into_iter()
            .filter(|u| !matches!(u.view().status, Status::Down | Status::Stopped))
            .filter_map(|u| u.catalog().map(|c| (u, c)))
            .collect()
    }

    /// What identifies the set of tools listed now: each listed server and its catalog (a new
    /// listing is a new catalog). A change of it is a `list_changed`.
    fn tool_set(&self) -> Vec<(String, usize)> {
        let mut set: Vec<(String, usize)> = self
            .listed()
            .into_iter()
            .map(|(u, c)| (u.name().to_string(), Arc::as_ptr(&c) as usize))
            .collect();
        set.sort();
        set
    }

    /// Resolves once the set of tools listed differs from `last` (which it then holds), or
    /// never if `closed` says the client is gone first.
    async fn tool_set_changed(
        &self,
        last: &mut Vec<(String, usize)>,
        closed: impl Fn() -> bool,
    ) -> bool {
        let mut tick = tokio::time::interval(LIST_CHANGE_CHECK);
        loop {
            tick.tick().await;
            if closed() {
                return false;
            }
            let now = self.tool_set();
            if now != *last {
                *last = now;
                return true;
            }
        }
    }
}

impl ServerHandler for McpFront {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .build();
        let mut info = ServerConfig::new(capabilities);
        info.server_info = Implementation::new("mcpo", env!("CARGO_PKG_VERSION"));
        info
    }

    /// A session (protocol up to 2025-11-25) is told `notifications/tools/list_changed`
    /// whenever the tools it would list change: a server came up or went down, an upstream
    /// listed new tools, a reload added or removed a server. The watch ends with the session.
    async fn on_initialized(&self, context: rmcp::service::NotificationContext<RoleServer>) {
        let front = self.clone();
        let peer = context.peer.clone();
        tokio::spawn(async move {
            let mut last = front.tool_set();
            while front
                .tool_set_changed(&mut last, || peer.is_transport_closed())
                .await
            {
                if peer.notify_tool_list_changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// Protocol 2026-07-28: change notifications travel on a subscription.
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
        let mut last = self.tool_set();
        loop {
            tokio::select! {
                changed = self.tool_set_changed(&mut last, || false) => {
                    if !changed {
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

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut tools = Vec::new();
        // A server that has not listed its tools yet (starting), or is down, contributes
        // none; its tools appear (with a list_changed) once it is up.
        for (upstream, catalog) in self.listed() {
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
