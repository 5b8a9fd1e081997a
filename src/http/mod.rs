//! The HTTP face of the proxy: routes, auth, CORS, validation and response mapping.
//!
//! A tool call reads top to bottom in [`call_tool`]: find the server and tool, parse and
//! validate the body against the tool's schema, call the upstream (which owns deadlines and
//! recovery), and map the result or failure to mcpo's answer. Routes are resolved against the
//! live tool catalog on every request rather than registered at start-up, so a server that
//! comes up late or changes its tools is served without rebuilding the router.
//!
//! Architecture invariant: handlers never panic and never wait without a deadline; every
//! upstream wait is bounded inside `upstream`.

mod auth;
pub mod body;
mod diagnostics;
mod docs;
pub mod error;
mod mcp;
mod metrics;
pub mod respond;
pub mod server;
mod status;
pub mod validate;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowHeaders, AllowOrigin, Any, CorsLayer};

use crate::cache::{CacheKey, NotCached, ResultCache};
use crate::catalog::{ToolCatalog, ToolEntry, ValidationStack};
use crate::config::ServeConfig;
use crate::metrics::{Metrics, RequestClass};
use crate::monitor::Monitor;
use crate::openapi::document::{DocInfo, ToolDoc, root_document, server_document};
use crate::upstream::fleet::Fleet;
use crate::upstream::{Failure, Upstream};
use error::ApiError;
use respond::{ToolAnswer, map_result};
use validate::FieldError;

/// Bodies larger than this are parsed and validated on the blocking pool, so a big one does not
/// hold an async worker (and every connection on it) for the time it takes.
const INLINE_BODY: usize = 64 * 1024;

/// Shared state of every handler.
pub struct AppState {
    pub config: Arc<ServeConfig>,
    /// The servers serving now (a reload may change them).
    pub fleet: Arc<Fleet>,
    body_budget: body::BodyBudget,
    key: Option<auth::ApiKey>,
    pub metrics: Arc<Metrics>,
    pub monitor: Arc<Monitor>,
    cache: ResultCache,
    /// Cancelled when a shutdown begins: `/readyz` answers 503 and answers carry
    /// `Connection: close` from then on, while the listener still accepts.
    pub lame_duck: tokio_util::sync::CancellationToken,
    /// The MCP endpoints' services (`/mcp`, `/{server}/mcp`).
    mcp: mcp::Endpoints,
}

impl AppState {
    pub fn new(
        config: Arc<ServeConfig>,
        fleet: Arc<Fleet>,
        metrics: Arc<Metrics>,
        monitor: Arc<Monitor>,
    ) -> Arc<Self> {
        let key = config
            .api_key
            .as_deref()
            .map(|k| auth::ApiKey::new(k, config.strict_auth));
        Arc::new(AppState {
            body_budget: body::BodyBudget::default(),
            cache: result_cache(&config),
            key,
            config,
            fleet,
            metrics,
            monitor,
            lame_duck: tokio_util::sync::CancellationToken::new(),
            mcp: mcp::Endpoints::default(),
        })
    }

    fn upstream(&self, name: &str) -> Result<Arc<Upstream>, ApiError> {
        self.fleet
            .view()
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::NotFound(format!("Not Found: no MCP server named '{name}'")))
    }

    /// The servers serving now.
    pub fn upstreams(&self) -> Vec<Arc<Upstream>> {
        self.fleet.view().upstreams.clone()
    }

    /// The URL under which a server's routes are reached by clients.
    fn mount_url(&self, server: &str) -> String {
        if self.config.config_mode {
            format!(
                "{}{}{}",
                self.config.root_path, self.config.path_prefix, server
            )
        } else {
            self.config.root_path.clone()
        }
    }
}

/// The result cache, with the replicas' shared one behind it when configured.
fn result_cache(config: &crate::config::ServeConfig) -> ResultCache {
    let cache = ResultCache::new(config.cache_max_size, config.cache_max_bytes);
    match config
        .cache_redis_url
        .as_ref()
        .map(crate::shared_cache::SharedCache::new)
    {
        Some(Ok(shared)) => cache.with_shared(shared),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "the shared result cache is off");
            cache
        }
        None => cache,
    }
}

/// Builds the whole application.
pub fn router(state: Arc<AppState>) -> Router {
    let key = state.key.clone();

    let mut tools = Router::new();
    let mut pages = Router::new();
    if state.config.config_mode {
        let prefix = state.config.path_prefix.trim_end_matches('/');
        tools = tools
            .route(&format!("{prefix}/{{server}}/{{tool}}"), post(call_tool))
            .route(
                &format!("{prefix}/{{server}}/mcp"),
                get(mcp::one).post(mcp::one).delete(mcp::one),
            );
        pages = pages
            .route("/openapi.json", get(root_openapi))
            .route("/docs", get(root_docs))
            .route(
                &format!("{prefix}/{{server}}/openapi.json"),
                get(server_openapi),
            )
            .route(&format!("{prefix}/{{server}}/docs"), get(server_docs));
    } else {
        tools = tools.route("/{tool}", post(call_single_tool));
        pages = pages
            .route("/openapi.json", get(single_openapi))
            .route("/docs", get(single_docs));
    }
    // MCP clients call tools: guarded by the key like the tool routes.
    tools = tools.route("/mcp", get(mcp::all).post(mcp::all).delete(mcp::all));
    // Restarting a server changes state: guarded by the key whenever one is set.
    tools = tools.route(
        "/diagnostics/servers/{server}/restart",
        post(restart_server),
    );
    // A cross-origin page may not call tools or restart servers with a "simple" request.
    let mut tools = tools
        .with_state(state.clone())
        .layer(axum::middleware::from_fn(auth::require_json));
    // Read-only status follows `--strict-auth`, like the docs.
    pages = pages
        .route("/diagnostics", get(diagnostics::diagnostics))
        .route("/metrics", get(metrics::metrics))
        .route("/status", get(status::page));
    let mut pages = pages.with_state(state.clone()).merge(docs::asset_routes());
    // Liveness and readiness stay open even under `--strict-auth`: a load balancer's or
    // kubelet's probe carries no key. `/readyz` names servers and errors only to a caller
    // with the key when `--strict-auth` is set.
    let probes = Router::new()
        .route("/healthz", get(metrics::healthz))
        .route("/readyz", get(metrics::readyz))
        .with_state(state.clone());
    if let Some(key) = key {
        let layer = axum::middleware::from_fn_with_state(key, auth::require_key);
        tools = tools.layer(layer.clone());
        if state.config.strict_auth {
            pages = pages.layer(layer);
        }
    }
    Router::new()
        .merge(tools)
        .merge(pages)
        .merge(probes)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            close_when_lame_duck,
        ))
        .layer(DefaultBodyLimit::max(body::BODY_LIMIT))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(cors(&state.config.cors_allow_origins))
}

/// Once a shutdown has begun, every answer asks the client to close its connection, so that
/// keep-alive connections move to another replica before this one stops accepting.
async fn close_when_lame_duck(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    if state.lame_duck.is_cancelled() {
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    response
}

fn cors(origins: &[String]) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        // Mirrored, not `*`: browsers never let the wildcard cover `Authorization`, so a page
        // on an allowed origin could not send the key.
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers(Any);
    if origins.iter().any(|o| o == "*") {
        layer.allow_origin(Any)
    } else {
        let list: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        layer.allow_origin(AllowOrigin::list(list))
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked; answered 500");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(json!({"detail": {"message": "Internal error in the proxy"}})),
    )
        .into_response()
}

/// Replaces every session of one server without touching the others. Only the operator may
/// (a DoS in anyone else's hands).
async fn restart_server(
    State(state): State<Arc<AppState>>,
    Path(server): Path<String>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !diagnostics::privileged(&state, peer.map(|axum::Extension(c)| c.0), &headers) {
        return Err(ApiError::NotPrivileged);
    }
    let upstream = state.upstream(&server)?;
    upstream.request_restart();
    tracing::info!(server = %server, "restart requested over HTTP");
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({"detail": {"message": format!("restarting MCP server '{server}'")}})),
    )
        .into_response())
}

async fn not_found() -> Response {
    ApiError::NotFound("Not Found".into()).into_response()
}

async fn call_tool(
    State(state): State<Arc<AppState>>,
    Path((server, tool)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let upstream = state.upstream(&server)?;
    invoke(&state, &upstream, &tool, &headers, body).await
}

async fn call_single_tool(
    State(state): State<Arc<AppState>>,
    Path(tool): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Some(upstream) = state.upstreams().first().cloned() else {
        return Err(ApiError::NotFound("Not Found".into()));
    };
    invoke(&state, &upstream, &tool, &headers, body).await
}

/// `_meta` for the upstream call: the incoming headers that the server's
/// `client_header_forwarding` lets through, under `headers`, as mcpo sends them.
fn forwarded_meta(
    upstream: &Upstream,
    headers: &HeaderMap,
) -> Option<serde_json::Map<String, Value>> {
    let rules = upstream.config().header_forwarding.as_ref()?;
    let mut forwarded = serde_json::Map::new();
    for (name, value) in headers {
        if rules.allows(name.as_str())
            && let Ok(value) = value.to_str()
        {
            forwarded.insert(name.as_str().to_string(), Value::String(value.to_string()));
        }
    }
    if forwarded.is_empty() {
        return None;
    }
    let mut meta = serde_json::Map::new();
    meta.insert("headers".into(), Value::Object(forwarded));
    Some(meta)
}

/// The request path of one tool call.
async fn invoke(
    state: &AppState,
    upstream: &Arc<Upstream>,
    tool_name: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let started = tokio::time::Instant::now();
    let server = upstream.name().to_string();
    let fail = |failure: Failure| ApiError::upstream(failure, &server, tool_name);
    let catalog = current_catalog(upstream).map_err(&fail)?;
    let Some(tool) = catalog.tool(tool_name).cloned() else {
        return Err(ApiError::NotFound(if server.is_empty() {
            format!("Not Found: no tool named '{tool_name}'")
        } else {
            format!("Not Found: server '{server}' has no tool named '{tool_name}'")
        }));
    };
    let (answer, cached) = call_known_tool(state, upstream, &tool, headers, body).await;
    // Only tools the server lists are counted: unknown routes never create series.
    if state.metrics.enabled
        && let Some(m) = state.metrics.server(&server)
    {
        m.record_request(&tool.name, class_of(&answer), started.elapsed());
    }
    let Some(cached) = cached else {
        return answer;
    };
    // A cacheable tool says whether the answer came from the cache, errors included.
    let mut response = answer.unwrap_or_else(IntoResponse::into_response);
    response.headers_mut().insert(
        "x-mcpo-cache",
        HeaderValue::from_static(if cached { "hit" } else { "miss" }),
    );
    Ok(response)
}

/// How a finished request is counted.
fn class_of(answer: &Result<Response, ApiError>) -> RequestClass {
    match answer {
        Ok(_) => RequestClass::Success,
        Err(ApiError::Upstream(u)) => RequestClass::Failure(u.failure.class()),
        Err(_) => RequestClass::Invalid,
    }
}

/// A listed tool's call: body, validation, the result cache where the server allows it, the
/// upstream call, and the answer; with, for a cacheable tool, whether it came from the cache.
async fn call_known_tool(
    state: &AppState,
    upstream: &Arc<Upstream>,
    tool: &Arc<ToolEntry>,
    headers: &HeaderMap,
    body: Body,
) -> (Result<Response, ApiError>, Option<bool>) {
    let server = upstream.name();
    let fail = |failure: Failure| ApiError::upstream(failure, server, &tool.name);
    let arguments = match read_arguments(state, tool, headers, body).await {
        Ok(a) => a,
        Err(e) => return (Err(e), None),
    };
    let meta = forwarded_meta(upstream, headers);
    let cacheable = cache_ttl(upstream, tool, state.config.cache_default_ttl).and_then(|ttl| {
        CacheKey::for_call(
            server,
            upstream.cache_epoch(),
            tool.name.as_str(),
            &arguments,
            meta.as_ref(),
        )
        .map(|key| (ttl, key))
    });
    let Some((ttl, key)) = cacheable else {
        let answer = match upstream
            .call_tool(tool, Some(arguments), meta.as_ref())
            .await
        {
            Ok(result) => answer_of(&result, tool).map_err(fail),
            Err(failure) => Err(fail(failure)),
        };
        return (answer, None);
    };
    let call = upstream.call_tool(tool, Some(arguments), meta.as_ref());
    let (result, hit) = state.cache.get_or_call(key, ttl, call).await;
    if state.metrics.enabled
        && let Some(m) = state.metrics.server(server)
    {
        m.record_cache(hit);
    }
    let answer = match result {
        Ok(result) => answer_of(&result, tool).map_err(fail),
        Err(NotCached::ToolError(result) | NotCached::TooLarge(result)) => {
            answer_of(&result, tool).map_err(fail)
        }
        Err(NotCached::Failure(failure)) => Err(fail(failure)),
    };
    (answer, Some(hit))
}

/// The body, read within the budget and checked against the tool's schema.
async fn read_arguments(
    state: &AppState,
    tool: &Arc<ToolEntry>,
    headers: &HeaderMap,
    body: Body,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let body = body::read(headers, body, &state.body_budget, state.config.body_timeout).await?;
    let mut depth = 0;
    let stack = tool.validation_stack(|| {
        depth = crate::bounds::text_depth(&body.bytes);
        depth
    });
    if stack == ValidationStack::Refused {
        return Err(ApiError::Validation(vec![FieldError::too_deep(depth)]));
    }
    if stack == ValidationStack::Deep {
        let tool = tool.clone();
        return crate::bounds::run_deep(move || {
            let arguments = checked_arguments(&tool, &body.bytes);
            drop(body);
            arguments
        })
        .await
        .map_err(|e| ApiError::Internal(format!("validation thread failed: {e}")))?;
    }
    if body.bytes.len() > INLINE_BODY {
        let tool = tool.clone();
        tokio::task::spawn_blocking(move || {
            let arguments = checked_arguments(&tool, &body.bytes);
            drop(body);
            arguments
        })
        .await
        .map_err(|e| ApiError::Internal(format!("validation task failed: {e}")))?
    } else {
        let arguments = checked_arguments(tool, &body.bytes);
        drop(body);
        arguments
    }
}

/// How long `tool`'s results may be kept, if its server lets them be cached at all.
fn cache_ttl(
    upstream: &Upstream,
    tool: &ToolEntry,
    default_ttl: std::time::Duration,
) -> Option<std::time::Duration> {
    let cache = upstream.config().cache.as_ref()?;
    let listed = cache.tools.contains(&tool.name);
    let read_only = cache.read_only && tool.is_read_only();
    (listed || read_only).then(|| cache.ttl.unwrap_or(default_ttl))
}

/// A tool result as the HTTP answer mcpo gives.
fn answer_of(result: &Value, tool: &ToolEntry) -> Result<Response, Failure> {
    match map_result(result, tool.output_schema.is_some()) {
        ToolAnswer::Ok(value) => Ok(axum::Json(value).into_response()),
        ToolAnswer::ToolError(message) => Err(Failure::Tool { message }),
    }
}

/// The body as the tool's arguments: counted, parsed and validated (lax, as mcpo).
fn checked_arguments(
    tool: &ToolEntry,
    body: &[u8],
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let values = body::check_values(body)?;
    let mut arguments = parse_arguments(body, tool.takes_no_arguments())?;
    if let Some(validator) = &tool.validator {
        let errors = validate::validate_lax(validator, &mut arguments, values);
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        validate::normalize_integers(&tool.input_schema, &mut arguments);
    }
    match arguments {
        Value::Object(arguments) => Ok(arguments),
        other => Err(ApiError::Validation(vec![FieldError::not_an_object(
            &other,
        )])),
    }
}

/// The body as tool arguments. An empty body means "no arguments", which only a tool that
/// takes none accepts, as in FastAPI.
fn parse_arguments(body: &[u8], takes_no_arguments: bool) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return if takes_no_arguments {
            Ok(json!({}))
        } else {
            Err(ApiError::Validation(vec![FieldError::body_missing()]))
        };
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::Validation(vec![FieldError::json_invalid(&e, body)]))
}

fn current_catalog(upstream: &Upstream) -> Result<Arc<ToolCatalog>, Failure> {
    upstream.catalog().ok_or_else(|| {
        let view = upstream.view();
        Failure::Unavailable {
            reason: view
                .last_error
                .unwrap_or_else(|| format!("it is {}", view.status.as_str())),
        }
    })
}

/// The OpenAPI document of one server, generated once per tool listing.
async fn server_document_of(state: &AppState, upstream: &Upstream) -> Result<Response, ApiError> {
    let catalog = current_catalog(upstream)
        .map_err(|failure| ApiError::upstream(failure, upstream.name(), "openapi.json"))?;
    let bytes = catalog
        .openapi
        .get_or_init(|| async {
            let identity = &catalog.server;
            let title = match identity.name.as_str() {
                "" => upstream.name().to_string(),
                name => name.to_string(),
            };
            let version = match identity.version.as_str() {
                "" => "1.0".to_string(),
                version => version.to_string(),
            };
            let description = identity
                .instructions
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| format!("{} MCP Server", upstream.name()));
            let url = state.mount_url(upstream.name());
            let bearer_auth = state.config.api_key.is_some();
            let catalog = catalog.clone();
            // A thousand tools with big schemas take a CPU-bound while: off the async workers,
            // so that other requests are not held up behind it.
            tokio::task::spawn_blocking(move || {
                let info = DocInfo {
                    title: &title,
                    version: &version,
                    description: &description,
                    server_url: &url,
                    bearer_auth,
                };
                document_bytes(&catalog, &info)
            })
            .await
            .unwrap_or_default()
        })
        .await
        .clone();
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        bytes,
    )
        .into_response())
}

/// A server's OpenAPI document, as JSON bytes.
fn document_bytes(catalog: &ToolCatalog, info: &DocInfo<'_>) -> bytes::Bytes {
    let tools: Vec<ToolDoc<'_>> = catalog
        .tools()
        .iter()
        .map(|t| ToolDoc {
            name: &t.name,
            title: t.title.as_deref(),
            description: t.description.as_deref(),
            input_schema: &t.input_schema,
            output_schema: t.output_schema.as_ref(),
            takes_no_arguments: t.takes_no_arguments(),
        })
        .collect();
    let document = server_document(info, &tools);
    bytes::Bytes::from(serde_json::to_vec(&document).unwrap_or_default())
}

async fn server_openapi(
    State(state): State<Arc<AppState>>,
    Path(server): Path<String>,
) -> Result<Response, ApiError> {
    let upstream = state.upstream(&server)?;
    server_document_of(&state, &upstream).await
}

async fn server_docs(
    State(state): State<Arc<AppState>>,
    Path(server): Path<String>,
) -> Result<Html<String>, ApiError> {
    state.upstream(&server)?;
    let url = format!("{}/openapi.json", state.mount_url(&server));
    Ok(docs::page(&server, &url, &state.config.root_path))
}

async fn root_openapi(State(state): State<Arc<AppState>>) -> Response {
    let servers: Vec<(String, String)> = state
        .upstreams()
        .iter()
        .map(|u| {
            (
                u.name().to_string(),
                format!("{}/docs", state.mount_url(u.name())),
            )
        })
        .collect();
    let cfg = &state.config;
    axum::Json(root_document(
        &cfg.title,
        &cfg.api_version,
        &cfg.description,
        &servers,
    ))
    .into_response()
}

async fn root_docs(State(state): State<Arc<AppState>>) -> Html<String> {
    let url = format!("{}/openapi.json", state.config.root_path);
    docs::page(&state.config.title, &url, &state.config.root_path)
}

async fn single_openapi(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let Some(upstream) = state.upstreams().first().cloned() else {
        return Err(ApiError::NotFound("Not Found".into()));
    };
    server_document_of(&state, &upstream).await
}

async fn single_docs(State(state): State<Arc<AppState>>) -> Html<String> {
    let url = format!("{}/openapi.json", state.config.root_path);
    docs::page(&state.config.title, &url, &state.config.root_path)
}
