//! Behaviours the README promises that no other test checked: cancellation at the deadline,
//! `Retry-After` from an upstream, `retryable_tools`, the breaker opening on timeouts and
//! probing after half a second, and strategies registered through `serve::start_with`.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{FakeHttp, Proxy, eventually};
use serde_json::{Value, json};

/// Upstream tool calls the fake saw since `before` (its stats).
fn tool_calls_since(before: &Value, after: &Value) -> u64 {
    after["tool_calls"].as_u64().unwrap() - before["tool_calls"].as_u64().unwrap()
}

fn http_server(fake: &FakeHttp, extra: Value) -> Value {
    let mut server = json!({"type": "streamable-http", "url": fake.url});
    if let (Some(server), Some(extra)) = (server.as_object_mut(), extra.as_object()) {
        server.extend(extra.clone());
    }
    json!({"mcpServers": {"fake": server}})
}

/// A call that reaches its deadline is answered 504 and the server is told to stop working on
/// it (`notifications/cancelled`): the fake counts the cancelled call.
#[tokio::test]
async fn the_deadline_cancels_the_call_upstream() {
    let fake = FakeHttp::start("cancel");
    let proxy = Proxy::start(&http_server(&fake, json!({"timeout": 1})), &[]);
    proxy
        .wait_ok("/fake/openapi.json", Duration::from_secs(30))
        .await;
    assert_eq!(fake.stats().await["cancelled"], 0);
    let (status, body) = proxy.post("/fake/sleep", json!({"ms": 20_000})).await;
    assert_eq!(status, 504, "{body}");
    eventually("the fake hears of it", Duration::from_secs(5), async || {
        (fake.stats().await["cancelled"] == 1).then_some(())
    })
    .await;
}

/// An upstream's `Retry-After` is honoured when it fits in the deadline (the call is sent
/// again after it, and succeeds), and not waited for when it does not (answered at once).
#[tokio::test]
async fn an_upstream_retry_after_is_honoured_within_the_deadline() {
    let fake = FakeHttp::start("retry-after");
    let proxy = Proxy::start(&http_server(&fake, json!({"timeout": 4})), &[]);
    proxy
        .wait_ok("/fake/openapi.json", Duration::from_secs(30))
        .await;
    // 503 with Retry-After: 1 for the next 500 ms: the retry after 1 s finds the server well.
    fake.fault(json!({"kind": "http-error", "status": 503, "retry_after": 1, "tools": ["echo"], "for_ms": 500}))
        .await;
    let before = fake.stats().await;
    let t = Instant::now();
    let (status, body) = proxy.post("/fake/echo", json!({"message": "later"})).await;
    let waited = t.elapsed();
    assert_eq!((status, body), (200, json!("later")));
    assert!(
        waited >= Duration::from_secs(1),
        "did not wait for Retry-After: {waited:?}"
    );
    assert_eq!(tool_calls_since(&before, &fake.stats().await), 2);
    // Retry-After: 10 does not fit in a 4 s deadline: no retry, no wait.
    fake.fault(json!({"kind": "http-error", "status": 503, "retry_after": 10, "tools": ["add"]}))
        .await;
    let before = fake.stats().await;
    let t = Instant::now();
    let (status, body) = proxy.post("/fake/add", json!({"a": 1, "b": 1})).await;
    assert_ne!(status, 200, "{body}");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    assert_eq!(tool_calls_since(&before, &fake.stats().await), 1);
}

/// `retryable_tools` makes a tool that is not declared idempotent go again after a 500; the
/// same tool on a server without it is sent once.
#[tokio::test]
async fn retryable_tools_are_sent_again() {
    let fake = FakeHttp::start("retryable");
    let url = fake.url.clone();
    let config = json!({"mcpServers": {
        "plain": {"type": "streamable-http", "url": url},
        "listed": {"type": "streamable-http", "url": url, "retryable_tools": ["incr"]},
    }});
    let proxy = Proxy::start(&config, &[]);
    for s in ["plain", "listed"] {
        proxy
            .wait_ok(&format!("/{s}/openapi.json"), Duration::from_secs(30))
            .await;
    }
    fake.fault(json!({"kind": "http-error", "status": 500, "tools": ["incr"]}))
        .await;
    for (server, expected) in [("plain", 1), ("listed", 3)] {
        let before = fake.stats().await;
        let (status, body) = proxy.post(&format!("/{server}/incr"), json!({})).await;
        assert_eq!(status, 502, "{body}");
        assert_eq!(
            tool_calls_since(&before, &fake.stats().await),
            expected,
            "{server}"
        );
    }
}

/// Calls that time out open the breaker (five at once, each its whole deadline); then calls
/// are refused at once; half a second later a probe goes through, and once the server answers
/// again the breaker closes.
#[tokio::test]
async fn timeouts_open_the_breaker_and_a_probe_closes_it() {
    let fake = FakeHttp::start("hang");
    let proxy = Proxy::start(&http_server(&fake, json!({"timeout": 1})), &[]);
    proxy
        .wait_ok("/fake/openapi.json", Duration::from_secs(30))
        .await;
    fake.fault(json!({"kind": "hang", "tools": ["sleep"]}))
        .await;
    let calls = (0..5).map(|_| proxy.post("/fake/sleep", json!({"ms": 1})));
    for (status, body) in futures::future::join_all(calls).await {
        assert_eq!(status, 504, "{body}");
    }
    let (_, diag) = proxy.get("/diagnostics").await;
    assert_eq!(diag["servers"]["fake"]["breaker"], "open", "{diag}");
    let opened = Instant::now();
    let before = fake.stats().await;
    let (status, body) = proxy.post("/fake/echo", json!({"message": "x"})).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.to_string().contains("circuit breaker"), "{body}");
    assert_eq!(tool_calls_since(&before, &fake.stats().await), 0);
    let r = reqwest::Client::new()
        .post(format!("{}/control/clear", fake.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    // The probe: the first call let through, half a second after the opening.
    let probed = eventually("a probe goes through", Duration::from_secs(5), async || {
        let (status, _) = proxy.post("/fake/echo", json!({"message": "p"})).await;
        (status == 200).then(|| opened.elapsed())
    })
    .await;
    assert!(
        probed >= Duration::from_millis(400),
        "probe after {probed:?}"
    );
    let (_, diag) = proxy.get("/diagnostics").await;
    assert_eq!(diag["servers"]["fake"]["breaker"], "closed", "{diag}");
    assert!(diag["servers"]["fake"]["breaker_trips"].as_u64().unwrap() >= 1);
}

/// A strategy registered through `serve::start_with` replaces the standard one for its class:
/// here one that never retries a 5xx, where the standard strategy sends an idempotent call up
/// to three times.
#[tokio::test]
async fn strategies_registered_through_start_with_are_used() {
    use clap::Parser as _;
    use mcpo::recovery::{Decision, FailureClass, FailureContext};

    let fake = FakeHttp::start("strategy");
    let dir = common::tempdir::TempDir::new();
    let path = dir.path().join("config.json");
    std::fs::write(&path, http_server(&fake, json!({})).to_string()).unwrap();
    let path = path.display().to_string();
    let cli = mcpo::cli::Cli::parse_from([
        "mcpo",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--config",
        &path,
    ]);
    let mcpo::cli::Command::Serve(serve) = cli.into_command() else {
        panic!("not a serve command");
    };
    let config = mcpo::config::from_cli(&serve).unwrap();
    let decided = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = decided.clone();
    let never_again = move |_: &FailureContext<'_>| {
        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Decision::FAIL
    };
    let extensions = mcpo::serve::Extensions {
        strategies: vec![(FailureClass::HttpStatus, Arc::new(never_again))],
        collectors: vec![],
    };
    let proxy = mcpo::serve::start_with(config, extensions).await.unwrap();
    let base = format!("http://{}", proxy.addr);
    let client = reqwest::Client::new();
    eventually("the server is ready", Duration::from_secs(30), async || {
        let r = client
            .get(format!("{base}/fake/openapi.json"))
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    fake.fault(json!({"kind": "http-error", "status": 500, "tools": ["echo"]}))
        .await;
    let before = fake.stats().await;
    let r = client
        .post(format!("{base}/fake/echo"))
        .json(&json!({"message": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 502);
    assert_eq!(
        tool_calls_since(&before, &fake.stats().await),
        1,
        "the call was retried"
    );
    assert_eq!(decided.load(std::sync::atomic::Ordering::SeqCst), 1);
    proxy.shutdown_token().cancel();
    tokio::time::timeout(Duration::from_secs(10), proxy.wait())
        .await
        .expect("the proxy stops")
        .unwrap();
}

/// A server's stderr (it can hold paths, tokens, customer data) is shown in `/diagnostics`
/// to a client with the API key, and to nobody else.
#[tokio::test]
async fn stderr_shows_in_diagnostics_only_with_the_key() {
    let config = json!({"mcpServers": {"broken": {"command": "sh",
        "args": ["-c", "echo private-detail-1234 >&2; exit 1"]}}});
    let proxy = Proxy::start(&config, &["--api-key", "k"]);
    let with_key = eventually(
        "the stderr tail is kept",
        Duration::from_secs(15),
        async || {
            let (_, d) = proxy.get_with_key("/diagnostics", "k").await;
            d.to_string().contains("private-detail-1234").then_some(d)
        },
    )
    .await;
    assert_eq!(
        with_key["servers"]["broken"]["status"], "down",
        "{with_key}"
    );
    let r = proxy
        .client
        .get(proxy.url("/diagnostics"))
        .send()
        .await
        .unwrap();
    let anonymous = r.text().await.unwrap();
    assert!(!anonymous.contains("private-detail-1234"), "{anonymous}");
    assert!(anonymous.contains("broken"), "{anonymous}");
}
