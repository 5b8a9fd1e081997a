//! The command line a user meets first: our version, grouped help, and `mcpo healthcheck`.

use crate::common;

use std::process::{Command, Output};

use common::{Proxy, mcpo_bin, stdio_fake};
use serde_json::json;

fn mcpo(args: &[&str]) -> Output {
    Command::new(mcpo_bin()).args(args).output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn version_and_dash_capital_v_print_this_build_and_dash_dash_version_stays_mcpos() {
    // `-V` is clap's (`mcpo X.Y.Z`); `mcpo version` adds the platform.
    let expected = format!("mcpo {}", env!("CARGO_PKG_VERSION"));
    for args in [&["version"][..], &["-V"][..]] {
        let out = mcpo(args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        let text = stdout(&out);
        let first = text.lines().next().unwrap_or("");
        assert!(
            first == expected || first.starts_with(&format!("{expected} (")),
            "{args:?} printed {text:?}"
        );
        assert_eq!(text.lines().count(), 1, "{args:?} printed {text:?}");
    }
    // mcpo's `--version X` is the OpenAPI document's version: it still takes a value.
    let help = stdout(&mcpo(&["serve", "--help"]));
    let line = help
        .lines()
        .find(|l| l.contains("--version <"))
        .unwrap_or_else(|| panic!("no `--version <VALUE>` in serve --help:\n{help}"));
    assert!(line.contains("-v"), "{line}");
}

#[test]
fn serve_help_groups_options_under_headings_and_names_no_guide() {
    let help = stdout(&mcpo(&["serve", "--help"]));
    // Each flag must appear under its heading, i.e. after it and before the next heading.
    let expect = [
        ("Network:", "--port"),
        ("Authentication:", "--api-key"),
        ("TLS:", "--ssl-certfile"),
        ("Servers:", "--config"),
        ("OpenAPI document:", "--description"),
        ("Timeouts and recovery:", "--tool-timeout"),
        ("Pool:", "--pool-max-connections"),
        ("Cache:", "--cache-max-size"),
        ("Metrics and monitor:", "--monitor-interval"),
        ("Logging:", "--log-level"),
    ];
    let headings: Vec<(usize, &str)> = help
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.starts_with(' ') && l.ends_with(':'))
        .collect();
    for (heading, flag) in expect {
        let (at, _) = headings
            .iter()
            .find(|(_, l)| *l == heading)
            .unwrap_or_else(|| panic!("no heading {heading:?} in serve --help:\n{help}"));
        let next = headings
            .iter()
            .map(|(i, _)| *i)
            .find(|i| i > at)
            .unwrap_or(usize::MAX);
        let flag_at = help
            .lines()
            .position(|l| l.trim_start().starts_with('-') && l.contains(&format!("{flag} ")))
            .unwrap_or_else(|| panic!("{flag} missing from serve --help"));
        assert!(
            flag_at > *at && flag_at < next,
            "{flag} is not under {heading:?}:\n{help}"
        );
    }
    assert!(
        !help.to_lowercase().contains("guide"),
        "help refers to a guide the user never sees:\n{help}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn healthcheck_exits_by_the_answer_and_the_start_line_names_the_version() {
    let proxy = Proxy::start(&json!({"mcpServers": {"a": stdio_fake("a")}}), &[]);
    let ok = mcpo(&["healthcheck", &proxy.url("/healthz")]);
    assert!(ok.status.success(), "{ok:?}");
    assert!(stdout(&ok).contains("200"), "{ok:?}");

    let missing = mcpo(&["healthcheck", &proxy.url("/no-such-route")]);
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("404"),
        "{missing:?}"
    );

    // Nothing listens on port 9 of 127.0.0.1 (discard, never run here): the check fails fast.
    let closed = mcpo(&[
        "healthcheck",
        "--timeout",
        "2",
        "http://127.0.0.1:9/healthz?k=SECRET",
    ]);
    assert_eq!(closed.status.code(), Some(1), "{closed:?}");
    let err = String::from_utf8_lossy(&closed.stderr);
    assert!(err.contains("127.0.0.1:9"), "{err}");
    assert!(
        !err.contains("SECRET"),
        "the query reached the message: {err}"
    );

    let bad = mcpo(&["healthcheck", "--timeout", "0", &proxy.url("/healthz")]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--timeout"));

    // The line tests and scripts read for the port also says which build is running.
    let line = &proxy.start_line;
    assert!(
        line.contains(&format!("mcpo {}", env!("CARGO_PKG_VERSION"))),
        "{line}"
    );
}

#[test]
fn chaos_example_prints_an_annotated_scenario_that_passes_check() {
    let out = mcpo(&["chaos", "--example"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.lines().filter(|l| l.contains('#')).count() > 10,
        "not annotated:\n{text}"
    );
    let dir = common::tempdir::TempDir::new();
    let path = dir.path().join("example.yaml");
    std::fs::write(&path, &text).unwrap();
    let check = mcpo(&["chaos", "--check", &path.display().to_string()]);
    assert!(check.status.success(), "{check:?}");
    assert!(stdout(&check).contains("valid"), "{check:?}");
    // Without a file or --example, the command line is invalid.
    assert_eq!(mcpo(&["chaos"]).status.code(), Some(2));
}
