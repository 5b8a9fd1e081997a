//! The limit, and the load generator of `benches/load.sh`.
//!
//! `--target stdio` and `--target http` drive the fake MCP server directly with an rmcp client,
//! as the proxy would: one session per server (the proxy's default pool), every caller's
//! `tools/call` multiplexed on it. That is the ceiling no proxy in front of the same fake can
//! pass. `--target proxy` sends the same calls as `POST {url}` with a JSON body, over
//! keep-alive connections, so that the proxy is measured with the same client, call mix and
//! clock as its limit.
//!
//! Closed loop (`--concurrency N`): N callers, each sending its next call when the last one is
//! answered. Open loop (`--rate R`): calls leave at R per second whatever the answers do, and
//! latency runs from the intended send time (no coordinated omission).
//!
//! ```sh
//! cargo run --release --example limit -- --target stdio --server target/release/mcpo --concurrency 16
//! cargo run --release --example limit -- --target proxy --url http://127.0.0.1:8000/echo --rate 2000
//! ```
//! It prints one JSON object: calls, errors, seconds, throughput, p50/p99/p99.9 in ms.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService};
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

#[derive(Parser, Debug)]
struct Args {
    /// stdio (spawn `--server fake-server`), http (an MCP streamable-HTTP `--url`), or proxy
    /// (`POST --url`).
    #[arg(long)]
    target: String,
    /// The mcpo binary, whose `fake-server` is the upstream (stdio).
    #[arg(long, default_value = "mcpo")]
    server: String,
    /// The MCP endpoint (http) or the tool route (proxy).
    #[arg(long)]
    url: Option<String>,
    /// Closed loop with this many callers.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Open loop at this many calls per second (instead of the closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds of measurement, after a one-second warm-up.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// `--target startup`: the proxy's command line (run with `sh -c`); the time from its start
    /// to the first call answered at `--url` is measured, then the proxy is stopped.
    #[arg(long)]
    command: Option<String>,
    /// Calls in flight at most in the open loop; beyond it, calls are counted as dropped.
    #[arg(long, default_value_t = 4096)]
    max_in_flight: u64,
    /// The tool called over MCP (stdio, http, first-result): a gateway may name the fake's
    /// `echo` otherwise.
    #[arg(long, default_value = "echo")]
    tool: String,
    /// `--target first-result`: how many sessions are opened one after another, each timed
    /// from its `initialize` to its first tool result.
    #[arg(long, default_value_t = 10)]
    sessions: usize,
}

/// One way of making the benchmark call.
enum Caller {
    Mcp(RunningService<RoleClient, ()>, String),
    Proxy(reqwest::Client, String),
}

/// One `tools/call` of `tool` with the benchmark's arguments; true when it succeeded.
async fn call_tool(client: &RunningService<RoleClient, ()>, tool: &str) -> bool {
    let mut params = CallToolRequestParams::new(tool.to_string());
    let mut args = Map::new();
    args.insert("message".into(), json!("hello"));
    params.arguments = Some(args);
    match client.call_tool(params).await {
        // The client gets the same bytes the proxy would pass on.
        Ok(result) => serde_json::to_vec(&result).is_ok() && result.is_error != Some(true),
        Err(_) => false,
    }
}

impl Caller {
    async fn call(&self) -> bool {
        match self {
            Caller::Mcp(client, tool) => call_tool(client, tool).await,
            Caller::Proxy(client, url) => {
                let sent = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(r#"{"message": "hello"}"#)
                    .send()
                    .await;
                match sent {
                    Ok(response) => {
                        let ok = response.status().is_success();
                        response.bytes().await.is_ok() && ok
                    }
                    Err(_) => false,
                }
            }
        }
    }
}

struct Record {
    histogram: Mutex<hdrhistogram::Histogram<u64>>,
    calls: AtomicU64,
    errors: AtomicU64,
    dropped: AtomicU64,
    measuring: AtomicBool,
}

impl Record {
    async fn add(&self, ok: bool, latency: Duration) {
        if !self.measuring.load(Ordering::Relaxed) {
            return;
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.histogram.lock().await.saturating_record(micros.max(1));
    }
}

async fn connect(args: &Args) -> Result<Caller> {
    match args.target.as_str() {
        "stdio" => {
            let mut command = tokio::process::Command::new(&args.server);
            command.arg("fake-server");
            let transport = rmcp::transport::TokioChildProcess::new(command)
                .with_context(|| format!("cannot start {} fake-server", args.server))?;
            Ok(Caller::Mcp(().serve(transport).await?, args.tool.clone()))
        }
        "http" => {
            let url = args.url.clone().context("--target http needs --url")?;
            let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(url);
            Ok(Caller::Mcp(().serve(transport).await?, args.tool.clone()))
        }
        "proxy" => {
            let url = args.url.clone().context("--target proxy needs --url")?;
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(usize::MAX)
                .build()?;
            Ok(Caller::Proxy(client, url))
        }
        other => bail!("--target {other}: use stdio, http, proxy, startup or first-result"),
    }
}

/// Starts the proxy, calls `url` every millisecond until one answers 200, stops the proxy.
async fn startup(args: &Args) -> Result<Value> {
    let command = args
        .command
        .clone()
        .context("--target startup needs --command")?;
    let url = args.url.clone().context("--target startup needs --url")?;
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut child = tokio::process::Command::new("sh")
        .args(["-c", &format!("exec {command}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let deadline = started + Duration::from_secs(60);
    let answered = loop {
        let ok = client
            .post(&url)
            .header("content-type", "application/json")
            .body(r#"{"message": "hello"}"#)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            break Some(started.elapsed());
        }
        if Instant::now() > deadline || child.try_wait()?.is_some() {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    // SIGTERM lets the proxy stop its children; SIGKILL after a grace.
    if let Some(pid) = child.id() {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
    let answered = answered.context("the proxy never answered")?;
    Ok(json!({"target": "startup", "first_call_ms": answered.as_secs_f64() * 1000.0}))
}

/// What an MCP client waits before it can use a gateway: `--sessions` sessions on the MCP
/// endpoint `--url`, one after another, each timed from the start of its `initialize` to its
/// first tool result, then closed. The first is cold (the gateway's first session since it
/// started listening: whatever it does lazily is in it), the others warm.
async fn first_result(args: &Args) -> Result<Value> {
    let url = args
        .url
        .clone()
        .context("--target first-result needs --url")?;
    let mut times = Vec::new();
    for n in 0..args.sessions.max(1) {
        let started = Instant::now();
        let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(url.clone());
        let client = tokio::time::timeout(Duration::from_secs(60), ().serve(transport))
            .await
            .with_context(|| format!("session {n}: no answer to initialize in 60 s"))?
            .with_context(|| format!("session {n}: initialize failed"))?;
        let ok = tokio::time::timeout(Duration::from_secs(60), call_tool(&client, &args.tool))
            .await
            .unwrap_or(false);
        let elapsed = started.elapsed();
        let _ = client.cancel().await;
        if !ok {
            bail!("session {n}: the first call of {} failed", args.tool);
        }
        times.push(elapsed.as_secs_f64() * 1000.0);
    }
    let cold = times[0];
    let mut warm = times[1..].to_vec();
    warm.sort_by(f64::total_cmp);
    let warm_p50 = warm.get(warm.len() / 2).copied();
    Ok(
        json!({"target": "first-result", "sessions": times.len(), "cold_ms": cold,
        "warm_p50_ms": warm_p50, "all_ms": times}),
    )
}

async fn run(args: Args) -> Result<Value> {
    if args.target == "startup" {
        return startup(&args).await;
    }
    if args.target == "first-result" {
        return first_result(&args).await;
    }
    let caller = Arc::new(connect(&args).await?);
    if !caller.call().await {
        bail!("the first call failed");
    }
    let record = Arc::new(Record {
        histogram: Mutex::new(hdrhistogram::Histogram::new_with_bounds(1, 600_000_000, 3)?),
        calls: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        measuring: AtomicBool::new(false),
    });
    let warm_up = Duration::from_secs(1);
    let measure = Duration::from_secs_f64(args.duration);
    let started = Instant::now();
    let end = started + warm_up + measure;
    let mut tasks = tokio::task::JoinSet::new();
    match args.rate {
        None => {
            for _ in 0..args.concurrency.max(1) {
                let (caller, record) = (caller.clone(), record.clone());
                tasks.spawn(async move {
                    while Instant::now() < end {
                        let sent = Instant::now();
                        let ok = caller.call().await;
                        record.add(ok, sent.elapsed()).await;
                    }
                });
            }
        }
        Some(rate) => {
            let (caller, record) = (caller.clone(), record.clone());
            let in_flight = Arc::new(AtomicU64::new(0));
            let max = args.max_in_flight;
            tasks.spawn(async move {
                let interval = Duration::from_secs_f64(1.0 / rate);
                let mut calls = tokio::task::JoinSet::new();
                let mut n: u32 = 0;
                loop {
                    let intended = started + interval * n;
                    if intended >= end {
                        break;
                    }
                    tokio::time::sleep_until(intended.into()).await;
                    n += 1;
                    if in_flight.load(Ordering::Relaxed) >= max {
                        record.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    in_flight.fetch_add(1, Ordering::Relaxed);
                    let (caller, record, in_flight) =
                        (caller.clone(), record.clone(), in_flight.clone());
                    calls.spawn(async move {
                        let ok = caller.call().await;
                        // From the intended send time: a late send counts against the target.
                        record.add(ok, intended.elapsed()).await;
                        in_flight.fetch_sub(1, Ordering::Relaxed);
                    });
                    while calls.try_join_next().is_some() {}
                }
                while calls.join_next().await.is_some() {}
            });
        }
    }
    tokio::time::sleep_until((started + warm_up).into()).await;
    record.measuring.store(true, Ordering::Relaxed);
    let measuring_since = Instant::now();
    tokio::time::sleep_until(end.into()).await;
    record.measuring.store(false, Ordering::Relaxed);
    let seconds = measuring_since.elapsed().as_secs_f64();
    // Calls still running are not waited for longer than a few seconds.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    let h = record.histogram.lock().await;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let calls = record.calls.load(Ordering::Relaxed);
    let out = json!({
        "target": args.target,
        "mode": if args.rate.is_some() { "open" } else { "closed" },
        "concurrency": args.concurrency,
        "rate": args.rate,
        "calls": calls,
        "errors": record.errors.load(Ordering::Relaxed),
        "dropped": record.dropped.load(Ordering::Relaxed),
        "seconds": seconds,
        "throughput": calls as f64 / seconds,
        "p50_ms": ms(0.5),
        "p99_ms": ms(0.99),
        "p999_ms": ms(0.999),
        "max_ms": h.max() as f64 / 1000.0,
    });
    drop(h);
    if let Ok(Caller::Mcp(client, _)) = Arc::try_unwrap(caller) {
        let _ = client.cancel().await;
    }
    Ok(out)
}

fn main() -> Result<()> {
    let args = Args::parse();
    // Two workers: the machines the figures are quoted for have two cores, shared with the
    // server (and the proxy) under test.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let out = rt.block_on(run(args))?;
    println!("{out}");
    Ok(())
}
