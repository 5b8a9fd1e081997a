//! The harness's end of the fault hub (protocol in `fake::wire`): every fake server of a run,
//! whoever started it, connects here, says who it is, and is told which faults are in force.
//!
//! The hub keeps, per server name, the windowed faults open now; an instance that connects
//! while a window is open (a stdio child the proxy just restarted) gets it in its first
//! snapshot. Per-request faults with a probability are decided here, from one generator per
//! fault seeded from the run's seed, so the decisions of a run are reproducible and listed in
//! its report.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rand::RngExt as _;
use rand::SeedableRng as _;
use rand::rngs::ChaCha8Rng;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::report::Decision;
use crate::fake::wire::{FakeMessage, HubMessage, OneShot, WireFault};

/// Longest line accepted from a fake (hello and decide messages are tiny).
const MAX_LINE: usize = 64 * 1024;

/// One fake instance that said hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub server: String,
    pub pid: u32,
    pub transport: String,
    /// When it said hello, on the run's clock.
    pub at: std::time::Duration,
}

struct Conn {
    server: String,
    tx: mpsc::UnboundedSender<HubMessage>,
}

/// A windowed fault open on a server, with its end.
#[derive(Clone)]
struct Open {
    fault: WireFault,
    until: Instant,
}

struct State {
    conns: HashMap<u64, Conn>,
    open: HashMap<String, Vec<Open>>,
    rngs: HashMap<usize, (ChaCha8Rng, f64)>,
    decisions: Vec<Decision>,
    instances: Vec<Instance>,
}

struct Shared {
    seed: u64,
    clock: Instant,
    state: Mutex<State>,
}

/// The hub of one run.
pub struct Hub {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Hub {
    /// Listens on 127.0.0.1 (a free port). `clock` is the run's time zero.
    pub async fn start(seed: u64, clock: Instant) -> std::io::Result<Hub> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            seed,
            clock,
            state: Mutex::new(State {
                conns: HashMap::new(),
                open: HashMap::new(),
                rngs: HashMap::new(),
                decisions: Vec::new(),
                instances: Vec::new(),
            }),
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(accept(listener, shared.clone(), stop.clone()));
        Ok(Hub {
            addr,
            shared,
            stop,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Opens a window of `fault` on `server` until `until`, and tells its instances.
    pub fn open(&self, server: &str, fault: WireFault, until: Instant) {
        let Ok(mut state) = self.shared.state.lock() else {
            return;
        };
        if fault.probability < 1.0 {
            let stream = ChaCha8Rng::seed_from_u64(stream_seed(self.shared.seed, fault.index));
            state
                .rngs
                .entry(fault.index)
                .or_insert((stream, fault.probability));
        }
        state
            .open
            .entry(server.to_string())
            .or_default()
            .push(Open { fault, until });
        push_snapshot(&mut state, server);
    }

    /// Closes the window of fault `index` on `server`.
    pub fn close(&self, server: &str, index: usize) {
        let Ok(mut state) = self.shared.state.lock() else {
            return;
        };
        if let Some(open) = state.open.get_mut(server) {
            open.retain(|o| o.fault.index != index);
        }
        push_snapshot(&mut state, server);
    }

    /// Closes every window (the run is ending).
    pub fn clear(&self) {
        let Ok(mut state) = self.shared.state.lock() else {
            return;
        };
        let servers: Vec<String> = state.open.keys().cloned().collect();
        state.open.clear();
        for server in servers {
            push_snapshot(&mut state, &server);
        }
    }

    /// Sends a one-shot fault to every connected instance of `server`; returns how many.
    pub fn one_shot(&self, server: &str, action: OneShot) -> usize {
        let Ok(state) = self.shared.state.lock() else {
            return 0;
        };
        state
            .conns
            .values()
            .filter(|c| c.server == server)
            .filter(|c| c.tx.send(HubMessage::Do { action }).is_ok())
            .count()
    }

    /// Instances of `server` connected now.
    pub fn connected(&self, server: &str) -> usize {
        self.shared
            .state
            .lock()
            .map(|s| s.conns.values().filter(|c| c.server == server).count())
            .unwrap_or(0)
    }

    /// Every instance that ever said hello, in order.
    pub fn instances(&self) -> Vec<Instance> {
        self.shared
            .state
            .lock()
            .map(|s| s.instances.clone())
            .unwrap_or_default()
    }

    /// Every per-request decision drawn so far, in order.
    pub fn decisions(&self) -> Vec<Decision> {
        self.shared
            .state
            .lock()
            .map(|s| s.decisions.clone())
            .unwrap_or_default()
    }

    /// Stops listening and drops every connection.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// The seed of fault `index`'s own stream: one stream per fault keeps its decisions the same
/// whatever other faults draw meanwhile.
fn stream_seed(seed: u64, index: usize) -> u64 {
    seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Sends the faults open on `server` now, with their time left, to its instances.
fn push_snapshot(state: &mut State, server: &str) {
    let now = Instant::now();
    let active: Vec<WireFault> = state
        .open
        .get_mut(server)
        .map(|open| {
            open.retain(|o| o.until > now);
            open.iter()
                .map(|o| WireFault {
                    remaining_ms: o.until.saturating_duration_since(now).as_millis() as u64,
                    ..o.fault.clone()
                })
                .collect()
        })
        .unwrap_or_default();
    for conn in state.conns.values().filter(|c| c.server == server) {
        let _ = conn.tx.send(HubMessage::Faults {
            active: active.clone(),
        });
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    let mut next_id = 0u64;
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                next_id += 1;
                conns.spawn(serve(stream, next_id, shared.clone(), stop.clone()));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = stop.cancelled() => break,
        }
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

async fn serve(stream: TcpStream, id: u64, shared: Arc<Shared>, stop: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<HubMessage>();
    let writer = async move {
        while let Some(message) = rx.recv().await {
            let Ok(mut line) = serde_json::to_vec(&message) else {
                continue;
            };
            line.push(b'\n');
            if write.write_all(&line).await.is_err() {
                break;
            }
        }
    };
    let reader = async {
        let mut lines = BufReader::new(read).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.len() > MAX_LINE {
                break;
            }
            let Ok(message) = serde_json::from_str::<FakeMessage>(&line) else {
                tracing::debug!(%line, "unreadable message from a fake; ignored");
                continue;
            };
            handle(&shared, id, &tx, message);
        }
    };
    tokio::select! {
        _ = reader => {}
        _ = writer => {}
        _ = stop.cancelled() => {}
    }
    if let Ok(mut state) = shared.state.lock() {
        state.conns.remove(&id);
    }
}

fn handle(shared: &Shared, id: u64, tx: &mpsc::UnboundedSender<HubMessage>, message: FakeMessage) {
    let Ok(mut state) = shared.state.lock() else {
        return;
    };
    match message {
        FakeMessage::Hello {
            id: server,
            pid,
            transport,
        } => {
            tracing::debug!(%server, pid, %transport, "fake instance connected to the hub");
            state.instances.push(Instance {
                server: server.clone(),
                pid,
                transport,
                at: shared.clock.elapsed(),
            });
            state.conns.insert(
                id,
                Conn {
                    server: server.clone(),
                    tx: tx.clone(),
                },
            );
            push_snapshot(&mut state, &server);
        }
        FakeMessage::Call { .. } | FakeMessage::Applied { .. } => {}
        FakeMessage::Decide { req, fault, .. } => {
            let server = state
                .conns
                .get(&id)
                .map(|c| c.server.clone())
                .unwrap_or_default();
            // Only a window still open may apply; a late question after it closed is a no.
            let open = state.open.get(&server).is_some_and(|o| {
                o.iter()
                    .any(|o| o.fault.index == fault && o.until > Instant::now())
            });
            let apply = match state.rngs.get_mut(&fault) {
                Some((rng, p)) => {
                    let draw = rng.random_bool(p.clamp(0.0, 1.0));
                    draw && open
                }
                None => open,
            };
            state.decisions.push(Decision {
                at: shared.clock.elapsed(),
                server,
                fault_index: fault,
                request_id: Some(req),
                applied: apply,
            });
            let _ = tx.send(HubMessage::Decision { req, apply });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::wire::WireKind;

    async fn connect(
        hub: &Hub,
        server: &str,
    ) -> (
        tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
        tokio::net::tcp::OwnedWriteHalf,
    ) {
        let stream = TcpStream::connect(hub.addr()).await.unwrap();
        let (r, mut w) = stream.into_split();
        let hello = serde_json::to_string(&FakeMessage::Hello {
            id: server.into(),
            pid: 1,
            transport: "stdio".into(),
        })
        .unwrap();
        w.write_all(format!("{hello}\n").as_bytes()).await.unwrap();
        (BufReader::new(r).lines(), w)
    }

    async fn next(
        lines: &mut tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    ) -> HubMessage {
        let line = tokio::time::timeout(std::time::Duration::from_secs(5), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        serde_json::from_str(&line).unwrap()
    }

    fn fault(index: usize, probability: f64) -> WireFault {
        WireFault {
            index,
            kind: WireKind::ToolError,
            probability,
            tools: vec![],
            remaining_ms: 0,
        }
    }

    #[tokio::test]
    async fn late_instances_get_open_windows_and_decisions_repeat_with_the_seed() {
        let mut runs = Vec::new();
        for _ in 0..2 {
            let hub = Hub::start(7, Instant::now()).await.unwrap();
            hub.open(
                "a",
                fault(0, 0.5),
                Instant::now() + std::time::Duration::from_secs(30),
            );
            // Connects after the window opened: the first snapshot has it.
            let (mut lines, mut w) = connect(&hub, "a").await;
            match next(&mut lines).await {
                HubMessage::Faults { active } => {
                    assert_eq!(active.len(), 1);
                    assert!(active[0].remaining_ms > 25_000);
                }
                other => panic!("{other:?}"),
            }
            let mut applied = Vec::new();
            for req in 0..40 {
                let ask = serde_json::to_string(&FakeMessage::Decide {
                    req,
                    fault: 0,
                    request: None,
                })
                .unwrap();
                w.write_all(format!("{ask}\n").as_bytes()).await.unwrap();
                match next(&mut lines).await {
                    HubMessage::Decision { req: r, apply } => {
                        assert_eq!(r, req);
                        applied.push(apply);
                    }
                    other => panic!("{other:?}"),
                }
            }
            assert!(applied.iter().any(|a| *a) && applied.iter().any(|a| !*a));
            assert_eq!(hub.decisions().len(), 40);
            hub.close("a", 0);
            assert!(
                matches!(next(&mut lines).await, HubMessage::Faults { active } if active.is_empty())
            );
            assert_eq!(hub.one_shot("a", OneShot::Crash), 1);
            assert!(matches!(
                next(&mut lines).await,
                HubMessage::Do {
                    action: OneShot::Crash
                }
            ));
            assert_eq!(hub.instances().len(), 1);
            runs.push(applied);
            hub.stop().await;
        }
        assert_eq!(runs[0], runs[1], "the same seed draws the same decisions");
    }
}
