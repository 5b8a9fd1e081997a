//! The fake server applies every fault of the hub protocol (`fake::wire`), on stdio, on
//! streamable HTTP and on legacy SSE, and the proxy's client sees each one. A tiny hub written here speaks the
//! protocol to the real `mcpo fake-server`, started by the real proxy (stdio) or by the test
//! (HTTP).

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{FakeHttp, Proxy, eventually, mcpo_bin};
use mcpo::fake::wire::{FakeMessage, GarbageForm, HubMessage, OneShot, WireFault, WireKind};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

// ---------------------------------------------------------------------------------------------
// The test hub

#[derive(Debug, Clone)]
struct Hello {
    id: String,
    pid: u32,
    transport: String,
    at: Instant,
}

struct HubState {
    /// One line sender per connected fake.
    conns: Vec<mpsc::UnboundedSender<String>>,
    hellos: Vec<Hello>,
    /// The faults in force and when each ends.
    faults: Vec<(WireFault, Instant)>,
    decides: Vec<(u64, usize)>,
    /// `tools/call`s the fakes reported: tool and harness request.
    calls: Vec<(String, Option<u64>)>,
    /// Faults the fakes reported applied: fault index and harness request.
    applied: Vec<(usize, Option<u64>)>,
    /// What every decision answers.
    apply: bool,
}

impl HubState {
    /// The `faults` message for now: what is left of each window.
    fn snapshot(&mut self) -> String {
        let now = Instant::now();
        self.faults.retain(|(_, end)| *end > now);
        let active = self
            .faults
            .iter()
            .map(|(f, end)| WireFault {
                remaining_ms: (*end - now).as_millis() as u64,
                ..f.clone()
            })
            .collect();
        line(&HubMessage::Faults { active })
    }

    fn broadcast(&mut self, text: String) {
        self.conns.retain(|c| c.send(text.clone()).is_ok());
    }
}

fn line(message: &HubMessage) -> String {
    serde_json::to_string(message).unwrap() + "\n"
}

struct TestHub {
    addr: String,
    state: Arc<Mutex<HubState>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for TestHub {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl TestHub {
    async fn start() -> TestHub {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(HubState {
            conns: Vec::new(),
            hellos: Vec::new(),
            faults: Vec::new(),
            decides: Vec::new(),
            calls: Vec::new(),
            applied: Vec::new(),
            apply: false,
        }));
        let shared = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_fake(stream, shared.clone()));
            }
        });
        TestHub {
            addr,
            state,
            accept,
        }
    }

    /// Replaces the faults in force and tells every connected fake.
    fn set_faults(&self, faults: Vec<WireFault>) {
        let mut s = self.state.lock().unwrap();
        let now = Instant::now();
        s.faults = faults
            .into_iter()
            .map(|f| {
                let end = now + Duration::from_millis(f.remaining_ms);
                (f, end)
            })
            .collect();
        let snapshot = s.snapshot();
        s.broadcast(snapshot);
    }

    fn act(&self, action: OneShot) {
        self.state
            .lock()
            .unwrap()
            .broadcast(line(&HubMessage::Do { action }));
    }

    /// Closes the hub's side of every connection, as a harness that went away would.
    fn disconnect_all(&self) {
        self.state.lock().unwrap().conns.clear();
    }

    fn answer(&self, apply: bool) {
        self.state.lock().unwrap().apply = apply;
    }

    fn hellos(&self) -> Vec<Hello> {
        self.state.lock().unwrap().hellos.clone()
    }

    fn decides(&self) -> Vec<(u64, usize)> {
        self.state.lock().unwrap().decides.clone()
    }

    fn calls(&self) -> Vec<(String, Option<u64>)> {
        self.state.lock().unwrap().calls.clone()
    }

    fn applied(&self) -> Vec<(usize, Option<u64>)> {
        self.state.lock().unwrap().applied.clone()
    }

    /// The `n`th hello (from 0), waited for.
    async fn hello(&self, n: usize, within: Duration) -> Hello {
        eventually(&format!("hello #{n}"), within, async || {
            self.hellos().get(n).cloned()
        })
        .await
    }
}

/// One fake's connection: hello, then the current snapshot, then decisions as asked.
async fn serve_fake(stream: TcpStream, state: Arc<Mutex<HubState>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let Ok(Some(first)) = lines.next_line().await else {
        return;
    };
    let Ok(FakeMessage::Hello { id, pid, transport }) = serde_json::from_str(&first) else {
        panic!("the first line is not a hello: {first}");
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    {
        let mut s = state.lock().unwrap();
        s.hellos.push(Hello {
            id,
            pid,
            transport,
            at: Instant::now(),
        });
        let snapshot = s.snapshot();
        tx.send(snapshot).unwrap();
        s.conns.push(tx.clone());
    }
    // The connection's write side lives as long as the hub keeps its sender: a weak one here
    // lets `disconnect_all` close it.
    let weak = tx.downgrade();
    drop(tx);
    tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            if write.write_all(text.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    while let Ok(Some(l)) = lines.next_line().await {
        match serde_json::from_str(&l) {
            Ok(FakeMessage::Decide { req, fault, .. }) => {
                let apply = {
                    let mut s = state.lock().unwrap();
                    s.decides.push((req, fault));
                    s.apply
                };
                if let Some(tx) = weak.upgrade() {
                    let _ = tx.send(line(&HubMessage::Decision { req, apply }));
                }
            }
            Ok(FakeMessage::Call { tool, request }) => {
                state.lock().unwrap().calls.push((tool, request));
            }
            Ok(FakeMessage::Applied { fault, request }) => {
                state.lock().unwrap().applied.push((fault, request));
            }
            other => panic!("unexpected line from a fake: {l} ({other:?})"),
        }
    }
}

fn fault(index: usize, kind: WireKind, window: Duration) -> WireFault {
    WireFault {
        index,
        kind,
        probability: 1.0,
        tools: vec![],
        remaining_ms: window.as_millis() as u64,
        seed: 0,
        instance: false,
    }
}

const LONG: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// A hub, a fake and the proxy

struct Rig {
    hub: TestHub,
    proxy: Proxy,
    /// The HTTP fake, when the test started one.
    fake: Option<FakeHttp>,
}

/// The proxy with one stdio server `x` that it starts itself: `mcpo fake-server --hub`.
async fn stdio_rig(id: &str, timeout_s: u64) -> Rig {
    let hub = TestHub::start().await;
    let config = json!({"mcpServers": {"x": {
        "command": mcpo_bin(),
        "args": ["fake-server", "--transport", "stdio", "--hub", hub.addr, "--id", id],
        "timeout": timeout_s,
    }}});
    // Starting the proxy blocks on its output: off the runtime, so the hub keeps serving.
    let proxy = tokio::task::spawn_blocking(move || Proxy::start(&config, &[]))
        .await
        .unwrap();
    proxy
        .wait_ok("/x/openapi.json", Duration::from_secs(30))
        .await;
    let hello = hub.hello(0, Duration::from_secs(5)).await;
    assert_eq!((hello.id.as_str(), hello.transport.as_str()), (id, "stdio"));
    Rig {
        hub,
        proxy,
        fake: None,
    }
}

/// The proxy with one streamable-HTTP server `x`, a fake this test starts with `--hub`.
async fn http_rig(id: &str, timeout_s: u64) -> Rig {
    let hub = TestHub::start().await;
    let (name, addr) = (id.to_string(), hub.addr.clone());
    let fake = tokio::task::spawn_blocking(move || FakeHttp::start_with(&name, &["--hub", &addr]))
        .await
        .unwrap();
    let hello = hub.hello(0, Duration::from_secs(5)).await;
    assert_eq!(
        (hello.id.as_str(), hello.transport.as_str()),
        (id, "streamable-http")
    );
    let config = json!({"mcpServers": {"x": {
        "type": "streamable-http", "url": fake.url, "timeout": timeout_s,
    }}});
    let proxy = tokio::task::spawn_blocking(move || Proxy::start(&config, &[]))
        .await
        .unwrap();
    proxy
        .wait_ok("/x/openapi.json", Duration::from_secs(30))
        .await;
    Rig {
        hub,
        proxy,
        fake: Some(fake),
    }
}

/// The proxy with one legacy SSE server `x`, a fake this test starts with `--hub`.
async fn sse_rig(id: &str, timeout_s: u64) -> Rig {
    let hub = TestHub::start().await;
    let (name, addr) = (id.to_string(), hub.addr.clone());
    let fake =
        tokio::task::spawn_blocking(move || FakeHttp::start_sse(&name, 0, &["--hub", &addr]))
            .await
            .unwrap();
    let hello = hub.hello(0, Duration::from_secs(5)).await;
    assert_eq!((hello.id.as_str(), hello.transport.as_str()), (id, "sse"));
    let config =
        json!({"mcpServers": {"x": {"type": "sse", "url": fake.url, "timeout": timeout_s}}});
    let proxy = tokio::task::spawn_blocking(move || Proxy::start(&config, &[]))
        .await
        .unwrap();
    proxy
        .wait_ok("/x/openapi.json", Duration::from_secs(30))
        .await;
    Rig {
        hub,
        proxy,
        fake: Some(fake),
    }
}

/// `POST /x/echo`, bounded so that a hang fails the test instead of stalling it.
async fn echo(rig: &Rig) -> (u16, Value, Duration) {
    let started = Instant::now();
    let (status, body) = tokio::time::timeout(
        Duration::from_secs(20),
        rig.proxy.post("/x/echo", json!({"message": "hi"})),
    )
    .await
    .expect("the proxy answered within 20 s");
    (status, body, started.elapsed())
}

/// Waits until echo succeeds again; returns when it did.
async fn until_echo_ok(rig: &Rig, within: Duration) -> Instant {
    eventually("echo answers 200 again", within, async || {
        let (status, body, _) = echo(rig).await;
        (status == 200 && body == json!("hi")).then(Instant::now)
    })
    .await
}

/// Calls echo until it answers `status`. A snapshot reaches the fake a moment after
/// `set_faults` returns (the protocol has no acknowledgement), so a test's first look at a new
/// fault waits for its effect instead of assuming it.
async fn until_echo_status(rig: &Rig, status: u16, within: Duration) -> (Value, Duration) {
    eventually(&format!("echo answers {status}"), within, async || {
        let (got, body, took) = echo(rig).await;
        (got == status).then_some((body, took))
    })
    .await
}

const SOON: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Answers replaced by errors

async fn tool_error(rig: Rig) {
    rig.hub
        .set_faults(vec![fault(0, WireKind::ToolError, LONG)]);
    let (body, _) = until_echo_status(&rig, 500, SOON).await;
    assert!(
        body.to_string().contains("injected fault: tool-error"),
        "{body}"
    );
    rig.hub.set_faults(vec![]);
    until_echo_ok(&rig, SOON).await;
}

/// The delivery ledger's source: every `tools/call` a fake receives is reported to the hub with
/// the harness request its arguments carry, and so is every fault that changed an answer,
/// and only those.
async fn reports_calls_and_applied_faults(rig: Rig, kind: WireKind, status: u16) {
    rig.hub.set_faults(vec![fault(3, kind, LONG)]);
    let call = |n: u64| {
        rig.proxy
            .post("/x/echo", json!({"message": format!("hi [r{n}]")}))
    };
    // The first calls may come before the snapshot is in; the one that got the fault is the
    // one to look for.
    // Every attempt its own request id, so that a report can only be about that attempt.
    let ids = std::sync::atomic::AtomicU64::new(100);
    let next = || ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let hit = eventually("a call that got the fault", SOON, async || {
        let n = next();
        (call(n).await.0 == status).then_some(n)
    })
    .await;
    eventually("the fault's report", SOON, async || {
        rig.hub.applied().contains(&(3, Some(hit))).then_some(())
    })
    .await;
    assert!(rig.hub.calls().contains(&("echo".to_string(), Some(hit))));
    rig.hub.set_faults(vec![]);
    // A clean answer shows the fake has the empty snapshot (an attempt of that request may
    // still have met the fault before a retry); the call after it meets nothing.
    eventually("a clean answer", SOON, async || {
        let n = next();
        let (got, body) = call(n).await;
        (got == 200 && body == json!(format!("hi [r{n}]"))).then_some(n)
    })
    .await;
    let clean = next();
    assert_eq!(call(clean).await.0, 200);
    eventually("the clean call's report", SOON, async || {
        rig.hub
            .calls()
            .contains(&("echo".to_string(), Some(clean)))
            .then_some(())
    })
    .await;
    assert!(
        rig.hub.applied().iter().all(|(_, r)| *r != Some(clean)),
        "{:?}",
        rig.hub.applied()
    );
}

#[tokio::test]
async fn fakes_report_calls_and_applied_faults_stdio() {
    reports_calls_and_applied_faults(stdio_rig("rep", 5).await, WireKind::ToolError, 500).await;
}

#[tokio::test]
async fn fakes_report_calls_and_applied_faults_http() {
    let kind = WireKind::HttpError {
        status: 503,
        retry_after: None,
    };
    reports_calls_and_applied_faults(http_rig("rep", 5).await, kind, 502).await;
}

#[tokio::test]
async fn fakes_report_calls_and_applied_faults_sse() {
    reports_calls_and_applied_faults(sse_rig("rep", 5).await, WireKind::ToolError, 500).await;
}

#[tokio::test]
async fn tool_error_is_a_500_with_the_text_stdio() {
    tool_error(stdio_rig("te", 5).await).await;
}

#[tokio::test]
async fn tool_error_is_a_500_with_the_text_http() {
    tool_error(http_rig("te", 5).await).await;
}

#[tokio::test]
async fn tool_error_is_a_500_with_the_text_sse() {
    tool_error(sse_rig("te", 5).await).await;
}

async fn jsonrpc_error(rig: Rig) {
    let kind = WireKind::JsonrpcError {
        code: -32601,
        message: Some("no such method today".into()),
    };
    rig.hub.set_faults(vec![fault(0, kind, LONG)]);
    let (body, _) = until_echo_status(&rig, 404, SOON).await;
    assert!(body.to_string().contains("no such method today"), "{body}");
    rig.hub.set_faults(vec![]);
    until_echo_ok(&rig, SOON).await;
}

#[tokio::test]
async fn jsonrpc_error_32601_is_a_404_stdio() {
    jsonrpc_error(stdio_rig("je", 5).await).await;
}

#[tokio::test]
async fn jsonrpc_error_32601_is_a_404_http() {
    jsonrpc_error(http_rig("je", 5).await).await;
}

#[tokio::test]
async fn jsonrpc_error_32601_is_a_404_sse() {
    jsonrpc_error(sse_rig("je", 5).await).await;
}

#[tokio::test]
async fn a_tool_filter_spares_other_tools() {
    let rig = stdio_rig("tf", 5).await;
    let mut only_add = fault(0, WireKind::ToolError, LONG);
    only_add.tools = vec!["add".into()];
    rig.hub.set_faults(vec![only_add]);
    eventually("add fails", SOON, async || {
        let (status, _) = rig.proxy.post("/x/add", json!({"a": 1, "b": 2})).await;
        (status == 500).then_some(())
    })
    .await;
    assert_eq!(echo(&rig).await.0, 200);
}

// ---------------------------------------------------------------------------------------------
// Time: latency, hang

/// `scope: instance`: a hang of the sessions alive at injection, while the window stays open
/// for a minute. The proxy (2 s deadline) answers 504, notices the hung session and replaces
/// it; the new session is healthy although the window is still open.
async fn scoped_hang_is_healed_by_a_new_session(rig: Rig) {
    let mut hang = fault(0, WireKind::Hang, LONG);
    hang.instance = true;
    rig.hub.set_faults(vec![hang]);
    until_echo_status(&rig, 504, SOON).await;
    // Well inside the 60 s window.
    until_echo_ok(&rig, Duration::from_secs(20)).await;
}

#[tokio::test]
async fn a_hang_scoped_to_the_instance_is_healed_by_a_new_session_stdio() {
    scoped_hang_is_healed_by_a_new_session(stdio_rig("sh", 2).await).await;
}

#[tokio::test]
async fn a_hang_scoped_to_the_instance_is_healed_by_a_new_session_http() {
    scoped_hang_is_healed_by_a_new_session(http_rig("sh", 2).await).await;
}

async fn latency(rig: Rig) {
    let (_, _, baseline) = echo(&rig).await;
    let delay = Duration::from_millis(400);
    let kind = WireKind::Latency {
        min_ms: 400,
        max_ms: 400,
    };
    rig.hub.set_faults(vec![fault(0, kind, LONG)]);
    let took = eventually("echo is delayed", SOON, async || {
        let (status, _, took) = echo(&rig).await;
        assert_eq!(status, 200);
        (took >= delay).then_some(took)
    })
    .await;
    assert!(
        took < baseline + delay + Duration::from_millis(600),
        "took {took:?} with a baseline of {baseline:?}"
    );
}

#[tokio::test]
async fn latency_delays_the_answer_by_about_the_delay_stdio() {
    latency(stdio_rig("lat", 5).await).await;
}

#[tokio::test]
async fn latency_delays_the_answer_by_about_the_delay_http() {
    latency(http_rig("lat", 5).await).await;
}

#[tokio::test]
async fn latency_delays_the_answer_by_about_the_delay_sse() {
    latency(sse_rig("lat", 5).await).await;
}

async fn hang(rig: Rig) {
    let window = Duration::from_secs(3);
    rig.hub.set_faults(vec![fault(0, WireKind::Hang, window)]);
    let window_ends = Instant::now() + window;
    let (_, took) = until_echo_status(&rig, 504, SOON).await;
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "504 after {took:?}"
    );
    let ok_at = until_echo_ok(&rig, Duration::from_secs(15)).await;
    // Normal answers come back once the window is over, not before.
    assert!(ok_at >= window_ends - Duration::from_millis(100));
}

#[tokio::test]
async fn hang_is_a_504_at_the_deadline_then_normal_after_the_window_stdio() {
    hang(stdio_rig("hang", 1).await).await;
}

#[tokio::test]
async fn hang_is_a_504_at_the_deadline_then_normal_after_the_window_http() {
    hang(http_rig("hang", 1).await).await;
}

#[tokio::test]
async fn hang_is_a_504_at_the_deadline_then_normal_after_the_window_sse() {
    hang(sse_rig("hang", 1).await).await;
}

// ---------------------------------------------------------------------------------------------
// Broken answers: garbage, http-error, reset

fn garbage(form: GarbageForm) -> WireKind {
    WireKind::Garbage { forms: vec![form] }
}

/// The stdio fake replaces the answer's frame by its garbage, whole, on a line of its own, in
/// every form, and reports the fault applied to the request it hit. The real answer never
/// follows (the next line is the answer to the next request).
#[tokio::test]
async fn stdio_garbage_replaces_the_answer_in_each_form() {
    let hub = TestHub::start().await;
    for (i, form) in GarbageForm::ALL.into_iter().enumerate() {
        hub.set_faults(vec![fault(i, garbage(form), LONG)]);
        let mut child = tokio::process::Command::new(mcpo_bin())
            .args([
                "fake-server",
                "--transport",
                "stdio",
                "--hub",
                &hub.addr,
                "--id",
                "g",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut send = async |message: Value| {
            let text = message.to_string() + "\n";
            stdin.write_all(text.as_bytes()).await.unwrap();
        };
        let mut next_line = async || {
            tokio::time::timeout(Duration::from_secs(10), stdout.next_line())
                .await
                .expect("a line within 10 s")
                .unwrap()
                .expect("stdout still open")
        };
        send(
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "test", "version": "0"}}}),
        )
        .await;
        let handshake: Value = serde_json::from_str(&next_line().await).unwrap();
        assert_eq!(handshake["id"], json!(1), "{handshake}");
        send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
        let request = 40 + i as u64;
        send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": format!("hi [r{request}]")}}}))
        .await;
        let line = next_line().await;
        let parsed = serde_json::from_str::<Value>(&line);
        match form {
            GarbageForm::Text => assert_eq!(line, "this is not json-rpc"),
            GarbageForm::NotJsonrpc => {
                let v = parsed.unwrap();
                assert!(
                    v.get("jsonrpc").is_none() && v.get("id").is_none(),
                    "{line}"
                );
            }
            GarbageForm::WrongId => {
                let v = parsed.unwrap();
                assert_eq!(v["id"], json!("not-2"), "{line}");
                assert_eq!(
                    v["result"]["content"][0]["text"],
                    json!(format!("hi [r{request}]"))
                );
            }
            GarbageForm::MalformedResult => {
                let v = parsed.unwrap();
                assert_eq!(v["id"], json!(2), "{line}");
                assert!(
                    serde_json::from_value::<rmcp::model::CallToolResult>(v["result"].clone())
                        .is_err(),
                    "{line}"
                );
            }
            GarbageForm::CutAnswer => {
                assert!(parsed.is_err(), "{line}");
                assert!(line.starts_with(r#"{"jsonrpc":"2.0","id":2,"#), "{line}");
            }
        }
        // The answer is gone for good: the next line answers the next request.
        send(json!({"jsonrpc": "2.0", "id": 3, "method": "ping"})).await;
        let pong: Value = serde_json::from_str(&next_line().await).unwrap();
        assert_eq!(pong["id"], json!(3), "{form:?}: {pong}");
        eventually("the fault's report", SOON, async || {
            hub.applied().contains(&(i, Some(request))).then_some(())
        })
        .await;
    }
}

/// Every garbage form, each its own fault with probability 1: every call the fault hit gets a
/// non-2xx from the proxy in bounded time (an error for a malformed result, the deadline for
/// an answer that never comes), never a 200 with a wrong body; the fake reports the fault
/// applied to that call; and echo answers again once the fault is gone.
async fn garbage_reaches_the_client(rig: Rig) {
    let ids = std::sync::atomic::AtomicU64::new(1000);
    for (i, form) in GarbageForm::ALL.into_iter().enumerate() {
        rig.hub.set_faults(vec![fault(i, garbage(form), LONG)]);
        // The snapshot reaches the fake a moment after `set_faults`: call until one call met
        // the fault; every call on the way must be right or an error.
        let hit = eventually(&format!("a call that met {form:?}"), SOON * 4, async || {
            let n = ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // The proxy's deadline is 2 s; a retry or two fit well within 20.
            let (status, body) = tokio::time::timeout(
                Duration::from_secs(20),
                rig.proxy
                    .post("/x/echo", json!({"message": format!("hi [r{n}]")})),
            )
            .await
            .unwrap_or_else(|_| panic!("{form:?}: r{n} got no answer within 20 s (a hang)"));
            assert!(
                status != 200 || body == json!(format!("hi [r{n}]")),
                "{form:?}: a wrong 200: {body}"
            );
            let applied = rig.hub.applied().contains(&(i, Some(n)));
            applied.then_some((n, status, body))
        })
        .await;
        let (n, status, body) = hit;
        assert!(
            !(200..300).contains(&status),
            "{form:?}: r{n} met the fault and got {status} {body}"
        );
    }
    rig.hub.set_faults(vec![]);
    until_echo_ok(&rig, Duration::from_secs(15)).await;
}

#[tokio::test]
async fn garbage_in_every_form_is_an_error_never_a_wrong_200_stdio() {
    garbage_reaches_the_client(stdio_rig("garb", 2).await).await;
}

#[tokio::test]
async fn garbage_in_every_form_is_an_error_never_a_wrong_200_sse() {
    garbage_reaches_the_client(sse_rig("garb", 2).await).await;
}

#[tokio::test]
async fn garbage_in_every_form_is_an_error_never_a_wrong_200_http() {
    garbage_reaches_the_client(http_rig("garb", 2).await).await;
}

#[tokio::test]
async fn garbage_on_http_is_a_502_not_a_hang_and_recovers() {
    let rig = http_rig("garb", 5).await;
    rig.hub.set_faults(vec![fault(
        0,
        garbage(GarbageForm::Text),
        Duration::from_secs(2),
    )]);
    // A broken event, then the end of the stream without an answer: the proxy sees the
    // connection end during the call, at once rather than at its 5 s deadline.
    let (body, took) = until_echo_status(&rig, 502, SOON).await;
    assert!(took < Duration::from_secs(4), "{took:?}: {body}");
    until_echo_ok(&rig, Duration::from_secs(15)).await;
}

#[tokio::test]
async fn http_error_503_is_a_502_naming_it_then_recovers() {
    let rig = http_rig("herr", 5).await;
    let kind = WireKind::HttpError {
        status: 503,
        retry_after: None,
    };
    rig.hub
        .set_faults(vec![fault(0, kind, Duration::from_secs(2))]);
    // The proxy does not send a failed call again into a 503 within the window (its
    // recovery policy); it answers 502 and says what the server answered.
    let (body, _) = until_echo_status(&rig, 502, SOON).await;
    assert!(body.to_string().contains("HTTP 503"), "{body}");
    until_echo_ok(&rig, Duration::from_secs(15)).await;
}

#[tokio::test]
async fn reset_is_a_broken_connection_not_a_hang_and_recovers() {
    let rig = http_rig("reset", 5).await;
    rig.hub
        .set_faults(vec![fault(0, WireKind::Reset, Duration::from_secs(2))]);
    let (body, took) = until_echo_status(&rig, 502, SOON).await;
    assert!(took < Duration::from_secs(4), "{took:?}: {body}");
    assert!(body.to_string().contains("broke"), "{body}");
    until_echo_ok(&rig, Duration::from_secs(15)).await;
}

#[tokio::test]
async fn http_error_503_over_sse_is_a_502_naming_it_then_recovers() {
    let rig = sse_rig("herr", 5).await;
    let kind = WireKind::HttpError {
        status: 503,
        retry_after: None,
    };
    rig.hub
        .set_faults(vec![fault(0, kind, Duration::from_secs(2))]);
    let (body, _) = until_echo_status(&rig, 502, SOON).await;
    assert!(body.to_string().contains("HTTP 503"), "{body}");
    until_echo_ok(&rig, Duration::from_secs(15)).await;
}

/// Over SSE a cut stream is resumed (`Last-Event-ID`): the fake keeps the session and sends
/// the cut answer again, so no call fails.
#[tokio::test]
async fn reset_over_sse_is_resumed_and_no_call_fails() {
    let rig = sse_rig("reset", 5).await;
    let window = Duration::from_secs(1);
    rig.hub.set_faults(vec![fault(0, WireKind::Reset, window)]);
    let window_ends = Instant::now() + window;
    while Instant::now() < window_ends {
        let (status, body, took) = echo(&rig).await;
        assert_eq!((status, &body), (200, &json!("hi")), "after {took:?}");
    }
    let stats = rig.fake.as_ref().unwrap().stats().await;
    assert!(stats["resumed"].as_u64().unwrap() > 0, "{stats}");
}

#[tokio::test]
async fn session_loss_from_the_hub_is_recovered_over_sse() {
    let rig = sse_rig("slsse", 5).await;
    let fake = rig.fake.as_ref().unwrap();
    assert_eq!(echo(&rig).await.0, 200);
    for _ in 0..2 {
        let streams = fake.stats().await["streams"].as_u64().unwrap();
        rig.hub.act(OneShot::SessionLoss);
        // The loss ended the proxy's stream, and it opened another.
        eventually("a new stream", SOON, async || {
            (fake.stats().await["streams"].as_u64().unwrap() > streams).then_some(())
        })
        .await;
        until_echo_ok(&rig, Duration::from_secs(5)).await;
    }
    assert_eq!(
        rig.hub.hellos().len(),
        1,
        "the same process served throughout"
    );
}

/// A slow-start window delays the handshake of every new session, not the running one.
#[tokio::test]
async fn slow_start_delays_new_sse_sessions() {
    let rig = sse_rig("slowsse", 5).await;
    let delay = Duration::from_millis(1500);
    rig.hub.set_faults(vec![fault(
        0,
        WireKind::SlowStart {
            delay_ms: delay.as_millis() as u64,
        },
        LONG,
    )]);
    assert_eq!(echo(&rig).await.0, 200);
    let fake = rig.fake.as_ref().unwrap();
    let streams = fake.stats().await["streams"].as_u64().unwrap();
    rig.hub.act(OneShot::SessionLoss);
    let lost_at = Instant::now();
    // Not before the loss has reached the fake (the hub does not wait for it).
    eventually("a new stream", SOON, async || {
        (fake.stats().await["streams"].as_u64().unwrap() > streams).then_some(())
    })
    .await;
    let ok_at = until_echo_ok(&rig, Duration::from_secs(10)).await;
    let took = ok_at - lost_at;
    assert!(
        took >= delay && took < delay + Duration::from_secs(3),
        "first success {took:?} after the session loss"
    );
}

#[tokio::test]
async fn crash_makes_the_proxy_restart_the_stdio_child() {
    let rig = stdio_rig("crash", 5).await;
    let first = rig.hub.hello(0, Duration::from_secs(1)).await;
    assert_eq!(echo(&rig).await.0, 200);
    rig.hub.act(OneShot::Crash);
    let second = rig.hub.hello(1, Duration::from_secs(10)).await;
    assert_ne!(first.pid, second.pid);
    until_echo_ok(&rig, Duration::from_secs(10)).await;
    let whoami = rig.proxy.post("/x/whoami", json!({})).await;
    assert!(
        whoami.1.to_string().contains(&second.pid.to_string()),
        "{whoami:?}"
    );
}

#[tokio::test]
async fn a_restarted_child_gets_the_open_window_and_applies_it() {
    let rig = stdio_rig("late", 5).await;
    let mut echo_fails = fault(0, WireKind::ToolError, LONG);
    echo_fails.tools = vec!["echo".into()];
    rig.hub.set_faults(vec![echo_fails]);
    rig.hub.act(OneShot::Crash);
    let second = rig.hub.hello(1, Duration::from_secs(10)).await;
    // The new child's first answers already carry the fault it learnt from its first snapshot.
    let (body, _) = until_echo_status(&rig, 500, Duration::from_secs(10)).await;
    assert!(body.to_string().contains("injected fault"), "{body}");
    let (status, whoami) = rig.proxy.post("/x/whoami", json!({})).await;
    assert_eq!(status, 200, "{whoami}");
    assert!(
        whoami.to_string().contains(&second.pid.to_string()),
        "answered by {whoami}, restarted as {}",
        second.pid
    );
    assert_eq!(rig.hub.hellos().len(), 2, "one restart only");
}

#[tokio::test]
async fn slow_start_delays_the_restarted_childs_handshake() {
    let rig = stdio_rig("slow", 5).await;
    let delay = Duration::from_millis(1500);
    rig.hub.set_faults(vec![fault(
        0,
        WireKind::SlowStart {
            delay_ms: delay.as_millis() as u64,
        },
        LONG,
    )]);
    // The running child started before the window: it is not slowed down.
    assert_eq!(echo(&rig).await.0, 200);
    rig.hub.act(OneShot::Crash);
    let hello = rig.hub.hello(1, Duration::from_secs(10)).await;
    let ok_at = until_echo_ok(&rig, Duration::from_secs(15)).await;
    let took = ok_at - hello.at;
    assert!(
        took >= delay && took < delay + Duration::from_secs(4),
        "first success {took:?} after the hello"
    );
}

#[tokio::test]
async fn refuse_keeps_the_child_down_for_the_window() {
    let rig = stdio_rig("refuse", 5).await;
    let window = Duration::from_secs(2);
    rig.hub.set_faults(vec![fault(0, WireKind::Refuse, window)]);
    let window_ends = Instant::now() + window;
    rig.hub.act(OneShot::Crash);
    // The proxy keeps restarting the child; each says hello and exits at once.
    rig.hub.hello(1, Duration::from_secs(5)).await;
    let (status, body, _) = echo(&rig).await;
    if Instant::now() < window_ends {
        assert_ne!(status, 200, "served during the refuse window: {body}");
    }
    let ok_at = until_echo_ok(&rig, Duration::from_secs(20)).await;
    assert!(ok_at >= window_ends);
    let hellos = rig.hub.hellos();
    let last = hellos.last().unwrap();
    assert!(last.at >= window_ends - Duration::from_millis(100));
}

/// Runs `mcpo fake-server` directly and returns its exit status and stderr.
async fn run_fake_to_exit(args: &[&str]) -> std::process::Output {
    let output = tokio::process::Command::new(mcpo_bin())
        .arg("fake-server")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(10), output)
        .await
        .expect("the fake exited within 10 s")
        .unwrap()
}

#[tokio::test]
async fn refuse_exits_with_one_line_on_every_transport() {
    let hub = TestHub::start().await;
    hub.set_faults(vec![fault(0, WireKind::Refuse, LONG)]);
    for transport in ["stdio", "streamable-http", "sse"] {
        let out =
            run_fake_to_exit(&["--transport", transport, "--hub", &hub.addr, "--id", "r"]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{transport}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{transport}: {stderr}");
        assert!(stderr.contains("refus"), "{transport}: {stderr}");
        // The HTTP form refused before listening: nothing was printed on stdout.
        assert!(out.stdout.is_empty(), "{transport}");
    }
    assert_eq!(hub.hellos().len(), 3);
}

#[tokio::test]
async fn crash_ends_the_http_fake() {
    let hub = TestHub::start().await;
    let addr = hub.addr.clone();
    let mut fake =
        tokio::task::spawn_blocking(move || FakeHttp::start_with("c", &["--hub", &addr]))
            .await
            .unwrap();
    hub.hello(0, Duration::from_secs(5)).await;
    hub.act(OneShot::Crash);
    let status = eventually("the fake exits", Duration::from_secs(5), async || {
        fake.proc.child.try_wait().unwrap()
    })
    .await;
    assert_eq!(status.code(), Some(1));
}

#[tokio::test]
async fn crash_ends_the_sse_fake() {
    let hub = TestHub::start().await;
    let addr = hub.addr.clone();
    let mut fake =
        tokio::task::spawn_blocking(move || FakeHttp::start_sse("c", 0, &["--hub", &addr]))
            .await
            .unwrap();
    hub.hello(0, Duration::from_secs(5)).await;
    hub.act(OneShot::Crash);
    let status = eventually("the fake exits", Duration::from_secs(5), async || {
        fake.proc.child.try_wait().unwrap()
    })
    .await;
    assert_eq!(status.code(), Some(1));
}

/// An MCP session opened by hand on the HTTP fake; returns its id.
async fn open_session(client: &reqwest::Client, url: &str) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"}}});
    let r = client
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.headers()["mcp-session-id"].to_str().unwrap().to_string()
}

async fn list_tools_status(client: &reqwest::Client, url: &str, session: &str) -> u16 {
    client
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-06-18")
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn session_loss_makes_the_http_fake_forget_every_session() {
    let rig = http_rig("sl", 5).await;
    let url = rig.fake.as_ref().unwrap().url.clone();
    let client = reqwest::Client::new();
    let session = open_session(&client, &url).await;
    assert_eq!(list_tools_status(&client, &url, &session).await, 200);
    rig.hub.act(OneShot::SessionLoss);
    eventually(
        "the old session is forgotten",
        Duration::from_secs(5),
        async || (list_tools_status(&client, &url, &session).await == 404).then_some(()),
    )
    .await;
    // The proxy's own session went too; it opens a new one.
    until_echo_ok(&rig, Duration::from_secs(10)).await;
}

/// A request on an open session of the HTTP fake, read to its end within `within`; `None` if
/// no whole answer came in time.
async fn request_within(
    client: &reqwest::Client,
    url: &str,
    session: &str,
    message: Value,
    within: Duration,
) -> Option<String> {
    let answer = async {
        client
            .post(url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-06-18")
            .json(&message)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    };
    tokio::time::timeout(within, answer).await.ok().flatten()
}

#[tokio::test]
async fn a_hang_holds_ping_and_tools_list_but_not_initialize() {
    let hub = TestHub::start().await;
    let addr = hub.addr.clone();
    let fake = tokio::task::spawn_blocking(move || FakeHttp::start_with("h", &["--hub", &addr]))
        .await
        .unwrap();
    hub.hello(0, SOON).await;
    let client = reqwest::Client::new();
    // Fresh ids: a hung request stays pending in the server after the client gives up.
    let ids = std::sync::atomic::AtomicU64::new(100);
    let next = || ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let ping = || json!({"jsonrpc": "2.0", "id": next(), "method": "ping"});
    let list = json!({"jsonrpc": "2.0", "id": next(), "method": "tools/list"});
    let short = Duration::from_millis(500);

    let session = open_session(&client, &fake.url).await;
    hub.set_faults(vec![fault(0, WireKind::Hang, LONG)]);
    eventually("ping hangs", SOON, async || {
        request_within(&client, &fake.url, &session, ping(), short)
            .await
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        request_within(&client, &fake.url, &session, list, short)
            .await
            .is_none()
    );
    // The handshake is never held: a hung server can still be connected to, and then hangs.
    open_session(&client, &fake.url).await;

    // A hang limited to a tool leaves ping alone.
    let mut only_add = fault(1, WireKind::Hang, LONG);
    only_add.tools = vec!["add".into()];
    hub.set_faults(vec![only_add]);
    eventually("ping answers again", SOON, async || {
        request_within(&client, &fake.url, &session, ping(), short)
            .await
            .filter(|a| a.contains("\"result\""))
    })
    .await;
}

#[tokio::test]
async fn session_loss_is_ignored_on_stdio() {
    let rig = stdio_rig("sls", 5).await;
    rig.hub.act(OneShot::SessionLoss);
    assert_eq!(echo(&rig).await.0, 200);
    assert_eq!(rig.hub.hellos().len(), 1);
}

#[tokio::test]
async fn when_the_hub_goes_away_its_faults_end() {
    let rig = stdio_rig("gone", 5).await;
    rig.hub
        .set_faults(vec![fault(0, WireKind::ToolError, LONG)]);
    until_echo_status(&rig, 500, SOON).await;
    rig.hub.disconnect_all();
    until_echo_ok(&rig, Duration::from_secs(5)).await;
    assert_eq!(rig.hub.hellos().len(), 1, "the child kept serving");
}

// ---------------------------------------------------------------------------------------------
// Decisions

#[tokio::test]
async fn the_hub_decides_per_request_faults_and_is_obeyed() {
    let rig = stdio_rig("dec", 5).await;
    let mut half = fault(4, WireKind::ToolError, LONG);
    half.probability = 0.5;
    rig.hub.set_faults(vec![half]);
    rig.hub.answer(false);
    // Every call is asked about once the snapshot is in; "no" gives a normal answer.
    eventually("three decisions", SOON, async || {
        let (status, body, _) = echo(&rig).await;
        assert_eq!((status, body), (200, json!("hi")));
        (rig.hub.decides().len() >= 3).then_some(())
    })
    .await;
    let asked = rig.hub.decides().len();
    rig.hub.answer(true);
    let (status, body, _) = echo(&rig).await;
    assert_eq!(status, 500, "{body}");
    let decides = rig.hub.decides();
    assert_eq!(decides.len(), asked + 1, "{decides:?}");
    assert!(decides.iter().all(|&(_, fault)| fault == 4), "{decides:?}");
    // One counter per process: the requests are numbered in order.
    let reqs: Vec<u64> = decides.iter().map(|&(req, _)| req).collect();
    assert!(reqs.windows(2).all(|w| w[0] < w[1]), "{reqs:?}");
}

#[tokio::test]
async fn the_hub_decides_http_layer_faults_too() {
    let rig = http_rig("dech", 5).await;
    let kind = WireKind::HttpError {
        status: 500,
        retry_after: None,
    };
    let mut half = fault(2, kind, LONG);
    half.probability = 0.5;
    rig.hub.set_faults(vec![half]);
    rig.hub.answer(false);
    eventually("a decision", SOON, async || {
        assert_eq!(echo(&rig).await.0, 200);
        (!rig.hub.decides().is_empty()).then_some(())
    })
    .await;
    rig.hub.answer(true);
    let (status, body, _) = echo(&rig).await;
    assert_eq!(status, 502, "{body}");
    assert!(rig.hub.decides().iter().all(|&(_, fault)| fault == 2));
}

#[tokio::test]
async fn a_fake_whose_hub_is_down_serves_without_faults() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let started = Instant::now();
    let fake =
        tokio::task::spawn_blocking(move || FakeHttp::start_with("alone", &["--hub", &addr]))
            .await
            .unwrap();
    // It tried for about 2 s, then started anyway.
    assert!(started.elapsed() >= Duration::from_millis(1900));
    let config = json!({"mcpServers": {"x": {"type": "streamable-http", "url": fake.url}}});
    let proxy = tokio::task::spawn_blocking(move || Proxy::start(&config, &[]))
        .await
        .unwrap();
    proxy.wait_ok("/x/openapi.json", SOON).await;
    let (status, body) = proxy.post("/x/echo", json!({"message": "hi"})).await;
    assert_eq!((status, body), (200, json!("hi")));
}

#[tokio::test]
async fn probability_one_asks_for_no_decision() {
    let rig = http_rig("p1", 5).await;
    rig.hub
        .set_faults(vec![fault(0, WireKind::ToolError, LONG)]);
    until_echo_status(&rig, 500, SOON).await;
    assert_eq!(echo(&rig).await.0, 500);
    assert!(rig.hub.decides().is_empty());
}
