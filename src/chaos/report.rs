//! Reports of a chaos run: JSON for tools, JUnit XML for CI test views, and one self-contained
//! HTML page for people.
//!
//! All three are pure functions of the scenario, the [`Verdict`] and what the runtime observed
//! ([`RunInfo`]), so that the numbers a report shows are always the verdict's numbers. The HTML
//! page is a single file with inline CSS and an SVG chart drawn here, with no script, font or
//! asset from elsewhere: CI artefacts are often opened offline or behind a strict CSP, and a
//! report must not phone home.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};

use super::record::Ledger;
use super::scenario::{FaultKind, FaultSpec, Scenario};
use super::verdict::{
    EventResult, LatencyReport, Outcome, Percentiles, RequestRecord, Totals, Verdict,
    format_duration, format_share, format_window, render_table,
};

/// What the runtime knows about a run beyond the request records.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    /// The seed actually used (the file's or the command line's).
    pub seed: u64,
    pub started_unix_ms: u64,
    /// How long the load phase really ran.
    pub duration_actual: Duration,
    /// `mcpo serve`, or the `--target` command.
    pub target: String,
    /// Every per-request fault draw, in order.
    pub decisions: Vec<Decision>,
    pub timeline: Timeline,
    /// The run was interrupted, so the numbers cover only part of it.
    pub partial: bool,
    /// What the faults reached and what the fakes received.
    pub ledger: Ledger,
}

/// One per-request fault decision: whether fault `fault_index` hit attempt `attempt` of a
/// request on `server`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub at: Duration,
    pub server: String,
    pub fault_index: usize,
    /// The harness request, or `None` for a request the harness did not make (a proxy's
    /// ping), whose draws are keyed by their own count on that instance.
    pub request_id: Option<u64>,
    /// How many times the fault was decided for that request before (0: the first attempt).
    pub attempt: u64,
    /// What the draw said: a pure function of the seed, the fault, the request and the
    /// attempt, so two runs with the seed agree on it whatever order the requests came in.
    pub drawn: bool,
    /// Whether the fake reported the fault applied to it: a draw that came after its window
    /// closed, or too late for its request, is not.
    pub applied: bool,
}

/// Requests of a run grouped in fixed time buckets, for the chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    /// Bucket width; [`Timeline::BUCKET`] when built by [`Timeline::from_records`].
    pub bucket: Duration,
    /// Consecutive buckets from time zero.
    pub buckets: Vec<TimelineBucket>,
}

/// The requests sent during one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimelineBucket {
    pub start: Duration,
    pub success: u64,
    pub http_error: u64,
    pub hung: u64,
    pub connect_error: u64,
    pub wrong_answer: u64,
    pub not_sent: u64,
    /// Nearest-rank p99 latency of the answered requests sent in the bucket.
    pub p99: Option<Duration>,
}

impl TimelineBucket {
    pub fn total(&self) -> u64 {
        self.success
            + self.http_error
            + self.hung
            + self.connect_error
            + self.wrong_answer
            + self.not_sent
    }

    pub fn count(&self, outcome: Outcome) -> u64 {
        match outcome {
            Outcome::Success => self.success,
            Outcome::HttpError => self.http_error,
            Outcome::Hung => self.hung,
            Outcome::ConnectError => self.connect_error,
            Outcome::WrongAnswer => self.wrong_answer,
            Outcome::NotSent => self.not_sent,
        }
    }
}

impl Timeline {
    pub const BUCKET: Duration = Duration::from_millis(100);

    /// Buckets of 100 ms covering `run_len` (and any request sent after it).
    ///
    /// Requests are placed by the time they were *sent*, not answered: every request then lands
    /// in exactly one bucket (hung ones have no answer time), and a bucket's outcomes line up
    /// with the fault windows they were sent into, which is what the chart is read for.
    pub fn from_records(records: &[RequestRecord], run_len: Duration) -> Timeline {
        let bucket_ms = Self::BUCKET.as_millis();
        let index = |t: Duration| usize::try_from(t.as_millis() / bucket_ms).unwrap_or(usize::MAX);
        let last_sent = records
            .iter()
            .map(|r| r.intended_at)
            .max()
            .unwrap_or_default();
        let count = index(run_len.saturating_sub(Duration::from_nanos(1)))
            .max(index(last_sent))
            .saturating_add(1)
            .min(1_000_000);
        let mut buckets: Vec<TimelineBucket> = (0..count)
            .map(|i| TimelineBucket {
                start: Self::BUCKET * u32::try_from(i).unwrap_or(u32::MAX),
                ..TimelineBucket::default()
            })
            .collect();
        let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); count];
        for r in records {
            let i = index(r.intended_at).min(count - 1);
            let b = &mut buckets[i];
            match r.outcome {
                Outcome::Success => b.success += 1,
                Outcome::HttpError => b.http_error += 1,
                Outcome::Hung => b.hung += 1,
                Outcome::ConnectError => b.connect_error += 1,
                Outcome::WrongAnswer => b.wrong_answer += 1,
                Outcome::NotSent => b.not_sent += 1,
            }
            if let Some(latency) = r.latency() {
                latencies[i].push(latency);
            }
        }
        for (b, mut l) in buckets.iter_mut().zip(latencies) {
            l.sort_unstable();
            // Nearest rank: the smallest value with at least 99% of the values at or below it.
            let rank = (l.len() * 99).div_ceil(100);
            b.p99 = rank.checked_sub(1).and_then(|i| l.get(i)).copied();
        }
        Timeline {
            bucket: Self::BUCKET,
            buckets,
        }
    }

    /// End of the last bucket.
    pub fn end(&self) -> Duration {
        self.bucket * u32::try_from(self.buckets.len()).unwrap_or(u32::MAX)
    }
}

/// Milliseconds with microsecond precision, the unit of every duration in the JSON report.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

fn percentiles_json(p: Option<Percentiles>) -> Value {
    match p {
        None => Value::Null,
        Some(p) => json!({
            "count": p.count,
            "p50_ms": ms(p.p50),
            "p90_ms": ms(p.p90),
            "p99_ms": ms(p.p99),
            "max_ms": ms(p.max),
        }),
    }
}

/// The kind's own parameters, e.g. `{"status": 500}`.
fn kind_params(kind: &FaultKind) -> Value {
    match kind {
        FaultKind::Latency { min, max } => json!({"min_ms": ms(*min), "max_ms": ms(*max)}),
        FaultKind::HttpError {
            status,
            retry_after,
        } => json!({"status": status, "retry_after": retry_after}),
        FaultKind::JsonRpcError { code, message } => json!({"code": code, "message": message}),
        FaultKind::SlowStart { delay } => json!({"delay_ms": ms(*delay)}),
        _ => json!({}),
    }
}

fn spec_of<'s>(scenario: &'s Scenario, e: &EventResult) -> Option<&'s FaultSpec> {
    scenario.faults.iter().find(|f| f.index == e.index)
}

fn iso_time(unix_ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(unix_ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The counts of a set of requests, as the report's `summary` and `servers` show them.
fn totals_json(t: &Totals, success_rate: Option<f64>, latency: &LatencyReport) -> Value {
    let http_errors: serde_json::Map<String, Value> = t
        .http_errors
        .iter()
        .map(|(status, n)| (status.to_string(), json!(n)))
        .collect();
    json!({
        "sent": t.sent,
        "answered": t.answered,
        "success": t.success,
        "http_errors": http_errors,
        "hung": t.hung,
        "connect_errors": t.connect_errors,
        "wrong_answers": t.wrong_answers,
        "not_sent": t.not_sent,
        "outside_windows": t.outside,
        "outside_windows_success": t.outside_success,
        "success_rate": success_rate,
        "in_windows": t.in_windows,
        "in_windows_success": t.in_windows_success,
        "window_success_rate": (t.in_windows > 0)
            .then(|| t.in_windows_success as f64 / t.in_windows as f64),
        "latency": {
            "all": percentiles_json(latency.all),
            "outside_windows": percentiles_json(latency.outside),
        },
    })
}

/// The JSON report: the verdict, its numbers and everything needed to replay the run.
pub fn to_json(scenario: &Scenario, verdict: &Verdict, run: &RunInfo) -> Value {
    let t = &verdict.totals;
    let events: Vec<Value> = verdict
        .events
        .iter()
        .map(|e| {
            let spec = spec_of(scenario, e);
            json!({
                "index": e.index,
                "entry": spec.map(|s| s.entry),
                "line": spec.map(|s| s.line),
                "kind": e.kind,
                "params": spec.map_or(json!({}), |s| kind_params(&s.kind)),
                "server": e.server,
                "tools": spec.map_or_else(Vec::new, |s| s.tools.clone()),
                "probability": spec.map(|s| s.probability),
                "injected_at_ms": ms(e.injected_at),
                "cleared_at_ms": ms(e.cleared_at),
                "window_ms": ms(e.cleared_at.saturating_sub(e.injected_at)),
                "recovery_time_ms": e.recovery_time.map(ms),
                "recovered": e.recovered,
                "recovered_by_request": e.recovered_by,
                "clock_from_ms": ms(e.clock_from),
                "judged_with": e.judged_with,
                "disturbed_until_ms": ms(e.disturbed_until),
                "delivery": {
                    "instances_reached": run.ledger.delivery(e.index).instances_reached,
                    "requests_changed": run.ledger.delivery(e.index).requests_changed,
                },
            })
        })
        .collect();
    let decisions: Vec<Value> = run
        .decisions
        .iter()
        .map(|d| {
            json!({
                "at_ms": ms(d.at),
                "server": d.server,
                "fault": d.fault_index,
                "request": d.request_id,
                "attempt": d.attempt,
                "drawn": d.drawn,
                "applied": d.applied,
            })
        })
        .collect();
    let buckets: Vec<Value> = run
        .timeline
        .buckets
        .iter()
        .map(|b| {
            json!({
                "start_ms": ms(b.start),
                "success": b.success,
                "http_error": b.http_error,
                "hung": b.hung,
                "connect_error": b.connect_error,
                "wrong_answer": b.wrong_answer,
                "not_sent": b.not_sent,
                "p99_ms": b.p99.map(ms),
            })
        })
        .collect();
    let slo = &scenario.slo;
    let mut summary = totals_json(t, verdict.success_rate, &verdict.latency);
    summary["recovery_rate"] = json!(verdict.recovery_rate);
    summary["events"] = json!(verdict.events.len());
    json!({
        "format": "mcpo-chaos-report/1",
        "passed": verdict.passed(),
        "valid": verdict.valid(),
        "invalid": verdict.invalid.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "scenario": {
            "name": scenario.name,
            "description": scenario.description,
            "duration_ms": ms(scenario.duration),
            "servers": scenario.servers.iter().map(|s| json!({"name": s.name, "transport": s.transport.label()})).collect::<Vec<_>>(),
            "load": {
                "rate": scenario.load.rate,
                "deadline_ms": ms(scenario.load.deadline),
                "calls": scenario.load.calls.iter().map(|c| json!({"tool": c.route(), "weight": c.weight})).collect::<Vec<_>>(),
            },
            "slo": {
                "recovery_rate": slo.recovery_rate,
                "recovery_within_ms": slo.recovery_within.map(ms),
                "success_rate": slo.success_rate,
                "hung_requests": slo.hung_requests,
                "leaked_processes": slo.leaked_processes,
                "p99_latency_ms": slo.p99_latency.map(ms),
                "wrong_answers": slo.wrong_answers,
                "window_success_rate": slo.window_success_rate,
                "amplification": slo.amplification.map(|a| json!({"run": a.run, "windows": a.windows})),
            },
        },
        "run": {
            "seed": run.seed,
            "target": run.target,
            "started_unix_ms": run.started_unix_ms,
            "started": iso_time(run.started_unix_ms),
            "duration_actual_ms": ms(run.duration_actual),
            "partial": run.partial,
        },
        "summary": summary,
        "servers": verdict.servers.iter().map(|s| {
            let mut v = totals_json(&s.totals, s.success_rate, &s.latency);
            v["name"] = json!(s.name);
            v["calls_received"] = json!(run.ledger.calls_to(&s.name));
            v["upstream_calls"] = json!(s.upstream.map(|u| u.calls));
            v["upstream_calls_in_windows"] = json!(s.upstream.map(|u| u.calls_in_windows));
            v["amplification"] = json!(s.amplification());
            v["window_amplification"] = json!(s.window_amplification());
            v
        }).collect::<Vec<_>>(),
        "send_lag": percentiles_json(verdict.send_lag),
        "failures_outside": verdict.failures_outside.iter().map(|f| json!({
            "request": f.id,
            "server": f.server,
            "sent_at_ms": ms(f.sent_at),
            "status": f.status,
            "outcome": f.outcome.label(),
        })).collect::<Vec<_>>(),
        "ledger": {
            "instances": run.ledger.instances.iter().map(|i| json!({
                "server": i.server,
                "pid": i.pid,
                "transport": i.transport,
                "connected_at_ms": ms(i.connected_at),
                "calls": i.calls,
            })).collect::<Vec<_>>(),
        },
        "slos": verdict.slos.iter().map(|s| json!({
            "name": s.name,
            "target": s.target,
            "measured": s.measured,
            "passed": s.passed,
            "note": s.note,
        })).collect::<Vec<_>>(),
        "events": events,
        "decisions": decisions,
        "timeline": {
            "bucket_ms": ms(run.timeline.bucket),
            "buckets": buckets,
        },
    })
}

/// Escapes text for XML attributes and content, dropping characters XML 1.0 cannot hold at all
/// (control characters other than tab and line breaks), which would make the file unreadable.
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || matches!(c, '\u{FFFE}' | '\u{FFFF}') => {}
            c => out.push(c),
        }
    }
    out
}

/// A short, stable title for a fault event: `#0 http-error on flaky, 10s..20s`.
fn event_title(e: &EventResult) -> String {
    format!(
        "#{} {} on {}, {}",
        e.index,
        e.kind,
        e.server,
        format_window(e.injected_at, e.cleared_at)
    )
}

/// JUnit XML: one test case per SLO and one per fault event, so that CI test views show what
/// failed by name.
///
/// An unrecovered event is a failure unless the `recovery_rate` SLO tolerated it (it passed, or
/// the scenario has none): test views must not show red for a run whose verdict is PASS.
pub fn to_junit(scenario: &Scenario, verdict: &Verdict, run: &RunInfo) -> String {
    let suite = format!("chaos.{}", scenario.name);
    let recovery_tolerated = verdict
        .slos
        .iter()
        .find(|s| s.name == "recovery_rate")
        .is_none_or(|s| s.passed);
    let mut cases = String::new();
    let mut tests = 0;
    let mut failures = 0;
    let mut errors = 0;
    for s in &verdict.slos {
        tests += 1;
        let _ = write!(
            cases,
            "    <testcase classname=\"{}\" name=\"{}\" time=\"0\">",
            xml_escape(&format!("{suite}.slo")),
            xml_escape(&s.name)
        );
        if !s.passed {
            failures += 1;
            let _ = write!(
                cases,
                "\n      <failure type=\"slo\" message=\"{}\">{}</failure>\n    ",
                xml_escape(&format!("measured {}, target {}", s.measured, s.target)),
                xml_escape(s.note.as_deref().unwrap_or(""))
            );
        } else if let Some(note) = &s.note {
            let _ = write!(
                cases,
                "\n      <system-out>{}</system-out>\n    ",
                xml_escape(note)
            );
        }
        cases.push_str("</testcase>\n");
    }
    let within = scenario.slo.recovery_within;
    for e in &verdict.events {
        tests += 1;
        let time = e.recovery_time.map_or(0.0, |r| r.as_secs_f64());
        let _ = write!(
            cases,
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{time:.3}\">",
            xml_escape(&format!("{suite}.fault")),
            xml_escape(&event_title(e))
        );
        if !e.recovered {
            let why = match (e.recovery_time, within) {
                (Some(r), Some(w)) => format!(
                    "recovered after {}, later than recovery_within {}",
                    format_duration(r),
                    format_duration(w)
                ),
                _ => "never recovered: no later request succeeded".to_string(),
            };
            if recovery_tolerated {
                let _ = write!(
                    cases,
                    "\n      <system-out>{}</system-out>\n    ",
                    xml_escape(&format!("{why}; tolerated by the recovery_rate SLO"))
                );
            } else {
                failures += 1;
                let _ = write!(
                    cases,
                    "\n      <failure type=\"recovery\" message=\"{}\"/>\n    ",
                    xml_escape(&why)
                );
            }
        }
        cases.push_str("</testcase>\n");
    }
    for why in &verdict.invalid {
        tests += 1;
        errors += 1;
        let _ = writeln!(
            cases,
            "    <testcase classname=\"{}\" name=\"run valid\" time=\"0\">\n      <error type=\"invalid\" message=\"{}\"/>\n    </testcase>",
            xml_escape(&suite),
            xml_escape(&why.to_string())
        );
    }
    if run.partial {
        tests += 1;
        errors += 1;
        let _ = writeln!(
            cases,
            "    <testcase classname=\"{}\" name=\"run completed\" time=\"0\">\n      <error type=\"interrupted\" message=\"the run was interrupted; the numbers cover only part of it\"/>\n    </testcase>",
            xml_escape(&suite)
        );
    }
    let time = run.duration_actual.as_secs_f64();
    let props = [
        ("seed", run.seed.to_string()),
        ("target", run.target.clone()),
        ("partial", run.partial.to_string()),
        ("verdict", verdict.word().to_string()),
    ];
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"mcpo chaos\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{time:.3}\">"
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"0\" time=\"{time:.3}\" timestamp=\"{}\">",
        xml_escape(&suite),
        xml_escape(&iso_time(run.started_unix_ms))
    );
    out.push_str("    <properties>\n");
    for (name, value) in props {
        let _ = writeln!(
            out,
            "      <property name=\"{}\" value=\"{}\"/>",
            xml_escape(name),
            xml_escape(&value)
        );
    }
    out.push_str("    </properties>\n");
    out.push_str(&cases);
    let _ = writeln!(
        out,
        "    <system-out>{}</system-out>",
        xml_escape(&render_table(verdict))
    );
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// Colours of the outcomes, shared by the chart and its legend.
fn outcome_colour(o: Outcome) -> &'static str {
    match o {
        Outcome::Success => "#3a9d5d",
        Outcome::HttpError => "#e8913a",
        Outcome::Hung => "#8b5cc7",
        Outcome::ConnectError => "#d64545",
        Outcome::WrongAnswer => "#b8336a",
        Outcome::NotSent => "#8a8f98",
    }
}

const P99_COLOUR: &str = "#1f4e9c";

const CSS: &str = r#"
:root { --fg: #1d232b; --muted: #5d6773; --line: #e2e6eb; --bg: #f6f7f9; --card: #fff; --pass: #1f8a4c; --fail: #c93434; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--fg); background: var(--bg); }
main { max-width: 1120px; margin: 0 auto; padding: 24px; }
header.top { display: flex; justify-content: space-between; align-items: center; gap: 24px; background: var(--card); border-radius: 10px; padding: 20px 24px; border-left: 10px solid var(--verdict); box-shadow: 0 1px 3px rgba(0,0,0,.08); }
header.top.pass { --verdict: var(--pass); }
header.top.fail { --verdict: var(--fail); }
header.top.invalid { --verdict: #8a6d1f; }
h1 { margin: 0; font-size: 26px; }
h2 { font-size: 18px; margin: 0 0 12px; }
.desc { margin: 4px 0 0; color: var(--muted); }
.badge { font-size: 40px; font-weight: 800; letter-spacing: .06em; color: #fff; background: var(--verdict); border-radius: 8px; padding: 6px 22px; }
dl.meta { display: grid; grid-template-columns: repeat(auto-fit, minmax(140px, 1fr)); gap: 10px 12px; margin: 16px 0 0; }
dl.meta div { background: var(--card); border-radius: 8px; padding: 10px 14px; box-shadow: 0 1px 2px rgba(0,0,0,.06); }
dt { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .05em; }
dd { margin: 0; font-weight: 600; overflow-wrap: anywhere; }
section { background: var(--card); border-radius: 10px; padding: 18px 22px; margin-top: 18px; box-shadow: 0 1px 3px rgba(0,0,0,.08); }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 7px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 12px; text-transform: uppercase; letter-spacing: .05em; color: var(--muted); }
td.num { font-variant-numeric: tabular-nums; }
.ok { color: var(--pass); font-weight: 700; }
.bad { color: var(--fail); font-weight: 700; }
.note { color: var(--muted); font-size: 13px; }
.warn { background: #fff4d6; border: 1px solid #e9c46a; border-radius: 8px; padding: 10px 14px; margin-top: 16px; }
.legend { display: flex; flex-wrap: wrap; gap: 16px; margin: 0 0 8px; font-size: 13px; color: var(--muted); }
.legend span::before { content: ""; display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 6px; vertical-align: -1px; background: var(--swatch); }
.legend span.line::before { height: 3px; vertical-align: 3px; }
svg.chart { width: 100%; height: auto; display: block; }
svg.chart text { font: 11px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; fill: #4a535e; }
svg.chart .fault-label { font-weight: 600; fill: #9c2b2b; }
svg.chart .recovery-label { fill: #1f7a44; font-weight: 600; }
svg.chart .fault-label, svg.chart .recovery-label { paint-order: stroke; stroke: #fff; stroke-width: 3px; stroke-linejoin: round; }
footer { color: var(--muted); font-size: 12px; text-align: center; margin: 20px 0 8px; }
"#;

/// The one-page HTML report.
pub fn to_html(scenario: &Scenario, verdict: &Verdict, run: &RunInfo) -> String {
    let verdict_word = verdict.word();
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{} — {verdict_word} — mcpo chaos</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n",
        crate::html::escape(&scenario.name)
    );
    let _ = write!(
        h,
        "<header class=\"top {}\">\n<div>\n<h1>{}</h1>\n",
        verdict_word.to_lowercase(),
        crate::html::escape(&scenario.name)
    );
    if !scenario.description.is_empty() {
        let _ = writeln!(
            h,
            "<p class=\"desc\">{}</p>",
            crate::html::escape(&scenario.description)
        );
    }
    let _ = write!(
        h,
        "</div>\n<div class=\"badge\">{verdict_word}</div>\n</header>\n"
    );

    let t = &verdict.totals;
    let meta = [
        ("seed", run.seed.to_string()),
        ("target", run.target.clone()),
        ("started", iso_time(run.started_unix_ms)),
        (
            "ran",
            format!(
                "{} of {}",
                format_duration(run.duration_actual),
                format_duration(scenario.duration)
            ),
        ),
        (
            "requests",
            format!("{} sent at {}/s", t.sent, scenario.load.rate),
        ),
        ("fault events", verdict.events.len().to_string()),
    ];
    h.push_str("<dl class=\"meta\">\n");
    for (k, v) in meta {
        let _ = writeln!(
            h,
            "<div><dt>{k}</dt><dd>{}</dd></div>",
            crate::html::escape(&v)
        );
    }
    h.push_str("</dl>\n");
    if !verdict.valid() {
        h.push_str("<div class=\"warn\"><strong>Invalid run.</strong> What it measured proves nothing about the proxy:<ul>\n");
        for why in &verdict.invalid {
            let _ = writeln!(h, "<li>{}</li>", crate::html::escape(&why.to_string()));
        }
        h.push_str("</ul></div>\n");
    }
    if run.partial {
        h.push_str("<p class=\"warn\"><strong>Partial run.</strong> The run was interrupted; the numbers cover only the part that ran.</p>\n");
    }

    h.push_str("<section>\n<h2>Service level objectives</h2>\n<table>\n<thead><tr><th>SLO</th><th>target</th><th>measured</th><th>result</th></tr></thead>\n<tbody>\n");
    for s in &verdict.slos {
        let note = s
            .note
            .as_ref()
            .map(|n| format!("<div class=\"note\">{}</div>", crate::html::escape(n)))
            .unwrap_or_default();
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}{note}</td><td class=\"{}\">{}</td></tr>",
            crate::html::escape(&s.name),
            crate::html::escape(&s.target),
            crate::html::escape(&s.measured),
            if s.passed { "ok" } else { "bad" },
            if s.passed { "PASS" } else { "FAIL" }
        );
    }
    h.push_str("</tbody>\n</table>\n</section>\n");

    h.push_str("<section>\n<h2>Timeline</h2>\n<div class=\"legend\">");
    for o in Outcome::ALL {
        let _ = write!(
            h,
            "<span style=\"--swatch:{}\">{}</span>",
            outcome_colour(o),
            o.label()
        );
    }
    let _ = writeln!(
        h,
        "<span class=\"line\" style=\"--swatch:{P99_COLOUR}\">p99 latency (right axis)</span><span style=\"--swatch:rgba(170,30,30,.35)\">fault window</span><span class=\"line\" style=\"--swatch:#1f7a44\">recovery</span></div>"
    );
    h.push_str(&timeline_svg(scenario, verdict, run));
    h.push_str("</section>\n");

    h.push_str("<section>\n<h2>Fault events</h2>\n");
    if verdict.events.is_empty() {
        h.push_str("<p class=\"note\">This scenario injects no faults.</p>\n");
    } else {
        h.push_str("<table>\n<thead><tr><th>#</th><th>kind</th><th>server</th><th>window</th><th>reached</th><th>recovery time</th><th>result</th></tr></thead>\n<tbody>\n");
        for e in &verdict.events {
            let d = run.ledger.delivery(e.index);
            let detail = spec_of(scenario, e)
                .map(fault_detail)
                .filter(|d| !d.is_empty())
                .map(|d| format!("<div class=\"note\">{}</div>", crate::html::escape(&d)))
                .unwrap_or_default();
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}{detail}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{} instance(s), {} changed</td><td class=\"num\">{}</td><td class=\"{}\">{}</td></tr>",
                e.index,
                crate::html::escape(&e.kind),
                crate::html::escape(&e.server),
                crate::html::escape(&format_window(e.injected_at, e.cleared_at)),
                d.instances_reached,
                d.requests_changed,
                e.recovery_time
                    .map_or_else(|| "never".to_string(), format_duration),
                if e.recovered { "ok" } else { "bad" },
                if e.recovered {
                    "recovered"
                } else {
                    "not recovered"
                }
            );
        }
        h.push_str("</tbody>\n</table>\n");
    }
    h.push_str("</section>\n");

    h.push_str("<section>\n<h2>Requests</h2>\n<table>\n<thead><tr><th>outcome</th><th>count</th></tr></thead>\n<tbody>\n");
    let mut rows = vec![
        ("sent".to_string(), t.sent),
        ("success".to_string(), t.success),
    ];
    rows.extend(
        t.http_errors
            .iter()
            .map(|(status, n)| (format!("HTTP {status}"), *n)),
    );
    rows.push(("hung".to_string(), t.hung));
    rows.push(("connect error".to_string(), t.connect_errors));
    rows.push(("wrong answer (2xx)".to_string(), t.wrong_answers));
    rows.push(("not sent (harness)".to_string(), t.not_sent));
    rows.push((
        "sent outside fault windows and recovery".to_string(),
        t.outside,
    ));
    for (label, n) in rows {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"num\">{n}</td></tr>",
            crate::html::escape(&label)
        );
    }
    h.push_str("</tbody>\n</table>\n");
    h.push_str(&servers_html(verdict));
    h.push_str("<table style=\"margin-top:14px\">\n<thead><tr><th>latency</th><th>answered</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr></thead>\n<tbody>\n");
    for (label, p) in [
        ("all requests", verdict.latency.all),
        ("outside fault windows", verdict.latency.outside),
    ] {
        match p {
            Some(p) => {
                let _ = writeln!(
                    h,
                    "<tr><td>{label}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                    p.count,
                    format_duration(p.p50),
                    format_duration(p.p90),
                    format_duration(p.p99),
                    format_duration(p.max)
                );
            }
            None => {
                let _ = writeln!(
                    h,
                    "<tr><td>{label}</td><td class=\"num\">0</td><td colspan=\"4\" class=\"note\">no answered requests</td></tr>"
                );
            }
        }
    }
    h.push_str("</tbody>\n</table>\n</section>\n");
    let applied = run.decisions.iter().filter(|d| d.applied).count();
    let _ = write!(
        h,
        "<footer>mcpo chaos · {} fault decisions drawn, {applied} applied · success rate {} · recovery rate {}</footer>\n</main>\n</body>\n</html>\n",
        run.decisions.len(),
        verdict
            .success_rate
            .map_or_else(|| "not measurable".to_string(), format_share),
        format_share(verdict.recovery_rate)
    );
    h
}

/// Outcomes per server: a fault on one server that breaks another shows here.
fn servers_html(verdict: &Verdict) -> String {
    let mut h = String::from(
        "<table style=\"margin-top:14px\">\n<thead><tr><th>server</th><th>sent</th><th>success</th><th>HTTP error</th><th>hung</th><th>connect error</th><th>wrong answer</th><th>not sent</th><th>success outside faults</th><th>success in fault windows</th><th>upstream calls per request (in windows)</th><th>p99</th></tr></thead>\n<tbody>\n",
    );
    for s in &verdict.servers {
        let t = &s.totals;
        let rate = s.success_rate.map_or_else(
            || "not measurable".to_string(),
            |r| {
                format!(
                    "{} ({} of {})",
                    format_share(r),
                    t.outside_success,
                    t.outside
                )
            },
        );
        let p99 = s
            .latency
            .all
            .map_or_else(|| "-".to_string(), |p| format_duration(p.p99));
        let in_windows = s.window_success_rate().map_or_else(
            || "-".to_string(),
            |r| {
                format!(
                    "{} ({} of {})",
                    format_share(r),
                    t.in_windows_success,
                    t.in_windows
                )
            },
        );
        let two = |a: Option<f64>| a.map_or_else(|| "-".to_string(), |a| format!("{a:.2}"));
        let amplification = format!(
            "{} ({})",
            two(s.amplification()),
            two(s.window_amplification())
        );
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            crate::html::escape(&s.name),
            t.sent,
            t.success,
            t.http_error_count(),
            t.hung,
            t.connect_errors,
            t.wrong_answers,
            t.not_sent,
            crate::html::escape(&rate),
            crate::html::escape(&in_windows),
            crate::html::escape(&amplification),
            crate::html::escape(&p99)
        );
    }
    h.push_str("</tbody>\n</table>\n");
    h
}

/// The parameters of a fault for people: `p=0.8, status 500, tools: echo`.
fn fault_detail(s: &FaultSpec) -> String {
    let mut parts = Vec::new();
    match &s.kind {
        FaultKind::Latency { min, max } if min == max => {
            parts.push(format!("delay {}", format_duration(*min)));
        }
        FaultKind::Latency { min, max } => parts.push(format!(
            "delay {}..{}",
            format_duration(*min),
            format_duration(*max)
        )),
        FaultKind::HttpError {
            status,
            retry_after,
        } => {
            parts.push(format!("status {status}"));
            if let Some(r) = retry_after {
                parts.push(format!("Retry-After {r}"));
            }
        }
        FaultKind::JsonRpcError { code, .. } => parts.push(format!("code {code}")),
        FaultKind::SlowStart { delay } => {
            parts.push(format!("initialize waits {}", format_duration(*delay)));
        }
        _ => {}
    }
    if s.probability < 1.0 {
        parts.push(format!("p={}", s.probability));
    }
    if !s.tools.is_empty() {
        parts.push(format!("tools: {}", s.tools.join(", ")));
    }
    parts.join(", ")
}

/// Rounds up to 1, 2 or 5 times a power of ten, for axis ranges.
fn nice_ceiling(x: f64) -> f64 {
    if !(x.is_finite() && x > 0.0) {
        return 1.0;
    }
    let magnitude = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|v| *v >= x)
        .unwrap_or(10.0 * magnitude)
}

/// Places labels in a few rows so that they do not overlap: each label goes in the first row
/// where it fits after the previous label, or in the row that frees up first.
struct LabelRows {
    ends: Vec<f64>,
}

impl LabelRows {
    fn new(rows: usize) -> Self {
        LabelRows {
            ends: vec![f64::NEG_INFINITY; rows.max(1)],
        }
    }

    /// The row for a label spanning `x0..x0 + width`.
    fn place(&mut self, x0: f64, width: f64) -> usize {
        let row = self
            .ends
            .iter()
            .position(|end| *end + 6.0 <= x0)
            .unwrap_or_else(|| {
                self.ends
                    .iter()
                    .enumerate()
                    .min_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(i, _)| i)
            });
        self.ends[row] = x0 + width;
        row
    }
}

/// Rough width of a label in the chart's 11 px font.
fn label_width(text: &str) -> f64 {
    text.chars().count() as f64 * 6.2
}

/// Axis ticks from 0 to `max` at a 1-2-5 step, at most about five of them; `min_step` keeps
/// count axes on whole numbers.
fn ticks(max: f64, min_step: f64) -> Vec<f64> {
    let step = nice_ceiling(max / 5.0).max(min_step);
    let n = (max / step + 1e-9).floor() as u32;
    (0..=n).map(|i| f64::from(i) * step).collect()
}

/// The run as an SVG chart: stacked outcome bars per bucket, p99 latency as a line on the right
/// axis, fault windows shaded over the bars and labelled above them, and a dashed marker at each
/// recovery with its time.
fn timeline_svg(scenario: &Scenario, verdict: &Verdict, run: &RunInfo) -> String {
    const W: f64 = 1000.0;
    const H: f64 = 380.0;
    const LEFT: f64 = 56.0;
    const RIGHT: f64 = 64.0;
    const TOP: f64 = 66.0;
    const BOTTOM: f64 = 34.0;
    const ROW: f64 = 14.0;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let tl = &run.timeline;

    // The time axis covers the run and anything the events reach, so no mark falls off it.
    let mut end = scenario.duration.max(run.duration_actual).max(tl.end());
    for e in &verdict.events {
        end = end
            .max(e.cleared_at)
            .max(e.recovered_at().unwrap_or_default());
    }
    let end_s = end.as_secs_f64().max(0.1);
    let x = |t: Duration| LEFT + t.as_secs_f64() / end_s * plot_w;
    let max_count = tl.buckets.iter().map(|b| b.total()).max().unwrap_or(0);
    let y_max = nice_ceiling(max_count as f64);
    let y = |c: f64| TOP + plot_h - c / y_max * plot_h;
    let max_p99 = tl
        .buckets
        .iter()
        .filter_map(|b| b.p99)
        .max()
        .unwrap_or_default();
    let lat_max = nice_ceiling(max_p99.as_secs_f64() * 1000.0);
    let y_lat = |ms: f64| TOP + plot_h - ms / lat_max * plot_h;

    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\">",
        crate::html::escape(&format!(
            "Timeline of {}: requests per {} by outcome, p99 latency and fault windows",
            scenario.name,
            format_duration(tl.bucket)
        ))
    );

    // Grid and axes: counts on the left, latency on the right, each with its own ticks.
    for c in ticks(y_max, 1.0) {
        let yy = y(c);
        let _ = writeln!(
            s,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#e6e9ee\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + plot_w,
            LEFT - 6.0,
            yy + 4.0,
            trim_number(c)
        );
    }
    for l in ticks(lat_max, 0.001) {
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{P99_COLOUR}\">{}</text>",
            LEFT + plot_w + 6.0,
            y_lat(l) + 4.0,
            format_duration(Duration::from_secs_f64(l / 1000.0))
        );
    }
    let step = [
        0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    ]
    .into_iter()
    .find(|st| end_s / st <= 12.0)
    .unwrap_or(1200.0);
    let mut tick = 0.0;
    while tick <= end_s + 1e-9 {
        let xx = LEFT + tick / end_s * plot_w;
        let _ = writeln!(
            s,
            "<line x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#9aa3ad\"/><text x=\"{xx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}s</text>",
            TOP + plot_h,
            TOP + plot_h + 4.0,
            TOP + plot_h + 16.0,
            trim_number(tick)
        );
        tick += step;
    }
    let _ = writeln!(
        s,
        "<text x=\"{LEFT}\" y=\"12\">requests / {}</text><text x=\"{:.1}\" y=\"12\" text-anchor=\"end\" fill=\"{P99_COLOUR}\">p99</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">time since start of load</text>",
        format_duration(tl.bucket),
        W - 4.0,
        LEFT + plot_w / 2.0,
        H - 2.0
    );

    // Stacked bars, success at the bottom.
    let bar_w = (tl.bucket.as_secs_f64() / end_s * plot_w).max(0.5);
    let gap = if bar_w > 4.0 { 1.0 } else { 0.0 };
    for b in &tl.buckets {
        let mut base = 0.0;
        for o in Outcome::ALL {
            let n = b.count(o) as f64;
            if n == 0.0 {
                continue;
            }
            let top = y(base + n);
            let _ = writeln!(
                s,
                "<rect x=\"{:.2}\" y=\"{top:.2}\" width=\"{:.2}\" height=\"{:.2}\" fill=\"{}\"/>",
                x(b.start),
                bar_w - gap,
                y(base) - top,
                outcome_colour(o)
            );
            base += n;
        }
    }

    // Fault windows: a translucent shade over the bars (behind them it would be hidden by a
    // steady load), a solid band above the plot showing the extent, and a label in one of three
    // rows above that.
    let mut fault_rows = LabelRows::new(3);
    for e in &verdict.events {
        let x0 = x(e.injected_at);
        let width = (x(e.cleared_at) - x0).max(2.5);
        let title = event_title(e);
        let _ = writeln!(
            s,
            "<rect class=\"fault-window\" x=\"{x0:.1}\" y=\"{TOP}\" width=\"{width:.1}\" height=\"{plot_h:.1}\" fill=\"rgba(120,20,20,0.16)\" stroke=\"rgba(170,30,30,0.7)\" stroke-dasharray=\"3 2\"><title>{}</title></rect>",
            crate::html::escape(&title)
        );
        let label = format!("{} · {}", e.kind, e.server);
        let row = fault_rows.place(x0, label_width(&label));
        let ly = TOP - 10.0 - (2 - row) as f64 * ROW;
        let _ = writeln!(
            s,
            "<rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{width:.1}\" height=\"4\" fill=\"#c93434\"/><line x1=\"{x0:.1}\" x2=\"{x0:.1}\" y1=\"{:.1}\" y2=\"{TOP}\" stroke=\"#c93434\"/><text class=\"fault-label\" x=\"{:.1}\" y=\"{ly:.1}\">{}</text>",
            TOP - 5.0,
            ly + 3.0,
            x0 + 3.0,
            crate::html::escape(&label)
        );
    }

    // p99 as a line; a bucket without answers breaks it rather than drawing a false zero.
    let mut path = String::new();
    let mut pen_down = false;
    for b in &tl.buckets {
        match b.p99 {
            Some(p) => {
                let cx = x(b.start) + bar_w / 2.0;
                let cy = y_lat(p.as_secs_f64() * 1000.0);
                let _ = write!(path, "{}{cx:.1},{cy:.1} ", if pen_down { "L" } else { "M" });
                pen_down = true;
            }
            None => pen_down = false,
        }
    }
    if !path.is_empty() {
        let _ = writeln!(
            s,
            "<path class=\"p99\" d=\"{}\" fill=\"none\" stroke=\"{P99_COLOUR}\" stroke-width=\"1.6\" stroke-linejoin=\"round\"/>",
            path.trim_end()
        );
    }

    // Recovery markers on top, their labels staggered inside the plot.
    let mut recovery_rows = LabelRows::new(3);
    for e in &verdict.events {
        let (xx, label, class) = match (e.recovered_at(), e.recovery_time) {
            (Some(at), Some(r)) => {
                let xx = x(at);
                let _ = writeln!(
                    s,
                    "<line class=\"recovery\" x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{TOP}\" y2=\"{:.1}\" stroke=\"#1f7a44\" stroke-width=\"1.5\" stroke-dasharray=\"4 3\"><title>{}</title></line>",
                    TOP + plot_h,
                    crate::html::escape(&format!(
                        "#{} recovered {} after it cleared",
                        e.index,
                        format_duration(r)
                    ))
                );
                (xx, format!("↻ {}", format_duration(r)), "recovery-label")
            }
            _ => (
                x(e.cleared_at),
                format!("#{} not recovered", e.index),
                "fault-label",
            ),
        };
        let row = recovery_rows.place(xx, label_width(&label));
        let _ = writeln!(
            s,
            "<text class=\"{class}\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            xx + 3.0,
            TOP + 13.0 + row as f64 * ROW,
            crate::html::escape(&label)
        );
    }
    let _ = writeln!(
        s,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w:.1}\" height=\"{plot_h:.1}\" fill=\"none\" stroke=\"#c9ced6\"/>"
    );
    s.push_str("</svg>\n");
    s
}

/// `5`, `2.5`: axis numbers without trailing zeros.
fn trim_number(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::scenario::parse_scenario_str;
    use crate::chaos::verdict::{FaultEvent, VerdictInput};

    const SCENARIO: &str = r#"
name: storm <&> "quoted" 'single'
description: 80% of calls get HTTP 500 for 1 s, then a crash
seed: 7
duration: 4s
servers:
  - {name: flaky, transport: streamable-http}
load:
  rate: 20
  calls: [{tool: flaky/echo, args: {message: hi}}]
faults:
  - {at: 1s, for: 1s, server: flaky, kind: http-error, status: 500, probability: 0.8}
  - {at: 3s, kind: crash}
slo:
  recovery_rate: 1.0
  recovery_within: 500ms
  success_rate: 0.99
"#;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn rec(id: u64, sent: u64, answered: Option<u64>, outcome: Outcome) -> RequestRecord {
        RequestRecord {
            id,
            call: 0,
            intended_at: ms(sent),
            sent_at: ms(sent),
            answered_at: answered.map(ms),
            status: match outcome {
                Outcome::Success => Some(200),
                Outcome::HttpError => Some(500),
                _ => None,
            },
            outcome,
        }
    }

    /// A run at 20 requests/s for 4 s: errors in the window 1..2 s, recovery at 2.02 s, then the
    /// crash at 3 s is never recovered from.
    fn run() -> (Scenario, Verdict, RunInfo) {
        let scenario = parse_scenario_str(SCENARIO, "x.yaml").unwrap();
        let records: Vec<RequestRecord> = (0..80u64)
            .map(|i| {
                let sent = i * 50;
                let outcome = if (1000..2000).contains(&sent) {
                    Outcome::HttpError
                } else if sent >= 3000 {
                    Outcome::ConnectError
                } else {
                    Outcome::Success
                };
                rec(i, sent, Some(sent + 20), outcome)
            })
            .collect();
        let events: Vec<FaultEvent> = scenario.faults.iter().map(FaultEvent::planned).collect();
        let verdict = Verdict::evaluate(&VerdictInput {
            slo: &scenario.slo,
            calls: &scenario.load.calls,
            events: &events,
            records: &records,
            leaked_processes: 0,
            ledger: None,
        });
        let decisions = (20..40u64)
            .map(|i| Decision {
                at: ms(i * 50),
                server: "flaky".into(),
                fault_index: 0,
                request_id: Some(i),
                attempt: 0,
                drawn: i % 5 != 0,
                applied: i % 5 != 0,
            })
            .collect();
        let info = RunInfo {
            seed: 7,
            started_unix_ms: 1_700_000_000_000,
            duration_actual: ms(4000),
            target: "mcpo serve".into(),
            decisions,
            timeline: Timeline::from_records(&records, ms(4000)),
            partial: false,
            ledger: Ledger::default(),
        };
        (scenario, verdict, info)
    }

    #[test]
    fn timeline_buckets_count_outcomes_and_p99_by_send_time() {
        let records = [
            rec(1, 0, Some(10), Outcome::Success),
            rec(2, 50, Some(90), Outcome::Success),
            rec(3, 99, Some(400), Outcome::HttpError),
            rec(4, 100, None, Outcome::Hung),
            rec(5, 250, Some(251), Outcome::ConnectError),
        ];
        let t = Timeline::from_records(&records, ms(300));
        assert_eq!(t.buckets.len(), 3);
        assert_eq!(t.end(), ms(300));
        let b0 = t.buckets[0];
        assert_eq!(
            (b0.success, b0.http_error, b0.hung, b0.connect_error),
            (2, 1, 0, 0)
        );
        // Latencies 10, 40 and 301 ms: the nearest-rank p99 of three values is the largest.
        assert_eq!(b0.p99, Some(ms(301)));
        assert_eq!((t.buckets[1].hung, t.buckets[1].p99), (1, None));
        assert_eq!(
            (t.buckets[2].start, t.buckets[2].connect_error),
            (ms(200), 1)
        );
        // A request sent after the nominal end gets a bucket too.
        let late = Timeline::from_records(&[rec(1, 450, Some(460), Outcome::Success)], ms(300));
        assert_eq!(late.buckets.len(), 5);
        assert_eq!(Timeline::from_records(&[], Duration::ZERO).buckets.len(), 1);
    }

    #[test]
    fn json_report_holds_summary_slos_events_seed_and_decisions() {
        let (scenario, verdict, info) = run();
        let j = to_json(&scenario, &verdict, &info);
        assert_eq!(j["passed"], false);
        assert_eq!(j["run"]["seed"], 7);
        assert_eq!(j["run"]["started"], "2023-11-14T22:13:20Z");
        assert_eq!(j["summary"]["sent"], 80);
        assert_eq!(j["summary"]["http_errors"]["500"], 20);
        assert_eq!(j["slos"].as_array().unwrap().len(), verdict.slos.len());
        let events = j["events"].as_array().unwrap();
        assert_eq!(events.len(), 2);
        // The window clears at 2000 ms and the request sent at 2000 is answered at 2020.
        assert_eq!(events[0]["recovery_time_ms"], 20.0);
        assert_eq!(events[0]["params"]["status"], 500);
        assert_eq!(events[0]["probability"], 0.8);
        assert_eq!(events[1]["kind"], "crash");
        assert_eq!(events[1]["recovery_time_ms"], Value::Null);
        // The crash excuses [3000, 3500] only: an unrecovered event is bounded.
        assert_eq!(events[1]["disturbed_until_ms"], 3500.0);
        assert_eq!(events[1]["clock_from_ms"], 3000.0);
        let servers = j["servers"].as_array().unwrap();
        assert_eq!(servers.len(), 1);
        assert_eq!(servers[0]["name"], "flaky");
        assert_eq!(servers[0]["sent"], 80);
        assert_eq!(servers[0]["outside_windows"], 48);
        assert_eq!(servers[0]["outside_windows_success"], 39);
        assert_eq!(j["decisions"].as_array().unwrap().len(), 20);
        assert_eq!(j["decisions"][0]["applied"], false);
        assert_eq!(j["timeline"]["buckets"].as_array().unwrap().len(), 40);
    }

    #[test]
    fn junit_is_well_formed_escaped_and_has_a_case_per_slo_and_event() {
        use quick_xml::events::Event;
        let (scenario, verdict, mut info) = run();
        info.partial = true;
        let xml = to_junit(&scenario, &verdict, &info);
        let mut reader = quick_xml::Reader::from_str(&xml);
        reader.config_mut().check_end_names = true;
        let (mut cases, mut failures, mut errors) = (0, 0, 0);
        let mut case_names = Vec::new();
        let mut suite_name = String::new();
        loop {
            match reader.read_event() {
                Ok(Event::Eof) => break,
                Ok(Event::Start(e) | Event::Empty(e)) => {
                    let attr = |key: &str| -> Option<String> {
                        e.attributes()
                            .flatten()
                            .find(|a| a.key.as_ref() == key)
                            .map(|a| {
                                a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                    .unwrap()
                                    .into_owned()
                            })
                    };
                    match e.name().as_ref() {
                        "testcase" => {
                            cases += 1;
                            case_names.push(attr("name").unwrap());
                        }
                        "failure" => failures += 1,
                        "error" => errors += 1,
                        "testsuite" => suite_name = attr("name").unwrap(),
                        _ => {}
                    }
                }
                Ok(_) => {}
                Err(e) => panic!(
                    "not well-formed at {}: {e}\n{xml}",
                    reader.buffer_position()
                ),
            }
        }
        // One case per SLO and per event, and one for the interrupted run.
        assert_eq!(
            cases,
            verdict.slos.len() + verdict.events.len() + 1,
            "{xml}"
        );
        assert_eq!(
            suite_name,
            format!("chaos.{}", scenario.name),
            "escaping round-trips"
        );
        assert!(
            case_names
                .iter()
                .any(|n| n.starts_with("#0 http-error on flaky")),
            "{case_names:?}"
        );
        // The window recovers after 20 ms; the crash never does, so recovery_rate is 50% and
        // fails, and the crash's event fails with it. The crash excuses only recovery_within
        // (500 ms) after it: outside [1000, 2020] and [3000, 3500] are 39 successes and the 9
        // refused requests sent from 3550 on, so success_rate fails too; nothing hung or leaked.
        let failed: Vec<&str> = verdict
            .slos
            .iter()
            .filter(|s| !s.passed)
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(failed, ["recovery_rate", "success_rate"]);
        assert_eq!(
            (verdict.totals.outside, verdict.totals.outside_success),
            (48, 39)
        );
        assert_eq!(failures, 3, "{xml}");
        assert_eq!(errors, 1, "the interrupted run is an error case");
        assert!(xml.contains("storm &lt;&amp;&gt; &quot;quoted&quot; &apos;single&apos;"));
        assert_eq!(
            xml_escape("a\u{1}b\tc"),
            "ab\tc",
            "control characters XML cannot hold are dropped"
        );
    }

    #[test]
    fn html_is_self_contained_and_shows_every_fault_window() {
        let (scenario, verdict, info) = run();
        let html = to_html(&scenario, &verdict, &info);
        assert!(html.starts_with("<!DOCTYPE html>"));
        for remote in ["http://", "https://", "src=", "href=", "@import", "url("] {
            assert!(!html.contains(remote), "page refers to `{remote}`");
        }
        assert!(
            html.contains("storm &lt;&amp;&gt; &quot;quoted&quot; &#39;single&#39;"),
            "name shown, escaped"
        );
        assert!(!html.contains("<&>"), "raw name never appears");
        assert!(html.contains("<svg class=\"chart\""));
        assert_eq!(
            html.matches("class=\"fault-window\"").count(),
            verdict.events.len()
        );
        assert_eq!(
            html.matches("class=\"recovery\"").count(),
            1,
            "one recovery marker: the crash never recovers"
        );
        assert!(html.contains("#1 not recovered"));
        assert!(
            html.contains("<tr><td>flaky</td><td class=\"num\">80</td>"),
            "a row per server"
        );
        assert!(html.contains("class=\"badge\">FAIL<"));
        assert!(html.contains("class=\"p99\""));
        // Every element the page opens, it closes: a cheap well-formedness check of the tags
        // this module writes.
        for tag in [
            "section", "table", "svg", "header", "main", "tr", "td", "rect", "text", "title",
        ] {
            assert_eq!(
                open_tags(&html, tag),
                html.matches(&format!("</{tag}>")).count(),
                "<{tag}>"
            );
        }
    }

    /// Opening tags of `tag` that are not self-closing (`<rect .../>`).
    fn open_tags(html: &str, tag: &str) -> usize {
        let plain = html.matches(&format!("<{tag}>")).count();
        let with_attributes = html
            .split(&format!("<{tag} "))
            .skip(1)
            .filter(|rest| {
                rest.split('>')
                    .next()
                    .is_some_and(|attrs| !attrs.ends_with('/'))
            })
            .count();
        plain + with_attributes
    }

    #[test]
    fn html_for_a_passing_run_without_faults() {
        let text = SCENARIO
            .replace("  - {at: 1s, for: 1s, server: flaky, kind: http-error, status: 500, probability: 0.8}\n", "")
            .replace("  - {at: 3s, kind: crash}\n", "")
            .replace("faults:\n", "");
        let scenario = parse_scenario_str(&text, "x.yaml").unwrap();
        let records: Vec<RequestRecord> = (0..10u64)
            .map(|i| rec(i, i * 100, Some(i * 100 + 5), Outcome::Success))
            .collect();
        let verdict = Verdict::evaluate(&VerdictInput {
            slo: &scenario.slo,
            calls: &scenario.load.calls,
            events: &[],
            records: &records,
            leaked_processes: 0,
            ledger: None,
        });
        assert!(verdict.passed(), "{}", render_table(&verdict));
        let info = RunInfo {
            seed: 1,
            started_unix_ms: 0,
            duration_actual: ms(1000),
            target: "mcpo serve".into(),
            decisions: Vec::new(),
            timeline: Timeline::from_records(&records, ms(1000)),
            partial: false,
            ledger: Ledger::default(),
        };
        let html = to_html(&scenario, &verdict, &info);
        assert!(html.contains("class=\"badge\">PASS<"));
        assert_eq!(html.matches("class=\"fault-window\"").count(), 0);
        assert!(html.contains("injects no faults"));
        let xml = to_junit(&scenario, &verdict, &info);
        assert!(xml.contains("failures=\"0\""), "{xml}");
    }
}
