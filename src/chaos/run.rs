//! One chaos run from start to verdict.
//!
//! In order: read the scenario; start the fault hub; open the start-up windows that begin at
//! `0s` (`refuse`, `slow-start`), so that they meet the first start-up of the servers; start
//! the HTTP fakes (streamable HTTP and legacy SSE); write a plain `mcpServers` config and start
//! the proxy (this binary's `serve`, or `--target CMD`); wait until it is **ready**: every
//! scenario server answers a real, verified tool call through it (a server under a start-up
//! window at `0s` is exempt, and named). That moment is the run's time zero: the fault schedule
//! and the open-loop load both run on its clock, so an early fault meets traffic. Send the load
//! until `duration`; wait for the answers (each bounded by its client deadline); clear the
//! faults; stop the proxy and then the fakes; count the processes left behind; compute the
//! verdict, with the delivery ledger from the hub, and write the reports. A Ctrl-C at any point
//! skips to the cleanup and writes a partial report.
//!
//! A proxy that never becomes ready is [`RunError::NotReady`] (exit 3): nothing was measured.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::answers;
use super::caller::{Caller, McpRoute, Via};
use super::hub::Hub;
use super::load::{self, LoadCounters};
use super::procs::{self, HttpFake, HttpForm, ProcError};
use super::progress::{Progress, Snapshot};
use super::record::PROBE_IDS;
use super::report::{self, RunInfo, Timeline};
use super::scenario::{
    FaultKind, FaultSpec, Scenario, ScenarioError, Target, Transport, parse_scenario_file,
};
use super::verdict::{FaultEvent, Outcome, Verdict, VerdictInput, render_table};
use crate::fake::wire::{OneShot, WireFault, WireKind};

/// How long the proxy gets to start and answer a call on every server.
const PROXY_START: Duration = Duration::from_secs(90);
/// How long one readiness call may take.
const PROBE_DEADLINE: Duration = Duration::from_secs(5);
/// How often a server that has not answered yet is asked again.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// How long the proxy gets to exit after SIGTERM before it is killed (and the run noted).
const PROXY_STOP: Duration = Duration::from_secs(15);
/// How long children get to disappear after the proxy exited before they count as leaked.
const LEAK_GRACE: Duration = Duration::from_secs(3);

/// What `mcpo chaos` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct ChaosOptions {
    pub file: PathBuf,
    /// Another mcpo-compatible proxy: a shell command with `{config}` and `{port}`.
    pub target: Option<String>,
    pub report: Option<PathBuf>,
    pub junit: Option<PathBuf>,
    pub html: Option<PathBuf>,
    pub seed: Option<u64>,
    /// The proxy's front the load goes through: its OpenAPI routes or its MCP endpoint.
    pub via: Via,
    /// Where the MCP endpoint is and how it names tools (`--via mcp`).
    pub mcp_route: McpRoute,
    /// No progress display (tests).
    pub quiet: bool,
}

/// Why a run could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The scenario file is invalid (exit 2).
    #[error("{0}")]
    Scenario(#[from] ScenarioError),
    /// The scenario or command line asks for something this harness cannot do (exit 2).
    #[error("{0}")]
    Invalid(String),
    /// The proxy never became ready: it did not start, exited, or did not answer a real call
    /// on every server in time (exit 3: an invalid run, nothing about the proxy's recovery
    /// was measured).
    #[error("invalid run: {0}")]
    NotReady(String),
    /// Something failed while running (exit 1).
    #[error("{0}")]
    Failed(String),
}

impl From<ProcError> for RunError {
    fn from(e: ProcError) -> Self {
        RunError::Failed(e.to_string())
    }
}

/// The result of a run that got as far as a verdict.
#[derive(Debug)]
pub struct RunOutcome {
    pub verdict: Verdict,
    /// Interrupted (Ctrl-C): the verdict covers part of the run.
    pub partial: bool,
    pub report: Value,
}

/// A fault event as it really happened, filled in by the schedule.
#[derive(Debug, Clone)]
struct Happened {
    spec: FaultSpec,
    injected_at: Option<Duration>,
    cleared_at: Option<Duration>,
}

/// The run's scratch directory (the proxy's config and log), removed however the run ends.
struct WorkDir(PathBuf);

impl WorkDir {
    fn create(marker: &str) -> Result<WorkDir, RunError> {
        let path = std::env::temp_dir().join(format!("mcpo-chaos-{marker}"));
        std::fs::create_dir_all(&path)
            .map_err(|e| RunError::Failed(format!("cannot create {}: {e}", path.display())))?;
        Ok(WorkDir(path))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether a fault is a start-up window at `0s`: it must be in force before the servers first
/// start, so it opens before the proxy does, and its server cannot answer a readiness call.
fn opens_before_start(spec: &FaultSpec) -> bool {
    spec.at.is_zero() && matches!(spec.kind, FaultKind::Refuse | FaultKind::SlowStart { .. })
}

/// Runs the scenario in `opts.file`; `interrupt` ends it early (Ctrl-C).
pub async fn run(
    opts: &ChaosOptions,
    interrupt: CancellationToken,
) -> Result<RunOutcome, RunError> {
    let scenario = parse_scenario_file(&opts.file)?;
    let seed = opts.seed.unwrap_or(scenario.seed);
    let bin = std::env::current_exe()
        .map_err(|e| RunError::Failed(format!("cannot find this binary: {e}")))?;
    let marker = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let work = WorkDir::create(&marker)?;
    let started_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut progress = if opts.quiet {
        Progress::Quiet
    } else {
        Progress::for_stdout(scenario.duration)
    };
    progress.say(&format!(
        "chaos: {} ({}), seed {seed}, {} against {}",
        scenario.name,
        scenario.description.trim(),
        super::verdict::format_duration(scenario.duration),
        opts.target.as_deref().unwrap_or("mcpo serve")
    ));
    if opts.target.is_some() {
        for note in settings_a_target_cannot_get(&scenario) {
            progress.say(&format!("chaos: note: {note}"));
        }
    }

    // A low soft limit on open files would turn the harness's own sockets into "proxy
    // connect errors"; the hard limit is ours to take.
    let fd_limit = procs::raise_fd_limit();
    tracing::debug!(?fd_limit, "open-file limit for the run");
    let hub = Hub::start(seed)
        .await
        .map_err(|e| RunError::Failed(format!("cannot start the fault hub: {e}")))?;
    let hub = Arc::new(hub);
    let hub_addr = hub.addr().to_string();
    let happened = Arc::new(std::sync::Mutex::new(
        scenario
            .faults
            .iter()
            .map(|spec| Happened {
                spec: spec.clone(),
                injected_at: None,
                cleared_at: None,
            })
            .collect::<Vec<_>>(),
    ));
    // Start-up windows at 0s: open now, with a provisional end far enough away; their real end
    // is set once time zero is known.
    let early: BTreeSet<usize> = scenario
        .faults
        .iter()
        .filter(|f| opens_before_start(f))
        .map(|f| f.index)
        .collect();
    for spec in scenario.faults.iter().filter(|f| early.contains(&f.index)) {
        open_window(
            &scenario,
            &hub,
            spec,
            Instant::now() + PROXY_START + spec.window.unwrap_or_default(),
        );
    }

    // Everything below must reach the cleanup, whatever fails.
    let mut fakes: BTreeMap<String, HttpFake> = BTreeMap::new();
    let mut proxy: Option<Child> = None;
    let counters = Arc::new(LoadCounters::default());
    let schedule_stop = CancellationToken::new();
    let mut schedule = None;
    let mut mcp_caller: Option<Caller> = None;
    let mut zero = Instant::now();
    let outcome = async {
        for server in &scenario.servers {
            let form = match server.transport {
                Transport::StreamableHttp => HttpForm::StreamableHttp,
                Transport::Sse => HttpForm::Sse,
                // The proxy starts stdio servers itself.
                Transport::Stdio => continue,
            };
            let fake = HttpFake::start(&bin, &server.name, form, &hub_addr, &marker, Duration::from_secs(20)).await?;
            fakes.insert(server.name.clone(), fake);
        }
        let config = proxy_config(&scenario, &bin, &hub_addr, &marker, &fakes, opts.target.is_none());
        let config_path = work.0.join("config.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap_or_default())
            .map_err(|e| RunError::Failed(format!("cannot write {}: {e}", config_path.display())))?;
        let begun = Instant::now();
        let (mut child, base) = tokio::select! {
            started = start_proxy(&bin, opts.target.as_deref(), &config_path, &scenario, &marker, &work.0) => started?,
            _ = interrupt.cancelled() => return Err(RunError::Failed("interrupted while the proxy was starting".into())),
        };
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| RunError::Failed(format!("cannot build the HTTP client: {e}")))?;
        let exempt: Vec<(String, &'static str)> = scenario
            .faults
            .iter()
            .filter(|f| early.contains(&f.index))
            .flat_map(|f| servers_of(&scenario, &f.server).into_iter().map(move |s| (s.to_string(), f.kind.label())))
            .collect();
        let caller = Caller::new(opts.via, client, &base, opts.mcp_route.clone());
        let probe = await_ready(&caller, &scenario, &exempt, begun + PROXY_START);
        let ready = tokio::select! {
            ready = probe => ready,
            status = child.wait() => Err(RunError::NotReady(format!(
                "the proxy exited while starting ({}); its log ends with: {}",
                status.map_or("unknown status".to_string(), |s| s.to_string()),
                log_tail(&work.0)
            ))),
            _ = interrupt.cancelled() => Err(RunError::Failed("interrupted while the proxy was starting".into())),
        };
        proxy = Some(child);
        ready?;
        zero = Instant::now();
        hub.set_zero(zero);
        let mut said = format!(
            "chaos: proxy ready at {base} after {:.1}s: every server answered a call through it",
            begun.elapsed().as_secs_f64()
        );
        for (server, kind) in &exempt {
            said.push_str(&format!("; {server} not asked (a {kind} window is open at 0s)"));
        }
        progress.say(&said);
        // Time zero: the start-up windows get their real end, the rest of the schedule and the
        // load start now.
        for spec in scenario.faults.iter().filter(|f| early.contains(&f.index)) {
            open_window(&scenario, &hub, spec, zero + spec.window.unwrap_or_default());
        }
        schedule = Some(tokio::spawn(run_schedule(
            scenario.clone(),
            hub.clone(),
            zero,
            happened.clone(),
            early.clone(),
            schedule_stop.clone(),
        )));
        let plan = load::LoadPlan {
            load: scenario.load.clone(),
            seed,
            clock: zero,
            start: zero,
            end: scenario.duration,
        };
        mcp_caller = Some(caller.clone());
        let driver = tokio::spawn(load::drive(caller, plan, counters.clone(), interrupt.clone()));
        let mut ticker = tokio::time::interval(Duration::from_millis(200));
        let driver = async {
            tokio::pin!(driver);
            loop {
                tokio::select! {
                    records = &mut driver => return records,
                    _ = ticker.tick() => {
                        let snapshot = snapshot(&counters, &happened, zero, scenario.duration);
                        progress.update(&snapshot);
                    }
                }
            }
        };
        let records = driver
            .await
            .map_err(|e| RunError::Failed(format!("the load driver failed: {e}")))?;
        Ok(records)
    }
    .await;

    // Cleanup, in order: no more faults, the proxy (which must stop its children), then the
    // harness's own fakes; then whatever is left is a leak.
    schedule_stop.cancel();
    if let Some(schedule) = schedule {
        let _ = schedule.await;
    }
    hub.clear();
    // The client's session ends before the proxy does, as a client's would.
    let sessions_opened = mcp_caller.as_ref().map_or(0, Caller::sessions_opened);
    if let Some(caller) = mcp_caller.take() {
        caller.close().await;
    }
    let mut notes = Vec::new();
    if let Some(mut child) = proxy.take()
        && let Some(note) = stop_proxy(&mut child).await
    {
        notes.push(note);
    }
    for (_, fake) in std::mem::take(&mut fakes) {
        fake.stop().await;
    }
    let leaked = leaked_processes(&marker).await;
    if !leaked.is_empty() {
        notes.push(format!(
            "{} process(es) of the run were still alive after shutdown and were killed: {:?}",
            leaked.len(),
            leaked
        ));
        for pid in &leaked {
            procs::signal(*pid, libc::SIGKILL);
        }
    }
    let decisions = hub.decisions();
    let ledger = hub.ledger();
    if let Ok(hub) = Arc::try_unwrap(hub) {
        hub.stop().await;
    }
    drop(work);

    let records = outcome?;
    let partial = interrupt.is_cancelled();
    let events: Vec<FaultEvent> = happened
        .lock()
        .map(|h| {
            h.iter()
                .filter_map(|h| {
                    let injected_at = h.injected_at?;
                    Some(FaultEvent {
                        injected_at,
                        cleared_at: h.cleared_at.unwrap_or(zero.elapsed()),
                        ..FaultEvent::planned(&h.spec)
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let verdict = Verdict::evaluate(&VerdictInput {
        slo: &scenario.slo,
        calls: &scenario.load.calls,
        events: &events,
        records: &records,
        leaked_processes: leaked.len() as u64,
        ledger: Some(&ledger),
    });
    let run_len = zero
        .elapsed()
        .min(scenario.duration + scenario.load.deadline);
    let info = RunInfo {
        seed,
        started_unix_ms,
        duration_actual: zero.elapsed(),
        target: {
            let target = opts.target.as_deref().unwrap_or("mcpo serve");
            match opts.via {
                Via::Http => target.to_string(),
                Via::Mcp => format!("{target}, via MCP ({})", opts.mcp_route.path),
            }
        },
        decisions,
        timeline: Timeline::from_records(&records, run_len),
        partial,
        ledger,
    };
    let mut final_snapshot = snapshot(&counters, &happened, zero, scenario.duration);
    final_snapshot.events_cleared = verdict.events.len();
    final_snapshot.events_recovered = verdict.events.iter().filter(|e| e.recovered).count();
    progress.finish(&final_snapshot);
    let mut json = report::to_json(&scenario, &verdict, &info);
    if !notes.is_empty() {
        json["notes"] = json!(notes);
    }
    json["via"] = json!(opts.via.label());
    if opts.via == Via::Mcp {
        json["mcp_sessions_opened"] = json!(sessions_opened);
    }
    write_reports(opts, &scenario, &verdict, &info, &json)?;
    if !opts.quiet {
        for note in &notes {
            println!("note: {note}");
        }
        if opts.via == Via::Mcp {
            println!(
                "via MCP: {sessions_opened} session(s) opened on {} (one per endpoint means the client never saw a session end)",
                opts.mcp_route.path
            );
        }
        println!("{}", render_table(&verdict));
        println!(
            "{} {} ({} requests, {} hung){}",
            verdict.word(),
            scenario.name,
            records.len(),
            verdict.totals.hung,
            if partial {
                " [interrupted: partial run]"
            } else {
                ""
            }
        );
    }
    Ok(RunOutcome {
        verdict,
        partial,
        report: json,
    })
}

/// The scenario's proxy settings that a plain `mcpServers` file cannot say, for a target: it
/// runs with its own. (`proxy.env` reaches it, in its environment.)
fn settings_a_target_cannot_get(scenario: &Scenario) -> Vec<String> {
    let mut missing = Vec::new();
    let p = &scenario.proxy;
    if let Some(timeout) = p.timeout {
        missing.push(format!(
            "proxy.timeout {}",
            super::verdict::format_duration(timeout)
        ));
    }
    let pool = |pool: &super::scenario::PoolSpec| {
        let mut parts = Vec::new();
        if let Some(min) = pool.min {
            parts.push(format!("min {min}"));
        }
        if let Some(max) = pool.max {
            parts.push(format!("max {max}"));
        }
        parts.join(", ")
    };
    if let Some(p) = &p.pool {
        missing.push(format!("proxy.pool ({})", pool(p)));
    }
    for server in &scenario.servers {
        if let Some(p) = &server.pool {
            missing.push(format!("servers[{}].pool ({})", server.name, pool(p)));
        }
    }
    if !p.retryable_tools.is_empty() {
        missing.push(format!(
            "proxy.retryable_tools [{}]",
            p.retryable_tools.join(", ")
        ));
    }
    if missing.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "the target gets a plain mcpServers config, which cannot say {}; it runs with its own settings for these",
        missing.join(", ")
    )]
}

/// Waits until every server of the scenario (but the `exempt` ones) has answered a real tool
/// call through the proxy with the right answer, or `deadline` passes.
///
/// A 2xx with the wrong answer ends the wait at once: a proxy that makes up answers will not
/// start making right ones, and the run would measure nothing.
async fn await_ready(
    caller: &Caller,
    scenario: &Scenario,
    exempt: &[(String, &'static str)],
    deadline: Instant,
) -> Result<(), RunError> {
    let mut pending: Vec<&str> = scenario
        .servers
        .iter()
        .map(|s| s.name.as_str())
        .filter(|s| !exempt.iter().any(|(e, _)| e == s))
        .collect();
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    let mut id = PROBE_IDS;
    let args = serde_json::Map::from_iter([("message".to_string(), json!("ready?"))]);
    while !pending.is_empty() {
        let mut still = Vec::new();
        for server in pending {
            id += 1;
            let Ok((args, expected)) = answers::prepare("echo", &args, id) else {
                return Err(RunError::Failed("cannot build a readiness call".into()));
            };
            let reply = caller
                .call(server, "echo", &args, PROBE_DEADLINE, &expected)
                .await;
            let seen = match reply.outcome {
                Outcome::Success => continue,
                Outcome::WrongAnswer => {
                    return Err(RunError::NotReady(format!(
                        "the proxy answered a call of {server}/echo without the right answer (wanted {expected:?}, got {:?}): it did not call the scenario's server {server}",
                        reply.detail
                    )));
                }
                _ => reply.detail,
            };
            last.insert(server.to_string(), seen);
            still.push(server);
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if Instant::now() + PROBE_EVERY >= deadline {
            let detail: Vec<String> = pending
                .iter()
                .map(|s| format!("{s}: {}", last.get(*s).map_or("", String::as_str)))
                .collect();
            return Err(RunError::NotReady(format!(
                "the proxy did not answer a call on every server within {}s ({}); likely it did not start the scenario's servers from the config it was given",
                PROXY_START.as_secs(),
                detail.join("; ")
            )));
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
    Ok(())
}

fn write_reports(
    opts: &ChaosOptions,
    scenario: &Scenario,
    verdict: &Verdict,
    info: &RunInfo,
    json: &Value,
) -> Result<(), RunError> {
    let write = |path: &Path, text: &[u8]| {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(path, text)
            .map_err(|e| RunError::Failed(format!("cannot write {}: {e}", path.display())))
    };
    if let Some(path) = &opts.report {
        write(path, &serde_json::to_vec_pretty(json).unwrap_or_default())?;
    }
    if let Some(path) = &opts.junit {
        write(path, report::to_junit(scenario, verdict, info).as_bytes())?;
    }
    if let Some(path) = &opts.html {
        write(path, report::to_html(scenario, verdict, info).as_bytes())?;
    }
    Ok(())
}

fn snapshot(
    counters: &LoadCounters,
    happened: &std::sync::Mutex<Vec<Happened>>,
    clock: Instant,
    duration: Duration,
) -> Snapshot {
    let mut s = Snapshot::read(counters);
    s.elapsed = clock.elapsed();
    s.duration = duration;
    let last_success = Duration::from_millis(
        counters
            .last_success_sent_ms
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    if let Ok(h) = happened.lock() {
        for e in h.iter() {
            match (e.injected_at, e.cleared_at) {
                (Some(_), None) => {
                    s.active
                        .push(format!("{} on {}", e.spec.kind.label(), e.spec.server))
                }
                (Some(_), Some(cleared)) => {
                    s.events_cleared += 1;
                    // A success sent after the clear: the verdict's rule, on any server.
                    if last_success >= cleared {
                        s.events_recovered += 1;
                    }
                }
                _ => {}
            }
        }
    }
    s
}

/// The servers a fault's target names.
fn servers_of<'a>(scenario: &'a Scenario, target: &Target) -> Vec<&'a str> {
    scenario
        .servers
        .iter()
        .filter(|s| target.matches(&s.name))
        .map(|s| s.name.as_str())
        .collect()
}

/// The wire form of a windowed fault kind.
fn wire_kind(kind: &FaultKind) -> Option<WireKind> {
    let ms = |d: Duration| d.as_millis() as u64;
    Some(match kind {
        FaultKind::Crash | FaultKind::SessionLoss => return None,
        FaultKind::Hang => WireKind::Hang,
        FaultKind::Latency { min, max } => WireKind::Latency {
            min_ms: ms(*min),
            max_ms: ms(*max),
        },
        FaultKind::HttpError {
            status,
            retry_after,
        } => WireKind::HttpError {
            status: *status,
            retry_after: *retry_after,
        },
        FaultKind::JsonRpcError { code, message } => WireKind::JsonrpcError {
            code: *code,
            message: message.clone(),
        },
        FaultKind::ToolError => WireKind::ToolError,
        FaultKind::Reset => WireKind::Reset,
        FaultKind::Garbage { forms } => WireKind::Garbage {
            forms: forms.clone(),
        },
        FaultKind::SlowStart { delay } => WireKind::SlowStart {
            delay_ms: ms(*delay),
        },
        FaultKind::Refuse => WireKind::Refuse,
    })
}

/// Carries out the fault schedule on the run's clock, noting when each event really began
/// and ended.
async fn run_schedule(
    scenario: Scenario,
    hub: Arc<Hub>,
    clock: Instant,
    happened: Arc<std::sync::Mutex<Vec<Happened>>>,
    early: BTreeSet<usize>,
    stop: CancellationToken,
) {
    enum Step {
        Begin(usize),
        End(usize),
    }
    let mut steps: Vec<(Duration, Step)> = Vec::new();
    for (i, spec) in scenario.faults.iter().enumerate() {
        steps.push((spec.at, Step::Begin(i)));
        if spec.window.is_some() {
            steps.push((spec.clears_at(), Step::End(i)));
        }
    }
    // Ends before begins at the same instant, so back-to-back windows do not overlap.
    steps.sort_by_key(|(at, step)| (*at, matches!(step, Step::Begin(_))));
    for (at, step) in steps {
        tokio::select! {
            _ = tokio::time::sleep_until(clock + at) => {}
            _ = stop.cancelled() => break,
        }
        let now = clock.elapsed();
        match step {
            Step::Begin(i) => {
                let spec = &scenario.faults[i];
                // A start-up window at 0s opened before the proxy started.
                if !early.contains(&spec.index) {
                    match &spec.kind {
                        FaultKind::Crash | FaultKind::SessionLoss => {
                            let action = if spec.kind == FaultKind::Crash {
                                OneShot::Crash
                            } else {
                                OneShot::SessionLoss
                            };
                            for server in servers_of(&scenario, &spec.server) {
                                let reached = hub.one_shot(server, spec.index, action);
                                tracing::info!(server, reached, ?action, "fault: one-shot");
                            }
                        }
                        _ => open_window(&scenario, &hub, spec, clock + spec.clears_at()),
                    }
                }
                if let Ok(mut h) = happened.lock() {
                    // An early window has been in force since before time zero.
                    h[i].injected_at = Some(if early.contains(&spec.index) {
                        Duration::ZERO
                    } else {
                        now
                    });
                    if spec.window.is_none() {
                        h[i].cleared_at = Some(now);
                    }
                }
            }
            Step::End(i) => {
                let spec = &scenario.faults[i];
                for server in servers_of(&scenario, &spec.server) {
                    hub.close(server, spec.index);
                }
                if let Ok(mut h) = happened.lock() {
                    h[i].cleared_at = Some(now);
                }
            }
        }
    }
}

/// Opens the window of a windowed fault on each of its servers, until `until`.
fn open_window(scenario: &Scenario, hub: &Hub, spec: &FaultSpec, until: Instant) {
    let Some(kind) = wire_kind(&spec.kind) else {
        return;
    };
    for server in servers_of(scenario, &spec.server) {
        hub.open(
            server,
            WireFault {
                index: spec.index,
                kind: kind.clone(),
                probability: spec.probability,
                tools: spec.tools.clone(),
                remaining_ms: 0,
                seed: 0,
                instance: spec.instance_scope,
            },
            until,
        );
    }
}

/// A plain `mcpServers` config that any mcpo accepts; for this proxy, with the scenario's
/// proxy settings (`timeout`, `pool`, `retryable_tools`) added per server.
fn proxy_config(
    scenario: &Scenario,
    bin: &Path,
    hub: &str,
    marker: &str,
    fakes: &BTreeMap<String, HttpFake>,
    ours: bool,
) -> Value {
    let mut servers = serde_json::Map::new();
    for server in &scenario.servers {
        let url = || {
            fakes
                .get(&server.name)
                .map(|f| f.url.clone())
                .unwrap_or_default()
        };
        let mut entry = match server.transport {
            Transport::StreamableHttp => json!({"type": "streamable-http", "url": url()}),
            Transport::Sse => json!({"type": "sse", "url": url()}),
            Transport::Stdio => json!({
                "command": bin.display().to_string(),
                "args": ["fake-server", "--transport", "stdio", "--hub", hub, "--id", server.name],
                "env": {procs::RUN_MARKER: marker},
            }),
        };
        if ours {
            if let Some(timeout) = scenario.proxy.timeout {
                entry["timeout"] = json!(timeout.as_secs_f64());
            }
            let pool = server.pool.as_ref().or(scenario.proxy.pool.as_ref());
            if let Some(pool) = pool {
                let mut p = serde_json::Map::new();
                if let Some(min) = pool.min {
                    p.insert("min".into(), json!(min));
                }
                if let Some(max) = pool.max {
                    p.insert("max".into(), json!(max));
                }
                entry["pool"] = Value::Object(p);
            }
            if !scenario.proxy.retryable_tools.is_empty() {
                entry["retryable_tools"] = json!(scenario.proxy.retryable_tools);
            }
        }
        servers.insert(server.name.clone(), entry);
    }
    json!({"mcpServers": servers})
}

/// The last lines of the proxy's log, for messages about a proxy that did not start.
fn log_tail(work: &Path) -> String {
    let text = std::fs::read_to_string(work.join("proxy.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// `s` as one word for `sh`: as it is when it holds nothing the shell reads specially,
/// otherwise in single quotes (a `'` inside becomes `'\''`).
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./:=@%+,-".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The `--target` command with `{config}` and `{port}` filled in, each shell-quoted.
pub fn target_command(template: &str, config: &Path, port: u16) -> String {
    template
        .replace("{config}", &shell_quote(&config.display().to_string()))
        .replace("{port}", &port.to_string())
}

/// Starts the proxy and returns it with its base URL once it accepts connections (readiness
/// to serve calls is [`await_ready`]'s business).
async fn start_proxy(
    bin: &Path,
    target: Option<&str>,
    config: &Path,
    scenario: &Scenario,
    marker: &str,
    work: &Path,
) -> Result<(Child, String), RunError> {
    let log_path = work.join("proxy.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| RunError::Failed(format!("cannot create {}: {e}", log_path.display())))?;
    let (mut cmd, port) = match target {
        None => {
            let mut cmd = Command::new(bin);
            cmd.args(["serve", "--host", "127.0.0.1", "--port", "0", "--config"])
                .arg(config)
                .env("LOG_LEVEL", "WARNING");
            (cmd, None)
        }
        Some(template) => {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .map_err(|e| RunError::Failed(format!("no free port for the target: {e}")))?;
            let line = target_command(template, config, port);
            let mut cmd = Command::new("sh");
            // `exec`, so that the signal to stop reaches the proxy itself.
            cmd.args(["-c", &format!("exec {line}")]);
            (cmd, Some(port))
        }
    };
    cmd.envs(&scenario.proxy.env)
        .stdout(std::process::Stdio::piped())
        .stderr(log);
    procs::prepare(&mut cmd, marker);
    let what = target.map_or("mcpo serve".to_string(), |t| format!("the target {t:?}"));
    let mut child = cmd.spawn().map_err(|source| {
        RunError::NotReady(
            ProcError::Spawn {
                what: what.clone(),
                source,
            }
            .to_string(),
        )
    })?;
    let stdout = child.stdout.take();
    let listening = async {
        match port {
            None => {
                // Our proxy prints where it serves once it listens.
                let mut lines = BufReader::new(stdout?).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(rest) = line.split("mcpo serving on ").nth(1) {
                        let base = rest.split_whitespace().next()?.to_string();
                        tokio::spawn(
                            async move { while let Ok(Some(_)) = lines.next_line().await {} },
                        );
                        return Some(base);
                    }
                }
                None
            }
            Some(port) => {
                if let Some(stdout) = stdout {
                    tokio::spawn(async move {
                        let mut lines = BufReader::new(stdout).lines();
                        while let Ok(Some(_)) = lines.next_line().await {}
                    });
                }
                // Any HTTP answer means it listens; whether it serves is the calls' to show.
                let base = format!("http://127.0.0.1:{port}");
                let client = reqwest::Client::new();
                loop {
                    let answered = client
                        .get(format!("{base}/openapi.json"))
                        .timeout(Duration::from_secs(2))
                        .send()
                        .await
                        .is_ok();
                    if answered {
                        return Some(base);
                    }
                    tokio::time::sleep(PROBE_EVERY).await;
                }
            }
        }
    };
    let exited = async {
        let status = child.wait().await;
        status.ok()
    };
    let result = tokio::select! {
        base = tokio::time::timeout(PROXY_START, listening) => Ok(base),
        status = exited => Err(status),
    };
    match result {
        Ok(Ok(Some(base))) => Ok((child, base)),
        Ok(_) => {
            let _ = child.kill().await;
            Err(RunError::NotReady(format!(
                "{what} did not listen within {}s; its log ends with: {}",
                PROXY_START.as_secs(),
                log_tail(work)
            )))
        }
        Err(status) => Err(RunError::NotReady(format!(
            "{what} exited while starting ({}); its log ends with: {}",
            status.map_or("unknown status".to_string(), |s| s.to_string()),
            log_tail(work)
        ))),
    }
}

/// SIGTERM to the proxy itself (not its group: stopping its children is its job, and what the
/// leak count checks), then SIGKILL if it does not exit in time.
async fn stop_proxy(child: &mut Child) -> Option<String> {
    let pid = child.id()?;
    procs::signal(pid, libc::SIGTERM);
    match tokio::time::timeout(PROXY_STOP, child.wait()).await {
        Ok(Ok(status)) if status.success() => None,
        Ok(Ok(status)) => Some(format!("the proxy exited with {status} after SIGTERM")),
        _ => {
            let _ = child.kill().await;
            Some(format!(
                "the proxy did not exit within {PROXY_STOP:?} of SIGTERM and was killed"
            ))
        }
    }
}

/// The run's processes still alive once the proxy and the harness's fakes are gone, after a
/// grace period for them to exit (process exit is no event we can wait on from here).
async fn leaked_processes(marker: &str) -> Vec<u32> {
    let deadline = Instant::now() + LEAK_GRACE;
    loop {
        let left = procs::marked_processes(marker);
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_commands_get_their_values_as_single_shell_words() {
        assert_eq!(
            shell_quote("/tmp/mcpo-chaos-1/config.json"),
            "/tmp/mcpo-chaos-1/config.json"
        );
        assert_eq!(shell_quote("/tmp/a b/c.json"), "'/tmp/a b/c.json'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$(rm -rf x)"), "'$(rm -rf x)'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(
            target_command(
                "py --port {port} --config {config}",
                Path::new("/t/a b"),
                8080
            ),
            "py --port 8080 --config '/t/a b'"
        );
    }
}
