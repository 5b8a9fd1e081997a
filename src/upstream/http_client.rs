//! The HTTP client under rmcp's streamable-HTTP transport, taught to notice a lost session.
//!
//! The spec says a server that no longer knows a session answers HTTP 404, and rmcp turns that
//! into an error. The reference TypeScript server (`server-everything`) instead answers 400
//! with a JSON-RPC error "Bad Request: No valid session ID provided" that carries no `id`.
//! rmcp passes that message on as if it were a reply, cannot match it to the request, drops
//! it, and the call waits forever. This wrapper sees such an id-less error in reply to a
//! request and turns it into `SessionExpired`, which the recovery layer knows how to handle.

use std::collections::HashMap;
use std::sync::Arc;

use futures::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};

/// `reqwest::Client` plus lost-session detection.
#[derive(Clone)]
pub struct SessionAwareClient {
    inner: reqwest::Client,
}

impl SessionAwareClient {
    /// A client that follows redirects only within the endpoint's origin (see
    /// [`redirect_policy`]).
    pub fn new() -> Result<Self, reqwest::Error> {
        Ok(SessionAwareClient {
            inner: reqwest::Client::builder()
                .redirect(redirect_policy())
                .build()?,
        })
    }
}

/// Redirects an MCP endpoint may take before the request fails (reqwest's default is 10).
const MAX_REDIRECTS: usize = 5;

/// The redirect policy of every HTTP client that talks to an MCP server: a redirect is
/// followed only to the origin (scheme, host, port) the request started at. reqwest strips
/// `Authorization` and cookies on a cross-origin redirect but keeps every other header, and
/// servers are configured with `x-api-key` and the like: following a 307 to another origin
/// would hand those to whatever the server points at. An endpoint that moved to another
/// origin is a config change for the operator, so the error says where it pointed.
pub fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first();
        let same_origin = first.is_some_and(|f| f.origin() == attempt.url().origin());
        if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
        } else if same_origin {
            attempt.follow()
        } else {
            let to = crate::redact::host_port(attempt.url().as_str());
            attempt.error(CrossOriginRedirect(to))
        }
    })
}

/// A redirect to another origin, refused; the target's host and port only.
#[derive(Debug, thiserror::Error)]
#[error(
    "the server redirected to another origin ({0}); not followed, so that the configured headers are not sent there: point the config at the new URL if it is right"
)]
pub struct CrossOriginRedirect(String);

type PostResult = Result<StreamableHttpPostResponse, StreamableHttpError<reqwest::Error>>;

/// What `check_reply` needs to know about the message that was sent, taken before the message
/// is handed to the inner client (so no copy of it is kept).
#[derive(Clone, Copy)]
struct Sent {
    is_request: bool,
    session_attached: bool,
}

impl Sent {
    fn of(message: &ClientJsonRpcMessage, session_id: &Option<Arc<str>>) -> Self {
        Sent {
            is_request: matches!(message, ClientJsonRpcMessage::Request(_)),
            session_attached: session_id.is_some(),
        }
    }
}

/// Rewrites a reply that can never be matched to our request into an error.
fn check_reply(sent: Sent, result: PostResult) -> PostResult {
    let Sent {
        is_request,
        session_attached,
    } = sent;
    match result {
        Ok(StreamableHttpPostResponse::Json(ServerJsonRpcMessage::Error(e), _))
            if is_request && e.id.is_none() =>
        {
            let message = e.error.message.to_string();
            if session_attached || message.to_ascii_lowercase().contains("session") {
                tracing::debug!(%message, "server rejected our session; treating it as expired");
                Err(StreamableHttpError::SessionExpired)
            } else {
                Err(StreamableHttpError::UnexpectedServerResponse(
                    format!("the server rejected the request without naming it: {message}").into(),
                ))
            }
        }
        other => other,
    }
}

// rmcp's transport sends through `post_message_with_response_limits`; `post_message` is kept
// for completeness. The SSE-size variant is left to its default, which only that default of
// `post_message_with_response_limits` (overridden here) would call.
impl StreamableHttpClient for SessionAwareClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> PostResult {
        let sent = Sent::of(&message, &session_id);
        let result = self
            .inner
            .post_message(uri, message, session_id, auth_header, custom_headers)
            .await;
        check_reply(sent, result)
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> PostResult {
        let sent = Sent::of(&message, &session_id);
        let result = self
            .inner
            .post_message_with_response_limits(
                uri,
                message,
                session_id,
                auth_header,
                custom_headers,
                limits,
            )
            .await;
        check_reply(sent, result)
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        self.inner
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<
        BoxStream<'static, Result<sse_stream::Sse, SseError>>,
        StreamableHttpError<Self::Error>,
    > {
        self.inner
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<
        BoxStream<'static, Result<sse_stream::Sse, SseError>>,
        StreamableHttpError<Self::Error>,
    > {
        self.inner
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }
}
