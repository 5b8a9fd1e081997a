//! What went wrong with an upstream call, as one small enum that every other part reads.
//!
//! `upstream::classify` turns SDK and transport errors into a [`Failure`]; `recovery` decides
//! what to do per [`FailureClass`]; `http::error` maps each class to a status; metrics and the
//! chaos verdict count by class. Keeping the enum in this leaf module (it imports nothing from
//! the crate) is what lets `recovery` and `upstream` both use it without importing each other.

use std::time::Duration;

use serde_json::Value;

/// A failed upstream call, by cause.
#[derive(Debug, Clone, PartialEq, strum::EnumDiscriminants)]
#[strum_discriminants(
    name(FailureClass),
    derive(Hash, strum::IntoStaticStr, strum::EnumIter),
    strum(serialize_all = "snake_case")
)]
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
    /// The session the call ran on ended during the call (the child died, the connection
    /// broke, the session was lost), and the call could not be sent again safely: the tool may
    /// or may not have run. `event` says what ended the session.
    SessionEnded { event: String },
}

impl Failure {
    /// The class of the failure, for strategies, metrics and status mapping.
    pub fn class(&self) -> FailureClass {
        FailureClass::from(self)
    }

    /// A short label for logs and metrics (`transport_closed`, `http_status`, ...).
    pub fn label(&self) -> &'static str {
        self.class().into()
    }

    /// True when the failure says the server is unhealthy (for the circuit breaker). A tool
    /// error or a JSON-RPC error is a healthy server giving an answer; the end of one session
    /// is an event the supervisor handles by replacing that session (see `upstream`), not a
    /// vote against the server.
    pub fn counts_against_server(&self) -> bool {
        match self {
            Failure::Tool { .. }
            | Failure::JsonRpc { .. }
            | Failure::SessionExpired
            | Failure::SessionEnded { .. } => false,
            Failure::HttpStatus { status, .. } => *status >= 500 || *status == 429,
            _ => true,
        }
    }

    /// One line a person can read, naming the cause and never a Rust type.
    pub fn describe(&self) -> String {
        match self {
            Failure::Tool { message } => format!("the tool reported an error: {message}"),
            Failure::JsonRpc { code, message, .. } => {
                format!("the server answered with JSON-RPC error {code}: {message}")
            }
            Failure::Timeout { after } => {
                format!("no answer within {:.1}s", after.as_secs_f64())
            }
            Failure::TransportClosed { detail } => format!("the connection closed: {detail}"),
            Failure::HttpStatus { status, .. } => format!("the server answered HTTP {status}"),
            Failure::SessionExpired => "the server no longer knows our session".into(),
            Failure::Connect { detail } => detail.clone(),
            Failure::Unavailable { reason } => reason.clone(),
            Failure::Protocol { detail } => format!("invalid MCP from the server: {detail}"),
            Failure::CircuitOpen { retry_after } => format!(
                "the circuit breaker is open for {:.1}s",
                retry_after.as_secs_f64()
            ),
            Failure::SessionEnded { event } => format!("the session ended: {event}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::IntoEnumIterator as _;

    #[test]
    fn labels_are_derived_and_distinct() {
        assert_eq!(
            Failure::TransportClosed { detail: "x".into() }.label(),
            "transport_closed"
        );
        assert_eq!(Failure::SessionExpired.label(), "session_expired");
        let labels: std::collections::HashSet<&str> =
            FailureClass::iter().map(<&str>::from).collect();
        assert_eq!(labels.len(), FailureClass::iter().count());
    }

    #[test]
    fn what_counts_against_the_server() {
        assert!(!Failure::SessionExpired.counts_against_server());
        assert!(!Failure::SessionEnded { event: "x".into() }.counts_against_server());
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
