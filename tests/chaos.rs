//! `mcpo chaos`: the harness judged as strictly as it judges the proxy. Its verdicts must be
//! right in both directions, its inputs checked, and it must leave nothing behind.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{mcpo_bin, tempdir::TempDir};
use mcpo::chaos::load::{LoadCounters, LoadPlan, drive};
use mcpo::chaos::scenario::parse_scenario_str;
use mcpo::chaos::verdict::{FaultEvent, Outcome, Verdict, VerdictInput};
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

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
        .respond_with(ResponseTemplate::new(200).set_body_json(Value::from("ok")))
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
        base: server.uri(),
        load: scenario.load.clone(),
        seed: 1,
        clock,
        start: clock,
        end: scenario.duration,
    };
    let records = drive(
        reqwest::Client::new(),
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
    assert!(
        verdict.passed(),
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
        .respond_with(ResponseTemplate::new(200))
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
  calls: [{tool: s/echo, args: {}}]
  deadline: 500ms
slo:
  hung_requests: 0
",
        "hung.yaml",
    )
    .unwrap();
    let clock = Instant::now();
    let records = drive(
        reqwest::Client::new(),
        LoadPlan {
            base: server.uri(),
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
    });
    assert!(!verdict.passed());
    assert_eq!(verdict.totals.hung, 1);
}
