//! Bad configuration is refused with exit status 2 and one line naming the file, server and key.

mod common;

use std::process::Command;

use common::{mcpo_bin, tempdir::TempDir};

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
