//! What an upstream outcome means, decided once.
//!
//! Every error the MCP SDK, the transport or our own deadline produces is turned into a
//! [`Failure`] here. HTTP status mapping, recovery, retries and metrics read this enum instead
//! of re-inspecting SDK errors, so that a new kind of failure is taught to the proxy in one
//! place (the shape follows linkerd2-proxy's `classify`).

use std::time::Duration;

use rmcp::service::ServiceError;
use rmcp::transport::auth::AuthError;
use rmcp::transport::streamable_http_client::StreamableHttpError;

use super::sse_client::SseError;
use crate::redact;

/// The longest `Retry-After` honoured; a server asking for more is asked again sooner.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

pub use crate::failure::Failure;

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
        if let Some(sse) = e.downcast_ref::<SseError>() {
            return classify_sse(sse);
        }
        if let Some(r) = e.downcast_ref::<reqwest::Error>() {
            return classify_reqwest(r);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Failure::TransportClosed {
                detail: io_phrase(io),
            };
        }
        current = next_in_chain(e);
    }
    Failure::TransportClosed {
        detail: root_cause(error),
    }
}

fn classify_streamable(error: &StreamableHttpError<reqwest::Error>) -> Failure {
    match error {
        StreamableHttpError::HttpStatus(status) => {
            let retry_after = status
                .retry_after
                .as_deref()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|secs| Duration::from_secs(secs).min(MAX_RETRY_AFTER));
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
        // rmcp's `AuthClient` answers these after its own refresh and retry have not helped.
        StreamableHttpError::AuthRequired(_) => Failure::HttpStatus {
            status: 401,
            retry_after: None,
        },
        StreamableHttpError::InsufficientScope(_) => Failure::HttpStatus {
            status: 403,
            retry_after: None,
        },
        StreamableHttpError::Auth(
            AuthError::AuthorizationRequired | AuthError::TokenRefreshRejected(_),
        ) => Failure::HttpStatus {
            status: 401,
            retry_after: None,
        },
        // A refresh that failed on the way (network, authorization server down): the token
        // may still be renewed on the next try.
        StreamableHttpError::Auth(e) => Failure::TransportClosed {
            detail: redact::urls_in(&e.to_string()),
        },
        StreamableHttpError::Io(e) => Failure::TransportClosed {
            detail: io_phrase(e),
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
            detail: redact::urls_in(&error.to_string()),
        },
        other => Failure::TransportClosed {
            detail: root_cause(other),
        },
    }
}

fn classify_sse(error: &SseError) -> Failure {
    match error {
        SseError::Request(e) => classify_reqwest(e),
        // The message was refused before it reached a session: safe to send on a new one.
        SseError::SessionLost => Failure::SessionExpired,
        SseError::Status {
            status,
            retry_after,
        } => Failure::HttpStatus {
            status: *status,
            retry_after: retry_after.map(|d| d.min(MAX_RETRY_AFTER)),
        },
        SseError::Closed => Failure::TransportClosed {
            detail: "the event stream closed".into(),
        },
        SseError::NotEventStream(_)
        | SseError::NoEndpoint
        | SseError::BadEndpoint
        | SseError::CrossOrigin(_)
        | SseError::EventTooLarge
        | SseError::BadHeader(_)
        | SseError::BadUrl
        | SseError::Encode(_) => Failure::Protocol {
            detail: error.to_string(),
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
    // A refused redirect (see `http_client::redirect_policy`) is a setting to fix, said as
    // the reason the server cannot be reached, not as a closed connection.
    if error.is_connect() || error.is_redirect() {
        Failure::Connect {
            detail: connect_phrase(error),
        }
    } else if error.is_timeout() {
        Failure::TransportClosed {
            detail: "the HTTP request timed out".into(),
        }
    } else {
        Failure::TransportClosed {
            detail: root_cause(error),
        }
    }
}

/// "cannot connect to HOST:PORT: connection refused" for a failed connect.
fn connect_phrase(error: &reqwest::Error) -> String {
    let target = error
        .url()
        .map(|u| redact::host_port(u.as_str()))
        .unwrap_or_else(|| "the server".into());
    format!("cannot connect to {target}: {}", root_cause(error))
}

/// The cause at the bottom of an error chain, said the way a person would: an I/O error by
/// its kind ("connection refused"), anything else by its own message with URLs reduced to
/// their origin. SDK wrappers higher up the chain print Rust type names and repeat the URL;
/// the root cause is the one fact that matters.
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut deepest: &(dyn std::error::Error + 'static) = error;
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return io_phrase(io);
        }
        deepest = e;
        current = next_in_chain(e);
    }
    let text = deepest.to_string();
    if text.contains("dns error") || text.contains("failed to lookup address") {
        return "the host name does not resolve".into();
    }
    redact::urls_in(&text)
}

/// The error under `e`. rmcp's handshake error keeps the transport's error in a field that is
/// not marked as its source, which would cut every chain at the handshake: look through it.
fn next_in_chain<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a (dyn std::error::Error + 'static)> {
    if let Some(rmcp::service::ClientInitializeError::TransportError { error, .. }) =
        e.downcast_ref::<rmcp::service::ClientInitializeError>()
    {
        return Some(error.error.as_ref());
    }
    e.source()
}

/// An I/O error as a short phrase.
fn io_phrase(io: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match io.kind() {
        K::ConnectionRefused => "connection refused".into(),
        K::ConnectionReset => "connection reset by the server".into(),
        K::ConnectionAborted => "connection aborted".into(),
        K::TimedOut => "timed out".into(),
        K::BrokenPipe => "the connection closed (broken pipe)".into(),
        K::UnexpectedEof => "the connection closed in the middle of an answer".into(),
        K::NotFound => "not found".into(),
        K::PermissionDenied => "permission denied".into(),
        K::AddrNotAvailable => "address not available".into(),
        _ => {
            // Errors that wrap another error keep it as their source; read that instead.
            match io.get_ref() {
                Some(inner) => root_cause(inner),
                None => redact::urls_in(&io.to_string()),
            }
        }
    }
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

    #[test]
    fn legacy_sse_failures() {
        assert_eq!(
            classify_transport(&SseError::SessionLost),
            Failure::SessionExpired
        );
        assert_eq!(
            classify_transport(&SseError::Status {
                status: 503,
                retry_after: Some(Duration::from_secs(2))
            }),
            Failure::HttpStatus {
                status: 503,
                retry_after: Some(Duration::from_secs(2))
            }
        );
        let garbled = classify_transport(&SseError::NotEventStream("text/html".into()));
        assert!(
            matches!(&garbled, Failure::Protocol { detail } if detail.contains("text/html")),
            "{garbled:?}"
        );
    }

    type Http = StreamableHttpError<reqwest::Error>;

    fn status(code: u16, retry_after: Option<&str>) -> Http {
        StreamableHttpError::HttpStatus(
            rmcp::transport::streamable_http_client::HttpStatusError::new(
                code,
                retry_after.map(str::to_string),
            ),
        )
    }

    fn closed(detail: &str) -> Failure {
        Failure::TransportClosed {
            detail: detail.into(),
        }
    }

    fn http(status: u16) -> Failure {
        Failure::HttpStatus {
            status,
            retry_after: None,
        }
    }

    #[test]
    fn sdk_errors_by_cause() {
        assert_eq!(
            classify_service_error(&ServiceError::Cancelled {
                reason: Some("shutting down".into())
            }),
            closed("the request was cancelled: shutting down")
        );
        assert!(matches!(
            classify_service_error(&ServiceError::UnexpectedResponse),
            Failure::Protocol { .. }
        ));
        // A failed send is classified by the transport's own error.
        let send = ServiceError::TransportSend(rmcp::transport::DynamicTransportError::from_parts(
            "test",
            std::any::TypeId::of::<()>(),
            Box::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe)),
        ));
        assert_eq!(
            classify_service_error(&send),
            closed("the connection closed (broken pipe)")
        );
    }

    #[test]
    fn streamable_http_statuses_and_retry_after() {
        // 404 on a session request: the server forgot the session.
        assert_eq!(
            classify_transport(&status(404, None)),
            Failure::SessionExpired
        );
        // Retry-After in seconds, spaces allowed, capped at an hour; a date is not honoured.
        let wait = |value: &str| match classify_transport(&status(429, Some(value))) {
            Failure::HttpStatus { retry_after, .. } => retry_after,
            other => panic!("{other:?}"),
        };
        assert_eq!(wait(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(wait("86400"), Some(MAX_RETRY_AFTER));
        assert_eq!(wait("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(
            classify_transport(&Http::SessionRecoveryTimeout),
            Failure::SessionExpired
        );
    }

    #[test]
    fn authorization_failures_are_401_and_403_and_a_failed_refresh_is_transient() {
        use rmcp::transport::streamable_http_client::{AuthRequiredError, InsufficientScopeError};
        let required = Http::AuthRequired(AuthRequiredError::new("Bearer".into()));
        assert_eq!(classify_transport(&required), http(401));
        let scope = Http::InsufficientScope(InsufficientScopeError::new("Bearer".into(), None));
        assert_eq!(classify_transport(&scope), http(403));
        let rejected = Http::Auth(AuthError::TokenRefreshRejected("invalid_grant".into()));
        assert_eq!(classify_transport(&rejected), http(401));
        let required = Http::Auth(AuthError::AuthorizationRequired);
        assert_eq!(classify_transport(&required), http(401));
        let failed = Http::Auth(AuthError::TokenRefreshFailed("503".into()));
        assert!(
            matches!(classify_transport(&failed), Failure::TransportClosed { .. }),
            "may work on the next try"
        );
    }

    #[test]
    fn streamable_bodies_and_streams() {
        assert_eq!(
            classify_transport(&Http::Io(std::io::ErrorKind::ConnectionReset.into())),
            closed("connection reset by the server")
        );
        let lost = Http::UnexpectedServerResponse("Bad Request: No valid session ID".into());
        assert_eq!(classify_transport(&lost), Failure::SessionExpired);
        let garbled = Http::UnexpectedServerResponse("<html>".into());
        assert!(matches!(
            classify_transport(&garbled),
            Failure::Protocol { .. }
        ));
        assert!(matches!(
            classify_transport(&Http::MissingSessionIdInResponse),
            Failure::Protocol { .. }
        ));
        assert!(matches!(
            classify_transport(&Http::UnexpectedEndOfStream),
            Failure::TransportClosed { .. }
        ));
    }

    #[test]
    fn legacy_sse_stream_end_and_long_retry_after() {
        assert_eq!(
            classify_transport(&SseError::Closed),
            closed("the event stream closed")
        );
        assert_eq!(
            classify_transport(&SseError::Status {
                status: 503,
                retry_after: Some(Duration::from_secs(86_400))
            }),
            Failure::HttpStatus {
                status: 503,
                retry_after: Some(MAX_RETRY_AFTER)
            }
        );
    }

    /// An error that wraps another, as SDK layers do.
    #[derive(Debug, thiserror::Error)]
    #[error("wrapper around {0}")]
    struct Wrapper(#[source] Box<dyn std::error::Error + Send + Sync>);

    #[test]
    fn chains_are_read_down_to_the_cause() {
        let io = Wrapper(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert_eq!(classify_transport(&io), closed("connection refused"));
        let http = Wrapper(Box::new(status(503, None)));
        assert_eq!(classify_transport(&http), self::http(503));
        let sse = Wrapper(Box::new(SseError::SessionLost));
        assert_eq!(classify_transport(&sse), Failure::SessionExpired);
        // Nothing known below: the deepest message, said once.
        let plain = Wrapper(Box::new(Wrapper(Box::new(std::fmt::Error))));
        assert_eq!(
            classify_transport(&plain),
            closed("an error occurred when formatting an argument")
        );
        let dns = Wrapper("dns error: failed to lookup address information".into());
        assert_eq!(root_cause(&dns), "the host name does not resolve");
        // The handshake keeps the transport's error in a field that is not its source.
        let handshake = rmcp::service::ClientInitializeError::TransportError {
            error: rmcp::transport::DynamicTransportError::from_parts(
                "test",
                std::any::TypeId::of::<()>(),
                Box::new(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
            ),
            context: "send initialize request".into(),
        };
        assert_eq!(
            classify_transport(&handshake),
            closed("the connection closed in the middle of an answer")
        );
    }

    #[test]
    fn io_errors_in_words() {
        use std::io::{Error, ErrorKind as K};
        for (kind, phrase) in [
            (K::ConnectionRefused, "connection refused"),
            (K::ConnectionReset, "connection reset by the server"),
            (K::ConnectionAborted, "connection aborted"),
            (K::TimedOut, "timed out"),
            (K::BrokenPipe, "the connection closed (broken pipe)"),
            (
                K::UnexpectedEof,
                "the connection closed in the middle of an answer",
            ),
            (K::NotFound, "not found"),
            (K::PermissionDenied, "permission denied"),
            (K::AddrNotAvailable, "address not available"),
        ] {
            assert_eq!(io_phrase(&Error::from(kind)), phrase);
        }
        // An I/O error that wraps another is said by what it wraps.
        let wrapped = Error::other(Wrapper("dns error: no such host".into()));
        assert_eq!(io_phrase(&wrapped), "the host name does not resolve");
        assert_eq!(io_phrase(&Error::other("plain")), "plain");
    }

    /// Errors from real sockets carry an OS code, and their own text says it ("Connection
    /// aborted (os error 103)"): each kind must still be said in the proxy's words.
    #[cfg(target_os = "linux")]
    #[test]
    fn os_errors_in_words_not_in_their_codes() {
        use std::io::Error;
        // Linux's ECONNABORTED, ETIMEDOUT, EACCES, EADDRNOTAVAIL, ECONNREFUSED.
        for (code, phrase) in [
            (103, "connection aborted"),
            (110, "timed out"),
            (13, "permission denied"),
            (99, "address not available"),
            (111, "connection refused"),
        ] {
            assert_eq!(io_phrase(&Error::from_raw_os_error(code)), phrase);
        }
    }

    #[tokio::test]
    async fn a_refused_sse_post_is_a_plain_connect_failure() {
        // A port that was just free: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let e = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/messages?sessionId=SECRET"))
            .send()
            .await
            .expect_err("nothing listens there");
        let failure = classify_transport(&SseError::Request(e));
        let shown = failure.describe();
        assert!(matches!(failure, Failure::Connect { .. }), "{failure:?}");
        assert_eq!(
            shown,
            format!("cannot connect to 127.0.0.1:{port}: connection refused")
        );
    }
}
