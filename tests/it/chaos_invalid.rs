//! `mcpo chaos` must not be fooled by a proxy that does not do the work: a run whose faults
//! reached nothing, or whose proxy never served a real call, is invalid (exit 3), never a pass.
//! The "proxies" here are a few lines of Python started with `--target`.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{mcpo_bin, tempdir::TempDir};
use serde_json::Value;

/// Answers `200 "ok"` to every request, whatever it is: the proxy of finding 1 of issue 13,
/// which passed a shortened `crash-loop` with 100% recovery.
const ANSWERS_OK: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def answer(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = b'"ok"'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = answer
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

/// Makes up the right answer of `echo` (and `add`) from the arguments, without starting or
/// calling any server. It reads the config it is given, so that the config path must arrive
/// as one argument however odd the directory it is in.
const MAKES_UP_ANSWERS: &str = r#"
import http.server, json, sys
port, config = int(sys.argv[1]), sys.argv[2]
servers = json.load(open(config))["mcpServers"]
class H(http.server.BaseHTTPRequestHandler):
    def answer(self):
        args = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
        tool = self.path.rsplit("/", 1)[-1]
        value = args.get("message") if tool == "echo" else args.get("a", 0) + args.get("b", 0)
        body = json.dumps(value).encode()
        self.send_response(200 if self.path.split("/")[1] in servers else 404)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = answer
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

/// Runs `mcpo chaos FILE --target TARGET --report R` with `TMPDIR` set to `tmpdir`; returns
/// the exit code, stdout, stderr and the report (null when none was written).
fn chaos_against(file: &Path, target: &str, tmpdir: &Path) -> (i32, String, String, Value) {
    let report = tmpdir.join("report.json");
    let out = Command::new(mcpo_bin())
        .arg("chaos")
        .arg(file)
        .arg("--target")
        .arg(target)
        .arg("--report")
        .arg(&report)
        .env("TMPDIR", tmpdir)
        .output()
        .unwrap();
    let json = std::fs::read_to_string(&report)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
        json,
    )
}

fn scenario_file(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fault-scenarios")
        .join(format!("{name}.yaml"))
}

/// Finding 1 of issue 13: a "proxy" that answers `200 "ok"` to everything passed `crash-loop`.
/// Now readiness is a real, verified call on every server, and this one never gives one: the
/// run is invalid at once, with a message that says so.
#[test]
fn a_proxy_that_answers_ok_to_everything_is_an_invalid_run() {
    let dir = TempDir::new();
    let script = dir.path().join("ok.py");
    std::fs::write(&script, ANSWERS_OK).unwrap();
    let started = std::time::Instant::now();
    let (code, stdout, stderr, _) = chaos_against(
        &scenario_file("crash-loop"),
        &format!("python3 {} {{port}}", script.display()),
        dir.path(),
    );
    assert_eq!(code, 3, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.contains("invalid run")
            && stderr.contains("worker/echo without the right answer")
            && stderr.contains("did not call the scenario's server worker"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "a made-up answer ends the wait at once, not after the start timeout"
    );
}

/// A proxy that gives right answers without calling any server (it makes them up from the
/// arguments) gets past readiness, but the delivery ledger shows that no fault reached
/// anything: the crash of the stdio server found no process, and the tool-error window on the
/// HTTP server changed no call. Invalid, exit 3, each fault named. Before the ledger this run
/// passed with every SLO met.
///
/// The run's temporary directory has a space and a quote in its name: `{config}` must reach
/// the target as one shell word.
#[test]
fn a_proxy_whose_faults_reach_nothing_is_an_invalid_run() {
    let dir = TempDir::new();
    let script = dir.path().join("made_up.py");
    std::fs::write(&script, MAKES_UP_ANSWERS).unwrap();
    let odd = dir.path().join("run dir's");
    std::fs::create_dir_all(&odd).unwrap();
    let scenario = dir.path().join("reach.yaml");
    std::fs::write(
        &scenario,
        "name: reach
description: a crash of a stdio server and a tool-error window on an HTTP server
duration: 4s
servers:
  - {name: local, transport: stdio}
  - {name: remote, transport: streamable-http}
proxy:
  timeout: 2s
load:
  rate: 20
  calls:
    - {tool: local/echo, args: {message: hi}}
    - {tool: remote/add, args: {a: 1, b: 2}}
  deadline: 3s
faults:
  - {at: 1s, kind: crash, server: local}
  - {at: 1s, for: 1500ms, server: remote, kind: tool-error}
slo:
  recovery_rate: 1.0
  recovery_within: 1s
  success_rate: 0.99
",
    )
    .unwrap();
    let (code, stdout, stderr, report) = chaos_against(
        &scenario,
        &format!("python3 {} {{port}} {{config}}", script.display()),
        &odd,
    );
    assert_eq!(code, 3, "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(report["valid"], false, "{report}");
    assert_eq!(report["passed"], false);
    let invalid: Vec<&str> = report["invalid"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        invalid
            .iter()
            .any(|m| m.starts_with("fault #0 (crash on local")
                && m.contains("reached no instance of local")
                && m.contains("did not start the scenario's servers")),
        "{invalid:?}"
    );
    assert!(
        invalid
            .iter()
            .any(|m| m.starts_with("fault #1 (tool-error on remote")
                && m.contains("changed nothing")
                && m.contains("answers without calling it")),
        "{invalid:?}"
    );
    // The ledger shows it: no call reached either server.
    let servers = report["servers"].as_array().unwrap();
    assert!(
        servers.iter().all(|s| s["calls_received"] == 0),
        "{servers:?}"
    );
    assert_eq!(report["events"][1]["delivery"]["requests_changed"], 0);
    // Every request succeeded as far as a client could see: only the ledger tells.
    assert_eq!(report["summary"]["success"], report["summary"]["sent"]);
    // The settings a plain mcpServers file cannot carry are named.
    assert!(stdout.contains("cannot say proxy.timeout 2s"), "{stdout}");
}
