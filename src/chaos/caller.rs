//! How the harness calls a tool through the proxy: `POST /{server}/{tool}` on the OpenAPI
//! routes (the default), or, with `--via mcp`, a `tools/call` of `{server}__{tool}` on one MCP
//! session of the proxy's streamable-HTTP endpoint (`/mcp`), as an MCP client such as Claude
//! Code or Open WebUI's native client would make it.
//!
//! Both end in the same [`Outcome`], so the verdict, the SLOs and the reports do not know
//! which way the load went. Over MCP:
//! - a tool result is a success when its content carries the request's right answer (the
//!   same check as for an HTTP body), else a wrong answer;
//! - a result with `isError: true` and a JSON-RPC error are the proxy's failures ("http
//!   error" under status 0: the HTTP exchange itself went through);
//! - no answer by the client deadline is hung;
//! - a session that ends (the transport closed, the endpoint forgot it) fails the call that
//!   saw it as a connect error, and the next call opens a new session. An MCP client whose
//!   proxy hides upstream events never sees that: the count is in the report
//!   (`mcp_sessions_opened`), so a proxy that drops its clients' sessions shows.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use super::answers::{self, Expected};
use super::verdict::Outcome;

/// Which front of the proxy the load goes through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Via {
    /// `POST /{server}/{tool}`, the OpenAPI routes.
    #[default]
    Http,
    /// `tools/call` on the MCP endpoint.
    Mcp,
}

impl Via {
    pub fn label(self) -> &'static str {
        match self {
            Via::Http => "http",
            Via::Mcp => "mcp",
        }
    }
}

/// Where the MCP endpoint is and how it names a server's tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpRoute {
    /// The endpoint's path on the proxy's base URL. `{server}` is replaced, for gateways that
    /// give each server its own endpoint (`/servers/{server}/mcp`): one session per endpoint.
    pub path: String,
    /// The tool's name there: `{server}` and `{tool}` are replaced.
    pub name: String,
}

impl Default for McpRoute {
    fn default() -> Self {
        McpRoute {
            path: "/mcp".into(),
            name: "{server}__{tool}".into(),
        }
    }
}

impl McpRoute {
    /// The endpoint's URL for `server`'s tools, on the proxy at `base`.
    pub fn url(&self, base: &str, server: &str) -> String {
        format!(
            "{}/{}",
            base.trim_end_matches('/'),
            self.path
                .replace("{server}", server)
                .trim_start_matches('/')
        )
    }

    pub fn tool_name(&self, server: &str, tool: &str) -> String {
        self.name
            .replace("{server}", server)
            .replace("{tool}", tool)
    }
}

/// What one call came back with.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The HTTP status, where there was one to read (0 for an MCP error: see the module).
    pub status: Option<u16>,
    pub outcome: Outcome,
    /// For a call that did not succeed: what came back, cut short (for readiness messages).
    pub detail: String,
}

impl Reply {
    fn new(status: Option<u16>, outcome: Outcome, detail: impl Into<String>) -> Self {
        Reply {
            status,
            outcome,
            detail: detail.into(),
        }
    }
}

/// Calls tools through the proxy, one way or the other. Cheap to clone; clones share the
/// HTTP connection pool or the MCP session.
#[derive(Clone)]
pub enum Caller {
    Http {
        client: reqwest::Client,
        base: String,
    },
    Mcp(Arc<McpCaller>),
}

impl Caller {
    pub fn new(via: Via, client: reqwest::Client, base: &str, route: McpRoute) -> Self {
        match via {
            Via::Http => Caller::Http {
                client,
                base: base.trim_end_matches('/').to_string(),
            },
            Via::Mcp => Caller::Mcp(Arc::new(McpCaller {
                base: base.trim_end_matches('/').to_string(),
                route,
                client,
                sessions: Mutex::new(HashMap::new()),
                opened: AtomicU64::new(0),
            })),
        }
    }

    /// Calls `tool` of `server` with `args`, giving up after `deadline`, and judges the answer
    /// against `expected`.
    pub async fn call(
        &self,
        server: &str,
        tool: &str,
        args: &Map<String, Value>,
        deadline: Duration,
        expected: &Expected,
    ) -> Reply {
        match self {
            Caller::Http { client, base } => {
                let url = format!("{base}/{server}/{tool}");
                http_call(client, &url, args, deadline, expected).await
            }
            Caller::Mcp(mcp) => mcp.call(server, tool, args, deadline, expected).await,
        }
    }

    /// How many MCP sessions the harness had to open (0 over HTTP).
    pub fn sessions_opened(&self) -> u64 {
        match self {
            Caller::Http { .. } => 0,
            Caller::Mcp(mcp) => mcp.opened.load(Ordering::Relaxed),
        }
    }

    /// Ends the MCP sessions politely (the endpoint frees them at once instead of at its
    /// idle timeout).
    pub async fn close(&self) {
        if let Caller::Mcp(mcp) = self {
            let slots: Vec<_> = mcp.sessions.lock().await.drain().map(|(_, s)| s).collect();
            for slot in slots {
                let session = slot.lock().await.take();
                if let Some(Ok(session)) = session.map(Arc::try_unwrap) {
                    let _ = tokio::time::timeout(Duration::from_secs(2), session.cancel()).await;
                }
            }
        }
    }
}

fn cut(text: &str) -> String {
    text.chars().take(200).collect()
}

/// Whether a failed send was the harness's own limit (out of file descriptors), not the
/// proxy's doing.
fn harness_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && matches!(io.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
        {
            return true;
        }
        source = err.source();
    }
    false
}

async fn http_call(
    client: &reqwest::Client,
    url: &str,
    args: &Map<String, Value>,
    deadline: Duration,
    expected: &Expected,
) -> Reply {
    match client.post(url).timeout(deadline).json(args).send().await {
        Ok(response) => {
            let status = response.status();
            // The answer counts once its body has arrived (or failed to).
            match response.bytes().await {
                Ok(body) if status.is_success() && answers::is_right(expected, &body) => {
                    Reply::new(Some(status.as_u16()), Outcome::Success, "")
                }
                Ok(body) => {
                    let outcome = if status.is_success() {
                        Outcome::WrongAnswer
                    } else {
                        Outcome::HttpError
                    };
                    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
                    Reply::new(Some(status.as_u16()), outcome, format!("{status} {text}"))
                }
                Err(e) if e.is_timeout() => Reply::new(Some(status.as_u16()), Outcome::Hung, ""),
                Err(e) => Reply::new(
                    Some(status.as_u16()),
                    Outcome::ConnectError,
                    cut(&e.to_string()),
                ),
            }
        }
        Err(e) if e.is_timeout() => Reply::new(None, Outcome::Hung, "no answer in time"),
        Err(e) if harness_limit(&e) => Reply::new(None, Outcome::NotSent, cut(&e.to_string())),
        Err(e) => Reply::new(None, Outcome::ConnectError, format!("no answer: {e}")),
    }
}

type Session = RunningService<RoleClient, ()>;

/// One endpoint's session, or none yet (or no longer).
type SessionSlot = Arc<Mutex<Option<Arc<Session>>>>;

/// One MCP session per endpoint of the proxy (one in all for an endpoint that fronts every
/// server), shared by every call in flight (as a client multiplexes its calls on its
/// session), opened again only when it ends.
pub struct McpCaller {
    base: String,
    route: McpRoute,
    client: reqwest::Client,
    /// By endpoint URL, each slot locked on its own: an endpoint that never answers
    /// `initialize` must not hold up the calls to the others.
    sessions: Mutex<HashMap<String, SessionSlot>>,
    opened: AtomicU64,
}

impl McpCaller {
    /// The open session on `url`, or a new one. Calls that arrive while one is being opened
    /// wait for it (one `initialize`, not one per caller).
    async fn session(&self, url: &str, deadline: Duration) -> Result<Arc<Session>, Reply> {
        let slot = self
            .sessions
            .lock()
            .await
            .entry(url.to_string())
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        if let Some(session) = slot.as_ref()
            && !session.is_closed()
        {
            return Ok(session.clone());
        }
        let transport = StreamableHttpClientTransport::with_client(
            self.client.clone(),
            rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
                url.to_string(),
            ),
        );
        let opened = tokio::time::timeout(deadline, rmcp::ServiceExt::serve((), transport)).await;
        match opened {
            Ok(Ok(session)) => {
                self.opened.fetch_add(1, Ordering::Relaxed);
                let session = Arc::new(session);
                *slot = Some(session.clone());
                Ok(session)
            }
            Ok(Err(e)) => Err(Reply::new(
                None,
                Outcome::ConnectError,
                cut(&format!("initialize on {url} failed: {e}")),
            )),
            Err(_) => Err(Reply::new(
                None,
                Outcome::Hung,
                format!("initialize on {url} got no answer in time"),
            )),
        }
    }

    /// Forgets `session` if it is still the current one on `url`, so the next call opens
    /// another.
    async fn drop_session(&self, url: &str, session: &Arc<Session>) {
        let Some(slot) = self.sessions.lock().await.get(url).cloned() else {
            return;
        };
        let mut slot = slot.lock().await;
        if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, session)) {
            *slot = None;
        }
    }

    async fn call(
        &self,
        server: &str,
        tool: &str,
        args: &Map<String, Value>,
        deadline: Duration,
        expected: &Expected,
    ) -> Reply {
        let started = tokio::time::Instant::now();
        // The wait for the session (another call may be opening it) is part of the call's
        // deadline: a proxy that never answers `initialize` must not queue every call behind
        // the one before it.
        let url = self.route.url(&self.base, server);
        let session = match tokio::time::timeout(deadline, self.session(&url, deadline)).await {
            Ok(Ok(session)) => session,
            Ok(Err(reply)) => return reply,
            Err(_) => return Reply::new(None, Outcome::Hung, "no session in time"),
        };
        let left = deadline.saturating_sub(started.elapsed());
        let params = CallToolRequestParams::new(self.route.tool_name(server, tool))
            .with_arguments(args.clone());
        match tokio::time::timeout(left, session.call_tool(params)).await {
            Err(_) | Ok(Err(ServiceError::Timeout { .. })) => {
                Reply::new(None, Outcome::Hung, "no answer in time")
            }
            Ok(Ok(result)) => {
                let body = serde_json::to_vec(&result).unwrap_or_default();
                if result.is_error == Some(true) {
                    let text = String::from_utf8_lossy(&body);
                    Reply::new(
                        Some(0),
                        Outcome::HttpError,
                        cut(&format!("isError: {text}")),
                    )
                } else if answers::is_right(expected, &body) {
                    Reply::new(None, Outcome::Success, "")
                } else {
                    Reply::new(
                        None,
                        Outcome::WrongAnswer,
                        cut(&String::from_utf8_lossy(&body)),
                    )
                }
            }
            Ok(Err(ServiceError::McpError(e))) => Reply::new(
                Some(0),
                Outcome::HttpError,
                cut(&format!("JSON-RPC error {}: {}", e.code.0, e.message)),
            ),
            Ok(Err(e)) => {
                // The session is gone or broken: this call failed on it, the next opens
                // another.
                self.drop_session(&url, &session).await;
                if harness_limit(&e) {
                    return Reply::new(None, Outcome::NotSent, cut(&e.to_string()));
                }
                Reply::new(None, Outcome::ConnectError, cut(&e.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_are_named_as_the_endpoint_names_them() {
        let route = McpRoute::default();
        assert_eq!(route.tool_name("time", "now"), "time__now");
        let single = McpRoute {
            path: "/time/mcp".into(),
            name: "{tool}".into(),
        };
        assert_eq!(single.tool_name("time", "now"), "now");
    }

    #[test]
    fn a_server_in_the_path_gives_each_server_its_own_endpoint() {
        let shared = McpRoute::default();
        assert_eq!(
            shared.url("http://127.0.0.1:9/", "a"),
            "http://127.0.0.1:9/mcp"
        );
        assert_eq!(
            shared.url("http://127.0.0.1:9", "b"),
            shared.url("http://127.0.0.1:9", "a")
        );
        let per_server = McpRoute {
            path: "/servers/{server}/mcp".into(),
            name: "{tool}".into(),
        };
        assert_eq!(
            per_server.url("http://127.0.0.1:9", "a"),
            "http://127.0.0.1:9/servers/a/mcp"
        );
        assert_ne!(
            per_server.url("http://127.0.0.1:9", "a"),
            per_server.url("http://127.0.0.1:9", "b")
        );
    }
}
