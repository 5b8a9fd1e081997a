//! Legacy HTTP+SSE upstreams (MCP protocol 2024-11-05), end to end: the real proxy in front of
//! `@modelcontextprotocol/server-everything` in `sse` mode and of our fake over SSE, in config
//! and single-server mode; recovery when the server restarts, when its stream is cut in the
//! middle of an answer and when it forgets its sessions; a chaos run over SSE.

use crate::common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{FakeHttp, Proc, Proxy, closed_loop, eventually, everything_stdio, listening_port};
use serde_json::{Value, json};

/// `server-everything` in `sse` mode on `port` (0: the OS picks one) and the port it got.
fn start_everything_sse(port: u16) -> (Proc, u16) {
    let (node, args) = everything_stdio();
    let mut child = std::process::Command::new(node)
        .arg(&args[0])
        .arg("sse")
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start server-everything");
    // It says so on stderr once it listens (naming the port it was given, 0 included).
    let stderr = child.stderr.take().expect("stderr piped");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.contains("running on port"))),
        "server-everything did not start"
    );
    std::thread::spawn(move || for _ in lines {});
    let port = listening_port(child.id()).expect("server-everything listens");
    (Proc { child }, port)
}

/// The tool names `server-everything` lists, asked over stdio (independent of our SSE client).
async fn everything_tools() -> BTreeSet<String> {
    use rmcp::ServiceExt;
    let (node, args) = everything_stdio();
    let mut cmd = tokio::process::Command::new(node);
    cmd.args(&args).stderr(std::process::Stdio::null());
    let transport = rmcp::transport::TokioChildProcess::new(cmd).unwrap();
    let client = ().serve(transport).await.unwrap();
    let tools = client.list_all_tools().await.unwrap();
    let _ = client.cancel().await;
    tools.into_iter().map(|t| t.name.to_string()).collect()
}

fn fake_tools() -> BTreeSet<String> {
    mcpo::fake::tool_definitions()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

/// The routes of an OpenAPI document, without their leading `/`.
fn routes(doc: &Value) -> BTreeSet<String> {
    doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.trim_start_matches('/').to_string())
        .collect()
}

/// Starts the proxy off the runtime (it blocks on the child's output).
async fn proxy(config: Value) -> Proxy {
    tokio::task::spawn_blocking(move || Proxy::start(&config, &[]))
        .await
        .unwrap()
}

async fn fake_sse(id: &str, port: u16) -> FakeHttp {
    let id = id.to_string();
    tokio::task::spawn_blocking(move || FakeHttp::start_sse(&id, port, &[]))
        .await
        .unwrap()
}

const SOON: Duration = Duration::from_secs(10);

#[tokio::test]
async fn server_everything_over_sse_in_config_and_single_server_mode() {
    let (_everything, port) = start_everything_sse(0);
    let url = format!("http://127.0.0.1:{port}/sse");
    let expected = everything_tools().await;
    assert!(expected.contains("echo"), "{expected:?}");

    // Config mode, as mcpo reads it: a `url` without `type` is legacy SSE.
    let proxy = self::proxy(json!({"mcpServers": {"everything": {"url": url}}})).await;
    let doc = proxy.wait_ok("/everything/openapi.json", SOON).await;
    assert_eq!(routes(&doc), expected);
    let (status, body) = proxy
        .post("/everything/echo", json!({"message": "x"}))
        .await;
    assert_eq!((status, body), (200, json!("Echo: x")));
    let (status, body) = proxy
        .post("/everything/get-sum", json!({"a": 2, "b": 3}))
        .await;
    assert_eq!((status, body), (200, json!("The sum of 2 and 3 is 5.")));
    let (_, diag) = proxy.get("/diagnostics").await;
    assert_eq!(diag["servers"]["everything"]["transport"], "sse", "{diag}");

    // Single-server mode: `--type sse -- URL`, tools at the root.
    let single =
        tokio::task::spawn_blocking(move || Proxy::start_args(&["--type", "sse", "--", &url], &[]))
            .await
            .unwrap();
    let doc = single.wait_ok("/openapi.json", SOON).await;
    assert_eq!(routes(&doc), expected);
    let (status, body) = single.post("/echo", json!({"message": "x"})).await;
    assert_eq!((status, body), (200, json!("Echo: x")));
}

#[tokio::test]
async fn the_fake_over_sse_answers_as_on_the_other_transports() {
    let fake = fake_sse("sse", 0).await;
    let proxy =
        self::proxy(json!({"mcpServers": {"fake": {"type": "sse", "url": fake.url}}})).await;
    let doc = proxy.wait_ok("/fake/openapi.json", SOON).await;
    assert_eq!(routes(&doc), fake_tools());
    assert_eq!(doc["info"]["title"], "fake-sse", "{}", doc["info"]);
    let cases = [
        ("echo", json!({"message": "hi"}), 200, json!("hi")),
        ("add", json!({"a": 2, "b": 3}), 200, json!(5)),
        (
            "stats",
            json!({"numbers": [1, 2, 3]}),
            200,
            json!({"count": 3, "sum": 6.0, "mean": 2.0}),
        ),
        (
            "fail",
            json!({"message": "nope"}),
            500,
            json!({"detail": {"message": "nope"}}),
        ),
    ];
    for (tool, args, status, body) in cases {
        let got = proxy.post(&format!("/fake/{tool}"), args).await;
        assert_eq!(got, (status, body), "{tool}");
    }
    let (status, body) = proxy
        .post(
            "/fake/jsonrpc_error",
            json!({"code": -32601, "message": "gone"}),
        )
        .await;
    assert_eq!(status, 404, "{body}");

    // Single-server mode, with a header: `--type sse -H JSON -- URL`.
    let url = fake.url.clone();
    let single = tokio::task::spawn_blocking(move || {
        Proxy::start_args(
            &["--type", "sse", "-H", r#"{"X-Api-Key": "k"}"#, "--", &url],
            &[],
        )
    })
    .await
    .unwrap();
    single.wait_ok("/openapi.json", SOON).await;
    let (status, body) = single.post("/echo", json!({"message": "single"})).await;
    assert_eq!((status, body), (200, json!("single")));
}

/// mcpo reads a `url` without `type` as legacy SSE; pointed at a streamable-HTTP server, that
/// fails, and the reason says what to set (and shows no URL path: secrets live there).
#[tokio::test]
async fn a_url_without_type_on_a_streamable_http_server_says_what_to_set() {
    let fake = tokio::task::spawn_blocking(|| FakeHttp::start("modern"))
        .await
        .unwrap();
    let url = format!("{}?token=SECRET", fake.url);
    let proxy = self::proxy(json!({"mcpServers": {"modern": {"url": url}}})).await;
    let message = eventually("the connect fails", SOON, async || {
        let (status, body) = proxy.post("/modern/echo", json!({"message": "x"})).await;
        (status == 503)
            .then(|| {
                body["detail"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .filter(|m| m.contains("HTTP"))
    })
    .await;
    assert!(
        message.contains("set \"type\": \"streamable-http\"") && !message.contains("SECRET"),
        "{message}"
    );
}

/// The fake killed and started again on the same port under steady load: calls resume without
/// a proxy restart, and none waits past its deadline (2 s).
#[tokio::test]
async fn a_restarted_sse_server_is_recovered_under_load_and_no_call_hangs() {
    let first = fake_sse("restart", 0).await;
    let port = first.port();
    let config = json!({"mcpServers": {"fake": {"type": "sse", "url": first.url, "timeout": 2}}});
    let proxy = self::proxy(config).await;
    proxy.wait_ok("/fake/openapi.json", SOON).await;
    let pid = proxy.pid();

    let run_for = Duration::from_secs(6);
    let started = Instant::now();
    let url = proxy.url("/fake/echo");
    let load = closed_loop(&proxy.client, &url, json!({"message": "m"}), 4, run_for);
    let restart = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut first = first;
        let down_at = started.elapsed();
        first.proc.child.kill().unwrap();
        first.proc.child.wait().unwrap();
        // Down for a while, long enough for the proxy's own reconnects to fail.
        tokio::time::sleep(Duration::from_millis(800)).await;
        let second = fake_sse("restart", port).await;
        (second, down_at, started.elapsed())
    };
    let (shots, (_second, down_at, up_at)) = tokio::join!(load, restart);

    let slowest = shots.iter().map(|s| s.elapsed).max().unwrap();
    let mut statuses = std::collections::BTreeMap::new();
    for s in &shots {
        *statuses.entry(s.status).or_insert(0) += 1;
    }
    eprintln!(
        "{} calls, by status {statuses:?}; down at {down_at:?}, up at {up_at:?}; slowest {slowest:?}",
        shots.len()
    );
    assert!(
        shots.iter().any(|s| s.status != 200),
        "the restart went unnoticed"
    );
    assert!(
        slowest < Duration::from_millis(2600),
        "a call took {slowest:?} (deadline 2 s)"
    );
    assert!(shots.iter().all(|s| s.status != 0), "a call got no answer");
    let before: Vec<_> = shots
        .iter()
        .filter(|s| s.sent + s.elapsed < down_at)
        .collect();
    assert!(before.iter().all(|s| s.status == 200), "before the kill");
    // Once the server is back, the supervisor reconnects when its backoff lets it (after
    // about five refused connects, a random delay of at most 1.6 s). From the moment the first
    // call is answered a session is ready, and every call sent after that succeeds.
    let ready_at = shots
        .iter()
        .find(|s| s.sent >= up_at && s.status == 200)
        .map(|s| s.sent + s.elapsed)
        .expect("calls succeed again after the restart");
    assert!(
        ready_at - up_at < Duration::from_millis(2500),
        "first success {:?} after the restart",
        ready_at - up_at
    );
    let after: Vec<_> = shots.iter().filter(|s| s.sent > ready_at).collect();
    assert!(after.len() > 20, "{} calls after the restart", after.len());
    let failed: Vec<_> = after.iter().filter(|s| s.status != 200).collect();
    assert!(failed.is_empty(), "after the restart: {failed:?}");
    // Calls while it was down failed fast and said why.
    for s in shots.iter().filter(|s| s.status != 200) {
        assert!(
            [502, 503].contains(&s.status) && s.body.contains("fake"),
            "{s:?}"
        );
    }
    assert_eq!(proxy.pid(), pid);
}

/// `server-everything` restarted on the same port under load: no call waits past its deadline
/// and calls resume on a new session. Its sessions end with their streams and it never
/// answers a POST for a session it does not know (the request stays open), so the proxy
/// learns of the restart from the dropped stream, not from the POST.
#[tokio::test]
async fn a_restarted_server_everything_over_sse_is_recovered_under_load() {
    let (first, port) = start_everything_sse(0);
    let url = format!("http://127.0.0.1:{port}/sse");
    let proxy =
        self::proxy(json!({"mcpServers": {"everything": {"url": url, "timeout": 2}}})).await;
    proxy.wait_ok("/everything/openapi.json", SOON).await;

    let started = Instant::now();
    let echo = proxy.url("/everything/echo");
    let load = closed_loop(
        &proxy.client,
        &echo,
        json!({"message": "e"}),
        4,
        Duration::from_secs(6),
    );
    let restart = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(first);
        let second = tokio::task::spawn_blocking(move || start_everything_sse(port))
            .await
            .unwrap();
        (second, started.elapsed())
    };
    let (shots, (_second, up_at)) = tokio::join!(load, restart);
    let slowest = shots.iter().map(|s| s.elapsed).max().unwrap();
    assert!(
        slowest < Duration::from_millis(2600),
        "a call took {slowest:?} (deadline 2 s)"
    );
    let ready_at = shots
        .iter()
        .find(|s| s.sent >= up_at && s.status == 200)
        .map(|s| s.sent + s.elapsed)
        .expect("calls succeed again after the restart");
    let after: Vec<_> = shots.iter().filter(|s| s.sent > ready_at).collect();
    assert!(after.len() > 20, "{} calls after the restart", after.len());
    assert!(
        after
            .iter()
            .all(|s| s.status == 200 && s.body == "\"Echo: e\""),
        "after the restart: {:?}",
        after.iter().find(|s| s.status != 200)
    );
}

/// A stream cut in the middle of an answer: the fake keeps the session, so the client's
/// reconnect with `Last-Event-ID` gets the answer whole and no call fails; a kill while a call
/// is in flight ends the session, and the (idempotent) call is sent again on a new one.
#[tokio::test]
async fn a_stream_cut_mid_answer_is_recovered() {
    let fake = fake_sse("cut", 0).await;
    let port = fake.port();
    let config = json!({"mcpServers": {"fake": {"type": "sse", "url": fake.url, "timeout": 5}}});
    let proxy = self::proxy(config).await;
    proxy.wait_ok("/fake/openapi.json", SOON).await;

    fake.fault(json!({"kind": "reset"})).await;
    for i in 0..5 {
        let t = Instant::now();
        let (status, body) = proxy
            .post("/fake/echo", json!({"message": format!("m{i}")}))
            .await;
        assert_eq!((status, body), (200, json!(format!("m{i}"))), "call {i}");
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    }
    let stats = fake.stats().await;
    assert!(stats["resumed"].as_u64().unwrap() >= 5, "{stats}");
    reqwest::Client::new()
        .post(format!("{}/control/clear", fake.base()))
        .send()
        .await
        .unwrap();

    // Killed with a call in flight: the call is answered by the restarted server.
    let calls = fake.stats().await["tool_calls"].as_u64().unwrap();
    let in_flight = proxy.post("/fake/sleep", json!({"ms": 1000}));
    let kill = async {
        eventually("the call reached the server", SOON, async || {
            (fake.stats().await["tool_calls"].as_u64().unwrap() > calls).then_some(())
        })
        .await;
        let mut fake = fake;
        fake.proc.child.kill().unwrap();
        fake.proc.child.wait().unwrap();
        fake_sse("cut", port).await
    };
    let t = Instant::now();
    let ((status, body), _again) = tokio::join!(in_flight, kill);
    assert_eq!((status, body), (200, json!("slept 1000 ms")));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[tokio::test]
async fn lost_sse_sessions_are_replaced_transparently() {
    let fake = fake_sse("sessions", 0).await;
    let config = json!({"mcpServers": {"fake": {"type": "sse", "url": fake.url}}});
    let proxy = self::proxy(config).await;
    proxy.wait_ok("/fake/openapi.json", SOON).await;
    for round in 0..3 {
        fake.fault(json!({"kind": "session-loss"})).await;
        let t = Instant::now();
        let (status, body) = proxy
            .post("/fake/echo", json!({"message": format!("r{round}")}))
            .await;
        assert_eq!(
            (status, body),
            (200, json!(format!("r{round}"))),
            "round {round}"
        );
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
}

/// A short chaos scenario over SSE, through the binary: a crash, a session loss, stream cuts
/// and broken events, each recovered within its SLO.
#[test]
fn a_chaos_run_over_sse_passes() {
    let dir = common::tempdir::TempDir::new();
    let file = dir.path().join("sse.yaml");
    let report = dir.path().join("report.json");
    std::fs::write(
        &file,
        "name: sse
description: A legacy SSE server crashes, loses its sessions, and has its stream cut.
seed: 5
duration: 10s
servers:
  - name: legacy
    transport: sse
proxy:
  timeout: 2s
load:
  rate: 30
  calls:
    - {tool: legacy/echo, args: {message: hi}, weight: 3}
    - {tool: legacy/add, args: {a: 2, b: 3}}
  deadline: 5s
faults:
  - {at: 1.5s, kind: crash, server: legacy}
  - {at: 3.5s, kind: session-loss, server: legacy}
  - {at: 4.5s, for: 1s, server: legacy, kind: reset, probability: 0.5}
  - {at: 6s, for: 1s, server: legacy, kind: garbage}
slo:
  recovery_rate: 1.0
  recovery_within: 3s
  success_rate: 0.99
  hung_requests: 0
  leaked_processes: 0
",
    )
    .unwrap();
    let out = std::process::Command::new(common::mcpo_bin())
        .arg("chaos")
        .arg(&file)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["passed"], true);
    assert_eq!(report["summary"]["events"], 4, "{}", report["summary"]);
    assert_eq!(report["summary"]["hung"], 0);
}
