//! The harness's end of the fault hub (protocol in `fake::wire`): every fake server of a run,
//! whoever started it, connects here, says who it is, and is told which faults are in force.
//!
//! The hub keeps, per server name, the windowed faults open now; an instance that connects
//! while a window is open (a stdio child the proxy just restarted) gets it in its first
//! snapshot. Per-request faults with a probability are decided here, each decision a pure
//! draw keyed by the fault's seed (from the run's seed), the harness request the call carries
//! and the attempt (how many times that fault was decided for that request before), so that
//! the same seed gives each request the same decisions whatever order the calls arrive in,
//! and retries get draws of their own. A call without a harness request (a proxy's ping) is
//! keyed by its own count on its instance. Every decision is listed in the report, marked
//! applied only once the fake said it applied it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::record::{CallSeen, Delivery, InstanceRecord, Ledger};
use super::report::Decision;
use crate::fake::wire::{FakeMessage, HubMessage, OneShot, WireFault, WireKind, draw, unit};

/// Longest line accepted from a fake (hello and decide messages are tiny).
const MAX_LINE: usize = 64 * 1024;

struct Conn {
    server: String,
    /// Index into `State::instances`.
    instance: usize,
    tx: mpsc::UnboundedSender<HubMessage>,
    /// This instance's rank among its server's instances (0: the first to say hello), and
    /// how many decisions it asked for calls without a harness request: together they key
    /// those draws.
    ordinal: u64,
    unkeyed: u64,
}

/// A windowed fault open on a server, with its end.
#[derive(Clone)]
struct Open {
    fault: WireFault,
    until: Instant,
}

/// What one fault event reached so far.
#[derive(Default)]
struct Reach {
    /// Instances (indices into `State::instances`) it was in force on or sent to.
    instances: BTreeSet<usize>,
    changed: u64,
}

struct State {
    conns: HashMap<u64, Conn>,
    open: HashMap<String, Vec<Open>>,
    /// The probability of each per-request fault that has one below 1.
    probabilities: HashMap<usize, f64>,
    /// Decisions made so far per fault and draw key, for the attempt number.
    attempts: HashMap<(usize, u64, u64), u64>,
    /// Every decision, with what the hub answered (a draw that hit, in an open window).
    decisions: Vec<(Decision, bool)>,
    /// Applied reports per fault and harness request.
    applied: HashMap<(usize, Option<u64>), u64>,
    instances: Vec<InstanceRecord>,
    reach: BTreeMap<usize, Reach>,
    calls: Vec<CallSeen>,
    /// The run's time zero, once known: the moment the load starts. Until then (and for
    /// anything before it) times are 0.
    zero: Option<Instant>,
}

impl State {
    fn now(&self) -> std::time::Duration {
        self.zero.map_or(std::time::Duration::ZERO, |z| {
            Instant::now().saturating_duration_since(z)
        })
    }
}

struct Shared {
    seed: u64,
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
    /// Listens on 127.0.0.1 (a free port). Times are 0 until [`Hub::set_zero`].
    pub async fn start(seed: u64) -> std::io::Result<Hub> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            seed,
            state: Mutex::new(State {
                conns: HashMap::new(),
                open: HashMap::new(),
                probabilities: HashMap::new(),
                attempts: HashMap::new(),
                decisions: Vec::new(),
                applied: HashMap::new(),
                instances: Vec::new(),
                reach: BTreeMap::new(),
                calls: Vec::new(),
                zero: None,
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

    /// Sets the run's time zero (the load's start), which every time the hub records is
    /// measured from.
    pub fn set_zero(&self, zero: Instant) {
        if let Ok(mut state) = self.shared.state.lock() {
            state.zero = Some(zero);
        }
    }

    /// Opens a window of `fault` on `server` until `until`, and tells its instances.
    pub fn open(&self, server: &str, mut fault: WireFault, until: Instant) {
        let Ok(mut state) = self.shared.state.lock() else {
            return;
        };
        fault.seed = fault_seed(self.shared.seed, fault.index);
        if fault.probability < 1.0 {
            state.probabilities.insert(fault.index, fault.probability);
        }
        // Opening a window that is open already moves its end (a start-up window opened
        // before the run's time zero gets its real end once that is known).
        let open = state.open.entry(server.to_string()).or_default();
        open.retain(|o| o.fault.index != fault.index);
        open.push(Open { fault, until });
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

    /// Sends one-shot fault `index` to every connected instance of `server`; returns how
    /// many. Each of them counts as reached and changed in the ledger: an instance told to
    /// crash crashes, one told to forget its sessions forgets them.
    pub fn one_shot(&self, server: &str, index: usize, action: OneShot) -> usize {
        let Ok(mut state) = self.shared.state.lock() else {
            return 0;
        };
        let sent: Vec<usize> = state
            .conns
            .values()
            .filter(|c| c.server == server)
            .filter(|c| c.tx.send(HubMessage::Do { action }).is_ok())
            .map(|c| c.instance)
            .collect();
        let reach = state.reach.entry(index).or_default();
        reach.instances.extend(sent.iter().copied());
        reach.changed += sent.len() as u64;
        sent.len()
    }

    /// Instances of `server` connected now.
    pub fn connected(&self, server: &str) -> usize {
        self.shared
            .state
            .lock()
            .map(|s| s.conns.values().filter(|c| c.server == server).count())
            .unwrap_or(0)
    }

    /// The delivery ledger so far: what each fault reached, each instance and its calls.
    pub fn ledger(&self) -> Ledger {
        let Ok(state) = self.shared.state.lock() else {
            return Ledger::default();
        };
        Ledger {
            events: state
                .reach
                .iter()
                .map(|(index, r)| {
                    (
                        *index,
                        Delivery {
                            instances_reached: r.instances.len() as u64,
                            requests_changed: r.changed,
                        },
                    )
                })
                .collect(),
            instances: state.instances.clone(),
            calls: state.calls.clone(),
        }
    }

    /// Every per-request decision so far, in the order they were asked for; a decision is
    /// applied when the fake reported the fault applied to its request (the first ones
    /// answered yes, as many as it reported).
    pub fn decisions(&self) -> Vec<Decision> {
        let Ok(state) = self.shared.state.lock() else {
            return Vec::new();
        };
        let mut reported = state.applied.clone();
        state
            .decisions
            .iter()
            .map(|(d, answered)| {
                let mut d = d.clone();
                let left = reported.entry((d.fault_index, d.request_id)).or_default();
                d.applied = *answered && *left > 0;
                if d.applied {
                    *left -= 1;
                }
                d
            })
            .collect()
    }

    /// Stops listening and drops every connection.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// The seed of fault `index`: its draws are its own, whatever other faults draw.
fn fault_seed(seed: u64, index: usize) -> u64 {
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
    let mut told = Vec::new();
    for conn in state.conns.values().filter(|c| c.server == server) {
        if conn
            .tx
            .send(HubMessage::Faults {
                active: active.clone(),
            })
            .is_ok()
        {
            told.push(conn.instance);
        }
    }
    for fault in &active {
        let reach = state.reach.entry(fault.index).or_default();
        reach.instances.extend(told.iter().copied());
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
            let connected_at = state.now();
            state.instances.push(InstanceRecord {
                server: server.clone(),
                pid,
                transport,
                connected_at,
                calls: 0,
            });
            let instance = state.instances.len() - 1;
            let ordinal = state.instances[..instance]
                .iter()
                .filter(|i| i.server == server)
                .count() as u64;
            state.conns.insert(
                id,
                Conn {
                    server: server.clone(),
                    instance,
                    tx: tx.clone(),
                    ordinal,
                    unkeyed: 0,
                },
            );
            // A refuse window open now makes this instance exit during its start-up, as soon
            // as it has the snapshot: that is the fault changing something, though the
            // instance is gone before it could say so.
            let now = Instant::now();
            let refusing: Vec<usize> = state
                .open
                .get(&server)
                .map(|open| {
                    open.iter()
                        .filter(|o| o.until > now && o.fault.kind == WireKind::Refuse)
                        .map(|o| o.fault.index)
                        .collect()
                })
                .unwrap_or_default();
            for index in refusing {
                state.reach.entry(index).or_default().changed += 1;
            }
            push_snapshot(&mut state, &server);
        }
        FakeMessage::Call { tool: _, request } => {
            let Some((server, instance)) =
                state.conns.get(&id).map(|c| (c.server.clone(), c.instance))
            else {
                return;
            };
            let at = state.now();
            if let Some(i) = state.instances.get_mut(instance) {
                i.calls += 1;
            }
            state.calls.push(CallSeen {
                at,
                server,
                request,
            });
        }
        FakeMessage::Applied { fault, request } => {
            // Only from instances that said hello: the hub's own faults.
            if state.conns.contains_key(&id) {
                state.reach.entry(fault).or_default().changed += 1;
                *state.applied.entry((fault, request)).or_default() += 1;
            }
        }
        FakeMessage::Decide {
            req,
            fault,
            request,
        } => {
            let Some(conn) = state.conns.get_mut(&id) else {
                // Not an instance of the run: nothing to key a draw by.
                let _ = tx.send(HubMessage::Decision { req, apply: false });
                return;
            };
            let server = conn.server.clone();
            // The draw's key: the harness request, or this instance's own count of calls
            // without one (the key spaces apart: 0 for requests, 1 + rank for instances).
            let key = match request {
                Some(r) => (0, r),
                None => {
                    conn.unkeyed += 1;
                    (1 + conn.ordinal, conn.unkeyed - 1)
                }
            };
            let attempt = {
                let n = state.attempts.entry((fault, key.0, key.1)).or_default();
                *n += 1;
                *n - 1
            };
            let seed = fault_seed(shared.seed, fault);
            let drawn = state
                .probabilities
                .get(&fault)
                .is_none_or(|p| unit(draw(&[seed, key.0, key.1, attempt])) < *p);
            // Only a window still open may apply; a late question after it closed is a no.
            let open = state.open.get(&server).is_some_and(|o| {
                o.iter()
                    .any(|o| o.fault.index == fault && o.until > Instant::now())
            });
            let apply = drawn && open;
            let at = state.now();
            state.decisions.push((
                Decision {
                    at,
                    server,
                    fault_index: fault,
                    request_id: request,
                    attempt,
                    drawn,
                    applied: false,
                },
                apply,
            ));
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
            seed: 0,
            instance: false,
        }
    }

    /// Decisions are keyed by request and attempt: two runs asking about the same requests
    /// in opposite orders get the same answer for each; a second attempt gets its own draw.
    #[tokio::test]
    async fn late_instances_get_open_windows_and_decisions_follow_the_request() {
        let mut runs = Vec::new();
        for order in [false, true] {
            let hub = Hub::start(7).await.unwrap();
            hub.set_zero(Instant::now());
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
            let mut requests: Vec<u64> = (0..40).chain([7, 7]).collect();
            if order {
                requests.reverse();
            }
            let mut applied = std::collections::BTreeMap::new();
            for (req, request) in requests.into_iter().enumerate() {
                let req = req as u64;
                let ask = serde_json::to_string(&FakeMessage::Decide {
                    req,
                    fault: 0,
                    request: Some(request),
                })
                .unwrap();
                w.write_all(format!("{ask}\n").as_bytes()).await.unwrap();
                match next(&mut lines).await {
                    HubMessage::Decision { req: r, apply } => {
                        assert_eq!(r, req);
                        let attempt = applied.keys().filter(|(q, _)| *q == request).count();
                        applied.insert((request, attempt), apply);
                    }
                    other => panic!("{other:?}"),
                }
            }
            assert!(applied.values().any(|a| *a) && applied.values().any(|a| !*a));
            let decisions = hub.decisions();
            assert_eq!(decisions.len(), 42);
            // Nothing was reported applied, so nothing is.
            assert!(decisions.iter().all(|d| !d.applied));
            let attempts: Vec<u64> = decisions
                .iter()
                .filter(|d| d.request_id == Some(7))
                .map(|d| d.attempt)
                .collect();
            assert_eq!(attempts, [0, 1, 2]);
            hub.close("a", 0);
            assert!(
                matches!(next(&mut lines).await, HubMessage::Faults { active } if active.is_empty())
            );
            assert_eq!(hub.one_shot("a", 1, OneShot::Crash), 1);
            assert!(matches!(
                next(&mut lines).await,
                HubMessage::Do {
                    action: OneShot::Crash
                }
            ));
            assert_eq!(hub.ledger().instances.len(), 1);
            runs.push(applied);
            hub.stop().await;
        }
        assert_eq!(
            runs[0], runs[1],
            "the same seed draws the same decision for each request and attempt"
        );
    }

    async fn say(w: &mut tokio::net::tcp::OwnedWriteHalf, message: &FakeMessage) {
        let line = serde_json::to_string(message).unwrap();
        w.write_all(format!("{line}\n").as_bytes()).await.unwrap();
    }

    /// The ledger counts what the fakes report: calls per instance, faults applied, instances
    /// a window was in force on, and instances a refuse window turned away at start-up.
    #[tokio::test]
    async fn the_ledger_counts_calls_reach_and_changes() {
        let hub = Hub::start(1).await.unwrap();
        hub.set_zero(Instant::now());
        let until = Instant::now() + std::time::Duration::from_secs(30);
        hub.open("a", fault(0, 1.0), until);
        let mut refuse = fault(1, 1.0);
        refuse.kind = WireKind::Refuse;
        hub.open("b", refuse, until);
        let (mut a_lines, mut a) = connect(&hub, "a").await;
        assert!(matches!(
            next(&mut a_lines).await,
            HubMessage::Faults { .. }
        ));
        let (mut b_lines, _b) = connect(&hub, "b").await;
        assert!(matches!(
            next(&mut b_lines).await,
            HubMessage::Faults { .. }
        ));
        for request in [Some(3), Some(4), None] {
            say(
                &mut a,
                &FakeMessage::Call {
                    tool: "echo".into(),
                    request,
                },
            )
            .await;
        }
        say(
            &mut a,
            &FakeMessage::Applied {
                fault: 0,
                request: Some(4),
            },
        )
        .await;
        // An answer to a decision is the hub's sign that everything before it was read.
        say(
            &mut a,
            &FakeMessage::Decide {
                req: 0,
                fault: 0,
                request: Some(4),
            },
        )
        .await;
        assert!(matches!(
            next(&mut a_lines).await,
            HubMessage::Decision { .. }
        ));
        let ledger = hub.ledger();
        assert_eq!(ledger.calls_to("a"), 3);
        assert_eq!(ledger.calls_to("b"), 0);
        assert_eq!(
            ledger.calls.iter().map(|c| c.request).collect::<Vec<_>>(),
            [Some(3), Some(4), None]
        );
        assert_eq!(
            ledger.delivery(0),
            Delivery {
                instances_reached: 1,
                requests_changed: 1
            }
        );
        assert_eq!(
            ledger.delivery(1),
            Delivery {
                instances_reached: 1,
                requests_changed: 1
            },
            "the instance that said hello during the refuse window"
        );
        assert_eq!(ledger.delivery(7), Delivery::default());
        assert_eq!(hub.decisions()[0].request_id, Some(4));
        hub.stop().await;
    }
}
