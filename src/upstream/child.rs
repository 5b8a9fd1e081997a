//! Stdio server processes: spawned in their own process group, watched, and always reaped.
//!
//! We own the child instead of letting the MCP SDK own it for three reasons: a launcher such as
//! `npx` or `uvx` starts grandchildren, which only a signal to the whole process group reaches;
//! the supervisor must learn that a child exited the moment it happens (not at the next call),
//! to restart it before anyone needs it; and the last lines the child wrote to stderr are the
//! best explanation of why it is down, which diagnostics show.

use std::collections::{BTreeMap, VecDeque};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::BufReader;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::watch;

/// How long a child gets to exit after SIGTERM before it is killed.
const TERM_GRACE: Duration = Duration::from_millis(1500);
/// How many stderr lines are kept for diagnostics.
const STDERR_TAIL: usize = 20;

/// Longest stderr line kept; the rest of a longer one is dropped. A child that writes without
/// ever ending a line must not grow the proxy's memory.
const STDERR_LINE: usize = 4096;

/// Cuts a child's stderr into lines of at most [`STDERR_LINE`] bytes, while reading: a line
/// that reaches the limit is handed on at once and the rest of it, up to its newline, is read
/// and dropped. So a child that writes without ever ending a line costs a bounded buffer, and
/// its pipe keeps draining (it never blocks on a full stderr).
struct LineCutter<R> {
    reader: R,
    /// The current line was cut: drop what comes until its end.
    skipping: bool,
}

impl<R: tokio::io::AsyncBufRead + Unpin> LineCutter<R> {
    fn new(reader: R) -> Self {
        LineCutter {
            reader,
            skipping: false,
        }
    }

    /// The next line (lossy UTF-8), at most [`STDERR_LINE`] bytes of it; `None` at the end or
    /// on an error.
    async fn next_line(&mut self) -> Option<String> {
        use tokio::io::AsyncBufReadExt as _;
        let mut line = Vec::new();
        loop {
            let buf = self.reader.fill_buf().await.ok()?;
            if buf.is_empty() {
                return (!line.is_empty()).then(|| String::from_utf8_lossy(&line).into_owned());
            }
            let newline = buf.iter().position(|&b| b == b'\n');
            if self.skipping {
                let used = newline.map_or(buf.len(), |i| i + 1);
                self.reader.consume(used);
                self.skipping = newline.is_none();
                continue;
            }
            let chunk = &buf[..newline.unwrap_or(buf.len())];
            let room = STDERR_LINE - line.len();
            if chunk.len() >= room && !(chunk.len() == room && newline.is_some()) {
                // The line reaches the limit here: hand it on now, drop the rest later.
                line.extend_from_slice(&chunk[..room]);
                self.reader.consume(room);
                self.skipping = true;
                return Some(String::from_utf8_lossy(&line).into_owned());
            }
            line.extend_from_slice(chunk);
            let used = newline.map_or(buf.len(), |i| i + 1);
            self.reader.consume(used);
            if newline.is_some() {
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Some(String::from_utf8_lossy(&line).into_owned());
            }
        }
    }
}

/// What is known about a child's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildState {
    Running,
    Exited(String),
}

/// A running stdio server. Dropping it kills the whole process group.
#[derive(Debug)]
pub struct ChildProcess {
    pid: u32,
    state: watch::Receiver<ChildState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

/// The pipes of a freshly spawned child, handed to the MCP transport.
pub struct ChildPipes {
    pub stdout: ChildStdout,
    pub stdin: ChildStdin,
}

impl ChildProcess {
    /// Starts `command args` with `env` merged over the proxy's environment.
    pub fn spawn(
        server: &str,
        command: &str,
        args: &[String],
        env: &BTreeMap<String, String>,
        cwd: Option<&std::path::Path>,
    ) -> std::io::Result<(ChildProcess, ChildPipes)> {
        let mut cmd = Command::new(command);
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        // The proxy's own API key is nobody else's business; a server that needs one gets it
        // through its `env`.
        cmd.env_remove("MCPO_API_KEY");
        cmd.args(args)
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so that a terminal's Ctrl-C reaches only the proxy (which then
            // shuts children down in order) and so that killing the group reaches grandchildren.
            .process_group(0)
            .kill_on_drop(true);
        // If the proxy itself is killed with SIGKILL, the kernel kills the direct child too.
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        let pid = child.id().unwrap_or(0);
        let (Some(stdout), Some(stdin)) = (child.stdout.take(), child.stdin.take()) else {
            return Err(std::io::Error::other("child pipes were not created"));
        };
        let stderr_tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
        if let Some(stderr) = child.stderr.take() {
            let tail = stderr_tail.clone();
            let server = server.to_string();
            tokio::spawn(async move {
                let mut lines = LineCutter::new(BufReader::new(stderr));
                while let Some(line) = lines.next_line().await {
                    tracing::info!(target: "mcpo::upstream::stderr", server = %server, "{line}");
                    if let Ok(mut tail) = tail.lock() {
                        if tail.len() == STDERR_TAIL {
                            tail.pop_front();
                        }
                        tail.push_back(line);
                    }
                }
            });
        }
        let (state_tx, state_rx) = watch::channel(ChildState::Running);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(reap(child, pid, state_tx, stop_rx));
        Ok((
            ChildProcess {
                pid,
                state: state_rx,
                stop: Some(stop_tx),
                stderr_tail,
            },
            ChildPipes { stdout, stdin },
        ))
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// A receiver that changes to `Exited` when the process ends.
    pub fn state(&self) -> watch::Receiver<ChildState> {
        self.state.clone()
    }

    /// The last lines the process wrote to stderr.
    pub fn stderr_tail(&self) -> Vec<String> {
        self.stderr_tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Stops the process group (SIGTERM, then SIGKILL after a grace period) and waits until
    /// the child is reaped.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let mut state = self.state.clone();
        let _ = state.wait_for(|s| matches!(s, ChildState::Exited(_))).await;
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        // The reaper task sees the closed channel and stops the group.
        self.stop.take();
    }
}

/// Owns the child until it ends: waits for it, or on request (or when its owner is gone)
/// terminates the whole process group, then reports how it ended. Whichever way the leader
/// goes, the rest of its group goes too: a launcher (`sh -c`, `npx`) that dies by itself leaves
/// its children running, and nothing else would ever stop them.
async fn reap(
    mut child: Child,
    pid: u32,
    state: watch::Sender<ChildState>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let (status, exited_by_itself) = tokio::select! {
        status = child.wait() => (status, true),
        _ = stop => {
            signal_group(pid, libc::SIGTERM);
            // A stopped (SIGSTOP) process acts on SIGTERM only once continued.
            signal_group(pid, libc::SIGCONT);
            let status = match tokio::time::timeout(TERM_GRACE, child.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    signal_group(pid, libc::SIGKILL);
                    child.wait().await
                }
            };
            // The leader is gone; make sure nothing it started lingers.
            signal_group(pid, libc::SIGKILL);
            (status, false)
        }
    };
    let description = match status {
        Ok(status) => describe_exit(status),
        Err(e) => format!("could not wait for the process: {e}"),
    };
    tracing::debug!(pid, %description, "stdio server process ended");
    // Report first: the supervisor starts the replacement while the orphans are cleaned up.
    let _ = state.send(ChildState::Exited(description));
    if exited_by_itself {
        end_orphaned_group(pid).await;
    }
}

/// Ends what is left of a group whose leader exited: SIGTERM, a grace period, then SIGKILL.
/// The group id stays reserved while any member lives, so the signal cannot reach a stranger.
async fn end_orphaned_group(pid: u32) {
    if !signal_group(pid, libc::SIGTERM) {
        return; // nobody left
    }
    signal_group(pid, libc::SIGCONT);
    let deadline = tokio::time::Instant::now() + TERM_GRACE;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if !signal_group(pid, 0) {
            return;
        }
    }
    signal_group(pid, libc::SIGKILL);
}

/// Sends `signal` (0 only checks) to the process group led by `pid`; true when some process of
/// the group received it.
fn signal_group(pid: u32, signal: libc::c_int) -> bool {
    let Ok(pgid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pgid <= 0 {
        return false;
    }
    // SAFETY: kill(2) with a negative pid signals the process group we created for this child;
    // it has no memory effects.
    unsafe { libc::kill(-pgid, signal) == 0 }
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "exited".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exit_is_reported_and_shutdown_reaps_the_group() {
        let (child, _pipes) = ChildProcess::spawn(
            "t",
            "sh",
            &["-c".into(), "echo oops >&2; exit 3".into()],
            &BTreeMap::new(),
            None,
        )
        .unwrap();
        let mut state = child.state();
        let ended = state
            .wait_for(|s| matches!(s, ChildState::Exited(_)))
            .await
            .unwrap()
            .clone();
        assert_eq!(ended, ChildState::Exited("exited with status 3".into()));

        // A shell that starts a grandchild: shutting down must end both.
        let (child, _pipes) = ChildProcess::spawn(
            "t",
            "sh",
            &["-c".into(), "sleep 30 & echo $! >&2; wait".into()],
            &BTreeMap::new(),
            None,
        )
        .unwrap();
        let leader = child.pid();
        let grandchild = printed_pid(&child).await;
        child.shutdown().await;
        for pid in [leader as i32, grandchild] {
            assert!(
                gone_within(pid, Duration::from_secs(2)).await,
                "process {pid} survived shutdown"
            );
        }
    }

    /// The pid the child's shell printed on stderr, waiting at most 5 s for it.
    async fn printed_pid(child: &ChildProcess) -> i32 {
        let start = std::time::Instant::now();
        loop {
            if let Some(line) = child.stderr_tail().first() {
                return line.trim().parse::<i32>().unwrap();
            }
            assert!(start.elapsed() < Duration::from_secs(5), "no pid printed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether `pid` is gone (or a zombie: dead, waiting for init to reap it) within
    /// `within`. Another process's end is no event we can wait on, so it is polled.
    async fn gone_within(pid: i32, within: Duration) -> bool {
        let start = std::time::Instant::now();
        while start.elapsed() < within {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'));
            if stat.is_empty() || zombie {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Finding 4 of the hardening issue: a leader that exits by itself used to leave its
    /// grandchildren running for ever.
    #[tokio::test]
    async fn grandchildren_of_a_leader_that_exits_by_itself_are_ended() {
        let (child, _pipes) = ChildProcess::spawn(
            "t",
            "sh",
            &["-c".into(), "sleep 1000 & echo $! >&2; read _".into()],
            &BTreeMap::new(),
            None,
        )
        .unwrap();
        let leader = child.pid() as i32;
        let grandchild = printed_pid(&child).await;
        // The leader dies on its own (not through shutdown).
        // SAFETY: signalling the shell we just started.
        unsafe { libc::kill(leader, libc::SIGKILL) };
        let mut state = child.state();
        state
            .wait_for(|s| matches!(s, ChildState::Exited(_)))
            .await
            .unwrap();
        assert!(
            gone_within(grandchild, Duration::from_secs(3)).await,
            "grandchild {grandchild} outlived its leader"
        );
    }

    /// A child that writes megabytes without a newline costs the proxy one bounded line.
    #[tokio::test]
    async fn endless_stderr_lines_are_cut() {
        let (child, _pipes) = ChildProcess::spawn(
            "t",
            "sh",
            &[
                "-c".into(),
                "head -c 3000000 /dev/zero | tr '\\0' x >&2; echo >&2; echo done >&2".into(),
            ],
            &BTreeMap::new(),
            None,
        )
        .unwrap();
        let start = std::time::Instant::now();
        while child.stderr_tail().len() < 2 && start.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let tail = child.stderr_tail();
        assert_eq!(
            tail.len(),
            2,
            "{:?}",
            tail.iter().map(String::len).collect::<Vec<_>>()
        );
        assert_eq!(tail[0].len(), STDERR_LINE);
        assert_eq!(tail[1], "done");
    }

    /// An endless line (a reader that never ends and never writes a newline) is cut at the
    /// limit while it is read: the first line comes back, and reading on keeps draining it.
    /// Reading the whole line before cutting it would never return (and grow without bound).
    #[tokio::test]
    async fn an_endless_line_is_cut_while_it_is_read() {
        let endless = tokio::io::BufReader::new(tokio::io::repeat(b'x'));
        let mut lines = LineCutter::new(endless);
        let first = tokio::time::timeout(Duration::from_secs(5), lines.next_line()).await;
        let first = first.expect("an endless line was not cut while read");
        assert_eq!(first.as_deref().map(str::len), Some(STDERR_LINE));
        // The rest of it is dropped as it comes: no second line, ever.
        let second = tokio::time::timeout(Duration::from_millis(200), lines.next_line()).await;
        assert!(second.is_err(), "{second:?}");
    }

    /// Lines at, below and above the limit, and the one after a cut line.
    #[tokio::test]
    async fn lines_are_cut_at_the_limit_and_the_next_one_is_whole() {
        let exact = "a".repeat(STDERR_LINE);
        let over = "b".repeat(STDERR_LINE + 10);
        let text = format!("short\r\n{exact}\n{over}\nafter\nlast");
        // A small buffer, so lines span many reads.
        let reader = tokio::io::BufReader::with_capacity(7, text.as_bytes());
        let mut lines = LineCutter::new(reader);
        let mut got = Vec::new();
        while let Some(line) = lines.next_line().await {
            got.push(line);
        }
        let expected = [
            "short".to_string(),
            exact,
            "b".repeat(STDERR_LINE),
            "after".into(),
            "last".into(),
        ];
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn cwd_is_applied() {
        let dir = std::env::temp_dir();
        let (child, _pipes) = ChildProcess::spawn(
            "t",
            "sh",
            &["-c".into(), "pwd >&2".into()],
            &BTreeMap::new(),
            Some(&dir),
        )
        .unwrap();
        let mut state = child.state();
        state
            .wait_for(|s| matches!(s, ChildState::Exited(_)))
            .await
            .unwrap();
        // stderr is read by its own task; wait (bounded) for the line.
        let start = std::time::Instant::now();
        while child.stderr_tail().is_empty() && start.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let printed = std::path::PathBuf::from(child.stderr_tail()[0].trim());
        assert_eq!(printed.canonicalize().unwrap(), dir.canonicalize().unwrap());
    }
}
