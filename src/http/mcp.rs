//! The MCP front end: MCP clients get the same supervised, pooled, deadline-bound upstream
//! sessions as the OpenAPI routes. `/mcp` serves every configured server's tools at once, each
//! named `{server}__{tool}`; `/{server}/mcp` serves one server's tools under their own names
//! (in single-server mode, `/mcp` does). Streamable HTTP (rmcp's server), both protocol eras.
//!
//! The endpoint's sessions belong to the proxy, not to any upstream: an upstream crash or a lost
//! upstream session is recovered behind them (`Upstream::call_tool`, the same call path as
//! `POST /{server}/{tool}`), so an MCP client never has to re-initialize because of it.
//! Resources, prompts and completion of every server are aggregated too (`aggregate`).

mod aggregate;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use rmcp::ErrorData;
use rmcp::handler::server::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams, CompleteResult,
    ErrorCode, GetPromptRequestParams, GetPromptResponse, Implementation, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ProgressNotificationParam, ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities,
    ServerConfig,
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

/// At most this many schema errors are listed in an invalid-params error.
const MAX_ERRORS: usize = 10;

type Service = StreamableHttpService<McpFront, LocalSessionManager>;

/// How long an MCP session of the endpoint may sit idle before it is ended.
const SESSION_IDLE: std::time::Duration = std::time::Duration::from_secs(300);

/// The MCP specification asks servers to check `Origin` (a web page must not drive a local
/// endpoint), and a page whose name was rebound to 127.0.0.1 sends its own name as `Host`.
/// So: a request whose `Origin` is another origin than the one it was sent to is refused
/// unless that origin is listed in `--cors-allow-origins` (a `*` there does not count here);
/// and when the proxy listens on loopback only, a `Host` that is not a loopback name is
/// refused. A client that is no browser sends no `Origin` and is not affected.
fn refuse_origin(state: &AppState, headers: &http::HeaderMap) -> Option<Response> {
    let refuse = |why: &str| {
        Some(
            (
                http::StatusCode::FORBIDDEN,
                axum::Json(json!({"detail": {"message": why}})),
            )
                .into_response(),
        )
    };
    if super::auth::cross_origin(headers) {
        let origin = headers
            .get(http::header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let listed = state
            .config
            .cors_allow_origins
            .iter()
            .any(|o| o != "*" && o.eq_ignore_ascii_case(origin));
        if !listed {
            return refuse(
                "the MCP endpoint does not answer pages of another origin; list the origin in --cors-allow-origins to allow it",
            );
        }
    }
    let loopback_only = state
        .config
        .host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
        || state.config.host.eq_ignore_ascii_case("localhost");
    if loopback_only && !super::auth::host_is_loopback(headers) {
        return refuse(
            "the proxy listens on loopback only and this request names another host (DNS rebinding?)",
        );
    }
    None
}

/// The endpoints' services, one per scope (every server, or one), made on first use so that a
/// server added by a reload gets its own.
#[derive(Default)]
pub struct Endpoints {
    services: Mutex<HashMap<Option<String>, ScopedService>>,
}

/// A scope's service and the session manager it shares, whose count the cap reads.
type ScopedService = (Service, Arc<LocalSessionManager>);

impl Endpoints {
    fn service(
        &self,
        state: &Arc<AppState>,
        scope: Option<String>,
    ) -> (Service, Arc<LocalSessionManager>) {
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
                    names: Default::default(),
                };
                // Host names are the operator's to choose (the proxy often runs behind a
                // reverse proxy or under a service name); the API key guards the endpoint.
                // (`refuse_origin` checks Host where it matters: a loopback-only proxy.)
                let config = StreamableHttpServerConfig::default().disable_allowed_hosts();
                let mut manager = LocalSessionManager::default();
                manager.session_config.keep_alive = Some(SESSION_IDLE);
                let manager = Arc::new(manager);
                let service =
                    StreamableHttpService::new(move || Ok(front.clone()), manager.clone(), config);
                (service, manager)
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
    if let Some(refusal) = refuse_origin(&state, request.headers()) {
        return refusal;
    }
    let (service, sessions) = state.mcp.service(&state, scope);
    // A request without a session id may open one (an `initialize`): refused past the cap.
    if request.method() == http::Method::POST
        && !request.headers().contains_key("mcp-session-id")
        && sessions.sessions.read().await.len() >= state.config.max_mcp_sessions
    {
        let mut r = (
            http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"detail": {"message": format!(
                "the MCP endpoint has {} sessions open, its maximum (--max-mcp-sessions); try again shortly",
                state.config.max_mcp_sessions
            )}})),
        )
            .into_response();
        r.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("5"),
        );
        return r;
    }
    let delete = request.method() == http::Method::DELETE;
    let tag = crate::result_type::wants_result_type(request.headers());
    let mut response = match service.oneshot(request).await {
        Ok(response) => response.map(Body::new),
        Err(never) => match never {},
    };
    if tag {
        response = crate::result_type::tag_results(response).await;
    }
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
    /// The endpoint names of the tools, for the tool set they were made for.
    names: Arc<Mutex<Option<NamedSet>>>,
}

/// A tool set and the endpoint names made for it.
type NamedSet = (ToolSet, Arc<NameMap>);

type ToolSet = Vec<(String, usize)>;

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
        let names = self.names();
        names.by_name.get(name).cloned()
    }

    /// The names this endpoint lists its tools under, with what each stands for (made once
    /// per change of the served set).
    fn names(&self) -> Arc<NameMap> {
        let set = self.tool_set();
        let mut cached = self
            .names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, map)) = cached.as_ref()
            && *at == set
        {
            return map.clone();
        }
        let separator = &self.state.config.mcp_separator;
        let mut map = NameMap::default();
        for (upstream, catalog) in self.listed() {
            for tool in catalog.tools() {
                let server = self.scope.is_none().then(|| upstream.name());
                let name = endpoint_name(server, &tool.name, separator);
                if let Some((first, _)) = map.by_name.get(&name) {
                    map.collisions.push(format!(
                        "tool '{}' of server '{}' is not listed on the MCP endpoint: its name there, '{name}', is taken by a tool of server '{}'",
                        tool.name,
                        upstream.name(),
                        first.name()
                    ));
                    continue;
                }
                map.order.push(name.clone());
                map.by_name.insert(name, (upstream.clone(), tool.clone()));
            }
        }
        let map = Arc::new(map);
        *cached = Some((set, map.clone()));
        map
    }
}

/// The tools of an endpoint by the names it lists them under.
#[derive(Default)]
struct NameMap {
    by_name: HashMap<String, (Arc<Upstream>, Arc<ToolEntry>)>,
    /// The names in listing order.
    order: Vec<String>,
    /// Tools left out because another took their name.
    collisions: Vec<String>,
}

/// Longest tool name MCP clients pass on to model APIs (OpenAI's and Anthropic's limit).
const MAX_NAME: usize = 64;

/// The name of a tool on an endpoint: `{server}{separator}{tool}` on `/mcp` (its own name on
/// `/{server}/mcp`), made to fit `^[a-zA-Z0-9_-]{1,64}$`, what the model APIs accept: any other
/// character becomes `_`, and a name longer than 64 keeps its first 55 characters and adds
/// `_` and 8 hex digits of the SHA-256 of the name it stands for, so that it stays unique and
/// the same across listings. The proxy maps it back (see [`McpFront::resolve`]).
pub fn endpoint_name(server: Option<&str>, tool: &str, separator: &str) -> String {
    let full = match server {
        Some(server) => format!("{server}{separator}{tool}"),
        None => tool.to_string(),
    };
    let clean: String = full
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !clean.is_empty() && clean.len() <= MAX_NAME && clean == full {
        return clean;
    }
    // Too long, or characters changed: the hash keeps `a.b` and `a_b`, and two long names
    // that share their first 55 characters, apart.
    let short: String = clean.chars().take(MAX_NAME - 9).collect();
    format!("{short}_{}", &hex_digest(&full)[..8])
}

fn hex_digest(text: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Tools that `/mcp` (every server) leaves out because their names collide, for
/// `/diagnostics`.
pub fn name_collisions(state: &Arc<AppState>) -> Vec<String> {
    if !state.config.config_mode {
        return Vec::new();
    }
    let front = McpFront {
        state: state.clone(),
        scope: None,
        names: Default::default(),
    };
    front.names().collisions.clone()
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
        // Resources, prompts and completion are announced whatever the servers behind offer
        // now (capabilities are fixed at `initialize`, servers come and go): with none
        // offering them the lists are empty.
        // Logging is deprecated from protocol 2026-07-28 (SEP-2577) but part of 2025-11-25 and
        // older, which most clients still speak.
        #[allow(deprecated)]
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_resources()
            .enable_prompts()
            .enable_completions()
            .enable_logging()
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
        let names = self.names();
        for name in &names.order {
            let Some((_, tool)) = names.by_name.get(name) else {
                continue;
            };
            {
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

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        self.list_prompts_of_all().await
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        self.get_prompt_of(request).await.map(Into::into)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        self.list_resources_of_all().await
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        self.list_templates_of_all().await
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.read_resource_of(request).await.map(Into::into)
    }

    /// `logging/setLevel` is accepted (clients send it right after `initialize`, and the MCP
    /// conformance suite requires it of a server that announces `logging`). The endpoint
    /// relays no upstream log messages yet: on an upstream session shared by many clients a
    /// log line cannot be told apart by client, and sending one client's lines to another
    /// would leak them. So there is nothing for the level to filter.
    #[allow(deprecated)]
    async fn set_level(
        &self,
        _request: rmcp::model::SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Ok(())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        self.complete_of(request).await
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
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
        // rmcp marks a call the client cancelled (`notifications/cancelled`) on its token and
        // lets the handler run on: stop waiting, which drops the upstream call and so tells
        // the upstream to stop too.
        // A client that asked for progress (a token in `_meta`) gets the upstream's, under
        // its own token; each also renews the upstream call's window (rmcp's clock).
        let progress = context.meta.get_progress_token().map(|token| {
            let (sink, mut heard) =
                tokio::sync::mpsc::unbounded_channel::<ProgressNotificationParam>();
            let peer = context.peer.clone();
            // Ends when the call does (the last sender is dropped with it).
            tokio::spawn(async move {
                while let Some(mut note) = heard.recv().await {
                    note.progress_token = token.clone();
                    if peer.notify_progress(note).await.is_err() {
                        return;
                    }
                }
            });
            sink
        });
        let outcome = tokio::select! {
            outcome = upstream.call_tool_with_progress(&tool, Some(arguments), None, progress.as_ref()) => outcome,
            // Not recorded, like an OpenAPI client that hangs up: neither a success nor the
            // server's failure.
            () = context.ct.cancelled() => {
                return Err(ErrorData::new(ErrorCode(-32800), "request cancelled", None));
            }
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_names_fit_model_apis_and_stay_apart() {
        let valid = |n: &str| {
            !n.is_empty()
                && n.len() <= MAX_NAME
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        assert_eq!(endpoint_name(Some("time"), "now", "__"), "time__now");
        assert_eq!(endpoint_name(None, "now", "__"), "now");
        let dotted = endpoint_name(Some("fs"), "read.file", "__");
        let underscored = endpoint_name(Some("fs"), "read_file", "__");
        assert!(valid(&dotted) && dotted != underscored, "{dotted}");
        let long_a = endpoint_name(Some("a-very-long-server-name"), &"x".repeat(60), "__");
        let long_b = endpoint_name(
            Some("a-very-long-server-name"),
            &format!("{}y", "x".repeat(59)),
            "__",
        );
        assert!(
            valid(&long_a) && valid(&long_b) && long_a != long_b,
            "{long_a} {long_b}"
        );
        assert_eq!(
            long_a,
            endpoint_name(Some("a-very-long-server-name"), &"x".repeat(60), "__")
        );
        assert!(valid(&endpoint_name(Some("s"), "", "__")));
        assert!(valid(&endpoint_name(None, "ünïcødé tool", "__")));
    }
}
