//! Bad configuration is refused with exit status 2 and one line naming the file, server and key.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::{Proxy, mcpo_bin, stdio_fake, tempdir::TempDir};
use serde_json::json;

fn run_with_config(text: &str) -> (i32, String) {
    let dir = TempDir::new();
    let path = dir.path().join("my-config.json");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(mcpo_bin())
        .args(["serve", "--port", "0", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn invalid_configs_exit_2_naming_file_server_and_key() {
    let cases = [
        (
            "{not json",
            vec!["my-config.json", "invalid JSON", "line 1"],
        ),
        ("{}", vec!["my-config.json", "mcpServers"]),
        (
            r#"{"mcpServers": {"a": {"args": []}}}"#,
            vec!["my-config.json", "server 'a'", "command", "url"],
        ),
        (
            r#"{"mcpServers": {"a": {"command": ["x"]}}}"#,
            vec!["server 'a'", "key \"command\"", "string"],
        ),
        (
            r#"{"mcpServers": {"a": {"command": "x", "env": []}}}"#,
            vec!["server 'a'", "key \"env\""],
        ),
        (
            r#"{"mcpServers": {"docs": {"command": "x"}}}"#,
            vec!["server 'docs'", "clashes"],
        ),
        (
            r#"{"mcpServers": {"diagnostics": {"command": "x"}}}"#,
            vec!["server 'diagnostics'"],
        ),
    ];
    for (text, expected) in cases {
        let (code, stderr) = run_with_config(text);
        assert_eq!(code, 2, "{text}: {stderr}");
        let line = stderr
            .lines()
            .find(|l| l.contains("error"))
            .unwrap_or_default();
        for e in expected {
            assert!(line.contains(e), "{text}: {line:?} lacks {e:?}");
        }
    }
}

#[test]
fn missing_config_file_and_unsupported_flags() {
    let out = Command::new(mcpo_bin())
        .args(["--config", "/nonexistent/cfg.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/cfg.json"));

    let out = Command::new(mcpo_bin())
        .args(["--hot-reload", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--hot-reload"));

    let out = Command::new(mcpo_bin())
        .args(["--port", "notaport"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--port"));
}

/// Finding 8 of the hardening issue: huge numbers used to panic (exit 101) on the command line
/// and on every request when they came from the config file.
#[test]
fn huge_durations_are_refused_not_panicked_on() {
    for flag in [
        "--tool-timeout",
        "--connect-timeout",
        "--pool-idle-timeout",
        "--drain-timeout",
    ] {
        for value in ["1e300", "1e19", "inf", "NaN", "0", "-3"] {
            let out = Command::new(mcpo_bin())
                .args([&format!("{flag}={value}"), "--", "true"])
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
            assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
        }
    }
    for value in ["1e19", "1e300", "31536001"] {
        let (code, stderr) = run_with_config(&format!(
            r#"{{"mcpServers": {{"a": {{"command": "x", "timeout": {value}}}}}}}"#
        ));
        assert_eq!(code, 2, "timeout {value}: {stderr}");
        assert!(
            stderr.contains("server 'a'") && stderr.contains("\"timeout\""),
            "{stderr}"
        );
    }
}

/// The improved-mcpo guide's spelling, `--server-type stdio --command CMD --args "..."`, starts
/// the same server as `-- CMD ...`, with `--args` split as a shell would.
#[tokio::test]
async fn command_and_args_start_the_same_server_as_words_after_the_separator() {
    let guide = Proxy::start_args(
        &[
            "--server-type",
            "stdio",
            "--command",
            mcpo_bin(),
            "--args",
            "fake-server --transport stdio --id 'a b'",
        ],
        &[],
    );
    let plain = Proxy::start_args(
        &[
            "--",
            mcpo_bin(),
            "fake-server",
            "--transport",
            "stdio",
            "--id",
            "a b",
        ],
        &[],
    );
    for proxy in [&guide, &plain] {
        proxy
            .wait_ok("/openapi.json", Duration::from_secs(30))
            .await;
        let (status, body) = proxy.post("/whoami", json!({})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["id"], "a b", "{body}");
    }
}

#[test]
fn command_with_words_after_the_separator_is_refused() {
    for (args, flag) in [
        (
            vec!["--command", "python", "--args", "server.py", "--", "python"],
            "--command",
        ),
        (vec!["--args", "server.py"], "--args"),
        (vec!["--command", "python", "--args", "'unclosed"], "--args"),
    ] {
        let out = Command::new(mcpo_bin()).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with(&format!("mcpo: error: {flag}: ")),
            "{args:?}: {stderr}"
        );
    }
}

/// `MCPO_LOG_LEVEL` sets the level like mcpo's `LOG_LEVEL` (and wins over it: the harness sets
/// `LOG_LEVEL=WARNING`); `--log-level` wins over both. The proxy is stopped before its log is
/// read: the end of its stdio child is logged at DEBUG whatever else happens to be logged.
#[tokio::test]
async fn mcpo_log_level_sets_the_level_and_the_flag_wins() {
    let config = json!({"mcpServers": {"fake": stdio_fake("log")}});
    async fn debug_lines(config: &serde_json::Value, extra: &[&str]) -> usize {
        let (mut proxy, log) = Proxy::start_logged(config, extra, &[("MCPO_LOG_LEVEL", "DEBUG")]);
        proxy
            .wait_ok("/fake/openapi.json", Duration::from_secs(30))
            .await;
        common::signal(proxy.pid(), "TERM");
        let exit = proxy.proc.child.wait().unwrap();
        assert!(exit.success(), "{exit:?}");
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .filter(|l| l.contains("DEBUG"))
            .count()
    }
    assert!(debug_lines(&config, &[]).await > 0, "no DEBUG line");
    assert_eq!(
        debug_lines(&config, &["--log-level", "WARNING"]).await,
        0,
        "DEBUG lines despite --log-level WARNING"
    );
}

/// `MCPO_API_KEY=""` means no key, as in mcpo, but it is said at start-up: an empty value is
/// more often a secret a template failed to fill in than a choice (issue 14, finding 12).
#[tokio::test]
async fn an_empty_api_key_is_warned_about_and_means_no_key() {
    let config = serde_json::json!({"mcpServers": {"demo": common::stdio_fake("empty-key")}});
    let (proxy, log) = common::Proxy::start_logged(&config, &[], &[("MCPO_API_KEY", "")]);
    proxy
        .wait_ok("/demo/openapi.json", std::time::Duration::from_secs(30))
        .await;
    let (status, _) = proxy
        .post("/demo/echo", serde_json::json!({"message": "open"}))
        .await;
    assert_eq!(status, 200);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains("WARN") && l.contains("WITHOUT authentication")),
        "{text}"
    );
}
