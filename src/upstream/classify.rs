//! What an upstream outcome means, decided once.
//!
//! Every error the MCP SDK, the transport or our own deadline produces is turned into a
//! [`Failure`] here. HTTP status mapping, recovery, retries and metrics read this enum instead
//! of re-inspecting SDK errors, so that a new kind of failure is taught to the proxy in one
//! place (the shape follows linkerd2-proxy's `classify`).

use std::time::Duration;

use rmcp::service::ServiceError;
use rmcp::transport::streamable_http_client::StreamableHttpError;
use serde_json::Value;

/// A failed upstream call, by cause.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The tool ran and reported an error (`isError: true`); the message is the tool's text.
    Tool { message: String },
    /// The server answered with a JSON-RPC error.
    JsonRpc {
        code: i32,
        message: String,
        data: Option<Value>,
    },
    /// No answer before the call's deadline.
    Timeout { after: Duration },
    /// The pipe or connection to the server closed (stdio child gone, HTTP stream dropped).
    TransportClosed { detail: String },
    /// The server answered HTTP with an error status.
    HttpStatus {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// The server no longer knows our session (HTTP 404, or 400 "No valid session ID").
    SessionExpired,
    /// Could not reach the server at all (connection refused, DNS, TLS).
    Connect { detail: String },
    /// The server is not connected right now (starting, restarting or down).
    Unavailable { reason: String },
    /// The server said something that is not valid MCP.
    Protocol { detail: String },
    /// The circuit breaker is open: the server failed too often just now.
    CircuitOpen { retry_after: Duration },
}

impl Failure {
    /// True when the failure says the server is unhealthy (for the circuit breaker). A tool
    /// error or a JSON-RPC error is a healthy server giving an answer.
    pub fn counts_against_server(&self) -> bool {
        match self {
            Failure::Tool { .. } | Failure::JsonRpc { .. } | Failure::SessionExpired => false,
            Failure::HttpStatus { status, .. } => *status >= 500 || *status == 429,
            _ => true,
        }
    }

    /// A short label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Failure::Tool { .. } => "tool_error",
            Failure::JsonRpc { .. } => "jsonrpc_error",
            Failure::Timeout { .. } => "timeout",
            Failure::TransportClosed { .. } => "transport_closed",
            Failure::HttpStatus { .. } => "http_status",
            Failure::SessionExpired => "session_expired",
            Failure::Connect { .. } => "connect",
            Failure::Unavailable { .. } => "unavailable",
            Failure::Protocol { .. } => "protocol",
            Failure::CircuitOpen { .. } => "circuit_open",
        }
    }
}

/// Classifies an error of the MCP SDK.
pub fn classify_service_error(error: &ServiceError) -> Failure {
    match error {
        ServiceError::McpError(e) => Failure::JsonRpc {
            code: e.code.0,
            message: e.message.to_string(),
            data: e.data.clone(),
        },
        ServiceError::TransportClosed => Failure::TransportClosed {
            detail: "the connection to the server closed".into(),
        },
        ServiceError::Timeout { timeout } => Failure::Timeout { after: *timeout },
        ServiceError::Cancelled { reason } => Failure::TransportClosed {
            detail: format!(
                "the request was cancelled: {}",
                reason.as_deref().unwrap_or("no reason given")
            ),
        },
        ServiceError::TransportSend(e) => classify_transport(e.error.as_ref()),
        ServiceError::UnexpectedResponse => Failure::Protocol {
            detail: "the server answered with an unexpected response type".into(),
        },
        other => Failure::Protocol {
            detail: other.to_string(),
        },
    }
}

/// Classifies a transport error by walking its chain of sources.
pub fn classify_transport(error: &(dyn std::error::Error + 'static)) -> Failure {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(http) = e.downcast_ref::<StreamableHttpError<reqwest::Error>>() {
            return classify_streamable(http);
        }
        if let Some(r) = e.downcast_ref::<reqwest::Error>() {
            return classify_reqwest(r);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Failure::TransportClosed {
                detail: io.to_string(),
            };
        }
        current = e.source();
    }
    Failure::TransportClosed {
        detail: error.to_string(),
    }
}

fn classify_streamable(error: &StreamableHttpError<reqwest::Error>) -> Failure {
    match error {
        StreamableHttpError::HttpStatus(status) => {
            let retry_after = status
                .retry_after
                .as_deref()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            match status.status {
                404 => Failure::SessionExpired,
                code => Failure::HttpStatus {
                    status: code,
                    retry_after,
                },
            }
        }
        StreamableHttpError::SessionExpired | StreamableHttpError::SessionRecoveryTimeout => {
            Failure::SessionExpired
        }
        StreamableHttpError::Client(e) => classify_reqwest(e),
        StreamableHttpError::Io(e) => Failure::TransportClosed {
            detail: e.to_string(),
        },
        StreamableHttpError::UnexpectedServerResponse(body)
            if body.contains("No valid session ID") =>
        {
            Failure::SessionExpired
        }
        StreamableHttpError::Deserialize(_)
        | StreamableHttpError::UnexpectedServerResponse(_)
        | StreamableHttpError::UnexpectedContentType(_)
        | StreamableHttpError::MissingSessionIdInResponse => Failure::Protocol {
            detail: error.to_string(),
        },
        other => Failure::TransportClosed {
            detail: other.to_string(),
        },
    }
}

fn classify_reqwest(error: &reqwest::Error) -> Failure {
    if let Some(status) = error.status() {
        return match status.as_u16() {
            404 => Failure::SessionExpired,
            code => Failure::HttpStatus {
                status: code,
                retry_after: None,
            },
        };
    }
    if error.is_connect() {
        Failure::Connect {
            detail: error_chain(error),
        }
    } else if error.is_timeout() {
        Failure::TransportClosed {
            detail: "the HTTP request timed out".into(),
        }
    } else {
        Failure::TransportClosed {
            detail: error_chain(error),
        }
    }
}

/// An error and its sources on one line, for messages that must say what really happened.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{ErrorCode, ErrorData};

    #[test]
    fn jsonrpc_errors_keep_code_message_and_data() {
        let err = ServiceError::McpError(ErrorData::new(
            ErrorCode(-32602),
            "bad params",
            Some(serde_json::json!({"field": "a"})),
        ));
        assert_eq!(
            classify_service_error(&err),
            Failure::JsonRpc {
                code: -32602,
                message: "bad params".into(),
                data: Some(serde_json::json!({"field": "a"}))
            }
        );
    }

    #[test]
    fn transport_failures() {
        assert!(matches!(
            classify_service_error(&ServiceError::TransportClosed),
            Failure::TransportClosed { .. }
        ));
        assert_eq!(
            classify_service_error(&ServiceError::Timeout {
                timeout: Duration::from_secs(2)
            }),
            Failure::Timeout {
                after: Duration::from_secs(2)
            }
        );
        let http: StreamableHttpError<reqwest::Error> = StreamableHttpError::HttpStatus(
            rmcp::transport::streamable_http_client::HttpStatusError::new(503, Some("7".into())),
        );
        assert_eq!(
            classify_transport(&http),
            Failure::HttpStatus {
                status: 503,
                retry_after: Some(Duration::from_secs(7))
            }
        );
        let expired: StreamableHttpError<reqwest::Error> = StreamableHttpError::SessionExpired;
        assert_eq!(classify_transport(&expired), Failure::SessionExpired);
        assert!(!Failure::SessionExpired.counts_against_server());
        assert!(
            Failure::HttpStatus {
                status: 502,
                retry_after: None
            }
            .counts_against_server()
        );
        assert!(
            !Failure::HttpStatus {
                status: 400,
                retry_after: None
            }
            .counts_against_server()
        );
    }
}
