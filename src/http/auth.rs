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
