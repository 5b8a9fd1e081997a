//! API key checks, as mcpo does them, with the key compared in constant time.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use subtle::ConstantTimeEq as _;

use super::error::ApiError;

/// The configured key and how strictly it is applied.
#[derive(Clone)]
pub struct ApiKey {
    key: Arc<[u8]>,
    /// Under `--strict-auth`, HTTP Basic whose password is the key is accepted too.
    accept_basic: bool,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("ApiKey").finish_non_exhaustive()
    }
}

impl ApiKey {
    pub fn new(key: &str, accept_basic: bool) -> Self {
        ApiKey {
            key: Arc::from(key.as_bytes()),
            accept_basic,
        }
    }

    fn matches(&self, candidate: &[u8]) -> bool {
        // `ct_eq` on slices of different lengths is false without comparing contents; only the
        // length can leak, which a key's length does not help an attacker guess.
        bool::from(self.key.as_ref().ct_eq(candidate))
    }

    /// Checks an `Authorization` header value.
    pub fn check(&self, authorization: Option<&str>) -> Result<(), ApiError> {
        let Some(value) = authorization else {
            return Err(ApiError::Unauthorized);
        };
        let (scheme, credentials) = value.trim().split_once(' ').ok_or(ApiError::Unauthorized)?;
        let credentials = credentials.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            if credentials.is_empty() {
                return Err(ApiError::Unauthorized);
            }
            return if self.matches(credentials.as_bytes()) {
                Ok(())
            } else {
                Err(ApiError::Forbidden)
            };
        }
        if self.accept_basic && scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(credentials)
                .map_err(|_| ApiError::Unauthorized)?;
            let password = match decoded.iter().position(|&b| b == b':') {
                Some(i) => &decoded[i + 1..],
                None => return Err(ApiError::Unauthorized),
            };
            return if self.matches(password) {
                Ok(())
            } else {
                Err(ApiError::Forbidden)
            };
        }
        Err(ApiError::Unauthorized)
    }
}

/// Middleware guarding a group of routes. Preflight requests always pass: the CORS layer in
/// front answers them, and a browser never sends credentials with them.
pub async fn require_key(State(key): State<ApiKey>, request: Request, next: Next) -> Response {
    if request.method() == Method::OPTIONS {
        return next.run(request).await;
    }
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match key.check(header) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// Whether a request may see what only the operator should: child stderr tails and PIDs,
/// token paths, OAuth authorization URLs (their `state` would let a page finish the flow with
/// its own account), or restart servers.
///
/// With a key, the key decides. Without one, nobody over HTTP (the details stay in the logs),
/// unless the operator trusts loopback (`--trust-loopback`); even then only a loopback peer
/// that names a loopback host (`localhost`, `127.0.0.1`, `[::1]`), so that a DNS-rebinding
/// page cannot pass, and that sends no `Origin` of another origin, so that a page the operator
/// opens cannot read the answer through CORS.
pub fn privileged(
    key: Option<&ApiKey>,
    trust_loopback: bool,
    peer: Option<std::net::SocketAddr>,
    headers: &axum::http::HeaderMap,
) -> bool {
    if let Some(key) = key {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        return key.check(authorization).is_ok();
    }
    trust_loopback
        && peer.is_some_and(|p| p.ip().is_loopback())
        && host_is_loopback(headers)
        && !cross_origin(headers)
}

/// Whether the `Host` header names this machine's loopback interface.
pub fn host_is_loopback(headers: &axum::http::HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        // `[::1]:8000`
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether the request carries an `Origin` other than the one it was sent to (`Host`).
pub fn cross_origin(headers: &axum::http::HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let Ok(origin) = origin.to_str() else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let authority = origin.split_once("://").map(|(_, rest)| rest);
    match (authority, host) {
        (Some(authority), Some(host)) => !authority.eq_ignore_ascii_case(host),
        _ => true,
    }
}

/// Refuses a request body that is not JSON by its `Content-Type`: a cross-origin page may
/// send a "simple" request (`text/plain`, a form, or a bare blob with no type) without a CORS
/// preflight, and must not be able to call tools or restart servers that way. An empty body
/// (a tool without arguments) needs no type.
pub async fn require_json(request: Request, next: Next) -> Response {
    if request.method() == Method::POST {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| {
                let v = v.trim().to_ascii_lowercase();
                v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
            });
        let empty = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() == "0");
        let declared_body = request.headers().contains_key(header::CONTENT_LENGTH)
            || request.headers().contains_key(header::TRANSFER_ENCODING);
        if is_json == Some(false) || (is_json.is_none() && declared_body && !empty) {
            return ApiError::UnsupportedMediaType.into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic() {
        let key = ApiKey::new("s3cret", false);
        assert!(key.check(Some("Bearer s3cret")).is_ok());
        assert!(key.check(Some("bearer s3cret")).is_ok());
        assert!(matches!(key.check(None), Err(ApiError::Unauthorized)));
        assert!(matches!(
            key.check(Some("Bearer")),
            Err(ApiError::Unauthorized)
        ));
        assert!(matches!(
            key.check(Some("Bearer nope")),
            Err(ApiError::Forbidden)
        ));
        assert!(matches!(
            key.check(Some("Bearer s3cret2")),
            Err(ApiError::Forbidden)
        ));
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("user:s3cret")
        );
        assert!(matches!(
            key.check(Some(&basic)),
            Err(ApiError::Unauthorized)
        ));
        let strict = ApiKey::new("s3cret", true);
        assert!(strict.check(Some(&basic)).is_ok());
        let wrong = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("user:x")
        );
        assert!(matches!(
            strict.check(Some(&wrong)),
            Err(ApiError::Forbidden)
        ));
    }
}
