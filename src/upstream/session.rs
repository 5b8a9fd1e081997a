//! One live MCP session with an upstream server: connect, list tools, call, close.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, CancelledNotification,
    CancelledNotificationParam, ClientCapabilities, ClientConfig, ClientRequest, Implementation,
    JsonObject, PaginatedRequestParams, ServerResult,
};
use rmcp::service::{NotificationContext, Peer, PeerRequestOptions, RoleClient, ServiceExt};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::Value;
use tokio::sync::{Notify, watch};

use super::child::{ChildProcess, ChildState};
use super::classify::{Failure, classify_service_error, classify_transport};
use super::oauth::OAuthHttpClient;
use super::sse_client::SseError;
use crate::catalog::{Listing, ListingLimits, ServerIdentity, ToolCatalog};
use crate::config::{ServerConfig, Transport};

/// How long a `subscriptions/listen` may take to be acknowledged.
const SUBSCRIBE_WITHIN: Duration = Duration::from_secs(10);
/// How long a closed pipe waits for the child's exit to be reported.
const EXIT_REPORT_GRACE: Duration = Duration::from_millis(100);

/// Pages of `tools/list` followed at most.
const MAX_TOOL_PAGES: usize = 100;
/// Tools kept past `max_tools` while listing, for disabled tools the catalog then drops.
const MAX_TOOL_SLACK: usize = 100;

/// Where a call's `notifications/progress` go: its caller's channel.
pub type ProgressSink = tokio::sync::mpsc::UnboundedSender<rmcp::model::ProgressNotificationParam>;

/// The sinks of the calls in flight on a session, by the progress token rmcp gave each.
type ProgressRoutes = Arc<std::sync::Mutex<HashMap<rmcp::model::ProgressToken, ProgressSink>>>;

/// Our side of the MCP conversation: identifies the proxy, hears list changes and passes each
/// call's progress on to whoever waits for it.
#[derive(Clone)]
pub(crate) struct ProxyClient {
    info: ClientConfig,
    tools_changed: Arc<Notify>,
    progress: ProgressRoutes,
}

impl rmcp::ClientHandler for ProxyClient {
    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.tools_changed.notify_one();
    }

    async fn on_progress(
        &self,
        params: rmcp::model::ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let sink = self
            .progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&params.progress_token)
            .cloned();
        if let Some(sink) = sink {
            // The caller may be gone already; its progress is then nobody's.
            let _ = sink.send(params);
        }
    }
}

/// Removes a call's progress route when the call ends, however it ends.
struct ProgressRoute<'a> {
    routes: &'a ProgressRoutes,
    token: Option<rmcp::model::ProgressToken>,
}

impl Drop for ProgressRoute<'_> {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            self.routes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&token);
        }
    }
}

/// A connected session.
pub struct Session {
    pub id: u64,
    peer: Peer<RoleClient>,
    cancel: tokio_util::sync::CancellationToken,
    /// Turns true when the session's service loop has ended.
    ended: watch::Receiver<bool>,
    child: tokio::sync::Mutex<Option<ChildProcess>>,
    child_state: Option<watch::Receiver<ChildState>>,
    child_pid: Option<u32>,
    broken: AtomicBool,
    /// Calls this session answered (any answer, tool errors included): proof that it worked.
    served: AtomicU64,
    /// Calls running on this session now, and the signal that they reached zero.
    calls: AtomicUsize,
    idle: Notify,
    pub tools_changed: Arc<Notify>,
    /// Shared with this session's [`ProxyClient`].
    progress: ProgressRoutes,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("child_pid", &self.child_pid)
            .finish()
    }
}

/// Why connecting failed. `message` is safe to show anyone (URLs reduced to their origin, no
/// process output); `stderr_tail` holds the last lines a child wrote before it died, which
/// only an operator holding the API key gets to see.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ConnectError {
    pub message: String,
    pub stderr_tail: Vec<String>,
    /// The server refused our OAuth token (HTTP 401 after rmcp's own refresh).
    pub unauthorized: bool,
}

impl Session {
    /// Spawns or dials the server, completes the MCP handshake and lists every tool. `oauth`
    /// is the authorized HTTP client of a streamable-HTTP server with `"oauth"`.
    pub async fn connect(
        id: u64,
        server: &ServerConfig,
        stdio_env: &BTreeMap<String, String>,
        list_within: Duration,
        limits: ListingLimits,
        oauth: Option<OAuthHttpClient>,
    ) -> Result<(Session, ToolCatalog), ConnectError> {
        let tools_changed = Arc::new(Notify::new());
        let progress = ProgressRoutes::default();
        let handler = ProxyClient {
            progress: progress.clone(),
            info: ClientConfig::new(
                ClientCapabilities::default(),
                Implementation::new("mcpo", env!("CARGO_PKG_VERSION")),
            ),
            tools_changed: tools_changed.clone(),
        };
        let fail = |message: String| ConnectError {
            message,
            stderr_tail: Vec::new(),
            unauthorized: false,
        };
        let (running, child) = match &server.transport {
            Transport::Stdio {
                command,
                args,
                env,
                cwd,
            } => {
                let mut merged = stdio_env.clone();
                merged.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
                let program = resolve_program(command);
                let (child, pipes) =
                    ChildProcess::spawn(&server.name, &program, args, &merged, cwd.as_deref())
                        .map_err(|e| fail(format!("cannot start {command:?}: {e}")))?;
                match handler.serve((pipes.stdout, pipes.stdin)).await {
                    Ok(running) => (running, Some(child)),
                    Err(e) => {
                        let exited = match &*child.state().borrow() {
                            ChildState::Exited(how) => Some(how.clone()),
                            ChildState::Running => None,
                        };
                        let stderr_tail = child.stderr_tail();
                        child.shutdown().await;
                        let message = match exited {
                            Some(how) => format!(
                                "the server process {how} during the MCP handshake ({command:?})"
                            ),
                            None => format!(
                                "MCP handshake with {command:?} failed: {}",
                                super::classify::root_cause(&e)
                            ),
                        };
                        return Err(ConnectError {
                            message,
                            stderr_tail,
                            unauthorized: false,
                        });
                    }
                }
            }
            Transport::StreamableHttp { url, headers } => {
                let mut custom = HashMap::new();
                for (k, v) in headers {
                    let (Ok(name), Ok(value)) = (
                        http::HeaderName::from_bytes(k.as_bytes()),
                        http::HeaderValue::from_str(v),
                    ) else {
                        return Err(fail(format!("header {k:?} is not valid")));
                    };
                    custom.insert(name, value);
                }
                let config = StreamableHttpClientTransportConfig::with_uri(url.as_str())
                    .custom_headers(custom)
                    // Session loss is handled by the proxy with a fresh session; the SDK's own
                    // re-initialisation can wait forever against some servers.
                    .reinit_on_expired_session(false);
                let served = match oauth {
                    // rmcp's `AuthClient` outside adds the token; ours inside still sees a
                    // lost session in each reply that reaches it.
                    Some(client) => {
                        handler
                            .serve(StreamableHttpClientTransport::with_client(client, config))
                            .await
                    }
                    None => {
                        let client =
                            super::http_client::SessionAwareClient::new().map_err(|e| {
                                fail(format!(
                                    "cannot set up an HTTP client: {}",
                                    super::classify::root_cause(&e)
                                ))
                            })?;
                        handler
                            .serve(StreamableHttpClientTransport::with_client(client, config))
                            .await
                    }
                };
                let running = served.map_err(|e| {
                    tracing::debug!(server = %server.name, error = %crate::redact::urls_in(&e.to_string()), "connect failed");
                    let failure = classify_transport(&e);
                    let unauthorized = matches!(failure, Failure::HttpStatus { status: 401, .. });
                    let message = match failure {
                        Failure::Connect { detail } => detail,
                        other => format!(
                            "cannot connect to {}: {}",
                            crate::redact::host_port(url),
                            other.describe()
                        ),
                    };
                    ConnectError {
                        message,
                        stderr_tail: Vec::new(),
                        unauthorized,
                    }
                })?;
                (running, None)
            }
            Transport::Sse { url, headers } => {
                let cannot = |failure: Failure| match failure {
                    Failure::Connect { detail } => detail,
                    other => format!(
                        "cannot connect to {}: {}",
                        crate::redact::host_port(url),
                        other.describe()
                    ),
                };
                let transport = super::sse_client::SseClientTransport::connect(url, headers)
                    .await
                    .map_err(|e| {
                        tracing::debug!(server = %server.name, error = %e, "SSE connect failed");
                        fail(match e {
                            // Settings, not the server: say so as they are.
                            SseError::BadUrl | SseError::BadHeader(_) => e.to_string(),
                            // A `url` without `type` is SSE, as in mcpo; a streamable-HTTP
                            // server refuses the GET like this.
                            SseError::Status {
                                status: 400 | 404 | 405 | 406,
                                ..
                            }
                            | SseError::NotEventStream(_) => format!(
                                "{}; if the server speaks streamable HTTP, set \"type\": \"streamable-http\"",
                                cannot(classify_transport(&e))
                            ),
                            e => cannot(classify_transport(&e)),
                        })
                    })?;
                let running = handler.serve(transport).await.map_err(|e| {
                    tracing::debug!(server = %server.name, error = %crate::redact::urls_in(&e.to_string()), "connect failed");
                    fail(cannot(classify_transport(&e)))
                })?;
                (running, None)
            }
            Transport::InMemory(connector) => {
                let running = handler
                    .serve(tokio::io::split(connector.connect()))
                    .await
                    .map_err(|e| {
                        fail(format!(
                            "in-memory MCP handshake failed: {}",
                            super::classify::root_cause(&e)
                        ))
                    })?;
                (running, None)
            }
        };
        let peer = running.peer().clone();
        let cancel = running.cancellation_token();
        let cancel = cancel_token_of(cancel);
        let identity = peer
            .peer_info()
            .map(|info| {
                let server = info.server_info.as_ref();
                ServerIdentity {
                    name: server.map(|s| s.name.clone()).unwrap_or_default(),
                    version: server.map(|s| s.version.clone()).unwrap_or_default(),
                    title: server.and_then(|s| s.title.clone()),
                    instructions: info.instructions.clone(),
                    protocol_version: info.protocol_version.to_string(),
                }
            })
            .unwrap_or_default();
        let (ended_tx, ended_rx) = watch::channel(false);
        let ended_cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = running.waiting() => {}
                // `waiting` would also end on cancel, but a cancelled token must not be left
                // waiting on a transport that never closes.
                _ = ended_cancel.cancelled() => {}
            }
            let _ = ended_tx.send(true);
        });
        let child_pid = child.as_ref().map(ChildProcess::pid);
        let child_state = child.as_ref().map(ChildProcess::state);
        let session = Session {
            id,
            peer,
            cancel,
            ended: ended_rx,
            child: tokio::sync::Mutex::new(child),
            child_state,
            child_pid,
            broken: AtomicBool::new(false),
            served: AtomicU64::new(0),
            calls: AtomicUsize::new(0),
            idle: Notify::new(),
            tools_changed,
            progress,
        };
        subscribe_to_list_changes(&session, &server.name);
        let catalog = match session
            .list_tools(&server.name, list_within, limits.max_tools)
            .await
        {
            Ok(listing) => ToolCatalog::new(identity, listing, &server.disabled_tools, limits),
            Err(e) => {
                let message = format!("tools/list failed: {e}");
                session.close().await;
                return Err(fail(message));
            }
        };
        Ok((session, catalog))
    }

    /// Lists every tool, following pagination, as raw JSON, within `within` for all pages.
    /// A server that keeps handing out cursors (or repeats one) is cut off after
    /// [`MAX_TOOL_PAGES`] pages rather than followed for ever. Tools past `max_tools` are
    /// counted, not kept (the disabled ones among them too, which is the safe side).
    pub async fn list_tools(
        &self,
        server: &str,
        within: Duration,
        max_tools: usize,
    ) -> Result<Listing, String> {
        let listing = async {
            let mut listing = Listing::default();
            let mut cursor: Option<String> = None;
            for _ in 0..MAX_TOOL_PAGES {
                let params = PaginatedRequestParams::default().with_cursor(cursor.take());
                let page = self.peer.list_tools(Some(params)).await.map_err(|e| {
                    tracing::debug!(server, error = %e, "tools/list failed");
                    classify_service_error(&e).describe()
                })?;
                // A little room past the limit, so disabled tools do not crowd out the rest.
                let room = max_tools
                    .saturating_add(MAX_TOOL_SLACK)
                    .saturating_sub(listing.tools.len());
                let listed = page.tools.len();
                listing.tools.extend(
                    page.tools
                        .into_iter()
                        .take(room)
                        .filter_map(|t| serde_json::to_value(t).ok()),
                );
                listing.beyond_limit += listed.saturating_sub(room);
                match page.next_cursor {
                    None => return Ok(listing),
                    Some(next) => cursor = Some(next),
                }
            }
            tracing::warn!(
                server,
                pages = MAX_TOOL_PAGES,
                "tools/list kept paginating; the listing was cut off"
            );
            Ok(listing)
        };
        let listed = tokio::time::timeout(within, listing)
            .await
            .unwrap_or_else(|_| Err(format!("tools/list got no answer within {within:?}")));
        if listed.as_ref().is_ok_and(|l| l.beyond_limit > 0) {
            // The SDK parsed the whole oversized listing; what it held is free again.
            crate::heap::trim();
        }
        listed
    }

    /// Calls a tool. It fails when `window` passes without an answer; every
    /// `notifications/progress` of the call opens a new `window`, up to `cap` in all (rmcp
    /// keeps both clocks, and sends `notifications/cancelled` when one runs out). Dropping
    /// this future (the caller's own deadline, a client gone) cancels the call upstream too.
    ///
    /// With `progress`, the call's `notifications/progress` are sent there as they come.
    pub async fn call_tool(
        &self,
        tool: &str,
        arguments: Option<JsonObject>,
        meta: Option<&JsonObject>,
        window: Duration,
        cap: Duration,
        progress: Option<&ProgressSink>,
    ) -> Result<Value, Failure> {
        let _counted = CallCount::new(self);
        let mut params = CallToolRequestParams::new(tool.to_string());
        params.arguments = arguments;
        if let Some(meta) = meta {
            params.meta = Some(rmcp::model::RequestMetaObject::from(meta.clone()));
        }
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        let options = PeerRequestOptions::with_timeout(window)
            .reset_timeout_on_progress()
            .with_max_total_timeout(cap.max(window));
        let handle = self
            .peer
            .send_request_with_option(request, options)
            .await
            .map_err(|e| classify_service_error(&e))?;
        let mut abandoned = CancelOnDrop {
            peer: self.peer.clone(),
            id: Some(handle.id.clone()),
        };
        let _route = ProgressRoute {
            routes: &self.progress,
            token: progress.map(|sink| {
                self.progress
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(handle.progress_token.clone(), sink.clone());
                handle.progress_token.clone()
            }),
        };
        let answer = handle.await_response().await;
        abandoned.id = None;
        let result = match answer {
            Ok(ServerResult::CallToolResult(result)) => result,
            // A result with no `content` decodes as one of these; it is an empty result.
            Ok(ServerResult::EmptyResult(_)) => CallToolResult::default(),
            Ok(_) => {
                return Err(Failure::Protocol {
                    detail: "the server answered tools/call with something else than a tool result"
                        .into(),
                });
            }
            Err(e) => return Err(classify_service_error(&e)),
        };
        serde_json::to_value(result).map_err(|e| Failure::Protocol {
            detail: format!("cannot read the tool result: {e}"),
        })
    }

    /// Sends any other request (resources, prompts, completion) and waits at most `within`.
    /// These are reads: no progress window, no cancel on drop beyond rmcp's own.
    pub async fn request(
        &self,
        request: ClientRequest,
        within: Duration,
    ) -> Result<ServerResult, Failure> {
        let _counted = CallCount::new(self);
        match tokio::time::timeout(within, self.peer.send_request(request)).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(e)) => Err(classify_service_error(&e)),
            Err(_) => Err(Failure::Timeout { after: within }),
        }
    }

    /// What the server said it can do, at `initialize`.
    pub fn capabilities(&self) -> Option<rmcp::model::ServerCapabilities> {
        self.peer.peer_info().map(|info| info.capabilities.clone())
    }

    /// Sends `ping` and waits at most `within`.
    pub async fn ping(&self, within: Duration) -> Result<(), Failure> {
        match tokio::time::timeout(within, self.peer.send_request(ping_request())).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(classify_service_error(&e)),
            Err(_) => Err(Failure::Timeout { after: within }),
        }
    }

    /// True when the session can no longer carry calls.
    pub fn is_dead(&self) -> bool {
        self.broken.load(Ordering::Relaxed)
            || *self.ended.borrow()
            || self.peer.is_transport_closed()
            || self
                .child_state
                .as_ref()
                .is_some_and(|s| matches!(*s.borrow(), ChildState::Exited(_)))
    }

    /// Marks the session unusable; the supervisor replaces it.
    pub fn mark_broken(&self) {
        self.broken.store(true, Ordering::Relaxed);
    }

    /// Counts a call this session answered.
    pub fn record_answer(&self) {
        self.served.fetch_add(1, Ordering::Relaxed);
    }

    /// How many calls this session answered.
    pub fn answered(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// What ended the session, in words, waiting at most `within` for the child's exit to be
    /// reported (the pipe usually closes a moment before the reaper sees the exit).
    pub async fn end_reason(&self, within: Duration) -> String {
        match tokio::time::timeout(within, self.died()).await {
            Ok(reason) => reason,
            Err(_) if self.broken.load(Ordering::Relaxed) => {
                "the session was found broken and is being replaced".into()
            }
            Err(_) => "the connection to the server closed".into(),
        }
    }

    /// Whether the session turns out to be ending within `within`.
    pub async fn ends_within(&self, within: Duration) -> bool {
        tokio::time::timeout(within, self.died()).await.is_ok()
    }

    pub fn child_pid(&self) -> Option<u32> {
        self.child_pid
    }

    /// Resolves when the session dies by itself: the child exits or the service loop ends.
    pub async fn died(&self) -> String {
        let mut ended = self.ended.clone();
        match self.child_state.clone() {
            Some(mut child) => {
                let exited = |s: &ChildState| matches!(s, ChildState::Exited(_));
                let describe = |s: &ChildState| match s {
                    ChildState::Exited(how) => format!("the server process {how}"),
                    ChildState::Running => "the server process ended".into(),
                };
                let mut later = child.clone();
                let exit = async {
                    match child.wait_for(exited).await {
                        Ok(s) => describe(&s),
                        Err(_) => "the server process ended".to_string(),
                    }
                };
                let closed = async {
                    let _ = ended.wait_for(|e| *e).await;
                    // The pipe closes a moment before the reaper reports the exit, which says
                    // more (a signal, an exit status): wait a little for it.
                    match tokio::time::timeout(EXIT_REPORT_GRACE, later.wait_for(exited)).await {
                        Ok(Ok(s)) => describe(&s),
                        _ => "the server closed its output (stdout)".to_string(),
                    }
                };
                tokio::select! {
                    d = exit => d,
                    d = closed => d,
                }
            }
            None => {
                let _ = ended.wait_for(|e| *e).await;
                "the connection to the server closed".into()
            }
        }
    }

    /// The stderr tail of the child, if any.
    pub async fn stderr_tail(&self) -> Vec<String> {
        self.child
            .lock()
            .await
            .as_ref()
            .map(ChildProcess::stderr_tail)
            .unwrap_or_default()
    }

    /// Ends the session and, for stdio, the whole process group of the server.
    /// Closes the session once the calls still running on it have finished, waiting at most
    /// `within`. A replaced session may still carry calls that will be answered (an HTTP
    /// server that forgot the session finishes the requests it already has); closing it at
    /// once would cut them off for nothing. A dead one has none left.
    pub async fn close_when_idle(&self, within: Duration) {
        let wait = async {
            loop {
                let idle = self.idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if self.calls.load(Ordering::SeqCst) == 0 || self.is_transport_gone() {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(within, wait).await;
        self.close().await;
    }

    /// True when the transport itself is gone (child exited, service loop ended): nothing in
    /// flight can be answered any more.
    fn is_transport_gone(&self) -> bool {
        *self.ended.borrow()
            || self.peer.is_transport_closed()
            || self
                .child_state
                .as_ref()
                .is_some_and(|s| matches!(*s.borrow(), ChildState::Exited(_)))
    }

    pub async fn close(&self) {
        self.mark_broken();
        self.cancel.cancel();
        if let Some(child) = self.child.lock().await.take() {
            child.shutdown().await;
        }
    }
}

/// On protocol 2026-07-28 and later, change notifications reach a client only through a
/// `subscriptions/listen` subscription, not the handler's callbacks: open one for tool-list
/// changes and turn each into the same signal the callback gives on older versions, so the
/// routes follow the server whatever version was negotiated. The task ends with the session.
fn subscribe_to_list_changes(session: &Session, server: &str) {
    let negotiated = session.peer.peer_info().map(|i| i.protocol_version.clone());
    if !negotiated.is_some_and(|v| v >= rmcp::model::ProtocolVersion::V_2026_07_28) {
        return;
    }
    let peer = session.peer.clone();
    let changed = session.tools_changed.clone();
    let ended = session.cancel.clone();
    let server = server.to_string();
    tokio::spawn(async move {
        let filter = rmcp::model::SubscriptionFilter::builder()
            .tools_list_changed()
            .build();
        let listening = tokio::select! {
            r = tokio::time::timeout(SUBSCRIBE_WITHIN, peer.listen(filter)) => r,
            _ = ended.cancelled() => return,
        };
        let mut subscription = match listening {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::warn!(server = %server, error = %classify_service_error(&e).describe(),
                    "the server refused a tool-list subscription; its tool changes will not be seen until it reconnects");
                return;
            }
            Err(_) => {
                tracing::warn!(server = %server, "no answer to the tool-list subscription");
                return;
            }
        };
        loop {
            tokio::select! {
                next = subscription.next() => match next {
                    Ok(Some(rmcp::model::ServerNotification::ToolListChangedNotification(_))) => {
                        changed.notify_one();
                    }
                    Ok(Some(_)) => {}
                    _ => return,
                },
                _ = ended.cancelled() => return,
            }
        }
    });
}

/// Counts one call on a session while it lives.
struct CallCount<'a> {
    session: &'a Session,
}

impl<'a> CallCount<'a> {
    fn new(session: &'a Session) -> Self {
        session.calls.fetch_add(1, Ordering::SeqCst);
        CallCount { session }
    }
}

impl Drop for CallCount<'_> {
    fn drop(&mut self) {
        if self.session.calls.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.session.idle.notify_waiters();
        }
    }
}

/// The command `mcpo` always means this very binary, so a config can start the bundled fake
/// server (`mcpo fake-server`) without knowing where the binary is installed.
fn resolve_program(command: &str) -> String {
    if command == "mcpo"
        && let Ok(exe) = std::env::current_exe()
    {
        return exe.display().to_string();
    }
    command.to_string()
}

fn ping_request() -> rmcp::model::ClientRequest {
    rmcp::model::ClientRequest::PingRequest(rmcp::model::PingRequest::default())
}

/// rmcp wraps its token in a newtype without access to the inner one; keep our own token that
/// cancels it.
fn cancel_token_of(
    token: rmcp::service::RunningServiceCancellationToken,
) -> tokio_util::sync::CancellationToken {
    let ours = tokio_util::sync::CancellationToken::new();
    let watched = ours.clone();
    tokio::spawn(async move {
        watched.cancelled().await;
        token.cancel();
    });
    ours
}

impl Drop for Session {
    fn drop(&mut self) {
        // Ends the service loop and the helper task of `cancel_token_of`; the child, if still
        // owned, is killed by its own guard.
        self.cancel.cancel();
    }
}

/// Sends `notifications/cancelled` for a call whose future is dropped before its answer: the
/// upstream stops working on it (rmcp's own guard for this is private to it).
struct CancelOnDrop {
    peer: Peer<RoleClient>,
    id: Option<rmcp::model::RequestId>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let peer = self.peer.clone();
        let notification = CancelledNotification::new(CancelledNotificationParam::new(
            Some(id),
            Some("the proxy's deadline passed, or its client went away".into()),
        ));
        // A notification on a channel: done at once, or never if the session is gone.
        runtime.spawn(async move {
            let _ = peer.send_notification(notification.into()).await;
        });
    }
}
