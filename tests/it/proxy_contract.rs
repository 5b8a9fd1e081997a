//! The mcpo contract, checked against the real binary in front of real MCP servers:
//! `@modelcontextprotocol/server-everything` (stdio), `mcp-server-time` (stdio) and our fake
//! server over streamable HTTP and stdio.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{FakeHttp, Proxy, everything_stdio, mcpo_bin, openapi_validator, time_server};
use serde_json::{Value, json};

fn config(fake_url: &str) -> Value {
    let (ev_cmd, ev_args) = everything_stdio();
    let (time_cmd, time_args) = time_server();
    json!({"mcpServers": {
        "everything": {"command": ev_cmd, "args": ev_args},
        "time": {"command": time_cmd, "args": time_args},
        "fake": {"type": "streamable-http", "url": fake_url},
        "fakestdio": {"command": mcpo_bin(), "args": ["fake-server", "--transport", "stdio", "--id", "stdio"],
                      "disabledTools": ["slow"]}
    }})
}

async fn ready_proxy(extra: &[&str]) -> (Proxy, FakeHttp) {
    let fake = FakeHttp::start("http");
    let proxy = Proxy::start(&config(&fake.url), extra);
    for server in ["everything", "time", "fake", "fakestdio"] {
        proxy
            .wait_ok(&format!("/{server}/openapi.json"), Duration::from_secs(60))
            .await;
    }
    (proxy, fake)
}

/// The tool names a server lists, asked directly over MCP (not through the proxy).
async fn listed_tools(command: &str, args: &[String]) -> BTreeSet<String> {
    use rmcp::ServiceExt;
    let mut cmd = tokio::process::Command::new(command);
    cmd.args(args).stderr(std::process::Stdio::null());
    let transport = rmcp::transport::TokioChildProcess::new(cmd).unwrap();
    let client = ().serve(transport).await.unwrap();
    let tools = client.list_all_tools().await.unwrap();
    let _ = client.cancel().await;
    tools.into_iter().map(|t| t.name.to_string()).collect()
}

fn paths(doc: &Value) -> BTreeSet<String> {
    doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.trim_start_matches('/').to_string())
        .collect()
}

#[tokio::test]
async fn every_tool_has_a_route_and_answers_as_mcpo_does() {
    let (proxy, _fake) = ready_proxy(&[]).await;

    // Every tool the servers list has a route (and disabled ones do not).
    let (ev_cmd, ev_args) = everything_stdio();
    let (time_cmd, time_args) = time_server();
    for (server, expected) in [
        ("everything", listed_tools(&ev_cmd, &ev_args).await),
        ("time", listed_tools(&time_cmd, &time_args).await),
    ] {
        let (_, doc) = proxy.get(&format!("/{server}/openapi.json")).await;
        assert_eq!(paths(&doc), expected, "routes of {server}");
    }
    let fake_tools: BTreeSet<String> = mcpo::fake::tool_definitions()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    let (_, doc) = proxy.get("/fake/openapi.json").await;
    assert_eq!(paths(&doc), fake_tools);
    let (_, doc) = proxy.get("/fakestdio/openapi.json").await;
    let mut without_slow = fake_tools.clone();
    without_slow.remove("slow");
    assert_eq!(paths(&doc), without_slow, "disabledTools hides `slow`");
    let (status, _) = proxy.post("/fakestdio/slow", json!({"ms": 1})).await;
    assert_eq!(status, 404);

    // Text is returned bare.
    let (status, body) = proxy
        .post("/everything/echo", json!({"message": "hi"}))
        .await;
    assert_eq!((status, body), (200, json!("Echo: hi")));
    let (status, body) = proxy
        .post("/everything/get-sum", json!({"a": 2, "b": 3}))
        .await;
    assert_eq!((status, body), (200, json!("The sum of 2 and 3 is 5.")));

    // Images become data URIs; several items become a list.
    let (status, body) = proxy.post("/everything/get-tiny-image", json!({})).await;
    assert_eq!(status, 200);
    let items = body.as_array().expect("several items");
    assert!(
        items.iter().any(|i| i
            .as_str()
            .is_some_and(|s| s.starts_with("data:image/png;base64,"))),
        "{body}"
    );

    // structuredContent when the tool declares an outputSchema.
    let (status, body) = proxy
        .post(
            "/everything/get-structured-content",
            json!({"location": "Chicago"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["conditions"], "Light rain / drizzle");
    assert!(
        body["temperature"].is_number() && body["humidity"].is_number(),
        "{body}"
    );

    // Embedded resources come through (mcpo answers "Embedded resource not supported yet.").
    let (status, body) = proxy
        .post(
            "/everything/get-resource-reference",
            json!({"resourceType": "Text", "resourceId": 1}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let resource = body
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i.get("uri").is_some())
        .unwrap_or_else(|| panic!("no resource in {body}"));
    assert!(
        resource["uri"].as_str().unwrap().contains("1"),
        "{resource}"
    );
    assert!(resource.get("text").is_some() || resource.get("blob").is_some());

    // Resource links come through (mcpo drops them).
    let (status, body) = proxy
        .post("/everything/get-resource-links", json!({"count": 2}))
        .await;
    assert_eq!(status, 200);
    let links: Vec<_> = body
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "resource_link")
        .collect();
    assert_eq!(links.len(), 2, "{body}");
    assert!(links.iter().all(|l| l["uri"].is_string()));

    // JSON text is parsed.
    let (status, body) = proxy
        .post("/time/get_current_time", json!({"timezone": "UTC"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["timezone"], "UTC", "{body}");
    assert!(
        body["datetime"].as_str().is_some_and(|d| d.len() >= 19),
        "{body}"
    );

    // The fake over streamable HTTP and over stdio.
    let (status, body) = proxy.post("/fake/add", json!({"a": 40, "b": 2})).await;
    assert_eq!((status, body), (200, json!(42)));
    let (status, body) = proxy
        .post("/fakestdio/stats", json!({"numbers": [1, 2, 3]}))
        .await;
    assert_eq!(
        (status, body),
        (200, json!({"count": 3, "sum": 6.0, "mean": 2.0}))
    );
    let (status, body) = proxy
        .post(
            "/fake/measure_shape",
            json!({"shape": {"kind": "rectangle", "width": 2, "height": 3}, "unit": "m"}),
        )
        .await;
    assert_eq!((status, body), (200, json!({"area": 6.0, "unit": "m^2"})));
}

#[tokio::test]
async fn bad_requests_and_upstream_errors_map_like_mcpo() {
    let (proxy, _fake) = ready_proxy(&[]).await;

    // Missing field.
    let (status, body) = proxy.post("/time/get_current_time", json!({})).await;
    assert_eq!(status, 422);
    assert_eq!(
        body,
        json!({"detail": [{"type": "missing", "loc": ["body", "timezone"], "msg": "Field required", "input": {}}]})
    );
    // Wrong type.
    let (status, body) = proxy
        .post("/everything/get-sum", json!({"a": "two", "b": 3}))
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "a"]));
    assert_eq!(body["detail"][0]["type"], "float_type");
    // An enum is enforced.
    let (status, body) = proxy
        .post(
            "/everything/get-annotated-message",
            json!({"messageType": "loud"}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["type"], "enum");
    // A oneOf of $defs is enforced.
    let (status, body) = proxy
        .post(
            "/fake/measure_shape",
            json!({"shape": {"kind": "circle", "width": 1}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    // Broken JSON.
    let r = proxy
        .client
        .post(proxy.url("/fake/echo"))
        .header("content-type", "application/json")
        .body("{\"message\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["detail"][0]["type"], "json_invalid");
    assert_eq!(body["detail"][0]["loc"][0], "body");
    // No body for a tool that needs arguments.
    let r = proxy
        .client
        .post(proxy.url("/fake/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    // No body for a tool without arguments is fine.
    let r = proxy
        .client
        .post(proxy.url("/everything/get-tiny-image"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // Unknown server, unknown tool, unknown path: 404 with a JSON body.
    for path in ["/nope/echo", "/fake/nope", "/nope"] {
        let (status, body) = proxy.post(path, json!({})).await;
        assert_eq!(status, 404, "{path}");
        assert!(body["detail"].is_string(), "{path}: {body}");
    }

    // A tool error is a 500 with the tool's own text.
    let (status, body) = proxy
        .post("/fake/fail", json!({"message": "disk is full"}))
        .await;
    assert_eq!(
        (status, body),
        (500, json!({"detail": {"message": "disk is full"}}))
    );

    // JSON-RPC errors by code.
    for (code, expected) in [
        (-32700, 400),
        (-32600, 400),
        (-32601, 404),
        (-32602, 422),
        (-32603, 500),
        (-32000, 500),
    ] {
        let (status, body) = proxy
            .post(
                "/fake/jsonrpc_error",
                json!({"code": code, "message": "nope", "data": {"why": code}}),
            )
            .await;
        assert_eq!(status, expected, "code {code}: {body}");
        assert_eq!(body["detail"]["message"], "nope");
        assert_eq!(body["detail"]["data"], json!({"why": code}));
    }
}

#[tokio::test]
async fn openapi_is_valid_and_lossless() {
    let (proxy, _fake) = ready_proxy(&[]).await;
    let dir = common::tempdir::TempDir::new();
    for server in ["everything", "time", "fake"] {
        let (_, doc) = proxy.get(&format!("/{server}/openapi.json")).await;
        assert_eq!(doc["openapi"], "3.1.0");
        let file = dir.path().join(format!("{server}.json"));
        std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
        let out = std::process::Command::new(openapi_validator())
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{server}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Every $ref is one a client such as Open WebUI resolves.
        let text = doc.to_string();
        for (i, _) in text.match_indices("\"$ref\":\"") {
            let rest = &text[i + 8..];
            let target = &rest[..rest.find('"').unwrap()];
            let name = target
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{target}"));
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "{target} missing"
            );
        }
    }

    let (_, doc) = proxy.get("/everything/openapi.json").await;
    let op = &doc["paths"]["/get-annotated-message"]["post"];
    assert_eq!(op["operationId"], "tool_get_annotated_message_post");
    assert_eq!(op["summary"], "Get-Annotated-Message");
    let schema = &op["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(
        schema["properties"]["messageType"]["enum"],
        json!(["error", "success", "debug"])
    );
    assert_eq!(
        doc["paths"]["/get-structured-content"]["post"]["responses"]["200"]["content"]["application/json"]
            ["schema"]["properties"]["temperature"]["type"],
        "number"
    );

    let (_, doc) = proxy.get("/time/openapi.json").await;
    assert_eq!(
        doc["paths"]["/get_current_time"]["post"]["operationId"],
        "tool_get_current_time_post"
    );
    assert_eq!(
        doc["paths"]["/get_current_time"]["post"]["summary"],
        "Get Current Time"
    );
    assert_eq!(doc["info"]["title"], "mcp-time");

    // Every $defs shape of the fake server survives, with its constraints.
    let (_, doc) = proxy.get("/fake/openapi.json").await;
    let schemas = &doc["components"]["schemas"];
    let def = |suffix: &str| -> Value {
        schemas
            .as_object()
            .unwrap()
            .iter()
            .find(|(k, _)| k.starts_with("measure_shape_input") && k.ends_with(suffix))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no component for {suffix} in {schemas}"))
    };
    let original = mcpo::fake::tool_definitions();
    let original_defs = &original
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "measure_shape")
        .unwrap()["inputSchema"]["$defs"];
    assert_eq!(def("Unit"), original_defs["Unit"]);
    assert_eq!(def("Circle"), original_defs["Circle"]);
    assert_eq!(def("Rectangle"), original_defs["Rectangle"]);
    let shape = &doc["paths"]["/measure_shape"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"]["properties"]["shape"];
    assert_eq!(shape["oneOf"].as_array().unwrap().len(), 2);
    let stats_out = &doc["paths"]["/stats"]["post"]["responses"]["200"]["content"]["application/json"]
        ["schema"];
    assert_eq!(stats_out["required"], json!(["count", "sum", "mean"]));

    // The root document links every server's docs, and docs pages work offline.
    let (_, root) = proxy.get("/openapi.json").await;
    let description = root["info"]["description"].as_str().unwrap();
    for server in ["everything", "time", "fake", "fakestdio"] {
        assert!(
            description.contains(&format!("/{server}/docs")),
            "{description}"
        );
    }
    for page in ["/docs", "/fake/docs"] {
        let html = proxy
            .client
            .get(proxy.url(page))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(html.contains("swagger-ui-bundle.js"), "{page}");
        assert!(
            !html.contains("cdn.") && !html.contains("https://"),
            "{page} links outside: {html}"
        );
    }
    let js = proxy
        .client
        .get(proxy.url("/_assets/swagger-ui/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status().as_u16(), 200);
    assert!(js.bytes().await.unwrap().len() > 100_000);
}

#[tokio::test]
async fn api_key_guards_tools_and_preflight_passes() {
    let fake = FakeHttp::start("auth");
    let config = json!({"mcpServers": {"fake": {"type": "streamable-http", "url": fake.url}}});
    let proxy = Proxy::start(&config, &["--api-key", "top-secret"]);
    proxy
        .wait_ok("/fake/openapi.json", Duration::from_secs(30))
        .await;
    let url = proxy.url("/fake/echo");
    let body = json!({"message": "x"});

    let r = proxy.client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = proxy
        .client
        .post(&url)
        .bearer_auth("wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"detail": "Invalid API key"})
    );
    let r = proxy
        .client
        .post(&url)
        .bearer_auth("top-secret")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = proxy
        .client
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "http://example.test")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers().contains_key("access-control-allow-origin"));
    // Browsers never let the wildcard `*` cover `Authorization`: the answer must name it, or
    // a page on another origin (Open WebUI's per-user tool servers) cannot send the key.
    let allowed = r
        .headers()
        .get("access-control-allow-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        allowed.split(',').any(|h| h.trim() == "authorization"),
        "allowed headers: {allowed:?}"
    );
    // Without --strict-auth the docs stay open; the OpenAPI documents the bearer scheme.
    let (status, doc) = proxy.get("/fake/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(
        doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"],
        "bearer"
    );

    let strict = Proxy::start(&config, &["--api-key", "top-secret", "--strict-auth"]);
    let (status, _) = strict.get("/fake/openapi.json").await;
    assert_eq!(status, 401);
    let r = strict
        .client
        .get(strict.url("/docs"))
        .basic_auth("anyone", Some("top-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // A kubelet's probe carries no key: under --strict-auth liveness and readiness stay open,
    // but which server is down, and why, is for the key's holder only.
    let strict = Proxy::start(
        &json!({"mcpServers": {
            "fake": {"command": mcpo_bin(), "args": ["fake-server"]},
            "missing": {"command": "/nonexistent/secret-path-server"}
        }}),
        &["--api-key", "top-secret", "--strict-auth"],
    );
    let (status, _) = strict.get("/healthz").await;
    assert_eq!(status, 200);
    let r = strict
        .client
        .get(strict.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let text = r.text().await.unwrap();
    assert!(
        !text.contains("missing") && !text.contains("secret-path"),
        "{text}"
    );
    let r = strict
        .client
        .get(strict.url("/readyz"))
        .bearer_auth("top-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.text().await.unwrap().contains("missing"));
}

#[tokio::test]
async fn client_headers_are_forwarded_in_meta_as_configured() {
    let config = json!({"mcpServers": {
        "open": {"command": mcpo_bin(), "args": ["fake-server"],
                 "client_header_forwarding": {"enabled": true, "whitelist": ["X-User-*"], "blacklist": ["x-user-secret"]}},
        "closed": {"command": mcpo_bin(), "args": ["fake-server"]}
    }});
    let proxy = Proxy::start(&config, &[]);
    proxy
        .wait_ok("/open/openapi.json", Duration::from_secs(30))
        .await;
    proxy
        .wait_ok("/closed/openapi.json", Duration::from_secs(30))
        .await;
    let call = |server: &str| {
        proxy
            .client
            .post(proxy.url(&format!("/{server}/request_meta")))
            .header("X-User-Id", "u-42")
            .header("X-User-Secret", "s")
            .header("Cookie", "c=1")
            .send()
    };
    let body: Value = call("open").await.unwrap().json().await.unwrap();
    assert_eq!(body["headers"], json!({"x-user-id": "u-42"}), "{body}");
    let body: Value = call("closed").await.unwrap().json().await.unwrap();
    assert!(
        body.get("headers").is_none(),
        "forwarding is off by default: {body}"
    );
}

#[tokio::test]
async fn single_server_mode_serves_tools_at_the_root() {
    let proxy = Proxy::start_args(
        &["--", mcpo_bin(), "fake-server", "--transport", "stdio"],
        &[],
    );
    proxy
        .wait_ok("/openapi.json", Duration::from_secs(30))
        .await;
    let (status, body) = proxy.post("/echo", json!({"message": "root"})).await;
    assert_eq!((status, body), (200, json!("root")));
    let (_, doc) = proxy.get("/openapi.json").await;
    assert!(doc["paths"]["/add"]["post"].is_object());
}

#[tokio::test]
async fn path_prefix_root_path_and_env_flags_apply() {
    let (ev_cmd, ev_args) = everything_stdio();
    let config = json!({"mcpServers": {
        "everything": {"command": ev_cmd, "args": ev_args, "env": {"MCPO_TEST_B": "from-config"}}
    }});
    let proxy = Proxy::start(
        &config,
        &[
            "--path-prefix",
            "/api",
            "--root-path",
            "/behind",
            "-e",
            "MCPO_TEST_A=from-flag",
            "-e",
            "MCPO_TEST_B=flag-loses",
        ],
    );
    let doc = proxy
        .wait_ok("/api/everything/openapi.json", Duration::from_secs(60))
        .await;
    // Clients behind the reverse proxy reach the routes under the root path.
    assert_eq!(doc["servers"][0]["url"], "/behind/api/everything");
    let (status, _) = proxy.get("/everything/openapi.json").await;
    assert_eq!(status, 404, "servers live under the prefix only");
    let (status, body) = proxy.post("/api/everything/get-env", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let env = if body.is_string() {
        serde_json::from_str::<Value>(body.as_str().unwrap()).unwrap()
    } else {
        body
    };
    assert_eq!(env["MCPO_TEST_A"], "from-flag");
    assert_eq!(
        env["MCPO_TEST_B"], "from-config",
        "a server's own env wins over --env"
    );
    let (_, root) = proxy.get("/openapi.json").await;
    assert!(
        root["info"]["description"]
            .as_str()
            .unwrap()
            .contains("/behind/api/everything/docs")
    );
}

#[tokio::test]
async fn tool_list_changes_refresh_routes_and_openapi() {
    // rmcp 3.11's handshake settles on 2025-11-25 (the newest version with `initialize`);
    // 2026-07-28 sessions take the `subscriptions/listen` path in `upstream::session`.
    tool_list_changes_on(&["fake-server", "--id", "lists"], "2025-11-25").await;
}

async fn tool_list_changes_on(args: &[&str], protocol: &str) {
    let config = json!({"mcpServers": {"fake": {"command": mcpo_bin(), "args": args}}});
    let proxy = Proxy::start(&config, &[]);
    proxy
        .wait_ok("/fake/openapi.json", Duration::from_secs(30))
        .await;
    let (_, diag) = proxy.get("/diagnostics").await;
    assert_eq!(
        diag["servers"]["fake"]["server_info"]["protocol_version"], protocol,
        "{diag}"
    );
    let doc = proxy
        .wait_ok("/fake/openapi.json", Duration::from_secs(30))
        .await;
    assert!(doc["paths"].get("/bonus").is_none());
    let (status, _) = proxy.post("/fake/bonus", json!({})).await;
    assert_eq!(status, 404);

    let proxy = &proxy;
    let wait_for = |listed: bool| async move {
        let start = std::time::Instant::now();
        loop {
            let (_, doc) = proxy.get("/fake/openapi.json").await;
            if doc["paths"].get("/bonus").is_some() == listed {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the route never {}",
                if listed { "appeared" } else { "went away" }
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (status, body) = proxy.post("/fake/toggle_bonus", json!({})).await;
    assert_eq!((status, body), (200, json!("bonus listed")));
    wait_for(true).await;
    let (status, body) = proxy.post("/fake/bonus", json!({})).await;
    assert_eq!((status, body), (200, json!("bonus")));

    let (status, _) = proxy.post("/fake/toggle_bonus", json!({})).await;
    assert_eq!(status, 200);
    wait_for(false).await;
    let (status, _) = proxy.post("/fake/bonus", json!({})).await;
    assert_eq!(status, 404);
}

/// pydantic's lax mode, which mcpo users rely on: `2.0` for an integer is accepted and sent as
/// `2` (the fake, like many servers, reads integers strictly), `"5"` is accepted as 5.
#[tokio::test]
async fn whole_floats_and_numeric_strings_reach_the_server_as_integers() {
    let config = json!({"mcpServers": {"fake": common::stdio_fake("lax")}});
    let proxy = Proxy::start(&config, &[]);
    proxy
        .wait_ok("/fake/openapi.json", Duration::from_secs(30))
        .await;
    let (status, body) = proxy.post("/fake/add", json!({"a": 2.0, "b": 3})).await;
    assert_eq!((status, body), (200, json!(5)));
    let (status, body) = proxy.post("/fake/add", json!({"a": "5", "b": 1.0})).await;
    assert_eq!((status, body), (200, json!(6)));
    let (status, _) = proxy.post("/fake/add", json!({"a": 2.5, "b": 1})).await;
    assert_eq!(status, 422, "a fraction is not an integer");
}
