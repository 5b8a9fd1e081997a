//! `mcpo chaos`: the harness judged as strictly as it judges the proxy. Its verdicts must be
//! right in both directions, its inputs checked, and it must leave nothing behind.

use crate::common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{mcpo_bin, tempdir::TempDir};
use mcpo::chaos::caller::{Caller, McpRoute, Via};
use mcpo::chaos::load::{LoadCounters, LoadPlan, drive};
use mcpo::chaos::scenario::parse_scenario_str;
use mcpo::chaos::verdict::{FaultEvent, Outcome, RequestRecord, Verdict, VerdictInput};
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The harness's caller on the OpenAPI routes of `base`.
fn http_caller(base: &str) -> Caller {
    Caller::new(Via::Http, reqwest::Client::new(), base, McpRoute::default())
}

/// Runs `mcpo chaos [--check]` on scenario text; returns exit code and stderr.
fn chaos_check(text: &str, check_only: bool) -> (i32, String) {
    let dir = TempDir::new();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, text).unwrap();
    let mut cmd = Command::new(mcpo_bin());
    cmd.arg("chaos");
    if check_only {
        cmd.arg("--check");
    }
    let out = cmd.arg(&path).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

const GOOD: &str = "name: t
duration: 10s
servers:
  - name: s
    transport: stdio
load:
  rate: 10
  calls: [{tool: s/echo, args: {message: x}}]
faults:
  - {at: 2s, for: 2s, server: s, kind: tool-error}
slo:
  success_rate: 0.9
  hung_requests: 0
";

/// Every class of mistake exits 2 before anything is started, naming the file, the line and
/// the key.
#[test]
fn invalid_scenarios_exit_2_naming_file_line_and_key() {
    let cases = [
        (
            "name: t\n",
            "  rate: 10\n",
            "  rate: 10\n  burst: 3\n",
            8,
            "load.burst",
        ),
        (
            "bad duration",
            "duration: 10s",
            "duration: 10x",
            2,
            "duration",
        ),
        (
            "unknown server",
            "server: s, kind",
            "server: nope, kind",
            10,
            "faults[0].server",
        ),
        (
            "window past the end",
            "at: 2s, for: 2s",
            "at: 8s, for: 5s",
            10,
            "faults[0]",
        ),
        (
            "probability",
            "kind: tool-error}",
            "kind: tool-error, probability: 1.5}",
            10,
            "faults[0].probability",
        ),
        (
            "a fault that never applies",
            "kind: tool-error}",
            "kind: tool-error, probability: 0}",
            10,
            "faults[0].probability",
        ),
        (
            "kind not possible on the transport",
            "kind: tool-error}",
            "kind: http-error, status: 500}",
            10,
            "faults[0]",
        ),
    ];
    for (what, from, to, line, key) in cases {
        assert!(GOOD.contains(from), "{what}");
        let (code, stderr) = chaos_check(&GOOD.replacen(from, to, 1), false);
        assert_eq!(code, 2, "{what}: {stderr}");
        assert!(
            stderr.contains(&format!("bad.yaml:{line}:")) && stderr.contains(key),
            "{what}: {stderr}"
        );
    }
    let (code, stderr) = chaos_check(GOOD, true);
    assert_eq!(code, 0, "the good file is accepted: {stderr}");
}

/// The load driver and the verdict on a scripted endpoint whose answers are known: the first
/// twenty requests get 500, one gets an answer only after the client's deadline, the rest
/// succeed. The numbers are worked out by hand from the open-loop schedule (request `i` is
/// sent at `i * 50 ms`).
#[tokio::test]
async fn verdict_on_a_scripted_endpoint_matches_the_hand_computed_one() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(20)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(echo_answer)
        .with_priority(2)
        .mount(&server)
        .await;
    let scenario = parse_scenario_str(
        "name: scripted
duration: 3s
servers:
  - name: s
    transport: streamable-http
load:
  rate: 20
  calls: [{tool: s/echo, args: {message: x}}]
  deadline: 2s
faults:
  - {at: 0s, for: 600ms, server: s, kind: http-error, status: 500}
slo:
  recovery_rate: 1.0
  recovery_within: 1s
  success_rate: 0.99
  hung_requests: 0
",
        "scripted.yaml",
    )
    .unwrap();
    let clock = Instant::now();
    let plan = LoadPlan {
        load: scenario.load.clone(),
        seed: 1,
        clock,
        start: clock,
        end: scenario.duration,
    };
    let records = drive(
        http_caller(&server.uri()),
        plan,
        Arc::new(LoadCounters::default()),
        CancellationToken::new(),
    )
    .await;
    // 3 s at 20 per second.
    assert_eq!(records.len(), 60);
    // Requests 0..20 (sent 0 to 0.95 s) got 500; the rest succeeded.
    for r in &records {
        let expected = if r.id < 20 {
            Outcome::HttpError
        } else {
            Outcome::Success
        };
        assert_eq!(r.outcome, expected, "{r:?}");
    }
    let events = [FaultEvent {
        injected_at: Duration::ZERO,
        cleared_at: Duration::from_millis(600),
        ..FaultEvent::planned(&scenario.faults[0])
    }];
    let verdict = Verdict::evaluate(&VerdictInput {
        slo: &scenario.slo,
        calls: &scenario.load.calls,
        events: &events,
        records: &records,
        leaked_processes: 0,
        ledger: None,
    });
    // The fault cleared at 0.6 s; the first request sent after it that succeeded is #20,
    // sent at 1.0 s: recovery time = its answer time - 0.6 s, about 0.4 s.
    let event = &verdict.events[0];
    assert_eq!(event.recovered_by, Some(20));
    let rt = event.recovery_time.unwrap();
    assert!(
        rt >= Duration::from_millis(390) && rt < Duration::from_millis(900),
        "{rt:?}"
    );
    assert!(event.recovered);
    // Requests #12..#19 (sent 0.6 to 0.95 s) failed after the window but inside the recovery
    // period: excluded, like the window's own. So is #20 itself, sent before its own answer
    // ended the period. What remains, #21..#59, all succeeded.
    // The SLOs, not the run's validity: this driver shares the test's one-thread runtime with
    // the mock server, so its send lag says more about the test machine than about the judge.
    assert!(
        verdict.slos.iter().all(|s| s.passed),
        "{}",
        mcpo::chaos::verdict::render_table(&verdict)
    );
    let success = verdict
        .slos
        .iter()
        .find(|s| s.name == "success_rate")
        .unwrap();
    assert!(
        success.measured.contains("39 of 39"),
        "{}",
        success.measured
    );
}

/// What mcpo answers to a call of the fake's `echo`: the message, as a JSON string.
fn echo_answer(request: &wiremock::Request) -> ResponseTemplate {
    let args: Value = serde_json::from_slice(&request.body).unwrap_or_default();
    ResponseTemplate::new(200).set_body_json(args["message"].clone())
}

/// Drives `seconds` of `rate` requests of `s/echo` against `base` and judges them with no
/// fault and the default SLOs.
async fn drive_echo(base: String, rate: u32, seconds: u32) -> (Vec<RequestRecord>, Verdict) {
    let scenario = parse_scenario_str(
        &format!(
            "name: echo
duration: {seconds}s
servers:
  - name: s
    transport: streamable-http
load:
  rate: {rate}
  calls: [{{tool: s/echo, args: {{message: x}}}}]
  deadline: 2s
slo:
  success_rate: 0.99
"
        ),
        "echo.yaml",
    )
    .unwrap();
    let clock = Instant::now();
    let records = drive(
        http_caller(&base),
        LoadPlan {
            load: scenario.load.clone(),
            seed: 1,
            clock,
            start: clock,
            end: scenario.duration,
        },
        Arc::new(LoadCounters::default()),
        CancellationToken::new(),
    )
    .await;
    let verdict = Verdict::evaluate(&VerdictInput {
        slo: &scenario.slo,
        calls: &scenario.load.calls,
        events: &[],
        records: &records,
        leaked_processes: 0,
        ledger: None,
    });
    (records, verdict)
}

/// Defect 1 of issue 13: a "proxy" that answers `200 "ok"` to everything, calling no server,
/// passed every scenario, because any 2xx was a success. Now a 2xx must carry the right answer
/// for its request, and one that does not is a wrong answer, which fails the run.
#[tokio::test]
async fn a_2xx_without_the_right_answer_is_a_wrong_answer_and_fails_the_run() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(Value::from("ok")))
        .mount(&server)
        .await;
    let (records, verdict) = drive_echo(server.uri(), 20, 1).await;
    assert_eq!(records.len(), 20);
    assert!(
        records.iter().all(|r| r.outcome == Outcome::WrongAnswer),
        "{records:?}"
    );
    assert_eq!(verdict.totals.wrong_answers, 20);
    assert!(!verdict.passed());
    let wrong = verdict
        .slos
        .iter()
        .find(|s| s.name == "wrong_answers")
        .unwrap();
    assert!(!wrong.passed, "{wrong:?}");
    assert_eq!(verdict.success_rate, Some(0.0));
}

/// A proxy that answers each request with the result of the one before (a mixed-up pool,
/// a cache keyed wrongly) gives 2xx answers that are right for another request: wrong.
#[tokio::test]
async fn an_answer_meant_for_another_request_is_wrong() {
    let server = MockServer::start().await;
    let previous = Arc::new(std::sync::Mutex::new(Value::from("x [r0]")));
    Mock::given(method("POST"))
        .respond_with(move |request: &wiremock::Request| {
            let args: Value = serde_json::from_slice(&request.body).unwrap_or_default();
            let mut last = previous.lock().unwrap();
            let answer = std::mem::replace(&mut *last, args["message"].clone());
            ResponseTemplate::new(200).set_body_json(answer)
        })
        .mount(&server)
        .await;
    let (records, verdict) = drive_echo(server.uri(), 20, 1).await;
    // The first request happens to get its own answer (the mock's first remembered one).
    assert_eq!(records[0].outcome, Outcome::Success);
    assert!(
        records[1..]
            .iter()
            .all(|r| r.outcome == Outcome::WrongAnswer),
        "{records:?}"
    );
    assert_eq!(verdict.totals.wrong_answers, 19);
    assert!(!verdict.passed());
    // The same endpoint giving each request its own answer passes.
    let honest = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(echo_answer)
        .mount(&honest)
        .await;
    let (records, verdict) = drive_echo(honest.uri(), 20, 1).await;
    assert!(records.iter().all(|r| r.outcome == Outcome::Success));
    assert!(verdict.slos.iter().all(|s| s.passed), "{:?}", verdict.slos);
}

/// A request with no answer by the client's deadline is hung, and fails the SLO.
#[tokio::test]
async fn a_request_past_its_deadline_is_hung() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(echo_answer)
        .with_priority(2)
        .mount(&server)
        .await;
    let scenario = parse_scenario_str(
        "name: hung
duration: 1s
servers:
  - name: s
    transport: stdio
load:
  rate: 5
  calls: [{tool: s/echo, args: {message: x}}]
  deadline: 500ms
slo:
  success_rate: 0.5
  hung_requests: 0
",
        "hung.yaml",
    )
    .unwrap();
    let clock = Instant::now();
    let records = drive(
        http_caller(&server.uri()),
        LoadPlan {
            load: scenario.load.clone(),
            seed: 1,
            clock,
            start: clock,
            end: scenario.duration,
        },
        Arc::new(LoadCounters::default()),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(records.len(), 5);
    assert_eq!(records[0].outcome, Outcome::Hung);
    assert!(records[0].answered_at.is_none());
    assert!(records[1..].iter().all(|r| r.outcome == Outcome::Success));
    let verdict = Verdict::evaluate(&VerdictInput {
        slo: &scenario.slo,
        calls: &scenario.load.calls,
        events: &[],
        records: &records,
        leaked_processes: 0,
        ledger: None,
    });
    assert!(!verdict.passed());
    assert_eq!(verdict.totals.hung, 1);
}

/// Runs `mcpo chaos FILE` with extra arguments and environment; returns the exit code and the
/// JSON report.
fn run_chaos(file: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (i32, Value) {
    let dir = TempDir::new();
    let report = dir.path().join("report.json");
    let mut cmd = Command::new(mcpo_bin());
    cmd.arg("chaos")
        .arg(file)
        .arg("--report")
        .arg(&report)
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    let code = out.status.code().unwrap_or(-1);
    if json.is_null() {
        eprintln!(
            "no report; stdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (code, json)
}

fn scenario_file(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fault-scenarios")
        .join(format!("{name}.yaml"))
}

/// The fault decisions of a report, by what they were about: (fault, harness request, attempt)
/// to whether the draw hit. The attempt is the report's, or (for a report without it) the
/// decision's rank among those of the same fault and request. Decisions without a request
/// (a proxy's pings) are left out: they have no counterpart in another run.
fn decisions(report: &Value) -> std::collections::BTreeMap<(u64, u64, u64), bool> {
    let mut seen: std::collections::HashMap<(u64, u64), u64> = std::collections::HashMap::new();
    let mut out = std::collections::BTreeMap::new();
    for d in report["decisions"].as_array().unwrap() {
        let (Some(fault), Some(request)) = (d["fault"].as_u64(), d["request"].as_u64()) else {
            continue;
        };
        let rank = seen.entry((fault, request)).or_default();
        let attempt = d["attempt"].as_u64().unwrap_or(*rank);
        *rank += 1;
        let hit = d["drawn"].as_bool().or(d["applied"].as_bool()).unwrap();
        out.insert((fault, request, attempt), hit);
    }
    out
}

/// Two real runs with the same seed against mcpo serve draw the same decision for the same
/// request, whatever order the requests reached the fakes in (two servers under one
/// `server: all` fault, two pool members, so arrival orders differ from run to run); another
/// seed draws others.
#[test]
fn the_same_seed_gives_each_request_the_same_fault_decisions() {
    let dir = TempDir::new();
    let file = dir.path().join("coin.yaml");
    std::fs::write(
        &file,
        "name: coin
description: half of the calls in a window get a tool error, on two servers
seed: 42
duration: 5s
servers:
  - name: s
    transport: stdio
  - name: t
    transport: streamable-http
proxy:
  pool: {min: 2, max: 2}
load:
  rate: 80
  calls:
    - {tool: s/echo, args: {message: x}}
    - {tool: t/echo, args: {message: x}}
  deadline: 5s
faults:
  - {at: 1s, for: 3s, server: all, kind: tool-error, probability: 0.5}
slo:
  success_rate: 0.9
  hung_requests: 0
",
    )
    .unwrap();
    let (code, first) = run_chaos(&file, &[], &[]);
    assert!(code == 0 || code == 1, "{code}: {first}");
    let (_, second) = run_chaos(&file, &[], &[]);
    let (_, other) = run_chaos(&file, &["--seed", "43"], &[]);
    let (a, b, c) = (decisions(&first), decisions(&second), decisions(&other));
    let common = |x: &std::collections::BTreeMap<(u64, u64, u64), bool>,
                  y: &std::collections::BTreeMap<(u64, u64, u64), bool>| {
        x.iter()
            .filter_map(|(k, v)| y.get(k).map(|w| (*k, *v, *w)))
            .collect::<Vec<_>>()
    };
    // About 240 calls in the window, one decision each.
    let same = common(&a, &b);
    assert!(same.len() > 150, "{} decisions in both runs", same.len());
    let differ: Vec<_> = same.iter().filter(|(_, x, y)| x != y).collect();
    assert!(
        differ.is_empty(),
        "the same seed drew {} of {} decisions differently, e.g. (fault, request, attempt) {:?}",
        differ.len(),
        same.len(),
        &differ[..differ.len().min(5)]
    );
    assert!(a.values().any(|x| *x) && a.values().any(|x| !*x));
    let across = common(&a, &c);
    assert!(
        across.iter().any(|(_, x, y)| x != y),
        "another seed drew the same decisions"
    );
    assert_eq!(first["run"]["seed"], 42);
    assert_eq!(other["run"]["seed"], 43);
}

/// Ctrl-C in the middle of a run: faults cleared, every process of the run gone (the proxy,
/// the harness's HTTP fakes, the proxy's stdio fakes), a partial report written, exit 130.
#[test]
fn sigint_in_the_middle_of_a_run_leaves_nothing_behind() {
    let marker = common::marker("chaos-sigint");
    let dir = TempDir::new();
    let report = dir.path().join("partial.json");
    let mut child = Command::new(mcpo_bin())
        .arg("chaos")
        .arg(scenario_file("mixed"))
        .arg("--report")
        .arg(&report)
        .env("MCPO_TEST_MARKER", &marker)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The proxy, three fakes (one over HTTP, two stdio children of the proxy) and the harness.
    let start = std::time::Instant::now();
    while common::processes_with_env("MCPO_TEST_MARKER", &marker).len() < 4 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the run never got going"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let the load and a first fault run for a moment.
    std::thread::sleep(Duration::from_secs(6));
    common::signal(child.id(), "INT");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    let partial: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(partial["run"]["partial"], true);
    assert!(partial["summary"]["sent"].as_u64().unwrap() > 0);
    let left = common::processes_with_env("MCPO_TEST_MARKER", &marker);
    assert!(left.is_empty(), "left behind after SIGINT: {left:?}");
}

// That the gate can fail (each shipped scenario against `mcpo serve` with recovery off, and
// against the other broken proxies its description names) is `chaos_gallery`'s business.

/// `--via mcp` against an endpoint that never answers `initialize`: every call is hung at its
/// own deadline. Calls waiting for the session another call is opening are not queued one
/// deadline after another (20 calls of 300 ms took 6 s that way, and a proxy that hangs
/// `initialize` would have held the run for as long).
#[tokio::test]
async fn mcp_calls_behind_a_hung_initialize_are_hung_at_their_own_deadline() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3600)))
        .mount(&server)
        .await;
    let caller = Caller::new(
        Via::Mcp,
        reqwest::Client::new(),
        &server.uri(),
        McpRoute::default(),
    );
    let args = serde_json::Map::from_iter([("message".to_string(), serde_json::json!("x"))]);
    let expected = mcpo::chaos::answers::Expected::Text("x".into());
    let calls =
        (0..20).map(|_| caller.call("s", "echo", &args, Duration::from_millis(300), &expected));
    let replies = tokio::time::timeout(Duration::from_secs(3), futures::future::join_all(calls))
        .await
        .expect("calls queued behind one another's session wait");
    assert!(
        replies.iter().all(|r| r.outcome == Outcome::Hung),
        "{replies:?}"
    );
    assert_eq!(caller.sessions_opened(), 0);
}
