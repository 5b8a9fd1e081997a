//! The one error type of the HTTP layer, and the single place where failures become statuses.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::validate::FieldError;
use crate::upstream::Failure;

/// Everything a route can answer besides success.
#[derive(Debug)]
pub enum ApiError {
    /// 422 in FastAPI's shape.
    Validation(Vec<FieldError>),
    /// 404 for an unknown server, tool or path.
    NotFound(String),
    /// 401: no or malformed credentials.
    Unauthorized,
    /// 403: wrong key.
    Forbidden,
    /// 403: an action only the operator may take (a key, or `--trust-loopback`).
    NotPrivileged,
    /// 415: a POST body that is not JSON by its `Content-Type`.
    UnsupportedMediaType,
    /// 413 or 503: a body over a limit, or the body budget spent (load shedding).
    Body(super::body::BodyError),
    /// 500: something in the proxy itself failed.
    Internal(String),
    /// An upstream call failed (boxed: failures carry JSON and strings, and the error type
    /// travels through every handler's `Result`).
    Upstream(Box<UpstreamFailure>),
}

/// An upstream failure and where it happened.
#[derive(Debug)]
pub struct UpstreamFailure {
    pub failure: Failure,
    pub server: String,
    pub tool: String,
}

impl From<super::body::BodyError> for ApiError {
    fn from(e: super::body::BodyError) -> Self {
        ApiError::Body(e)
    }
}

impl ApiError {
    pub fn upstream(failure: Failure, server: &str, tool: &str) -> Self {
        ApiError::Upstream(Box::new(UpstreamFailure {
            failure,
            server: server.to_string(),
            tool: tool.to_string(),
        }))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Validation(errors) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                axum::Json(json!({"detail": errors})),
            )
                .into_response(),
            ApiError::NotFound(message) => (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"detail": message})),
            )
                .into_response(),
            ApiError::Unauthorized => {
                let mut r = (
                    StatusCode::UNAUTHORIZED,
                    axum::Json(json!({"detail": "Not authenticated"})),
                )
                    .into_response();
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                r
            }
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                axum::Json(json!({"detail": "Invalid API key"})),
            )
                .into_response(),
            ApiError::NotPrivileged => (
                StatusCode::FORBIDDEN,
                axum::Json(json!({"detail": "Only the operator may do this: send the API key, or start the proxy with --trust-loopback and call it on localhost"})),
            )
                .into_response(),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                axum::Json(json!({"detail": "The request body must be JSON, sent with Content-Type: application/json"})),
            )
                .into_response(),
            ApiError::Upstream(u) => upstream_response(&u.failure, &u.server, &u.tool),
            ApiError::Body(e) => {
                use super::body::BodyError;
                let status = match e {
                    BodyError::TooLarge { .. } | BodyError::TooManyValues { .. } => {
                        StatusCode::PAYLOAD_TOO_LARGE
                    }
                    BodyError::Busy => StatusCode::SERVICE_UNAVAILABLE,
                    BodyError::Read(_) => StatusCode::BAD_REQUEST,
                    BodyError::TimedOut { .. } => StatusCode::REQUEST_TIMEOUT,
                };
                let mut r = (
                    status,
                    axum::Json(json!({"detail": {"message": e.to_string()}})),
                )
                    .into_response();
                if matches!(e, BodyError::Busy) {
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                }
                if matches!(e, BodyError::TimedOut { .. }) {
                    // The rest of the body may still come: this connection cannot carry
                    // another request.
                    r.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                r
            }
            ApiError::Internal(message) => {
                tracing::error!(%message, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    axum::Json(json!({"detail": {"message": message}})),
                )
                    .into_response()
            }
        }
    }
}

/// How each class of upstream failure is answered.
fn upstream_response(failure: &Failure, server: &str, tool: &str) -> Response {
    let (status, body, retry_after) = upstream_answer(failure, server, tool);
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(secs) = retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// The status, JSON body and `Retry-After` seconds of a failed call, shared by the OpenAPI
/// routes and the MCP endpoint so that the two never word a failure differently.
pub(crate) fn upstream_answer(
    failure: &Failure,
    server: &str,
    tool: &str,
) -> (StatusCode, Value, Option<u64>) {
    let target = if server.is_empty() {
        format!("'{tool}'")
    } else {
        format!("'{server}/{tool}'")
    };
    let (status, body, retry_after) = match failure {
        Failure::Tool { message } => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"detail": {"message": message}}),
            None,
        ),
        Failure::JsonRpc {
            code,
            message,
            data,
        } => {
            let status = match code {
                -32700 | -32600 => StatusCode::BAD_REQUEST,
                -32601 => StatusCode::NOT_FOUND,
                -32602 => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let mut detail = json!({"message": message});
            if let Some(data) = data {
                detail["data"] = data.clone();
            }
            (status, json!({"detail": detail}), None)
        }
        Failure::Timeout { after } => (
            StatusCode::GATEWAY_TIMEOUT,
            json!({"detail": {"message": format!(
                "Tool call {target} got no answer within {:.1}s; the upstream request was cancelled",
                after.as_secs_f64()
            )}}),
            None,
        ),
        Failure::Unavailable { reason } => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"detail": {"message": format!(
                "MCP server '{}' is not available: {reason}",
                if server.is_empty() { "upstream" } else { server }
            )}}),
            Some(1),
        ),
        Failure::HttpStatus {
            status,
            retry_after,
        } => (
            StatusCode::BAD_GATEWAY,
            json!({"detail": {"message": format!("The MCP server answered {target} with HTTP {status}")}}),
            retry_after.map(|d| d.as_secs().max(1)),
        ),
        Failure::Protocol { detail } => (
            StatusCode::BAD_GATEWAY,
            json!({"detail": {"message": format!("The MCP server answered {target} with invalid MCP: {detail}")}}),
            None,
        ),
        Failure::TransportClosed { detail } => (
            StatusCode::BAD_GATEWAY,
            json!({"detail": {"message": format!(
                "The connection to the MCP server broke during {target}: {detail}; it is being restored"
            )}}),
            Some(1),
        ),
        Failure::Connect { detail } => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"detail": {"message": format!(
                "MCP server '{}' cannot be reached: {detail}",
                if server.is_empty() { "upstream" } else { server }
            )}}),
            Some(1),
        ),
        Failure::SessionEnded { event } => (
            StatusCode::BAD_GATEWAY,
            json!({"detail": {"message": format!(
                "The MCP server's session ended during {target} ({event}). The tool may or may not have run, \
                 so the call was not sent again (the tool is not marked idempotent); a new session is being opened"
            )}}),
            None,
        ),
        Failure::CircuitOpen { retry_after } => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"detail": {"message": format!(
                "MCP server '{}' failed too often just now; calls are paused for {:.1}s (circuit breaker open)",
                if server.is_empty() { "upstream" } else { server },
                retry_after.as_secs_f64()
            )}}),
            Some(retry_after.as_secs_f64().ceil().max(1.0) as u64),
        ),
        Failure::SessionExpired => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"detail": {"message": format!(
                "The MCP server lost its session during {target}; a new one is being opened"
            )}}),
            Some(1),
        ),
    };
    (status, body, retry_after)
}
