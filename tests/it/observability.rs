//! What an operator sees: `/metrics` (JSON and Prometheus), the result cache, alerts,
//! recovery episodes, `/diagnostics`, `/readyz` and the status page. Every number is checked
//! against what the test itself did.

use crate::common;

use std::time::Duration;

use common::{FakeHttp, Proxy, eventually, marker, pids_matching, signal, stdio_fake, venv_python};
use serde_json::{Value, json};

/// POST with headers returned too.
async fn post_full(proxy: &Proxy, path: &str, body: Value) -> (u16, Option<String>, Value) {
    let r = proxy
        .client
        .post(proxy.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let cache = r
        .headers()
        .get("x-mcpo-cache")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (status, cache, body)
}

/// Acceptance 1 and 2: 200 calls with 10 distinct arguments (key order varied) reach the
/// upstream 10 times and give a hit rate of 0.95; errors are not cached; 50 concurrent
/// misses for one key make one upstream call.
#[tokio::test]
async fn cache_reuses_results_coalesces_misses_and_keeps_no_errors() {
    let fake = FakeHttp::start("cached");
    let config = json!({"mcpServers": {"fake": {"type": "streamable-http", "url": fake.url,
        "cache": {"tools": ["add", "fail", "slow"], "ttl": 60}}}});
    let proxy = Proxy::start(&config, &[]);
    proxy
        .wait_ok("/fake/openapi.json", Duration::from_secs(30))
        .await;
    let before = fake.stats().await["tool_calls"].as_u64().unwrap();
    let mut hits = 0;
    for i in 0..200 {
        let a = i % 10;
        // Same arguments, keys in either order.
        let body = if i % 2 == 0 {
            json!({"a": a, "b": 1})
        } else {
            serde_json::from_str(&format!(r#"{{"b": 1, "a": {a}}}"#)).unwrap()
        };
        let (status, cache, answer) = post_full(&proxy, "/fake/add", body).await;
        assert_eq!((status, answer), (200, json!(a + 1)));
        hits += usize::from(cache.as_deref() == Some("hit"));
    }
    assert_eq!(hits, 190);
    let after = fake.stats().await["tool_calls"].as_u64().unwrap();
    assert_eq!(
        after - before,
        10,
        "the upstream saw each distinct call once"
    );
    let (_, metrics) = proxy.get("/metrics").await;
    assert_eq!(metrics["performance"]["cache_hit_rate"], 0.95, "{metrics}");
    // A tool error is passed on and not kept: every call goes upstream.
    for _ in 0..3 {
        let (status, cache, _) = post_full(&proxy, "/fake/fail", json!({"message": "no"})).await;
        assert_eq!((status, cache.as_deref()), (500, Some("miss")));
    }
    let after_errors = fake.stats().await["tool_calls"].as_u64().unwrap();
    assert_eq!(after_errors - after, 3);
    // Fifty concurrent misses for one key: one upstream call.
    let calls = (0..50).map(|_| proxy.post("/fake/slow", json!({"ms": 300})));
    for (status, _) in futures::future::join_all(calls).await {
        assert_eq!(status, 200);
    }
    let after_burst = fake.stats().await["tool_calls"].as_u64().unwrap();
    assert_eq!(
        after_burst - after_errors,
        1,
        "concurrent misses were not coalesced"
    );
}

/// `post_full` with extra request headers.
async fn post_with_headers(
    proxy: &Proxy,
    path: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> (u16, Option<String>, Value) {
    let mut request = proxy.client.post(proxy.url(path)).json(&body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    let cache = r
        .headers()
        .get("x-mcpo-cache")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, cache, r.json().await.unwrap_or(Value::Null))
}

/// What the cache key holds and when entries stop being served: forwarded headers are part
/// of the key (one user's answer is never served to another); `readOnly` caches the tools that
/// declare `readOnlyHint` and no others; entries expire after their TTL; a restart from the
/// API and a changed tool list start a new epoch; arguments over 64 KiB are not cached.
#[tokio::test]
async fn cache_keys_hold_headers_expire_and_follow_epochs() {
    let fake = FakeHttp::start("cache-keys");
    let config = json!({"mcpServers": {"fake": {"type": "streamable-http", "url": fake.url,
        "client_header_forwarding": {"enabled": true, "whitelist": ["X-User-*"]},
        "cache": {"tools": ["request_meta"], "readOnly": true, "ttl": 2}}}});
    // The restart below is the operator's, on localhost.
    let proxy = Proxy::start(&config, &["--trust-loopback"]);
    proxy
        .wait_ok("/fake/openapi.json", Duration::from_secs(30))
        .await;

    // Headers: the same call for two users is two entries.
    let alice = [("X-User-Id", "alice")];
    let bob = [("X-User-Id", "bob")];
    let (_, c1, a1) = post_with_headers(&proxy, "/fake/request_meta", json!({}), &alice).await;
    let (_, c2, a2) = post_with_headers(&proxy, "/fake/request_meta", json!({}), &alice).await;
    let (_, c3, b1) = post_with_headers(&proxy, "/fake/request_meta", json!({}), &bob).await;
    assert_eq!((c1.as_deref(), c2.as_deref()), (Some("miss"), Some("hit")));
    assert_eq!(a1, a2);
    assert_eq!(
        c3.as_deref(),
        Some("miss"),
        "bob was served alice's answer: {b1}"
    );
    assert!(
        b1.to_string().contains("bob") && !b1.to_string().contains("alice"),
        "{b1}"
    );

    // readOnly: `whoami` declares readOnlyHint (cached though not listed); `incr` does not.
    let (_, c1, _) = post_full(&proxy, "/fake/whoami", json!({})).await;
    let (_, c2, _) = post_full(&proxy, "/fake/whoami", json!({})).await;
    assert_eq!((c1.as_deref(), c2.as_deref()), (Some("miss"), Some("hit")));
    let (_, c, n1) = post_full(&proxy, "/fake/incr", json!({})).await;
    let (_, _, n2) = post_full(&proxy, "/fake/incr", json!({})).await;
    assert_eq!(c, None, "incr is not cacheable");
    assert_eq!(
        n2.as_u64(),
        n1.as_u64().map(|n| n + 1),
        "incr was served from a cache"
    );

    // Expiry: a hit now, a miss once the 2 s TTL has passed.
    let body = json!({"a": 40, "b": 2});
    assert_eq!(
        post_full(&proxy, "/fake/add", body.clone())
            .await
            .1
            .as_deref(),
        Some("miss")
    );
    let cached_at = std::time::Instant::now();
    assert_eq!(
        post_full(&proxy, "/fake/add", body.clone())
            .await
            .1
            .as_deref(),
        Some("hit")
    );
    eventually("the entry expires", Duration::from_secs(10), async || {
        (post_full(&proxy, "/fake/add", body.clone())
            .await
            .1
            .as_deref()
            == Some("miss"))
        .then_some(())
    })
    .await;
    assert!(
        cached_at.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        cached_at.elapsed()
    );

    // A restart from the API: what was cached before is not served after, at once.
    let body = json!({"a": 1, "b": 1});
    post_full(&proxy, "/fake/add", body.clone()).await;
    assert_eq!(
        post_full(&proxy, "/fake/add", body.clone())
            .await
            .1
            .as_deref(),
        Some("hit")
    );
    let r = proxy
        .client
        .post(proxy.url("/diagnostics/servers/fake/restart"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let (status, c, _) = post_full(&proxy, "/fake/add", body.clone()).await;
    assert_eq!(
        (status, c.as_deref()),
        (200, Some("miss")),
        "served from before the restart"
    );

    // A changed tool list: a new epoch once the proxy has the new list. (First the entry
    // is cached again in the epoch of the new session.)
    eventually("cached again", Duration::from_secs(10), async || {
        (post_full(&proxy, "/fake/add", body.clone())
            .await
            .1
            .as_deref()
            == Some("hit"))
        .then_some(())
    })
    .await;
    let (status, _) = proxy.post("/fake/toggle_bonus", json!({})).await;
    assert_eq!(status, 200);
    eventually("the new tool list", Duration::from_secs(10), async || {
        let (_, doc) = proxy.get("/fake/openapi.json").await;
        doc["paths"]["/bonus"].is_object().then_some(())
    })
    .await;
    assert_eq!(
        post_full(&proxy, "/fake/add", body.clone())
            .await
            .1
            .as_deref(),
        Some("miss"),
        "served from before the tool list changed"
    );

    // A key over 64 KiB is not cached: each call goes upstream.
    let big = json!({"message": "x".repeat(70 * 1024)});
    let before = fake.stats().await["tool_calls"].as_u64().unwrap();
    for _ in 0..2 {
        let (status, c, _) = post_full(&proxy, "/fake/echo", big.clone()).await;
        assert_eq!((status, c), (200, None));
    }
    assert_eq!(
        fake.stats().await["tool_calls"].as_u64().unwrap() - before,
        2
    );
}

/// Acceptance 3: the Prometheus output parses with Python's `prometheus_client` parser and its
/// counts equal the JSON's for the same run.
#[tokio::test]
async fn prometheus_output_parses_and_agrees_with_the_json() {
    let config = json!({"mcpServers": {"a": stdio_fake("prom-a"), "b": stdio_fake("prom-b")}});
    let proxy = Proxy::start(&config, &[]);
    for s in ["a", "b"] {
        proxy
            .wait_ok(&format!("/{s}/openapi.json"), Duration::from_secs(30))
            .await;
    }
    for i in 0..30 {
        proxy
            .post("/a/echo", json!({"message": i.to_string()}))
            .await;
    }
    for _ in 0..7 {
        proxy.post("/b/fail", json!({"message": "x"})).await;
        proxy
            .post("/b/add", json!({"a": 1, "b": "not a number"}))
            .await;
    }
    // Unknown routes must not create series.
    proxy.post("/b/no_such_tool", json!({})).await;
    let (_, json_view) = proxy.get("/metrics").await;
    let text = proxy
        .client
        .get(proxy.url("/metrics"))
        .header("accept", "text/plain")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        if s.name == "mcpo_requests_total":
            out[f'{s.labels["server"]}/{s.labels["tool"]}/{s.labels["class"]}'] = s.value
        if s.name == "mcpo_request_duration_seconds_count":
            out[f'count {s.labels["server"]}/{s.labels["tool"]}'] = s.value
print(json.dumps(out))
"#;
    let mut child = std::process::Command::new(venv_python())
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parser refused the output: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let tools = |server: &str, tool: &str| json_view["servers"][server]["tools"][tool].clone();
    assert_eq!(parsed["a/echo/success"], 30.0, "{parsed}");
    assert_eq!(tools("a", "echo")["outcomes"]["success"], 30);
    assert_eq!(parsed["b/fail/tool"], 7.0, "{parsed}");
    assert_eq!(tools("b", "fail")["outcomes"]["tool"], 7);
    assert_eq!(parsed["b/add/invalid"], 7.0, "{parsed}");
    assert_eq!(tools("b", "add")["outcomes"]["invalid"], 7);
    assert_eq!(parsed["count a/echo"], 30.0);
    assert!(
        !text.contains("no_such_tool"),
        "an unknown route created a series"
    );
    assert_eq!(json_view["performance"]["total_requests"], 44);
}

/// Acceptance 4: a failing server pushes the error rate over the threshold: one alert is
/// logged, it shows in `/diagnostics` with a recommendation, and it clears (logged once) when
/// the errors stop.
#[tokio::test]
async fn error_rate_alert_is_raised_once_shown_and_cleared_once() {
    let config = json!({"mcpServers": {"fake": stdio_fake("alerting")}});
    let (proxy, log) = Proxy::start_logged(
        &config,
        &[],
        &[("MCPO_MONITOR_INTERVAL", "1"), ("LOG_LEVEL", "INFO")],
    );
    proxy
        .wait_ok("/fake/openapi.json", Duration::from_secs(30))
        .await;
    for _ in 0..20 {
        proxy.post("/fake/fail", json!({"message": "boom"})).await;
    }
    let diag = eventually("the alert shows", Duration::from_secs(15), async || {
        let (_, diag) = proxy.get("/diagnostics").await;
        (diag["alerts"]
            .as_array()?
            .iter()
            .any(|a| a["kind"] == "error_rate"))
        .then_some(diag)
    })
    .await;
    let recs = diag["recommendations"].to_string();
    assert!(
        recs.contains("error_rate") || recs.contains("failed"),
        "{diag}"
    );
    let (_, metrics) = proxy.get("/metrics").await;
    assert!(
        metrics["system_health"]["active_errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "error_rate"),
        "{metrics}"
    );
    // Errors stop: enough successes drown them within the window, and the alert clears.
    eventually("the alert clears", Duration::from_secs(30), async || {
        for _ in 0..50 {
            proxy.post("/fake/echo", json!({"message": "ok"})).await;
        }
        let (_, diag) = proxy.get("/diagnostics").await;
        (!diag["alerts"]
            .as_array()?
            .iter()
            .any(|a| a["kind"] == "error_rate"))
        .then_some(())
    })
    .await;
    // (A busy machine may raise a CPU alert meanwhile; only the error-rate lines count here.)
    let text = std::fs::read_to_string(&log).unwrap();
    let lines = |what: &str| {
        text.lines()
            .filter(|l| l.contains(what) && l.contains("alert=\"error_rate\""))
            .count()
    };
    let (raised, cleared) = (lines("alert raised"), lines("alert cleared"));
    assert_eq!((raised, cleared), (1, 1), "{text}");
}

/// Acceptance 5: after 3 child kills, `recovery_success_rate` is 1.0 and `/metrics` counts 3
/// episodes, each with its measured duration; with recovery off the same run leaves episodes
/// that did not end.
#[tokio::test]
async fn child_kills_are_counted_as_episodes_with_their_durations() {
    for recovery in [true, false] {
        let m = marker(&format!("episodes-{recovery}"));
        let id = format!("ep{recovery}");
        let config = json!({"mcpServers": {"fake": stdio_fake(&id)}});
        let proxy = Proxy::start_with_env(
            &config,
            &[],
            &[
                ("MCPO_TEST_MARKER", &m),
                (
                    "MCPO_ERROR_RECOVERY_ENABLED",
                    if recovery { "true" } else { "false" },
                ),
            ],
        );
        proxy
            .wait_ok("/fake/openapi.json", Duration::from_secs(30))
            .await;
        let needle = format!("--id {id}");
        for kill in 0..3u64 {
            let (status, _) = proxy.post("/fake/echo", json!({"message": "x"})).await;
            if recovery {
                assert_eq!(status, 200);
            }
            let pids = pids_matching("MCPO_TEST_MARKER", &m, &needle);
            assert_eq!(pids.len(), 1, "one live child before kill {kill}: {pids:?}");
            signal(pids[0], "KILL");
            // Wait until the proxy has seen this death (not an earlier one), then call again.
            eventually("the death is seen", Duration::from_secs(10), async || {
                let (_, d) = proxy.get("/diagnostics").await;
                (d["servers"]["fake"]["restarts"].as_u64()? > kill).then_some(())
            })
            .await;
            if recovery {
                eventually("a call succeeds", Duration::from_secs(10), async || {
                    let (status, _) = proxy.post("/fake/echo", json!({"message": "y"})).await;
                    (status == 200).then_some(())
                })
                .await;
            } else {
                let (status, _) = proxy.post("/fake/echo", json!({"message": "y"})).await;
                assert_eq!(status, 503);
                break;
            }
        }
        let (_, metrics) = proxy.get("/metrics").await;
        let episodes = &metrics["servers"]["fake"]["episodes"];
        if recovery {
            assert_eq!(episodes["total"], 3, "{metrics}");
            assert_eq!(metrics["error_recovery"]["recovery_success_rate"], 1.0);
            let recent = episodes["recent"].as_array().unwrap();
            assert_eq!(recent.len(), 3, "{metrics}");
            for e in recent {
                assert_eq!(e["ended"], true, "{e}");
                let d = e["duration_seconds"].as_f64().unwrap();
                assert!(d > 0.0 && d < 10.0, "{e}");
            }
        } else {
            assert!(
                episodes["recent"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["ended"] == false),
                "{metrics}"
            );
        }
    }
}

/// Acceptance 6: `/readyz` is 503 naming the down server while one is down, 200 once it is up;
/// `/healthz` answers throughout.
#[tokio::test]
async fn readyz_follows_the_servers_and_healthz_the_process() {
    let port = {
        let gone = FakeHttp::start("ready-late");
        gone.port()
    };
    let config = json!({"mcpServers": {
        "late": {"type": "streamable-http", "url": format!("http://127.0.0.1:{port}/mcp")},
        "fine": stdio_fake("ready-fine"),
    }});
    let proxy = Proxy::start(&config, &[]);
    proxy
        .wait_ok("/fine/openapi.json", Duration::from_secs(30))
        .await;
    let (status, body) = proxy.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.to_string().contains("'late'"), "{body}");
    assert!(!body.to_string().contains("'fine'"), "{body}");
    assert_eq!(proxy.get("/healthz").await.0, 200);
    let _fake = FakeHttp::start_on("ready-late", port);
    eventually("ready", Duration::from_secs(20), async || {
        (proxy.get("/readyz").await.0 == 200).then_some(())
    })
    .await;
}

/// The status page is one self-contained document that reads `/metrics`.
#[tokio::test]
async fn status_page_is_self_contained() {
    let config = json!({"mcpServers": {"fake": stdio_fake("status")}});
    let proxy = Proxy::start(&config, &[]);
    let (status, page) = proxy.get("/status").await;
    assert_eq!(status, 200);
    let page = page.as_str().unwrap().to_string();
    assert!(page.contains("metrics?history=1"));
    for external in ["src=\"http", "href=\"http", "@import", "cdn"] {
        assert!(!page.contains(external), "external asset: {external}");
    }
    let (_, metrics) = proxy.get("/metrics?history=1").await;
    assert_eq!(
        metrics["servers"]["fake"]["history"]["points"]
            .as_array()
            .unwrap()
            .len(),
        60
    );
}
