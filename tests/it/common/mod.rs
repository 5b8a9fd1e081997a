//! Shared setup of the integration tests: the real `mcpo` binary, real fake servers, real
//! published MCP servers, and real HTTP on 127.0.0.1.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub fn mcpo_bin() -> &'static str {
    env!("CARGO_BIN_EXE_mcpo")
}

/// Where `.ci/install-deps` put the real MCP servers; installs them on first use so that
/// `cargo nextest run` works on a fresh clone too.
pub fn deps_dir() -> &'static Path {
    static DEPS: OnceLock<PathBuf> = OnceLock::new();
    DEPS.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let dir = std::env::var_os("MCPO_TEST_DEPS")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join(".deps"));
        if !dir.join(".complete-2").exists() {
            let status = Command::new("bash")
                .arg(root.join(".ci/install-deps"))
                .env("MCPO_TEST_DEPS", &dir)
                .status()
                .expect("run .ci/install-deps");
            assert!(
                status.success(),
                ".ci/install-deps failed; the tests need its servers"
            );
        }
        dir
    })
}

/// Command and args of `@modelcontextprotocol/server-everything` in stdio mode.
pub fn everything_stdio() -> (String, Vec<String>) {
    let script =
        deps_dir().join("node/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    (
        "node".into(),
        vec![script.display().to_string(), "stdio".into()],
    )
}

/// The MCP conformance suite's command line: Node 22 (npm's `node` package) and the suite's
/// entry point.
pub fn conformance() -> (PathBuf, PathBuf) {
    let prefix = deps_dir().join("node22");
    (
        prefix.join("node_modules/node/bin/node"),
        prefix.join("node_modules/@modelcontextprotocol/conformance/dist/index.js"),
    )
}

/// Command of PyPI's `mcp-server-time`.
pub fn time_server() -> (String, Vec<String>) {
    let bin = deps_dir().join("venv/bin/mcp-server-time");
    (
        bin.display().to_string(),
        vec!["--local-timezone=UTC".into()],
    )
}

/// The Python of the test venv (with `prometheus_client` for parsing metrics).
pub fn venv_python() -> PathBuf {
    deps_dir().join("venv/bin/python")
}

/// `openapi-spec-validator` from PyPI.
pub fn openapi_validator() -> PathBuf {
    deps_dir().join("venv/bin/openapi-spec-validator")
}

/// Reads lines from a child's stdout until one contains `marker`, returning that line.
pub fn wait_for_line(child: &mut Child, marker: &str, within: Duration) -> String {
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = marker.to_string();
    std::thread::spawn(move || {
        // Keep draining after the match so the child never blocks on a full pipe.
        let mut found = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !found && line.contains(&wanted) {
                found = true;
                let _ = tx.send(line);
            }
        }
    });
    rx.recv_timeout(within)
        .unwrap_or_else(|_| panic!("no line containing {marker:?} within {within:?}"))
}

/// The `http://host:port...` (or `https://`) URL inside a line.
pub fn url_in(line: &str) -> String {
    let start = line.find("http").expect("a URL in the line");
    line[start..]
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A process that is killed when the test ends, however it ends.
pub struct Proc {
    pub child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fake MCP server over streamable HTTP.
pub struct FakeHttp {
    pub proc: Proc,
    /// e.g. `http://127.0.0.1:41234/mcp`
    pub url: String,
}

impl FakeHttp {
    /// The fake's counters (`requests`, `tool_calls`, `cancelled`).
    pub async fn stats(&self) -> Value {
        reqwest::get(format!("{}/control/stats", self.base()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Starts a fault (see `fake::control::FaultSpec`).
    pub async fn fault(&self, spec: Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/control/fault", self.base()))
            .json(&spec)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204, "fault {spec} refused");
    }

    pub fn start(id: &str) -> FakeHttp {
        Self::start_on(id, 0)
    }

    pub fn start_on(id: &str, port: u16) -> FakeHttp {
        let mut child = Command::new(mcpo_bin())
            .args([
                "fake-server",
                "--transport",
                "streamable-http",
                "--port",
                &port.to_string(),
                "--id",
                id,
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start fake server");
        let line = wait_for_line(&mut child, "listening on", Duration::from_secs(20));
        FakeHttp {
            url: url_in(&line),
            proc: Proc { child },
        }
    }
}

/// The proxy under test.
pub struct Proxy {
    pub proc: Proc,
    pub base: String,
    /// The "mcpo serving on ..." line the proxy printed.
    pub start_line: String,
    pub client: reqwest::Client,
    /// The config file the proxy was started with, if any.
    pub config_path: Option<PathBuf>,
    _dir: tempdir::TempDir,
}

impl Proxy {
    /// Starts `mcpo serve --config <config>` plus `extra` flags on a free port.
    pub fn start(config: &Value, extra: &[&str]) -> Proxy {
        Self::start_with_env(config, extra, &[])
    }

    pub fn start_with_env(config: &Value, extra: &[&str], env: &[(&str, &str)]) -> Proxy {
        let dir = tempdir::TempDir::new();
        let path = dir.path().join("config.json");
        std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
        let mut args = vec!["serve", "--host", "127.0.0.1", "--port", "0", "--config"];
        let path_str = path.display().to_string();
        args.push(&path_str);
        args.extend_from_slice(extra);
        let mut proxy = Self::spawn(&args, env, dir);
        proxy.config_path = Some(path);
        proxy
    }

    /// Starts `mcpo` with exactly these arguments (plus host and port).
    pub fn start_args(args: &[&str], env: &[(&str, &str)]) -> Proxy {
        let mut all = vec!["--host", "127.0.0.1", "--port", "0"];
        all.extend_from_slice(args);
        Self::spawn(&all, env, tempdir::TempDir::new())
    }

    /// Like [`Proxy::start_with_env`], with the proxy's log (stderr) written to a file.
    pub fn start_logged(config: &Value, extra: &[&str], env: &[(&str, &str)]) -> (Proxy, PathBuf) {
        let dir = tempdir::TempDir::new();
        let path = dir.path().join("config.json");
        std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
        let log = dir.path().join("proxy.log");
        let path_str = path.display().to_string();
        let mut args = vec![
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--config",
            &path_str,
        ];
        args.extend_from_slice(extra);
        let mut proxy = Self::spawn_to(&args, env, dir, Some(&log));
        proxy.config_path = Some(path);
        (proxy, log)
    }

    fn spawn(args: &[&str], env: &[(&str, &str)], dir: tempdir::TempDir) -> Proxy {
        Self::spawn_to(args, env, dir, None)
    }

    fn spawn_to(
        args: &[&str],
        env: &[(&str, &str)],
        dir: tempdir::TempDir,
        log: Option<&Path>,
    ) -> Proxy {
        let mut cmd = Command::new(mcpo_bin());
        cmd.args(args)
            .stdout(Stdio::piped())
            .env("LOG_LEVEL", "WARNING");
        if let Some(log) = log {
            cmd.stderr(std::fs::File::create(log).unwrap());
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start mcpo");
        let line = wait_for_line(&mut child, "mcpo serving on", Duration::from_secs(90));
        Proxy {
            base: url_in(&line),
            start_line: line,
            proc: Proc { child },
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            config_path: None,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.proc.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Waits until `GET path` answers 200 (a server's tools are listed once its OpenAPI is).
    pub async fn wait_ok(&self, path: &str, within: Duration) -> Value {
        let start = Instant::now();
        loop {
            let (status, body) = self.get(path).await;
            if status == 200 {
                return body;
            }
            assert!(
                start.elapsed() < within,
                "{path} still {status} after {within:?}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Minimal temporary directory (removed on drop) so the tests need no extra crate.
pub mod tempdir {
    use std::path::{Path, PathBuf};

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new() -> TempDir {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "mcpo-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// PIDs of live processes whose environment holds `KEY=VALUE` (zombies count as gone).
pub fn processes_with_env(key: &str, value: &str) -> Vec<u32> {
    let needle = format!("{key}={value}");
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let has = environ.split(|b| *b == 0).any(|kv| kv == needle.as_bytes());
        if !has {
            continue;
        }
        let state = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = state
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'));
        if !zombie {
            found.push(pid);
        }
    }
    found
}

/// PIDs of live processes with `KEY=VALUE` in their environment whose command line contains
/// `needle`.
pub fn pids_matching(key: &str, value: &str, needle: &str) -> Vec<u32> {
    processes_with_env(key, value)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(needle)
                })
                .unwrap_or(false)
        })
        .collect()
}

/// Resident memory of a process in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Direct children of `pid` that are zombies (exited but never reaped).
pub fn zombie_children(pid: u32) -> Vec<u32> {
    children_where(pid, |state| state == "Z")
}

/// The living children of `pid` (started from any of its threads).
pub fn children(pid: u32) -> Vec<u32> {
    children_where(pid, |state| state != "Z")
}

/// The children of `pid` whose /proc state letter passes `keep`.
fn children_where(pid: u32, keep: impl Fn(&str) -> bool) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let Some(rest) = stat.rsplit(')').next() else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or_default();
        let ppid: u32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid == pid && keep(state) {
            found.push(child);
        }
    }
    found
}

/// Sends a signal to a process with `kill(1)`.
pub fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -{sig} {pid} failed");
}

/// One request of an open-loop load run.
#[derive(Debug, Clone)]
pub struct Shot {
    /// When it was sent, from the start of the run.
    pub sent: Duration,
    pub elapsed: Duration,
    /// 0 when no answer came (client timeout or connection error).
    pub status: u16,
    pub body: String,
}

/// Sends `POST path body` at `rate` per second for `duration`, each request on its own task
/// (open loop: a slow answer does not delay the next request), and returns every outcome.
pub async fn open_loop(
    client: &reqwest::Client,
    url: &str,
    body: Value,
    rate: u32,
    duration: Duration,
) -> Vec<Shot> {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let total = (duration.as_secs_f64() * rate as f64) as u32;
    for i in 0..total {
        let at = start + interval * i;
        tokio::time::sleep_until(at.into()).await;
        let (client, url, body) = (client.clone(), url.to_string(), body.clone());
        tasks.spawn(async move {
            let sent = start.elapsed();
            let t = Instant::now();
            let (status, body) = match client.post(&url).json(&body).send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    (status, r.text().await.unwrap_or_default())
                }
                Err(e) => (0, e.to_string()),
            };
            Shot {
                sent,
                elapsed: t.elapsed(),
                status,
                body,
            }
        });
    }
    let mut shots = Vec::new();
    while let Some(r) = tasks.join_next().await {
        shots.push(r.expect("load task"));
    }
    shots.sort_by_key(|s| s.sent);
    shots
}

/// The TCP port `pid` listens on, read from /proc (for servers that cannot print theirs).
pub fn listening_port(pid: u32) -> Option<u16> {
    let mut inodes = std::collections::HashSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let t = target.to_string_lossy();
            if let Some(inode) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                inodes.insert(inode.to_string());
            }
        }
    }
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is f[1] ("ADDR:PORT" in hex), st is f[3] (0A = LISTEN), inode f[9].
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                let port = f[1].rsplit(':').next()?;
                return u16::from_str_radix(port, 16).ok();
            }
        }
    }
    None
}

/// Polls `check` every 20 ms until it returns `Some`, failing the test after `within`. For
/// conditions in other processes that offer no event to wait on.
pub async fn eventually<T>(
    what: &str,
    within: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Proxy {
    /// `GET path` with the bearer key.
    pub async fn get_with_key(&self, path: &str, key: &str) -> (u16, Value) {
        let r = self
            .client
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// A stdio fake server entry for a config.
pub fn stdio_fake(id: &str) -> Value {
    serde_json::json!({"command": mcpo_bin(), "args": ["fake-server", "--transport", "stdio", "--id", id]})
}

/// A marker unique to one test, put in the environment of the processes it starts.
pub fn marker(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{name}-{}-{nanos}", std::process::id())
}

impl FakeHttp {
    /// The port the fake listens on.
    pub fn port(&self) -> u16 {
        self.base()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port in the fake's URL")
    }
}

/// Closed-loop load: `workers` tasks each send `POST path body` one after another until
/// `duration` has passed, so exactly that many calls are in flight all the time. Returns every
/// outcome, sorted by send time.
pub async fn closed_loop(
    client: &reqwest::Client,
    url: &str,
    body: Value,
    workers: usize,
    duration: Duration,
) -> Vec<Shot> {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (client, url, body) = (client.clone(), url.to_string(), body.clone());
        tasks.spawn(async move {
            let mut shots = Vec::new();
            while start.elapsed() < duration {
                let sent = start.elapsed();
                let t = Instant::now();
                let (status, body) = match client.post(&url).json(&body).send().await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        (status, r.text().await.unwrap_or_default())
                    }
                    Err(e) => (0, e.to_string()),
                };
                shots.push(Shot {
                    sent,
                    elapsed: t.elapsed(),
                    status,
                    body,
                });
            }
            shots
        });
    }
    let mut shots = Vec::new();
    while let Some(r) = tasks.join_next().await {
        shots.extend(r.expect("load task"));
    }
    shots.sort_by_key(|s| s.sent);
    shots
}

impl FakeHttp {
    /// Starts a fake over streamable HTTP on a free port with `extra` arguments (such as
    /// `--hub ADDR`).
    pub fn start_with(id: &str, extra: &[&str]) -> FakeHttp {
        let mut child = Command::new(mcpo_bin())
            .args([
                "fake-server",
                "--transport",
                "streamable-http",
                "--port",
                "0",
                "--id",
                id,
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start fake server");
        let line = wait_for_line(&mut child, "listening on", Duration::from_secs(20));
        FakeHttp {
            url: url_in(&line),
            proc: Proc { child },
        }
    }
}

impl FakeHttp {
    /// `http://127.0.0.1:PORT`, without the MCP path (`/mcp`, or `/sse` for legacy SSE).
    pub fn base(&self) -> &str {
        self.url
            .strip_suffix("/mcp")
            .or_else(|| self.url.strip_suffix("/sse"))
            .unwrap_or(&self.url)
    }

    /// Starts a fake over legacy HTTP+SSE on `port` (0: a free one) with `extra` arguments; its
    /// `url` is that of the event stream (`.../sse`).
    pub fn start_sse(id: &str, port: u16, extra: &[&str]) -> FakeHttp {
        let mut child = Command::new(mcpo_bin())
            .args([
                "fake-server",
                "--transport",
                "sse",
                "--port",
                &port.to_string(),
                "--id",
                id,
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start fake server");
        let line = wait_for_line(&mut child, "listening on", Duration::from_secs(20));
        FakeHttp {
            url: url_in(&line),
            proc: Proc { child },
        }
    }
}
