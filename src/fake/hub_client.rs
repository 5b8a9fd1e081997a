//! The fake's side of the fault hub (see `wire` for the protocol).
//!
//! Before it serves MCP, a fake started with `--hub` connects to the harness, says who it is
//! and waits briefly for the faults in force, so that a window already open when it starts
//! (`refuse`, `slow-start`, a hang on an instance the proxy just restarted) applies from its
//! very first request. Then a reader task keeps the [`FaultState`] in step with the hub for
//! the rest of the process's life.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::faults::FaultState;
use super::wire::{FakeMessage, HubMessage, OneShot};

/// How long to keep trying to reach the hub: the harness listens before it starts anything,
/// so this only covers a slow machine.
pub const CONNECT_FOR: Duration = Duration::from_secs(2);
/// How long to wait for the first snapshot before serving without it.
pub const FIRST_SNAPSHOT_WITHIN: Duration = Duration::from_secs(1);
const RETRY_EVERY: Duration = Duration::from_millis(50);

/// What the fake does on a `session-loss` from the hub (the HTTP form forgets its sessions;
/// stdio has none to forget).
pub type OnSessionLoss = Arc<dyn Fn() + Send + Sync>;

/// Why the hub could not be joined.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("cannot connect to the fault hub at {addr} within {within:?}: {source}")]
    Connect {
        addr: String,
        within: Duration,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot say hello to the fault hub: {0}")]
    Hello(#[source] std::io::Error),
    #[error("the fault hub closed the connection before its first snapshot")]
    ClosedEarly,
}

/// Who this instance is, for the hub's `hello`.
pub struct Identity<'a> {
    pub id: &'a str,
    pub transport: &'a str,
}

/// Joins the hub at `addr`: hello, the first snapshot (waited for up to
/// [`FIRST_SNAPSHOT_WITHIN`]), then a task that applies what the hub says from then on.
pub async fn join(
    addr: &str,
    who: Identity<'_>,
    faults: &FaultState,
    on_session_loss: OnSessionLoss,
) -> Result<(), HubError> {
    let stream = connect(addr).await?;
    // Decisions are on the path of requests: no Nagle delay for the small lines.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY on the hub connection");
    }
    let (read, mut write) = stream.into_split();
    let hello = FakeMessage::Hello {
        id: who.id.to_string(),
        pid: std::process::id(),
        transport: who.transport.to_string(),
    };
    write_line(&mut write, &hello)
        .await
        .map_err(HubError::Hello)?;

    let (out, outgoing) = mpsc::unbounded_channel();
    faults.attach_hub(out);
    tokio::spawn(send_loop(write, outgoing));

    let mut lines = BufReader::new(read).lines();
    let first = tokio::time::timeout(FIRST_SNAPSHOT_WITHIN, async {
        loop {
            match lines.next_line().await {
                Ok(Some(line)) => {
                    if handle(&line, faults, &on_session_loss) == Handled::Snapshot {
                        return Ok(());
                    }
                }
                Ok(None) | Err(_) => return Err(HubError::ClosedEarly),
            }
        }
    })
    .await;
    match first {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            faults.hub_gone();
            return Err(e);
        }
        Err(_) => tracing::warn!(
            "no fault snapshot from the hub within {FIRST_SNAPSHOT_WITHIN:?}; serving, faults apply once it comes"
        ),
    }
    tokio::spawn(receive_loop(lines, faults.clone(), on_session_loss));
    Ok(())
}

async fn connect(addr: &str) -> Result<TcpStream, HubError> {
    let deadline = Instant::now() + CONNECT_FOR;
    loop {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(source) if Instant::now() + RETRY_EVERY >= deadline => {
                return Err(HubError::Connect {
                    addr: addr.to_string(),
                    within: CONNECT_FOR,
                    source,
                });
            }
            Err(_) => tokio::time::sleep(RETRY_EVERY).await,
        }
    }
}

async fn write_line(write: &mut OwnedWriteHalf, message: &FakeMessage) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    line.push(b'\n');
    write.write_all(&line).await
}

/// Sends what the fake has to say (decisions asked for) until the hub is gone.
async fn send_loop(mut write: OwnedWriteHalf, mut outgoing: mpsc::UnboundedReceiver<FakeMessage>) {
    while let Some(message) = outgoing.recv().await {
        if let Err(e) = write_line(&mut write, &message).await {
            // The receive loop sees the same end and clears the faults.
            tracing::debug!(error = %e, "cannot write to the fault hub");
            return;
        }
    }
}

/// Applies the hub's messages until it goes away; then its faults end (the harness is gone,
/// nobody would ever clear them) and the fake keeps serving.
async fn receive_loop(
    mut lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    faults: FaultState,
    on_session_loss: OnSessionLoss,
) {
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                handle(&line, &faults, &on_session_loss);
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "reading from the fault hub failed");
                break;
            }
        }
    }
    tracing::warn!("the fault hub went away; clearing its faults and serving on");
    faults.hub_gone();
}

#[derive(Debug, PartialEq, Eq)]
enum Handled {
    Snapshot,
    Other,
}

fn handle(line: &str, faults: &FaultState, on_session_loss: &OnSessionLoss) -> Handled {
    let message: HubMessage = match serde_json::from_str(line) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring a line from the fault hub that does not parse");
            return Handled::Other;
        }
    };
    match message {
        HubMessage::Faults { active } => {
            faults.set_from_hub(active);
            return Handled::Snapshot;
        }
        HubMessage::Do {
            action: OneShot::Crash,
        } => {
            eprintln!("fake-server: crashing as the fault hub asked");
            // At once, as a crashing process would: no handshake is finished, nothing flushed.
            std::process::exit(1);
        }
        HubMessage::Do {
            action: OneShot::SessionLoss,
        } => on_session_loss(),
        HubMessage::Decision { req, apply } => faults.resolve(req, apply),
    }
    Handled::Other
}
