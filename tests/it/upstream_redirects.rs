//! An upstream that redirects to another origin must not receive the configured credential
//! headers there (issue 14, finding 8): reqwest strips only `Authorization` on a cross-origin
//! redirect, so an `x-api-key` configured for one server would be handed to whatever the
//! server points at.

use crate::common;

use std::time::Duration;

use common::{Proxy, eventually};
use serde_json::json;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Starts a server that answers every request with a 307 to `elsewhere`, and the proxy with
/// one server of `transport` at it, carrying a secret header; returns once the proxy tried.
async fn redirected(transport: &str) {
    let elsewhere = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .mount(&elsewhere)
        .await;
    let redirector = MockServer::start().await;
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(307)
                .insert_header("location", format!("{}/mcp", elsewhere.uri()).as_str()),
        )
        .mount(&redirector)
        .await;
    let config = json!({"mcpServers": {"r": {
        "type": transport,
        "url": format!("{}/mcp", redirector.uri()),
        "headers": {"x-api-key": "REDIRECT-SECRET", "authorization": "Bearer REDIRECT-SECRET"},
    }}});
    let proxy = Proxy::start(&config, &[]);
    // The proxy's first attempt reached the redirector and was answered.
    eventually(
        "the proxy tried the server",
        Duration::from_secs(15),
        async || {
            let tried = !redirector.received_requests().await?.is_empty();
            let (_, diag) = proxy.get("/diagnostics").await;
            let down = diag["servers"]["r"]["state"] != "ready";
            (tried && down).then_some(())
        },
    )
    .await;
    let leaked: Vec<String> = elsewhere
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| {
            r.headers
                .values()
                .any(|v| v.to_str().unwrap_or("").contains("REDIRECT-SECRET"))
        })
        .map(|r| format!("{} {}", r.method, r.url))
        .collect();
    assert!(
        leaked.is_empty(),
        "{transport}: the configured headers followed the redirect to another origin: {leaked:?}"
    );
    // The operator is told why the server is down.
    let (_, diag) = proxy.get("/diagnostics").await;
    let text = diag["servers"]["r"].to_string();
    assert!(
        text.contains("redirected to another origin"),
        "{transport}: {text}"
    );
    assert!(!text.contains("REDIRECT-SECRET"), "{transport}: {text}");
}

#[tokio::test]
async fn streamable_http_headers_do_not_follow_a_redirect_to_another_origin() {
    redirected("streamable-http").await;
}

#[tokio::test]
async fn sse_headers_do_not_follow_a_redirect_to_another_origin() {
    redirected("sse").await;
}
