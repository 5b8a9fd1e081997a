//! `demo/run.sh`, run as a user would (with the binary under test instead of a release build):
//! it must exit 0, and what it printed must be what happened: the pretty-printed /metrics and
//! /diagnostics are the healthy proxy's JSON, the /status URL answers, and the summary's numbers
//! are the chaos report's.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::common;

/// The text of the section that starts after the line `== {title}` and ends at the next `== `.
fn section<'a>(out: &'a str, title: &str) -> &'a str {
    let start = out
        .find(&format!("== {title}\n"))
        .unwrap_or_else(|| panic!("no section `{title}` in:\n{out}"));
    let body = &out[start..];
    let body = &body[body.find('\n').map_or(body.len(), |i| i + 1)..];
    &body[..body.find("\n== ").unwrap_or(body.len())]
}

/// The first JSON document (pretty-printed, starting with a line `{`) in a section.
fn json_in(text: &str) -> Value {
    let start = text.find("{\n").expect("a JSON object");
    let end = text.rfind("\n}").expect("the end of the JSON object") + 2;
    serde_json::from_str(&text[start..end])
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", &text[start..end]))
}

fn number_after(text: &str, before: &str) -> f64 {
    let rest = &text[text
        .find(before)
        .unwrap_or_else(|| panic!("`{before}` not in {text}"))
        + before.len()..];
    let digits: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number after `{before}` in {text}"))
}

#[test]
fn demo_runs_and_shows_what_happened() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out_dir = common::tempdir::TempDir::new();
    let run = Command::new("bash")
        .arg(root.join("demo/run.sh"))
        .env("MCPO_BIN", common::mcpo_bin())
        .env("DEMO_OUT", out_dir.path())
        .env_remove("MCPO_ERROR_RECOVERY_ENABLED")
        .output()
        .expect("run demo/run.sh");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "demo/run.sh exited {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        run.status
    );

    // Part 1: the healthy proxy, as JSON a reader can trust.
    let metrics = json_in(section(&stdout, "GET /metrics (healthy)"));
    assert_eq!(metrics["system_health"]["overall_status"], "healthy");
    assert_eq!(metrics["performance"]["total_requests"], 20);
    assert_eq!(metrics["servers"]["demo"]["requests"], 10);
    assert_eq!(metrics["servers"]["calculator"]["requests"], 10);
    let diagnostics = json_in(section(&stdout, "GET /diagnostics (healthy)"));
    assert_eq!(diagnostics["status"], "healthy");
    assert_eq!(diagnostics["servers"]["demo"]["status"], "ready");
    assert_eq!(diagnostics["servers"]["calculator"]["status"], "ready");
    assert!(
        stdout
            .contains("status page (open it in a browser; it refreshes itself): http://127.0.0.1:"),
        "{stdout}"
    );

    // Part 2: the chaos run, its live URL and its verdict.
    assert!(
        stdout.contains("watch it live: http://127.0.0.1:"),
        "{stdout}"
    );
    let verdict = section(&stdout, "3. verdict");
    assert!(
        verdict.contains("verdict: PASS (mcpo chaos exited 0)"),
        "{verdict}"
    );
    let html = out_dir.path().join("demo.html");
    assert!(
        verdict.contains(&format!(
            "HTML report (timeline, fault windows, recoveries): {}",
            html.display()
        )),
        "{verdict}"
    );
    let page = std::fs::read_to_string(&html).expect("the HTML report");
    assert!(
        page.contains("<svg") || page.contains("<html"),
        "not an HTML report"
    );

    // The report the summary was computed from.
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.path().join("demo.json")).expect("the JSON report"),
    )
    .expect("report JSON");
    let events = report["events"].as_array().expect("events");
    let worst = |kind: &str| {
        events
            .iter()
            .filter(|e| e["kind"] == kind)
            .map(|e| e["recovery_time_ms"].as_f64().expect("recovered"))
            .fold(0.0_f64, f64::max)
    };
    assert_eq!(events.iter().filter(|e| e["kind"] == "crash").count(), 3);

    // The last /metrics of the proxy under chaos shows the restarts the summary names.
    let last = json_in(section(&stdout, "the proxy's last /metrics under chaos"));
    let restarts = last["servers"]["worker"]["restarts"]
        .as_u64()
        .expect("restarts");
    assert!(restarts >= 3, "worker restarts: {restarts}");

    let summary: String = section(&stdout, "summary")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    // The summary rounds: milliseconds to the unit, windows to a tenth of a second.
    let close = |printed: f64, actual: f64, within: f64| {
        assert!(
            (printed - actual).abs() <= within,
            "printed {printed}, the report says {actual}: {summary}"
        )
    };
    close(
        number_after(&summary, "3 crashes, each recovered in at most "),
        worst("crash"),
        0.51,
    );
    let window = |kind: &str| {
        events
            .iter()
            .find(|e| e["kind"] == kind)
            .and_then(|e| e["window_ms"].as_f64())
            .expect("window")
            / 1000.0
    };
    for (prefix, kind) in [("1 stall of ", "hang"), ("1 500 storm of ", "http-error")] {
        let rest = &summary[summary
            .find(prefix)
            .unwrap_or_else(|| panic!("`{prefix}` not in {summary}"))..];
        close(number_after(rest, prefix), window(kind), 0.051);
        close(number_after(rest, " s, recovered in "), worst(kind), 0.51);
    }
    assert_eq!(
        number_after(&summary, "restarted the worker's children "),
        restarts as f64,
        "{summary}"
    );
    let s = &report["summary"];
    assert_eq!(
        number_after(&summary, "Of "),
        s["sent"].as_f64().expect("sent")
    );
    assert_eq!(
        number_after(&summary, "calls sent, "),
        s["answered"].as_f64().expect("answered")
    );
    assert!(summary.contains(" and 0 hung;"), "{summary}");
    assert!(summary.contains("leaked processes: 0."), "{summary}");
    let outside = s["outside_windows"].as_f64().expect("outside");
    assert!(
        summary.contains(&format!(
            "outside the faults and their recoveries {outside} of {outside} calls succeeded"
        )),
        "{summary}"
    );
    assert!(
        stdout
            .trim_end()
            .ends_with("demo passed: everything shown above happened")
    );
}
