//! The MCP endpoint, driven by the official Python MCP SDK (`tests/it/mcp_client.py`): `/mcp`
//! (every server, tools named `server__tool`) and `/{server}/mcp` (one server, its own names),
//! behind the API key. The upstream child is SIGKILLed between two calls of one MCP session:
//! the session goes on, the next calls are answered (recovered behind it).

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::{Proxy, stdio_fake, venv_python};
use serde_json::{Value, json};

/// Runs the SDK client against `url`, SIGKILLing the proxy's one child when it pauses.
fn session_across_a_crash(proxy: &Proxy, url: &str) -> (Value, u32, u32) {
    let mut client = Command::new(venv_python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/it/mcp_client.py"
        ))
        .args([url, "mcp-key"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(client.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(
        line.trim(),
        "PAUSED",
        "the client did not get through its first call"
    );
    let killed = common::children(proxy.pid());
    assert_eq!(killed.len(), 1, "one upstream child: {killed:?}");
    common::signal(killed[0], "KILL");
    writeln!(client.stdin.take().unwrap(), "go").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert!(
        client.wait().unwrap().success(),
        "client failed; printed {line}"
    );
    let now = common::children(proxy.pid());
    assert_eq!(now.len(), 1, "{now:?}");
    (serde_json::from_str(&line).unwrap(), killed[0], now[0])
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_clients_keep_their_session_while_the_upstream_crashes_behind_it() {
    let proxy = Proxy::start(
        &json!({"mcpServers": {"calc": stdio_fake("calc")}}),
        &["--api-key", "mcp-key"],
    );
    for (path, echo) in [("/mcp", "calc__echo"), ("/calc/mcp", "echo")] {
        let (report, before, after) = session_across_a_crash(&proxy, &proxy.url(path));
        assert_ne!(before, after, "{path}: the child was not replaced");
        assert_eq!(report["server"], "mcpo", "{path}: {report}");
        let tools: Vec<&str> = report["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert!(tools.contains(&echo), "{path}: {tools:?}");
        assert_eq!(report["first"]["text"], "before 5d1e", "{path}: {report}");
        assert_eq!(report["after"]["text"], "after 5d1e", "{path}: {report}");
        assert_eq!(report["after"]["isError"], false, "{path}: {report}");
        assert_eq!(report["added"]["text"], "42", "{path}: {report}");
        // Arguments are checked against the tool's schema before any upstream sees them.
        assert!(
            report["bad"]
                .as_str()
                .is_some_and(|b| b.contains("do not match its schema")),
            "{path}: {report}"
        );
    }
    // The endpoint is guarded by the key like the tool routes.
    let r = proxy
        .client
        .post(proxy.url("/mcp"))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = proxy
        .client
        .post(proxy.url("/nosuch/mcp"))
        .bearer_auth("mcp-key")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Calls through the endpoint are counted like the OpenAPI routes' calls.
    let (_, metrics) = proxy.get_with_key("/metrics", "mcp-key").await;
    let text = metrics.to_string();
    assert!(text.contains("\"echo\""), "{text}");
}

/// An rmcp client that says when the endpoint announces `notifications/tools/list_changed`.
#[derive(Clone)]
struct ListWatcher {
    changed: std::sync::Arc<tokio::sync::Notify>,
}

impl rmcp::ClientHandler for ListWatcher {
    async fn on_tool_list_changed(
        &self,
        _context: rmcp::service::NotificationContext<rmcp::RoleClient>,
    ) {
        self.changed.notify_one();
    }
}

/// The MCP endpoint issue, acceptance 3: with one of three servers down at start,
/// `initialize` and `tools/list` succeed at once with the other two, and the third's tools
/// appear with a `list_changed` when it comes up.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_down_at_start_fails_nothing_and_joins_with_a_list_changed() {
    use rmcp::ServiceExt as _;
    use rmcp::transport::StreamableHttpClientTransport;
    use std::time::Duration;

    // A port that nothing listens on yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = json!({"mcpServers": {
        "a": stdio_fake("a"),
        "b": stdio_fake("b"),
        "c": {"type": "streamable-http", "url": format!("http://127.0.0.1:{port}/mcp")},
    }});
    let proxy = Proxy::start(&config, &[]);
    proxy
        .wait_ok("/a/openapi.json", Duration::from_secs(30))
        .await;
    proxy
        .wait_ok("/b/openapi.json", Duration::from_secs(30))
        .await;

    let watcher = ListWatcher {
        changed: Default::default(),
    };
    let client = watcher
        .clone()
        .serve(StreamableHttpClientTransport::from_uri(proxy.url("/mcp")))
        .await
        .expect("initialize with one server down");
    let names = |tools: Vec<rmcp::model::Tool>| -> Vec<String> {
        let mut n: Vec<String> = tools.into_iter().map(|t| t.name.to_string()).collect();
        n.sort();
        n
    };
    let listed = names(client.list_all_tools().await.unwrap());
    assert!(listed.contains(&"a__echo".to_string()) && listed.contains(&"b__echo".to_string()));
    assert!(!listed.iter().any(|n| n.starts_with("c__")), "{listed:?}");

    let _c = common::FakeHttp::start_on("c", port);
    tokio::time::timeout(Duration::from_secs(30), watcher.changed.notified())
        .await
        .expect("a tools/list_changed once c is up");
    let listed = names(client.list_all_tools().await.unwrap());
    assert!(listed.contains(&"c__echo".to_string()), "{listed:?}");
    let answer = client
        .call_tool(
            rmcp::model::CallToolRequestParams::new("c__echo")
                .with_arguments(json!({"message": "joined"}).as_object().cloned().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&answer.content).unwrap()[0]["text"],
        "joined"
    );
    client.cancel().await.unwrap();
}

/// The MCP endpoint issue, acceptance 2, with many calls at once: one MCP session makes 16
/// concurrent calls while the upstream stdio child is SIGKILLed (and, on another server, the
/// upstream HTTP session is lost); no call fails and the client's session never ends.
#[tokio::test(flavor = "multi_thread")]
async fn sixteen_calls_in_flight_survive_a_crash_and_a_lost_session() {
    use rmcp::ServiceExt as _;
    use rmcp::transport::StreamableHttpClientTransport;
    use std::time::Duration;

    let http = common::FakeHttp::start("lossy");
    let config = json!({"mcpServers": {
        "local": stdio_fake("local"),
        "remote": {"type": "streamable-http", "url": http.url},
    }});
    let proxy = Proxy::start(&config, &[]);
    proxy
        .wait_ok("/local/openapi.json", Duration::from_secs(30))
        .await;
    proxy
        .wait_ok("/remote/openapi.json", Duration::from_secs(30))
        .await;
    let client = ListWatcher {
        changed: Default::default(),
    }
    .serve(StreamableHttpClientTransport::from_uri(proxy.url("/mcp")))
    .await
    .unwrap();
    let client = std::sync::Arc::new(client);
    for (server, disrupt) in [("local", "kill"), ("remote", "lose")] {
        let calls: Vec<_> = (0..16)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move {
                    let args = json!({"ms": 400, "tag": format!("{server}-{i}")});
                    let r = client
                        .call_tool(
                            rmcp::model::CallToolRequestParams::new(format!("{server}__sleep"))
                                .with_arguments(args.as_object().cloned().unwrap()),
                        )
                        .await;
                    (i, r)
                })
            })
            .collect();
        // Once all 16 are in flight upstream (each takes 400 ms), the disruption.
        common::eventually("16 calls in flight", Duration::from_secs(10), async || {
            let (_, d) = proxy.get("/diagnostics").await;
            let members = d["servers"][server]["pool"]["members"].as_array()?.clone();
            let in_flight: u64 = members.iter().filter_map(|m| m["in_flight"].as_u64()).sum();
            (in_flight >= 16).then_some(())
        })
        .await;
        match disrupt {
            "kill" => {
                let children = common::children(proxy.pid());
                let fake = children
                    .iter()
                    .find(|pid| {
                        std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                            .is_ok_and(|c| c.contains("local"))
                    })
                    .copied()
                    .expect("the stdio child of local");
                common::signal(fake, "KILL");
            }
            _ => http.fault(json!({"kind": "session-loss"})).await,
        }
        for call in calls {
            let (i, r) = call.await.unwrap();
            let r = r.unwrap_or_else(|e| panic!("{server} call {i} failed: {e}"));
            assert_ne!(r.is_error, Some(true), "{server} call {i}: {r:?}");
            let text = serde_json::to_value(&r.content).unwrap()[0]["text"].clone();
            assert_eq!(
                text,
                json!(format!("slept 400 ms [{server}-{i}]")),
                "{server} call {i}"
            );
        }
    }
    assert!(!client.is_transport_closed());
}

/// The MCP endpoint issue, safety: a page of another origin, or one whose name was rebound to
/// 127.0.0.1, is refused (the MCP specification asks servers to check `Origin`); a client that
/// is no browser (no `Origin`) is served; and sessions past `--max-mcp-sessions` get a 503.
#[tokio::test]
async fn the_endpoint_refuses_other_origins_rebound_hosts_and_sessions_past_the_cap() {
    let proxy = Proxy::start(
        &json!({"mcpServers": {"calc": stdio_fake("calc")}}),
        &["--max-mcp-sessions", "2"],
    );
    proxy
        .wait_ok("/calc/openapi.json", std::time::Duration::from_secs(30))
        .await;
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"}}});
    let post = |headers: &[(&str, String)]| {
        let mut r = proxy
            .client
            .post(proxy.url("/mcp"))
            .header("accept", "application/json, text/event-stream")
            .json(&initialize);
        for (k, v) in headers {
            r = r.header(*k, v);
        }
        r.send()
    };
    let port = proxy.base.rsplit(':').next().unwrap().to_string();
    let r = post(&[("origin", "http://evil.example".into())])
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = post(&[("host", format!("evil.example:{port}"))])
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // Same origin (a page served by the proxy itself) and no origin are served.
    let r = post(&[("origin", proxy.base.clone())]).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = post(&[]).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Two sessions are open now: a third is refused until one ends.
    let r = post(&[]).await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.headers().contains_key("retry-after"));
}

/// The MCP endpoint issue, resources and prompts: a real server with prompts, resources and
/// templates (`server-everything`), two fakes (stdio and streamable HTTP) and a server that is
/// down, behind `/mcp`. Prompts are listed as `{server}__{name}` and got by that name from
/// the right server; resources keep their URIs and are read from the server that has them,
/// also through a template; the down server fails nothing; a read right after the upstream
/// HTTP session is lost, and one after the stdio child is SIGKILLed, are answered.
#[tokio::test(flavor = "multi_thread")]
async fn prompts_and_resources_of_every_server_are_served_and_survive_a_crash() {
    use rmcp::ServiceExt as _;
    use rmcp::model::{GetPromptRequestParams, ReadResourceRequestParams};
    use rmcp::transport::StreamableHttpClientTransport;
    use std::time::Duration;

    let (command, args) = common::everything_stdio();
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let http = common::FakeHttp::start("remote-fake");
    let config = json!({"mcpServers": {
        "everything": {"command": command, "args": args},
        "calc": stdio_fake("calc"),
        "remote": {"type": "streamable-http", "url": http.url},
        "gone": {"type": "streamable-http", "url": format!("http://127.0.0.1:{dead_port}/mcp")},
    }});
    let proxy = Proxy::start(&config, &[]);
    for s in ["everything", "calc", "remote"] {
        proxy
            .wait_ok(&format!("/{s}/openapi.json"), Duration::from_secs(60))
            .await;
    }
    let client =
        ().serve(StreamableHttpClientTransport::from_uri(proxy.url("/mcp")))
            .await
            .unwrap();
    let text = |v: Value| -> String {
        v["contents"][0]["text"]
            .as_str()
            .or(v["messages"][0]["content"]["text"].as_str())
            .unwrap_or_default()
            .to_string()
    };

    let prompts = client.list_all_prompts().await.unwrap();
    let names: Vec<&str> = prompts.iter().map(|p| p.name.as_str()).collect();
    assert!(
        names.contains(&"calc__greet") && names.contains(&"remote__greet"),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("everything__")),
        "{names:?}"
    );
    let got = client
        .get_prompt(
            GetPromptRequestParams::new("remote__greet")
                .with_arguments(json!({"name": "ada"}).as_object().cloned().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(
        text(serde_json::to_value(&got).unwrap()),
        "hello ada from fake-remote-fake"
    );
    // server-everything's own prompts, got by their endpoint names.
    let simple = prompts
        .iter()
        .find(|p| {
            p.name.starts_with("everything__")
                && p.arguments
                    .as_ref()
                    .is_none_or(|a| a.iter().all(|a| a.required != Some(true)))
        })
        .expect("a prompt of server-everything without required arguments");
    let got = client
        .get_prompt(GetPromptRequestParams::new(simple.name.clone()))
        .await
        .unwrap();
    assert!(!got.messages.is_empty(), "{got:?}");
    let unknown = client
        .get_prompt(GetPromptRequestParams::new("calc__nothing"))
        .await;
    assert!(unknown.is_err(), "{unknown:?}");

    let read = async |uri: &str| {
        client
            .read_resource(ReadResourceRequestParams::new(uri.to_string()))
            .await
            .map(|r| text(serde_json::to_value(&r).unwrap()))
    };
    let resources = client.list_all_resources().await.unwrap();
    let uris: Vec<&str> = resources.iter().map(|r| r.uri.as_str()).collect();
    assert!(
        uris.contains(&"fake://calc/identity") && uris.contains(&"fake://remote-fake/identity"),
        "{uris:?}"
    );
    assert_eq!(read("fake://calc/identity").await.unwrap(), "fake-calc");
    assert_eq!(
        read("fake://remote-fake/identity").await.unwrap(),
        "fake-remote-fake"
    );
    let everything = resources
        .iter()
        .find(|r| !r.uri.starts_with("fake://"))
        .expect("a resource of server-everything");
    let answer = client
        .read_resource(ReadResourceRequestParams::new(everything.uri.clone()))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&answer.contents).unwrap()[0]["uri"],
        json!(everything.uri)
    );
    // URIs made from templates, which no listing names: routed by the template.
    let templates = client.list_all_resource_templates().await.unwrap();
    assert!(
        templates
            .iter()
            .any(|t| t.uri_template == "fake://calc/echo/{text}"),
        "{templates:?}"
    );
    assert_eq!(read("fake://calc/echo/hi").await.unwrap(), "hi");
    assert_eq!(
        read("fake://remote-fake/echo/there").await.unwrap(),
        "there"
    );
    assert!(read("fake://nobody/identity").await.is_err());

    // The upstream HTTP session is lost: the next read on it is refused upstream and sent
    // again on a new session.
    http.fault(json!({"kind": "session-loss"})).await;
    assert_eq!(
        read("fake://remote-fake/identity").await.unwrap(),
        "fake-remote-fake"
    );
    // The upstream children die; the next reads are answered all the same.
    for pid in common::children(proxy.pid()) {
        common::signal(pid, "KILL");
    }
    assert_eq!(read("fake://calc/identity").await.unwrap(), "fake-calc");
    assert!(!client.is_transport_closed());
    client.cancel().await.unwrap();
}

/// The MCP endpoint issue, cancellation: a client's `notifications/cancelled` for a call in
/// flight through `/mcp` reaches the upstream server as its own `notifications/cancelled`
/// (the fake counts the call it stopped working on).
#[tokio::test(flavor = "multi_thread")]
async fn a_call_the_client_cancels_is_cancelled_upstream() {
    use rmcp::ServiceExt as _;
    use rmcp::model::{CallToolRequest, CallToolRequestParams, ClientRequest};
    use rmcp::service::PeerRequestOptions;
    use rmcp::transport::StreamableHttpClientTransport;
    use std::time::Duration;

    let fake = common::FakeHttp::start("cancel-mcp");
    let proxy = Proxy::start(
        &json!({"mcpServers": {"remote": {"type": "streamable-http", "url": fake.url}}}),
        &[],
    );
    proxy
        .wait_ok("/remote/openapi.json", Duration::from_secs(30))
        .await;
    let client =
        ().serve(StreamableHttpClientTransport::from_uri(proxy.url("/mcp")))
            .await
            .unwrap();
    assert_eq!(fake.stats().await["cancelled"], 0);
    let call = ClientRequest::CallToolRequest(CallToolRequest::new(
        CallToolRequestParams::new("remote__sleep")
            .with_arguments(json!({"ms": 20_000}).as_object().cloned().unwrap()),
    ));
    let handle = client
        .send_request_with_option(call, PeerRequestOptions::no_options())
        .await
        .unwrap();
    common::eventually(
        "the call is in flight upstream",
        Duration::from_secs(10),
        async || {
            let (_, diag) = proxy.get("/diagnostics").await;
            (diag["servers"]["remote"]["pool"]["members"][0]["in_flight"] == 1).then_some(())
        },
    )
    .await;
    handle
        .cancel(Some("the user stopped it".into()))
        .await
        .unwrap();
    common::eventually(
        "the upstream hears of it",
        Duration::from_secs(5),
        async || (fake.stats().await["cancelled"] == 1).then_some(()),
    )
    .await;
    client.cancel().await.unwrap();
}

/// Hears `notifications/progress`.
#[derive(Clone, Default)]
struct ProgressWatcher {
    heard: std::sync::Arc<std::sync::Mutex<Vec<rmcp::model::ProgressNotificationParam>>>,
}

impl rmcp::ClientHandler for ProgressWatcher {
    async fn on_progress(
        &self,
        params: rmcp::model::ProgressNotificationParam,
        _context: rmcp::service::NotificationContext<rmcp::RoleClient>,
    ) {
        self.heard.lock().unwrap().push(params);
    }
}

/// The MCP endpoint issue, progress: the upstream's `notifications/progress` for a call made
/// through `/mcp` reach the client under the client's own progress token, and keep the call
/// alive past the server's 1 s deadline (2.4 s of work in 6 steps).
#[tokio::test(flavor = "multi_thread")]
async fn upstream_progress_reaches_the_mcp_client_and_keeps_the_call_alive() {
    use rmcp::ServiceExt as _;
    use rmcp::model::{CallToolRequest, CallToolRequestParams, ClientRequest, ServerResult};
    use rmcp::service::PeerRequestOptions;
    use rmcp::transport::StreamableHttpClientTransport;
    use std::time::Duration;

    let mut server = stdio_fake("steps");
    server["timeout"] = json!(1);
    let proxy = Proxy::start(&json!({"mcpServers": {"steps": server}}), &[]);
    proxy
        .wait_ok("/steps/openapi.json", Duration::from_secs(30))
        .await;
    let watcher = ProgressWatcher::default();
    let client = watcher
        .clone()
        .serve(StreamableHttpClientTransport::from_uri(proxy.url("/mcp")))
        .await
        .unwrap();
    let call = ClientRequest::CallToolRequest(CallToolRequest::new(
        CallToolRequestParams::new("steps__progress").with_arguments(
            json!({"steps": 6, "every_ms": 400, "tag": "done"})
                .as_object()
                .cloned()
                .unwrap(),
        ),
    ));
    let handle = client
        .send_request_with_option(
            call,
            PeerRequestOptions::with_timeout(Duration::from_secs(20)).reset_timeout_on_progress(),
        )
        .await
        .unwrap();
    let token = handle.progress_token.clone();
    let answer = handle.await_response().await.unwrap();
    let ServerResult::CallToolResult(result) = answer else {
        panic!("not a tool result: {answer:?}");
    };
    assert_ne!(result.is_error, Some(true), "{result:?}");
    assert!(
        serde_json::to_string(&result.content)
            .unwrap()
            .contains("done"),
        "{result:?}"
    );
    let heard = watcher.heard.lock().unwrap().clone();
    assert!(heard.len() >= 5, "progress heard: {heard:?}");
    assert!(heard.iter().all(|p| p.progress_token == token), "{heard:?}");
    client.cancel().await.unwrap();
}

/// Issue 17, acceptance 1: the MCP conformance suite's server scenarios against `/mcp`, in front
/// of a stdio and a streamable-HTTP fake. The scenarios that need the suite's own fixtures, or
/// that the endpoint does not offer, are listed with their reasons in
/// `tests/it/conformance/baseline.yml`; the suite fails on any other failure and on a listed one
/// that passes. Seen failing with `logging/setLevel` unanswered (method not found).
#[tokio::test(flavor = "multi_thread")]
async fn the_mcp_conformance_suite_passes_but_for_the_listed_scenarios() {
    use std::time::Duration;

    let http = common::FakeHttp::start("h");
    let config = json!({"mcpServers": {
        "s": stdio_fake("s"),
        "h": {"type": "streamable-http", "url": http.url},
    }});
    let proxy = Proxy::start(&config, &[]);
    for server in ["s", "h"] {
        proxy
            .wait_ok(&format!("/{server}/openapi.json"), Duration::from_secs(30))
            .await;
    }
    let (node, suite) = common::conformance();
    let out_dir = common::tempdir::TempDir::new();
    let baseline = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/conformance/baseline.yml"
    );
    let url = proxy.url("/mcp");
    let run = tokio::task::spawn_blocking(move || {
        Command::new(node)
            .arg(suite)
            .args([
                "server",
                "--url",
                &url,
                "--expected-failures",
                baseline,
                "-o",
            ])
            .arg(out_dir.path())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "the conformance suite failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // The run really ran the scenarios that must pass.
    for scenario in [
        "server-initialize",
        "logging-set-level",
        "ping",
        "tools-list",
        "resources-list",
        "prompts-list",
        "dns-rebinding-protection",
    ] {
        assert!(
            stdout.contains(&format!("✓ {scenario}:")),
            "{scenario} did not pass:\n{stdout}"
        );
    }
}
