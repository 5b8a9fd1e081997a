//! Response time of the proxy, each case next to a baseline measured in the same run that does
//! only the unavoidable work, so that the report reads as a ratio (`case / baseline`) and a
//! noisy machine shifts both alike:
//!
//! - `request_path/in_process`: an HTTP request through the axum router (auth, validation, a
//!   pool member, the fake upstream over an in-memory duplex stream, response mapping,
//!   metrics), against `request_path/direct`: the same JSON-RPC exchange straight on the
//!   transport with an rmcp client;
//! - `loopback_stdio` and `loopback_http`: the same over real sockets, `mcpo serve` (in
//!   process) in front of a fake started as a child process or listening on streamable HTTP,
//!   against an rmcp client talking to the same kind of fake directly (the limit);
//! - the pieces: OpenAPI generation for 100 tools with nested schemas, request validation
//!   (small, large, invalid), the cache hit path, outcome classification, the metrics record
//!   path, Prometheus rendering with 50 servers.
//!
//! `cargo bench -- --save-baseline main` then `cargo bench -- --baseline main` shows a
//! regression as a percentage (docs/benchmarks.md, "cargo bench").

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::Request;
use mcpo::cache::{CacheKey, ResultCache, canonical_json};
use mcpo::config::{InMemoryConnector, ServeConfig, ServerConfig, Transport};
use mcpo::fake::FakeServer;
use mcpo::fake::faults::{FaultState, Transport as FakeTransport};
use mcpo::http::{AppState, router};
use mcpo::metrics::prometheus::{Live, ServerLive, encode};
use mcpo::metrics::{Metrics, RequestClass};
use mcpo::openapi::document::{DocInfo, ToolDoc, server_document};
use mcpo::recovery::RecoveryPolicy;
use mcpo::upstream::UpstreamSettings;
use mcpo::upstream::classify::{classify_service_error, classify_transport};
use mcpo::upstream::fleet::Fleet;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService};
use serde_json::{Map, Value, json};
use tokio::io::AsyncBufReadExt;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

const KEY: &str = "bench-key";

fn runtime() -> Runtime {
    // Two workers, as on the 2-core machines the figures are quoted for.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A fake MCP server in this process on one end of a duplex pair; the other end is returned.
fn in_memory_fake() -> tokio::io::DuplexStream {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let server = FakeServer::new("bench", FaultState::new(FakeTransport::Stdio));
        if let Ok(running) = server.serve(tokio::io::split(theirs)).await {
            let _ = running.waiting().await;
        }
    });
    ours
}

fn echo_params() -> CallToolRequestParams {
    let mut params = CallToolRequestParams::new("echo");
    let mut args = Map::new();
    args.insert("message".into(), json!("hello"));
    params.arguments = Some(args);
    params
}

/// The proxy's router over `servers`, assembled as `serve::start_with` assembles it, without
/// binding a socket.
async fn proxy_router(servers: Vec<ServerConfig>) -> (axum::Router, CancellationToken) {
    let mut config = ServeConfig::for_servers(servers);
    config.api_key = Some(KEY.into());
    config.monitor.enabled = false;
    let config = Arc::new(config);
    let settings = UpstreamSettings {
        connect_timeout: config.connect_timeout,
        call_timeout: config.tool_timeout,
        pool_min: config.pool_min,
        pool_max: config.pool_max,
        pool_idle: config.pool_idle,
        ..UpstreamSettings::default()
    };
    let metrics = Metrics::new(
        config.servers.iter().map(|s| s.name.as_str()),
        config.metrics_enabled,
        config.recovery_target,
    );
    let stop = CancellationToken::new();
    let fleet = Fleet::start(
        &config.servers,
        settings,
        RecoveryPolicy::standard(config.max_recovery_attempts),
        metrics.clone(),
        stop.clone(),
        config.drain_timeout,
    );
    for u in fleet.view().upstreams.iter() {
        u.first_attempt_done().await;
    }
    let monitor = mcpo::monitor::Monitor::new(config.monitor.clone());
    let state = AppState::new(config, fleet, metrics, monitor);
    (router(state), stop)
}

fn echo_request() -> Request<Body> {
    let mut request = Request::post("/bench/echo")
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", "application/json")
        .body(Body::from(r#"{"message": "hello"}"#))
        .expect("request");
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    request
}

async fn through_router(app: &axum::Router) -> bytes::Bytes {
    let response = app
        .clone()
        .oneshot(echo_request())
        .await
        .expect("infallible");
    assert_eq!(response.status(), 200, "the proxy did not answer 200");
    axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body")
}

async fn direct_call(client: &RunningService<RoleClient, ()>) -> Value {
    let result = client.call_tool(echo_params()).await.expect("echo");
    serde_json::to_value(result).expect("result JSON")
}

fn request_path(c: &mut Criterion) {
    let rt = runtime();
    let (app, stop) = rt.block_on(proxy_router(vec![ServerConfig::new(
        "bench",
        Transport::InMemory(InMemoryConnector::new(in_memory_fake)),
    )]));
    let direct = rt.block_on(async {
        ().serve(tokio::io::split(in_memory_fake()))
            .await
            .expect("handshake")
    });
    // Both answer the same thing before anything is timed.
    let body = rt.block_on(through_router(&app));
    assert_eq!(&body[..], br#""hello""#);
    let value = rt.block_on(direct_call(&direct));
    assert_eq!(value["content"][0]["text"], "hello");

    let mut group = c.benchmark_group("request_path");
    group.bench_function("direct", |b| b.to_async(&rt).iter(|| direct_call(&direct)));
    group.bench_function("in_process", |b| {
        b.to_async(&rt).iter(|| through_router(&app))
    });
    group.finish();
    stop.cancel();
    rt.block_on(async {
        let _ = direct.cancel().await;
    });
}

/// The `mcpo` binary (the bench profile's), which is also the fake server.
fn mcpo_bin() -> &'static str {
    env!("CARGO_BIN_EXE_mcpo")
}

/// A fake listening on streamable HTTP, as a child process; its URL.
async fn http_fake() -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(mcpo_bin())
        .args([
            "fake-server",
            "--transport",
            "streamable-http",
            "--port",
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the fake");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(at) = line.find("http://") {
            return (child, line[at..].trim().to_string());
        }
    }
    panic!("the fake printed no URL");
}

/// `mcpo serve` in this process on 127.0.0.1 in front of `server`; its echo URL.
async fn serve(server: ServerConfig) -> (mcpo::serve::RunningProxy, String) {
    let mut config = ServeConfig::for_servers(vec![server]);
    config.monitor.enabled = false;
    let proxy = mcpo::serve::start(config).await.expect("start the proxy");
    let url = format!("http://{}/bench/echo", proxy.addr);
    (proxy, url)
}

async fn post(client: &reqwest::Client, url: &str) -> bytes::Bytes {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(r#"{"message": "hello"}"#)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 200);
    response.bytes().await.expect("body")
}

fn loopback(c: &mut Criterion) {
    let rt = runtime();
    let client = reqwest::Client::new();
    // Over stdio: the proxy's own child against an rmcp client with its own child.
    let stdio = |c: &mut Criterion| {
        let (proxy, url) = rt.block_on(serve(ServerConfig::new(
            "bench",
            Transport::Stdio {
                command: mcpo_bin().into(),
                args: vec!["fake-server".into()],
                env: Default::default(),
                cwd: None,
            },
        )));
        let direct = rt.block_on(async {
            let mut command = tokio::process::Command::new(mcpo_bin());
            command.arg("fake-server");
            let transport =
                rmcp::transport::TokioChildProcess::new(command).expect("start the fake");
            ().serve(transport).await.expect("handshake")
        });
        rt.block_on(post(&client, &url));
        let mut group = c.benchmark_group("loopback_stdio");
        group.bench_function("limit", |b| b.to_async(&rt).iter(|| direct_call(&direct)));
        group.bench_function("proxy", |b| b.to_async(&rt).iter(|| post(&client, &url)));
        group.finish();
        rt.block_on(async {
            let _ = direct.cancel().await;
            let _ = proxy.stop().await;
        });
    };
    stdio(c);
    // Over streamable HTTP: one fake, reached by the proxy and by the rmcp client alike.
    let (fake, fake_url) = rt.block_on(http_fake());
    let (proxy, url) = rt.block_on(serve(ServerConfig::new(
        "bench",
        Transport::StreamableHttp {
            url: fake_url.clone(),
            headers: Default::default(),
        },
    )));
    let direct = rt.block_on(async {
        let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(fake_url.as_str());
        ().serve(transport).await.expect("handshake")
    });
    rt.block_on(post(&client, &url));
    let mut group = c.benchmark_group("loopback_http");
    group.bench_function("limit", |b| b.to_async(&rt).iter(|| direct_call(&direct)));
    group.bench_function("proxy", |b| b.to_async(&rt).iter(|| post(&client, &url)));
    group.finish();
    rt.block_on(async {
        let _ = direct.cancel().await;
        let _ = proxy.stop().await;
    });
    drop(fake);
}

/// A tool schema shaped like what pydantic emits: nested objects through `$defs`, optional
/// fields as `anyOf` with null, enums, arrays of objects, bounds and formats.
fn nested_schema(i: usize) -> Value {
    json!({
        "type": "object",
        "title": format!("Tool{i}Args"),
        "properties": {
            "query": {"type": "string", "minLength": 1, "maxLength": 500, "description": "What to look for"},
            "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
            "filters": {"anyOf": [{"$ref": "#/$defs/Filter"}, {"type": "null"}], "default": null},
            "sort": {"$ref": "#/$defs/Sort"},
            "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}, "maxItems": 50}
        },
        "required": ["query"],
        "$defs": {
            "Filter": {
                "type": "object",
                "properties": {
                    "after": {"type": "string", "format": "date-time"},
                    "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": true},
                    "owner": {"$ref": "#/$defs/Person"}
                }
            },
            "Person": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "email": {"type": "string", "format": "email"},
                    "manager": {"anyOf": [{"$ref": "#/$defs/Person"}, {"type": "null"}]}
                },
                "required": ["name"]
            },
            "Sort": {"type": "string", "enum": ["relevance", "date", "name"], "default": "relevance"},
            "Item": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "kind": {"type": "string", "enum": ["a", "b", "c"]},
                    "weight": {"type": "number", "exclusiveMinimum": 0}
                },
                "required": ["id", "kind"]
            }
        }
    })
}

fn openapi(c: &mut Criterion) {
    let schemas: Vec<Value> = (0..100).map(nested_schema).collect();
    let names: Vec<String> = (0..100).map(|i| format!("tool_{i}")).collect();
    let docs: Vec<ToolDoc<'_>> = names
        .iter()
        .zip(&schemas)
        .map(|(name, schema)| ToolDoc {
            name,
            title: None,
            description: Some("A tool with a nested schema."),
            input_schema: schema,
            output_schema: None,
            takes_no_arguments: false,
        })
        .collect();
    let info = DocInfo {
        title: "bench",
        version: "1.0",
        description: "100 tools",
        server_url: "/bench",
        bearer_auth: true,
    };
    let document = server_document(&info, &docs);
    assert_eq!(document["paths"].as_object().map(Map::len), Some(100));
    let mut group = c.benchmark_group("openapi_100_tools");
    // The floor: the document holds a converted copy of every schema, so copying them is the
    // least any generator does.
    group.bench_function("clone_schemas", |b| b.iter(|| black_box(schemas.clone())));
    group.bench_function("server_document", |b| {
        b.iter(|| black_box(server_document(black_box(&info), black_box(&docs))))
    });
    group.finish();
}

fn validation(c: &mut Criterion) {
    let schema = nested_schema(0);
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let small = json!({"query": "rust", "limit": 5});
    let large = json!({
        "query": "rust",
        "sort": "date",
        "filters": {"after": "2026-01-01T00:00:00Z", "tags": (0..40).map(|i| format!("t{i}")).collect::<Vec<_>>(),
                    "owner": {"name": "a", "manager": {"name": "b", "manager": {"name": "c", "manager": null}}}},
        "items": (0..50).map(|i| json!({"id": i, "kind": "b", "weight": 1.5})).collect::<Vec<_>>()
    });
    // Several problems at once, including one that lax mode fixes (a number as a string).
    let invalid = json!({"limit": "5", "sort": "sideways", "items": [{"id": "x"}, {"kind": "z"}]});
    let count = count_values;
    assert!(
        mcpo::http::validate::validate_lax(&validator, &mut small.clone(), count(&small))
            .is_empty()
    );
    assert!(
        mcpo::http::validate::validate_lax(&validator, &mut large.clone(), count(&large))
            .is_empty()
    );
    assert!(
        !mcpo::http::validate::validate_lax(&validator, &mut invalid.clone(), count(&invalid))
            .is_empty()
    );
    let mut group = c.benchmark_group("validation");
    for (name, body) in [("small", &small), ("large", &large), ("invalid", &invalid)] {
        let values = count(body);
        // The floor: the compiled validator's own verdict (and, for an invalid body, its
        // errors); the proxy adds lax conversions and FastAPI-shaped errors.
        group.bench_with_input(BenchmarkId::new("jsonschema", name), body, |b, body| {
            b.iter(|| black_box(validator.iter_errors(black_box(body)).count()))
        });
        group.bench_with_input(BenchmarkId::new("validate_lax", name), body, |b, body| {
            b.iter_batched(
                || body.clone(),
                |mut body| {
                    black_box(mcpo::http::validate::validate_lax(
                        &validator, &mut body, values,
                    ))
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn count_values(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(count_values).sum::<usize>(),
        Value::Array(a) => 1 + a.iter().map(count_values).sum::<usize>(),
        _ => 1,
    }
}

fn cache(c: &mut Criterion) {
    let rt = runtime();
    let cache = ResultCache::new(1000, 64 * 1024 * 1024);
    let arguments = json!({"query": "rust", "limit": 5, "filters": {"tags": ["a", "b"]}});
    let result = json!({"content": [{"type": "text", "text": "cached answer"}], "isError": false});
    let server: Arc<str> = Arc::from("bench");
    let tool: Arc<str> = Arc::from("search");
    let key = |args: &Value| CacheKey {
        server: server.clone(),
        epoch: 0,
        tool: tool.clone(),
        arguments: canonical_json(args),
    };
    let ttl = Duration::from_secs(300);
    rt.block_on(async {
        let (first, hit) = cache
            .get_or_call(key(&arguments), ttl, async { Ok(result.clone()) })
            .await;
        assert!(first.is_ok() && !hit);
    });
    let mut map = HashMap::new();
    map.insert(key(&arguments), Arc::new(result.clone()));
    let mut group = c.benchmark_group("cache_hit");
    // The floor: building the key and a plain hash-map lookup.
    group.bench_function("hashmap", |b| {
        b.iter(|| black_box(map.get(&key(black_box(&arguments))).cloned()))
    });
    group.bench_function("result_cache", |b| {
        b.to_async(&rt).iter(|| async {
            let (answer, hit) = cache
                .get_or_call(key(black_box(&arguments)), ttl, async {
                    unreachable!("a hit never calls upstream")
                })
                .await;
            assert!(hit);
            black_box(answer.is_ok())
        })
    });
    group.finish();
}

fn classification(c: &mut Criterion) {
    let jsonrpc =
        rmcp::service::ServiceError::McpError(rmcp::ErrorData::internal_error("boom", None));
    let closed = rmcp::service::ServiceError::TransportClosed;
    // A transport error three sources deep, as reqwest and hyper nest them.
    let io = std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        std::io::Error::other("connection reset by peer"),
    );
    let mut group = c.benchmark_group("classification");
    // The floor: walking the error's chain of sources once, which classifying must do.
    group.bench_function("walk_sources", |b| {
        b.iter(|| {
            let e: &(dyn std::error::Error + 'static) = black_box(&io);
            black_box(std::iter::successors(Some(e), |e| e.source()).count())
        })
    });
    group.bench_function("transport_error", |b| {
        b.iter(|| black_box(classify_transport(black_box(&io))))
    });
    group.bench_function("jsonrpc_error", |b| {
        b.iter(|| black_box(classify_service_error(black_box(&jsonrpc)).class()))
    });
    group.bench_function("transport_closed", |b| {
        b.iter(|| black_box(classify_service_error(black_box(&closed)).class()))
    });
    group.finish();
}

fn metrics_record(c: &mut Criterion) {
    let metrics = Metrics::new(["bench"], true, Duration::from_secs(10));
    let server = metrics.server("bench").expect("server metrics");
    let latency = Duration::from_micros(180);
    let mut histogram = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
    let count = AtomicU64::new(0);
    let mut group = c.benchmark_group("metrics_record");
    // The floor: one counter and one latency histogram, the least a latency metric is.
    group.bench_function("counter_and_histogram", |b| {
        b.iter(|| {
            count.fetch_add(1, Ordering::Relaxed);
            histogram.saturating_record(black_box(latency).as_micros() as u64);
        })
    });
    group.bench_function("record_request", |b| {
        b.iter(|| {
            server.record_request(black_box("echo"), RequestClass::Success, black_box(latency))
        })
    });
    group.finish();
}

fn prometheus(c: &mut Criterion) {
    let names: Vec<String> = (0..50).map(|i| format!("server_{i}")).collect();
    let metrics = Metrics::new(
        names.iter().map(String::as_str),
        true,
        Duration::from_secs(10),
    );
    for name in &names {
        let m = metrics.server(name).expect("server metrics");
        for tool in ["search", "fetch", "echo"] {
            for i in 0..20 {
                m.record_request(
                    tool,
                    RequestClass::Success,
                    Duration::from_micros(100 + i * 37),
                );
            }
        }
    }
    let live = Live {
        servers: names
            .iter()
            .map(|name| ServerLive {
                name: name.clone(),
                up: true,
                pool_size: 1,
                ..ServerLive::default()
            })
            .collect(),
        ..Live::default()
    };
    let text = encode(&metrics, live.clone(), false);
    let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(samples.len() > 50 * 3, "{} samples", samples.len());
    let lines = samples.len();
    let mut group = c.benchmark_group("prometheus_50_servers");
    // The floor: formatting as many labelled samples into one string.
    group.bench_function("format_lines", |b| {
        b.iter(|| {
            let mut out = String::with_capacity(text.len());
            for i in 0..lines {
                let _ = writeln!(
                    out,
                    "mcpo_requests_total{{server=\"server_{}\",tool=\"search\",class=\"success\"}} {}",
                    i % 50,
                    i
                );
            }
            black_box(out)
        })
    });
    group.bench_function("encode", |b| {
        b.iter(|| black_box(encode(&metrics, live.clone(), false)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    // Short measurements: every bench, `schema_conversion` included, stays well under the
    // 10 minutes `cargo bench` may take on 2 cores; the ratios are what is read.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = request_path, loopback, openapi, validation, cache, classification, metrics_record, prometheus
}
criterion_main!(benches);
