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
#[derive(Clone, Default)]
pub struct SessionAwareClient {
    inner: reqwest::Client,
}

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
