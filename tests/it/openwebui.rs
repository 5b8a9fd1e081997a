//! Open WebUI, the front end most users put in front of the proxy, reads each server's
//! `openapi.json`, turns every operation into a function for the model, and calls it. This runs
//! Open WebUI's own code for that (from its wheel, `tests/it/openwebui_tools.py`) against the
//! proxy, with the API key, on the bundled fake and on `mcp-server-time`.

use crate::common;

use std::process::Command;

use common::{Proxy, stdio_fake, tempdir::TempDir, time_server, venv_python};
use serde_json::{Value, json};

fn open_webui_wheel() -> std::path::PathBuf {
    let dir = common::deps_dir().join("wheels");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (run .ci/install-deps)", dir.display()))
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("open_webui-"))
        })
        .expect("the Open WebUI wheel in .deps/wheels (run .ci/install-deps)")
}

#[tokio::test(flavor = "multi_thread")]
async fn open_webui_converts_every_tool_and_calls_it_through_the_proxy() {
    let (time_cmd, time_args) = time_server();
    let mut calc = stdio_fake("calc");
    // These two change the fake's own tool list: not what this test is about.
    calc["disabledTools"] = json!(["toggle_bonus", "announce_then_freeze"]);
    let config = json!({"mcpServers": {
        "calc": calc,
        "time": {"command": time_cmd, "args": time_args},
    }});
    let proxy = Proxy::start(&config, &["--api-key", "owui-key"]);
    let (calc, time) = (proxy.url("/calc"), proxy.url("/time"));
    // What the model would send: unique values, so that an answer cannot be a coincidence.
    let spec = json!({
        "servers": [{"url": calc, "key": "owui-key"}, {"url": time, "key": "owui-key"}],
        "arguments": {
            "tool_echo_post": {"message": "from open webui 7f3a"},
            "tool_add_post": {"a": 40, "b": 2},
            "tool_get_current_time_post": {"timezone": "Europe/Paris"},
            "tool_convert_time_post": {"source_timezone": "UTC", "time": "12:00",
                                       "target_timezone": "Asia/Tokyo"},
            "tool_fail_post": {"message": "planned failure 91c2"},
        }
    });
    let dir = TempDir::new();
    let spec_path = dir.path().join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let out = Command::new(venv_python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/it/openwebui_tools.py"
        ))
        .arg(open_webui_wheel())
        .arg(&spec_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "Open WebUI's code failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();

    for (url, server) in [(&calc, "calc"), (&time, "time")] {
        // Every route of the proxy's document is one function for the model, named by its
        // operationId, with a parameter schema Open WebUI could resolve fully.
        let doc: Value = proxy
            .client
            .get(format!("{url}/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ops: Vec<String> = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(|m| m["post"]["operationId"].as_str().map(String::from))
            .collect();
        let tools = report[url.as_str()].as_object().unwrap();
        assert!(!ops.is_empty(), "{server}: no operations");
        let mut names: Vec<&String> = tools.keys().collect();
        names.sort();
        let mut expected: Vec<&String> = ops.iter().collect();
        expected.sort();
        assert_eq!(names, expected, "{server}: functions the model gets");
        for (name, tool) in tools {
            let params = tool["payload"]["parameters"].to_string();
            assert!(
                !params.contains("$ref"),
                "{server}/{name}: a $ref Open WebUI could not resolve: {params}"
            );
            assert!(
                tool["payload"]["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{server}/{name}: no description for the model"
            );
            let answer = &tool["answer"];
            let failed = answer.get("error").is_some();
            if name == "tool_fail_post" {
                // A tool error reaches the model as an error carrying the tool's own text.
                assert!(failed, "{name}: {answer}");
                assert!(
                    answer["error"]
                        .as_str()
                        .unwrap()
                        .contains("planned failure 91c2")
                );
            } else if name == "tool_jsonrpc_error_post" {
                // The fake answers this one with a JSON-RPC error, whatever it is sent.
                assert!(failed, "{name}: {answer}");
                assert!(answer["error"].as_str().unwrap().starts_with("HTTP error "));
            } else {
                assert!(
                    !failed,
                    "{server}/{name} failed through Open WebUI: {answer}"
                );
            }
        }
    }
    let calc_tools = &report[calc.as_str()];
    assert_eq!(
        calc_tools["tool_echo_post"]["answer"],
        "from open webui 7f3a"
    );
    assert_eq!(calc_tools["tool_add_post"]["answer"], 42);
    let now = &report[time.as_str()]["tool_get_current_time_post"]["answer"];
    assert_eq!(now["timezone"], "Europe/Paris", "{now}");
    let converted = &report[time.as_str()]["tool_convert_time_post"]["answer"];
    assert!(
        converted["target"]["datetime"]
            .as_str()
            .is_some_and(|t| t.contains("T21:00")),
        "{converted}"
    );
}

/// The MCP endpoint issue, acceptance 2: Open WebUI's native MCP client (its own
/// `utils/mcp/client.py`, from the wheel, on the official Python SDK in its default `auto`
/// mode) lists and calls tools through `/mcp` and `/{server}/mcp`, on protocol 2026-07-28, of
/// three servers (stdio, streamable HTTP, legacy SSE), and keeps working on the same client
/// while the stdio child behind it is SIGKILLed and the HTTP server forgets its sessions. Seen
/// failing before results carried `resultType` ("ListToolsResult resultType: Field required").
#[tokio::test(flavor = "multi_thread")]
async fn open_webui_native_mcp_client_works_through_the_endpoint_across_a_crash() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;

    let http = common::FakeHttp::start("web");
    let sse = common::FakeHttp::start_sse("old", 0, &[]);
    let proxy = Proxy::start(
        &json!({"mcpServers": {
            "calc": stdio_fake("calc"),
            "web": {"type": "streamable-http", "url": http.url},
            "old": {"type": "sse", "url": sse.url},
        }}),
        &["--api-key", "owui-key"],
    );
    for server in ["calc", "web", "old"] {
        proxy
            .wait_ok(
                &format!("/{server}/openapi.json"),
                std::time::Duration::from_secs(30),
            )
            .await;
    }
    for (path, prefix, others) in [
        ("/mcp", "calc__", &["web__", "old__"][..]),
        ("/calc/mcp", "", &[][..]),
    ] {
        let mut client = Command::new(venv_python())
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/it/openwebui_mcp.py"
            ))
            .arg(open_webui_wheel())
            .args([&proxy.url(path), "owui-key", prefix])
            .args(others)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(client.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        if line.trim() != "PAUSED" {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut client.stderr.take().unwrap(), &mut err).unwrap();
            panic!("{path}: the client did not get through its first call: {line}{err}");
        }
        let killed = common::children(proxy.pid());
        assert_eq!(killed.len(), 1, "one upstream child: {killed:?}");
        common::signal(killed[0], "KILL");
        http.fault(json!({"kind": "session-loss"})).await;
        writeln!(client.stdin.take().unwrap(), "go").unwrap();
        line.clear();
        out.read_line(&mut line).unwrap();
        assert!(client.wait().unwrap().success(), "{path}: {line}");
        let report: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(report["protocol"], "2026-07-28", "{path}: {report}");
        let tools = report["tools"].as_array().unwrap();
        assert!(
            tools.contains(&json!(format!("{prefix}echo"))),
            "{path}: {report}"
        );
        for other in others {
            assert!(
                tools.contains(&json!(format!("{other}echo"))),
                "{path}: {report}"
            );
            assert_eq!(report[other], format!("to {other}"), "{path}: {report}");
        }
        assert_eq!(report["first"], "before 7c2a", "{path}: {report}");
        assert_eq!(report["after"], "after 7c2a", "{path}: {report}");
        assert_eq!(report["add"], "42", "{path}: {report}");
        assert_eq!(report["next"], "next message", "{path}: {report}");
        assert!(report.get("errors").is_none(), "{path}: {report}");
        assert_ne!(
            common::children(proxy.pid()),
            killed,
            "{path}: not replaced"
        );
    }
    // The fake's own streamable HTTP satisfies the same client (the chaos harness and the
    // tests put it behind the proxy; people also point clients at it).
    let fake = common::FakeHttp::start("direct");
    let mut client = Command::new(venv_python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/it/openwebui_mcp.py"
        ))
        .arg(open_webui_wheel())
        .args([fake.url.as_str(), "unused", ""])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(client.stdin.take().unwrap(), "go").unwrap();
    let out = client.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(text.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("the fake direct: {e}: {text}"));
    assert_eq!(report["protocol"], "2026-07-28", "{report}");
    assert_eq!(report["add"], "42", "{report}");
    assert!(report.get("errors").is_none(), "{report}");
}
