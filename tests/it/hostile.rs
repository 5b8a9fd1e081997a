//! The hostile-input issue: upstreams and clients that try to take the proxy down, each tried
//! from outside against the real binary. Every test here failed on the code before its fix.

use crate::common;

use std::time::Duration;

use common::{Proxy, mcpo_bin, tempdir::TempDir};
use serde_json::{Value, json};

/// A chain of `n` definitions, each a `$ref` to the next under `nest` levels of `allOf`.
fn ref_chain(n: usize, nest: usize) -> Value {
    let mut defs = serde_json::Map::new();
    for i in 0..n {
        let mut inner = if i + 1 < n {
            json!({"$ref": format!("#/$defs/d{}", i + 1)})
        } else {
            json!({"type": "string"})
        };
        for _ in 0..nest {
            inner = json!({"allOf": [inner]});
        }
        defs.insert(format!("d{i}"), inner);
    }
    json!({"type": "object", "properties": {"x": {"$ref": "#/$defs/d0"}}, "$defs": defs})
}

/// A config with one stdio fake, `evil`, that also lists the tools in `extra`.
fn evil_config(dir: &TempDir, extra: &Value) -> Value {
    let path = dir.path().join("extra-tools.json");
    std::fs::write(&path, serde_json::to_vec(extra).unwrap()).unwrap();
    json!({"mcpServers": {"evil": {"command": mcpo_bin(), "args": [
        "fake-server", "--transport", "stdio", "--id", "evil",
        "--extra-tools", path.display().to_string()]}}})
}

/// Finding 1: a tool whose input schema is a chain of 20,000 `$ref`s made one `POST
/// /evil/chain` overflow a worker's stack in validation: "fatal runtime error: stack overflow,
/// aborting", every server down with it. Now the tool is withheld (named in `/diagnostics`),
/// the server's other tools are served, and a recursive schema that is within the bounds is
/// validated however deep the client nests its arguments (on a thread with a big stack).
#[tokio::test]
async fn finding_1_a_ref_chain_is_withheld_and_the_rest_is_served() {
    let dir = TempDir::new();
    // A tree: each node's `kids` are nodes, through a chain of 40 definitions.
    let mut tree = ref_chain(40, 5);
    tree["$defs"]["d39"] = json!({"type": "object", "properties": {"x": {"$ref": "#/$defs/d0"}}});
    let extra = json!([
        {"name": "chain", "inputSchema": ref_chain(20_000, 0)},
        {"name": "reaching", "inputSchema": ref_chain(200, 10)},
        {"name": "tree", "inputSchema": tree},
    ]);
    let proxy = Proxy::start(&evil_config(&dir, &extra), &[]);
    let doc = proxy
        .wait_ok("/evil/openapi.json", Duration::from_secs(30))
        .await;
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.contains_key("/echo") && paths.contains_key("/tree"));
    assert!(!paths.contains_key("/chain") && !paths.contains_key("/reaching"));

    for tool in ["chain", "reaching"] {
        let (status, body) = proxy
            .post(&format!("/evil/{tool}"), json!({"x": "a"}))
            .await;
        assert_eq!(status, 404, "{tool}: {body}");
    }
    // As deep as serde_json lets a body nest: 120 levels of the tree's recursion.
    let mut deep = json!("leaf");
    for _ in 0..120 {
        deep = json!({ "x": deep });
    }
    let (status, body) = proxy.post("/evil/tree", deep).await;
    // The fake does not implement `tree`, so it answers with an error; what matters is that
    // the proxy validated (the leaf is not an object: 422) and is still there.
    assert_eq!(status, 422, "{body}");
    let (status, body) = proxy.post("/evil/echo", json!({"message": "hi"})).await;
    assert_eq!((status, body.as_str()), (200, Some("hi")), "{body}");

    let (_, diagnostics) = proxy.get("/diagnostics").await;
    let issues = diagnostics["issues"].to_string();
    assert!(
        issues.contains("tool 'chain' of server 'evil' is withheld")
            && issues.contains("more than 256 schema references")
            && issues.contains("tool 'reaching' of server 'evil' is withheld")
            && issues.contains("levels deep through nesting and $ref chains"),
        "{issues}"
    );
}

/// Finding 1, as a property: hostile listings (deep, wide, cyclic through keywords that descend
/// into the instance or not, long `$ref` chains, references to the root) go through what the
/// proxy does with a listing (the catalog's bounds and compiled validators, the OpenAPI
/// conversion, validation of deep arguments on the stack the proxy picks for them) on threads
/// with the stack of a tokio worker (2 MiB). A stack overflow aborts this test binary; an
/// answer over the limits fails the property. The budget is fixed (cases below).
#[test]
fn hostile_listings_never_overflow_a_stack() {
    use mcpo::bounds::{BIG_STACK, value_depth};
    use mcpo::catalog::{Listing, ListingLimits, ServerIdentity, ToolCatalog, ValidationStack};
    use mcpo::http::validate::{MAX_ERRORS, validate_lax};
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    const WORKER_STACK: usize = 2 * 1024 * 1024;
    let defs = 1usize..40;
    let leaf = prop_oneof![
        Just(json!({"type": "string"})),
        Just(json!({"type": "object"})),
        Just(json!({})),
        Just(json!({"$ref": "#"})),
        (0usize..40).prop_map(|k| json!({"$ref": format!("#/$defs/d{k}")})),
        (0usize..40).prop_map(|k| json!({"$ref": format!("#/$defs/d{k}/properties/x")})),
    ];
    let schema = leaf.prop_recursive(6, 48, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(|v| json!({"allOf": v})),
            prop::collection::vec(inner.clone(), 1..4).prop_map(|v| json!({"anyOf": v})),
            inner.clone().prop_map(|s| json!({"not": s})),
            inner
                .clone()
                .prop_map(|s| json!({"type": "object", "properties": {"x": s}})),
            inner.clone().prop_map(|s| json!({"items": s})),
            (inner.clone(), inner).prop_map(|(a, b)| json!({"if": a, "then": b})),
        ]
    });
    let document = (
        prop::collection::vec(schema.clone(), defs),
        schema,
        0usize..80,
        prop::option::of((2usize..120, 0usize..8, any::<bool>())),
    )
        .prop_map(|(defs, root, wrap, chain)| {
            let mut root = match chain {
                // A chain, or a tree whose recursion runs through the whole chain.
                Some((n, nest, tree)) => {
                    let mut chain = ref_chain(n, nest);
                    if tree {
                        chain["$defs"][format!("d{}", n - 1)] = json!({"type": "object",
                            "properties": {"x": {"$ref": "#/$defs/d0"}}});
                    }
                    chain
                }
                None => {
                    let mut map = serde_json::Map::new();
                    for (i, d) in defs.into_iter().enumerate() {
                        map.insert(format!("d{i}"), d);
                    }
                    json!({"type": "object", "properties": {"x": root}, "$defs": map})
                }
            };
            // `$defs` stays at the root, where the `#/$defs/...` references land.
            let defs = root.as_object_mut().and_then(|m| m.remove("$defs"));
            for _ in 0..wrap {
                root = json!({"allOf": [root]});
            }
            if let Some(defs) = defs {
                root["$defs"] = defs;
            }
            root
        });
    let instance = (1usize..120, prop::bool::weighted(0.25)).prop_map(|(depth, arrays)| {
        let mut v = json!("leaf");
        for i in 0..depth {
            v = if arrays && i % 2 == 0 {
                json!([v])
            } else {
                json!({ "x": v })
            };
        }
        v
    });

    let mut runner = TestRunner::new(Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&(document, instance), |(schema, instance)| {
            let listing = Listing {
                tools: vec![json!({"name": "t", "inputSchema": schema})],
                beyond_limit: 0,
            };
            let worker = std::thread::Builder::new().stack_size(WORKER_STACK);
            let served = worker
                .spawn(move || {
                    let catalog = ToolCatalog::new(
                        ServerIdentity::default(),
                        listing,
                        &Default::default(),
                        ListingLimits::default(),
                    );
                    let tool = catalog.tool("t").cloned();
                    if let Some(tool) = &tool {
                        let mut components = serde_json::Map::new();
                        mcpo::openapi::schema::convert_schema(
                            &tool.input_schema,
                            "t",
                            &mut components,
                        );
                    }
                    tool
                })
                .unwrap()
                .join()
                .unwrap();
            let Some(tool) = served else {
                return Ok(()); // Withheld: nothing recursive touches it.
            };
            let stack = match tool.validation_stack(|| value_depth(&instance)) {
                ValidationStack::Refused => return Ok(()),
                ValidationStack::Inline => WORKER_STACK,
                ValidationStack::Deep => BIG_STACK,
            };
            let errors = std::thread::Builder::new()
                .stack_size(stack)
                .spawn(move || {
                    let mut instance = instance;
                    let values = 1_000;
                    match &tool.validator {
                        Some(v) => validate_lax(v, &mut instance, values).len(),
                        None => 0,
                    }
                })
                .unwrap()
                .join()
                .unwrap();
            prop_assert!(errors <= MAX_ERRORS + 1, "{errors} errors listed");
            Ok(())
        })
        .unwrap();
}

/// Finding 6: a server that listed 100,000 tools took the proxy's RSS to 214 MB, and one
/// unauthenticated `GET /evil/openapi.json` took 8 s of CPU on an async worker, answered 170 MB
/// and left RSS at 1.59 GB. Now the first `--max-tools` (1,000) are served, the rest withheld
/// and counted in `/diagnostics`, and the document is built off the async workers.
#[tokio::test]
async fn finding_6_a_huge_listing_is_capped() {
    let dir = TempDir::new();
    let extra: Vec<Value> = (0..100_000)
        .map(|i| {
            json!({"name": format!("t{i}"), "description": "one of very many",
                   "inputSchema": {"type": "object", "properties": {"a": {"type": "string"}}}})
        })
        .collect();
    let proxy = Proxy::start(&evil_config(&dir, &Value::from(extra)), &[]);
    let doc = proxy
        .wait_ok("/evil/openapi.json", Duration::from_secs(60))
        .await;
    assert_eq!(doc["paths"].as_object().unwrap().len(), 1_000);
    let (_, diagnostics) = proxy.get("/diagnostics").await;
    let issues = diagnostics["issues"].to_string();
    assert!(
        issues.contains("server 'evil' lists")
            && issues.contains("tools more than the 1000 served"),
        "{issues}"
    );
    // The fake's own tools come first, so 1,000 minus them of the extra ones are served.
    let (status, _) = proxy.post("/evil/t100", json!({"a": "x"})).await;
    assert_ne!(status, 404);
    let (status, _) = proxy.post("/evil/t5000", json!({"a": "x"})).await;
    assert_eq!(status, 404);
    let rss_mb = common::rss_kib(proxy.pid()) / 1024;
    eprintln!("proxy RSS after the document: {rss_mb} MB");
    assert!(rss_mb < 150, "RSS {rss_mb} MB after the document");
}

/// A raw connection to the proxy.
async fn connect(proxy: &Proxy) -> tokio::net::TcpStream {
    let addr = proxy.base.trim_start_matches("http://").to_string();
    tokio::net::TcpStream::connect(addr).await.unwrap()
}

/// Reads until the peer closes (or `within` passes: then `None`); returns what came.
async fn read_to_close(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<String> {
    use tokio::io::AsyncReadExt as _;
    let mut got = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut got))
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&got).into_owned())
}

/// The start of a `POST /x/echo` that declares `length` bytes of body.
fn declared_post(length: usize) -> String {
    format!(
        "POST /x/echo HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n"
    )
}

/// Finding 2: two connections that sent `Content-Length: 16777216` and nothing else held the
/// whole 32 MiB body budget: every `POST /demo/echo` answered 503 for as long as they stayed
/// open. Now a body takes budget as its bytes arrive, and a body that does not arrive is
/// answered 408 after `--body-timeout`.
#[tokio::test]
async fn finding_2_declared_lengths_hold_no_budget_and_bodies_have_a_deadline() {
    use tokio::io::AsyncWriteExt as _;
    let config = json!({"mcpServers": {"x": common::stdio_fake("x")}});
    let proxy = Proxy::start(&config, &["--body-timeout", "3"]);
    proxy
        .wait_ok("/x/openapi.json", Duration::from_secs(30))
        .await;
    let mut silent = Vec::new();
    for _ in 0..2 {
        let mut s = connect(&proxy).await;
        s.write_all(declared_post(16 * 1024 * 1024).as_bytes())
            .await
            .unwrap();
        silent.push(s);
    }
    // Both heads are in once a later request on a new connection is answered; the proxy
    // reads heads in the order connections were accepted.
    for _ in 0..5 {
        let (status, body) = proxy.post("/x/echo", json!({"message": "hi"})).await;
        assert_eq!((status, &body), (200, &json!("hi")));
    }
    for mut s in silent {
        let answer = read_to_close(&mut s, Duration::from_secs(15))
            .await
            .expect("the silent body is answered and closed after the body timeout");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("did not arrive within"), "{answer}");
    }
}

/// Finding 3, headers and idle connections: 250 connections stopped halfway through their
/// headers stayed open for 45 s and more (axum was served without a timer, so hyper's
/// header deadline never applied), and keep-alive connections had no idle limit.
#[tokio::test]
async fn finding_3_half_heads_and_idle_connections_are_closed() {
    use tokio::io::AsyncWriteExt as _;
    let config = json!({"mcpServers": {"x": common::stdio_fake("x")}});
    let proxy = Proxy::start(&config, &["--header-timeout", "2"]);
    proxy
        .wait_ok("/x/openapi.json", Duration::from_secs(30))
        .await;
    let mut half = Vec::new();
    for _ in 0..50 {
        let mut s = connect(&proxy).await;
        s.write_all(b"POST /x/echo HTTP/1.1\r\nhost: 127.0.0.1\r\n")
            .await
            .unwrap();
        half.push(s);
    }
    // One that asks once and then idles.
    let mut idle = connect(&proxy).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    for mut s in half {
        let answer = read_to_close(&mut s, Duration::from_secs(15)).await;
        assert!(answer.is_some(), "a half head was still open after 15 s");
    }
    let answer = read_to_close(&mut idle, Duration::from_secs(15))
        .await
        .expect("an idle keep-alive connection is closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Finding 3, the connection cap: past `--max-connections` a connection is answered 503 with
/// `Retry-After` (not refused, not left in the backlog), and served again once one closes.
#[tokio::test]
async fn finding_3_connections_past_the_cap_are_answered_503() {
    use tokio::io::AsyncWriteExt as _;
    let config = json!({"mcpServers": {"x": common::stdio_fake("x")}});
    let proxy = Proxy::start(&config, &["--max-connections", "4"]);
    proxy
        .wait_ok("/x/openapi.json", Duration::from_secs(30))
        .await;
    // Four keep-alive connections. The test's own client may still hold one from `wait_ok`,
    // so one of the four may already be over the cap.
    let mut held = Vec::new();
    let mut served = 0;
    for _ in 0..4 {
        let mut s = connect(&proxy).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 12];
        tokio::io::AsyncReadExt::read_exact(&mut s, &mut buf)
            .await
            .unwrap();
        match &buf {
            b"HTTP/1.1 200" => served += 1,
            b"HTTP/1.1 503" => {}
            other => panic!("{}", String::from_utf8_lossy(other)),
        }
        held.push(s);
    }
    assert!(served >= 3, "{served} of 4 served under a cap of 4");
    let mut over = connect(&proxy).await;
    over.write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut over, Duration::from_secs(10))
        .await
        .expect("the connection over the cap is answered and closed");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("too many open connections"), "{answer}");
    drop(held);
    common::eventually(
        "a request served after the held ones closed",
        Duration::from_secs(10),
        async || {
            let fresh = reqwest::Client::new();
            let r = fresh.get(proxy.url("/healthz")).send().await.ok()?;
            (r.status().as_u16() == 200).then_some(())
        },
    )
    .await;
}

/// Finding 3, out of file descriptors: under a 200-descriptor limit a normal client timed out
/// while the log said "Too many open files" once per failed accept. Now the connection cap is
/// lowered to what the limit holds, connections past it are answered 503, a lack of
/// descriptors is back-pressure (one log line per episode), and a normal client gets an
/// answer once idle connections reach their deadline.
#[tokio::test]
async fn finding_3_running_out_of_descriptors_is_back_pressure() {
    use std::process::{Command, Stdio};
    let dir = TempDir::new();
    let config = dir.path().join("config.json");
    let servers = json!({"mcpServers": {"x": common::stdio_fake("x")}});
    std::fs::write(&config, servers.to_string()).unwrap();
    let log = dir.path().join("proxy.log");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 128 && exec "$0" "$@""#)
        .arg(mcpo_bin())
        .args([
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--header-timeout",
            "3",
        ])
        .arg("--config")
        .arg(&config)
        .env("LOG_LEVEL", "WARNING")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let line = common::wait_for_line(&mut child, "mcpo serving on", Duration::from_secs(60));
    let _proc = common::Proc { child };
    let base = common::url_in(&line);
    let addr = base.trim_start_matches("http://").to_string();
    let client = reqwest::Client::new();
    common::eventually("the fake's tools", Duration::from_secs(30), async || {
        let r = client
            .get(format!("{base}/x/openapi.json"))
            .send()
            .await
            .ok()?;
        (r.status().as_u16() == 200).then_some(())
    })
    .await;
    // More silent connections than the proxy has descriptors.
    let mut silent = Vec::new();
    for _ in 0..300 {
        match tokio::net::TcpStream::connect(&addr).await {
            Ok(s) => silent.push(s),
            Err(_) => break,
        }
    }
    let r = reqwest::Client::new()
        .post(format!("{base}/x/echo"))
        .json(&json!({"message": "through"}))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("a normal client gets an answer");
    let status = r.status().as_u16();
    assert!(status == 200 || status == 503, "{status}");
    drop(silent);
    let text = std::fs::read_to_string(&log).unwrap();
    let told = text.matches("out of file descriptors").count();
    let spam = text.matches("Too many open files").count();
    assert!(
        told <= 3 && spam <= 3,
        "{told} + {spam} lines about descriptors:\n{text}"
    );
}

/// `GET /diagnostics` over a raw connection with these extra header lines; the body.
async fn raw_diagnostics(proxy: &Proxy, host: &str, extra: &str) -> Value {
    use tokio::io::AsyncWriteExt as _;
    let mut s = connect(proxy).await;
    s.write_all(
        format!("GET /diagnostics HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n{extra}\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let answer = read_to_close(&mut s, Duration::from_secs(10))
        .await
        .unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The body may come chunked.
    let start = body.find('{').unwrap();
    let end = body.rfind('}').unwrap();
    serde_json::from_str(&body[start..=end]).unwrap()
}

fn shows_pid(diagnostics: &Value) -> bool {
    diagnostics["servers"]["x"]["pool"]["members"][0]["pid"].is_u64()
}

/// Finding 4: "loopback is privileged" plus `Access-Control-Allow-Origin: *` let any web page
/// the operator opened read `/diagnostics` (child stderr, PIDs, the OAuth authorization URL
/// with its state), a DNS-rebinding page passed as loopback, and anyone could restart servers.
/// Now, without a key, nobody over HTTP sees those details unless the operator opts in with
/// `--trust-loopback`, and then only a loopback client naming a loopback host with no
/// cross-origin `Origin`; restarts likewise.
#[tokio::test]
async fn finding_4_privileged_details_need_the_key_or_a_trusted_local_client() {
    let config = json!({"mcpServers": {"x": common::stdio_fake("x")}});
    let plain = Proxy::start(&config, &[]);
    plain
        .wait_ok("/x/openapi.json", Duration::from_secs(30))
        .await;
    let host = plain.base.trim_start_matches("http://").to_string();
    assert!(!shows_pid(&raw_diagnostics(&plain, &host, "").await));
    let r = plain
        .client
        .post(plain.url("/diagnostics/servers/x/restart"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    let trusted = Proxy::start(&config, &["--trust-loopback"]);
    trusted
        .wait_ok("/x/openapi.json", Duration::from_secs(30))
        .await;
    let host = trusted.base.trim_start_matches("http://").to_string();
    assert!(shows_pid(&raw_diagnostics(&trusted, &host, "").await));
    let port = host.rsplit(':').next().unwrap();
    assert!(shows_pid(
        &raw_diagnostics(&trusted, &format!("localhost:{port}"), "").await
    ));
    // A page of another origin, read through CORS.
    let evil = "origin: http://evil.example\r\n";
    assert!(!shows_pid(&raw_diagnostics(&trusted, &host, evil).await));
    // A page whose name was rebound to 127.0.0.1.
    assert!(!shows_pid(
        &raw_diagnostics(&trusted, &format!("evil.example:{port}"), "").await
    ));
    let r = trusted
        .client
        .post(trusted.url("/diagnostics/servers/x/restart"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = trusted
        .client
        .post(trusted.url("/diagnostics/servers/x/restart"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);

    let keyed = Proxy::start(&config, &["--api-key", "k3y", "--trust-loopback"]);
    let (status, _) = keyed.get_with_key("/x/openapi.json", "k3y").await;
    assert_eq!(status, 200);
    let host = keyed.base.trim_start_matches("http://").to_string();
    assert!(!shows_pid(&raw_diagnostics(&keyed, &host, "").await));
    assert!(shows_pid(
        &raw_diagnostics(&keyed, &host, "authorization: Bearer k3y\r\n").await
    ));
}

/// Finding 4, the other half: a cross-origin page may send a "simple" request (`text/plain`,
/// a form, a blob with no type) without a CORS preflight. Such a request no longer reaches a
/// tool: a POST body must be JSON by its `Content-Type`.
#[tokio::test]
async fn finding_4_tool_calls_need_a_json_body() {
    let config = json!({"mcpServers": {"x": common::stdio_fake("x")}});
    let proxy = Proxy::start(&config, &[]);
    proxy
        .wait_ok("/x/openapi.json", Duration::from_secs(30))
        .await;
    let body = r#"{"message": "csrf"}"#;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut request = proxy.client.post(proxy.url("/x/echo")).body(body);
        if let Some(t) = content_type {
            request = request.header("content-type", t);
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 415, "{content_type:?}");
    }
    let r = proxy
        .client
        .post(proxy.url("/x/echo"))
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // A tool without arguments is still called with an empty POST and no type.
    let r = proxy
        .client
        .post(proxy.url("/x/whoami"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

/// Finding 7: with `MCPO_LOG_LEVEL=debug` or any `RUST_LOG`, rmcp logged whole upstream URLs
/// (`.../s/PATHSECRET/mcp?k=QUERYSECRET`), and a mistyped URL scheme was echoed whole at the
/// default level, at start-up and on reload. Now every log line has URLs reduced to their
/// origin, and configuration errors never show the URL.
#[tokio::test]
async fn finding_7_no_secret_of_a_url_reaches_the_log() {
    let config = json!({"mcpServers": {
        "dead": {"type": "streamable-http", "url": "http://127.0.0.1:9/s/PATHSECRET/mcp?k=QUERYSECRET"},
        "old": {"type": "sse", "url": "http://127.0.0.1:9/s/SSESECRET/sse?k=SSEQUERY"},
        "x": common::stdio_fake("x"),
    }});
    for env in [("MCPO_LOG_LEVEL", "debug"), ("RUST_LOG", "trace")] {
        let (proxy, log) = Proxy::start_logged(&config, &[], &[env]);
        proxy
            .wait_ok("/x/openapi.json", Duration::from_secs(30))
            .await;
        // The dead servers have been tried (and failed) by now; one call more for good measure.
        let (status, _) = proxy.post("/dead/anything", json!({})).await;
        assert!(status >= 400);
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("127.0.0.1:9"),
            "{env:?}: the dead server was not logged"
        );
        for secret in ["PATHSECRET", "QUERYSECRET", "SSESECRET", "SSEQUERY"] {
            assert!(!text.contains(secret), "{env:?}: {secret} in the log");
        }
    }
    // A mistyped scheme, at start-up.
    let dir = TempDir::new();
    let path = dir.path().join("config.json");
    let bad = json!({"mcpServers": {"t": {"type": "streamable-http", "url": "htps://example.com/s/TYPOSECRET/mcp"}}});
    std::fs::write(&path, bad.to_string()).unwrap();
    let out = std::process::Command::new(mcpo_bin())
        .args(["serve", "--port", "0", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("\"htps\"") && !said.contains("TYPOSECRET"),
        "{said}"
    );
}

/// Finding 11: a 2 MB string sent where a `oneOf` is expected came back as a 2 MB 422: the
/// validator's message quotes the value, and `msg` was not cut.
#[tokio::test]
async fn finding_11_validation_messages_are_cut() {
    let config = json!({"mcpServers": {"x": common::stdio_fake("x")}});
    let proxy = Proxy::start(&config, &[]);
    proxy
        .wait_ok("/x/openapi.json", Duration::from_secs(30))
        .await;
    let huge = "y".repeat(2 * 1024 * 1024);
    let r = proxy
        .client
        .post(proxy.url("/x/measure_shape"))
        .json(&json!({"shape": huge}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let body = r.bytes().await.unwrap();
    assert!(body.len() < 16 * 1024, "a 422 of {} bytes", body.len());
    let detail: Value = serde_json::from_slice(&body).unwrap();
    let msg = detail["detail"][0]["msg"].as_str().unwrap();
    assert!(msg.ends_with("... (truncated)"), "{msg}");
}

/// Long-running calls (the "Also" of the hostile-input issue; open-webui #16900): a tool that
/// reports progress was cut at the idle deadline while still progressing. Now every
/// `notifications/progress` gives the call another `--tool-timeout`, up to
/// `--max-tool-timeout`, where it is answered 504 and cancelled upstream.
#[tokio::test]
async fn progress_extends_a_call_up_to_its_cap() {
    let fake = common::FakeHttp::start("progress");
    let config = json!({"mcpServers": {"x": {"type": "streamable-http", "url": fake.url}}});
    let proxy = Proxy::start(&config, &["--tool-timeout", "1", "--max-tool-timeout", "3"]);
    proxy
        .wait_ok("/x/openapi.json", Duration::from_secs(30))
        .await;
    // 2.4 s of work, a report every 0.3 s: past the 1 s deadline, within the 3 s cap.
    let t = std::time::Instant::now();
    let (status, body) = proxy
        .post(
            "/x/progress",
            json!({"steps": 8, "every_ms": 300, "tag": "a"}),
        )
        .await;
    assert_eq!((status, body), (200, json!("progressed 8 steps [a]")));
    assert!(t.elapsed() >= Duration::from_millis(2_400));
    // Silent work is still cut at the deadline.
    let (status, body) = proxy
        .post("/x/progress", json!({"steps": 1, "every_ms": 2500}))
        .await;
    assert_eq!(status, 504, "{body}");
    // Progress for longer than the cap: cut at the cap and cancelled upstream.
    let t = std::time::Instant::now();
    let (status, body) = proxy
        .post("/x/progress", json!({"steps": 30, "every_ms": 300}))
        .await;
    let took = t.elapsed();
    assert_eq!(status, 504, "{body}");
    assert!(
        took >= Duration::from_millis(2_900) && took < Duration::from_secs(8),
        "{took:?}"
    );
    common::eventually(
        "both cut calls cancelled upstream",
        Duration::from_secs(10),
        async || (fake.stats().await["cancelled"].as_u64() == Some(2)).then_some(()),
    )
    .await;
}
