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
