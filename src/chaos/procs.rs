//! The processes of a chaos run: the proxy under test and the fake servers the harness starts
//! itself (streamable-HTTP and legacy SSE ones; stdio ones are the proxy's to start).
//!
//! Every process of a run carries `MCPO_CHAOS_RUN=<run id>` in its environment (the config
//! puts it in each stdio server's `env`, so it reaches children whatever the proxy passes on).
//! That is how leaked processes are found after shutdown, and how the harness makes sure that
//! nothing it caused outlives it.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// The environment variable that marks a run's processes.
pub const RUN_MARKER: &str = "MCPO_CHAOS_RUN";

/// Why a process of the run could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} did not become ready within {within:?}{detail}")]
    NotReady {
        what: String,
        within: Duration,
        detail: String,
    },
}

/// Live processes whose environment holds `MCPO_CHAOS_RUN=marker` (zombies count as gone).
pub fn marked_processes(marker: &str) -> Vec<u32> {
    let needle = format!("{RUN_MARKER}={marker}");
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    let me = std::process::id();
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if !environ.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
            continue;
        }
        if !is_zombie(pid) {
            found.push(pid);
        }
    }
    found
}

/// Whether `pid` is a zombie (dead, not yet reaped) or gone.
pub fn is_zombie(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.is_empty()
        || stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'))
}

/// Sends `signal` to `pid` (only processes of this run are ever signalled).
pub fn signal(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid <= 0 {
        return;
    }
    // SAFETY: kill(2) has no memory effects; the pid is one of this run's processes.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Makes a command part of the run: marked, in its own process group (so a Ctrl-C at the
/// terminal reaches only the harness, which then stops everything in order), and killed by
/// the kernel if the harness itself dies.
pub fn prepare(cmd: &mut Command, marker: &str) {
    cmd.env(RUN_MARKER, marker)
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            Ok(())
        });
    }
}

/// A fake server over HTTP (streamable HTTP or legacy SSE) kept running on one port by the
/// harness: when it exits (a `crash` fault, or a `refuse` window at start-up) it is started
/// again, as a service manager would, until the run stops it.
pub struct HttpFake {
    pub url: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Which HTTP form of the fake to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpForm {
    StreamableHttp,
    Sse,
}

impl HttpForm {
    /// The `--transport` of `mcpo fake-server`.
    fn flag(self) -> &'static str {
        match self {
            HttpForm::StreamableHttp => "streamable-http",
            HttpForm::Sse => "sse",
        }
    }

    /// The path of its MCP endpoint (the stream, for SSE).
    fn path(self) -> &'static str {
        match self {
            HttpForm::StreamableHttp => "/mcp",
            HttpForm::Sse => "/sse",
        }
    }
}

impl HttpFake {
    /// Starts `mcpo fake-server --transport streamable-http|sse` for `id` on `port` (0: a port
    /// found free just before) and waits until it listens, or until its refuse window
    /// (if any) lets it.
    pub async fn start(
        bin: &Path,
        id: &str,
        form: HttpForm,
        hub: &str,
        marker: &str,
        within: Duration,
    ) -> Result<HttpFake, ProcError> {
        let port = free_port().map_err(|source| ProcError::Spawn {
            what: format!("the fake server '{id}' (no free port)"),
            source,
        })?;
        let url = format!("http://127.0.0.1:{port}{}", form.path());
        let stop = CancellationToken::new();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let fake = FakeCommand {
            bin: bin.to_path_buf(),
            id: id.to_string(),
            form,
            port,
            hub: hub.to_string(),
            marker: marker.to_string(),
        };
        let task = tokio::spawn(keep_running(fake, stop.clone(), ready_tx));
        // A fake that refuses to start is still "started": its port is known, and the proxy
        // must cope with it being down.
        let _ = tokio::time::timeout(within, ready_rx).await;
        Ok(HttpFake { url, stop, task })
    }

    /// Stops the fake (and its restarts).
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

fn free_port() -> std::io::Result<u16> {
    // The fake gets a fixed port so that it comes back on the same one after a crash; the
    // window between this probe and its bind is a few milliseconds.
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// How to start one fake server process of the run.
struct FakeCommand {
    bin: std::path::PathBuf,
    id: String,
    form: HttpForm,
    port: u16,
    hub: String,
    marker: String,
}

async fn keep_running(
    fake: FakeCommand,
    stop: CancellationToken,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let FakeCommand {
        bin,
        id,
        form,
        port,
        hub,
        marker,
    } = fake;
    let mut ready = Some(ready);
    while !stop.is_cancelled() {
        let mut cmd = Command::new(&bin);
        cmd.args([
            "fake-server",
            "--transport",
            form.flag(),
            "--port",
            &port.to_string(),
            "--id",
            &id,
            "--hub",
            &hub,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        prepare(&mut cmd, &marker);
        let mut child: Child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(server = %id, error = %e, "cannot start the fake server");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    _ = stop.cancelled() => break,
                }
            }
        };
        if let Some(stdout) = child.stdout.take() {
            let ready_now = ready.take();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                let mut ready_now = ready_now;
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.contains("listening on")
                        && let Some(tx) = ready_now.take()
                    {
                        let _ = tx.send(());
                    }
                }
            });
        }
        tokio::select! {
            _ = child.wait() => {
                // Crashed or refused: come back shortly, as a restarted service would.
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = stop.cancelled() => break,
                }
            }
            _ = stop.cancelled() => {
                if let Some(pid) = child.id() {
                    signal(pid, libc::SIGTERM);
                }
                if tokio::time::timeout(Duration::from_secs(2), child.wait()).await.is_err() {
                    let _ = child.kill().await;
                }
                break;
            }
        }
    }
}

/// Raises this process's soft limit on open files to its hard limit, so that a run's
/// connections (one per request in flight, and the proxy's) are not refused by a low default
/// soft limit; returns the soft limit in force afterwards.
pub fn raise_fd_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    Some(limit.rlim_cur)
}
