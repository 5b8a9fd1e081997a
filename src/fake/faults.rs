//! The faults a fake server has in force, shared by its MCP handler, its HTTP layer and its
//! stdout writer.
//!
//! Faults come from two places: the chaos harness's hub (see `wire`), which replaces its set
//! with every snapshot it sends, and the HTTP form's `/control/fault` API, which adds one at a
//! time. Both end up here as [`ActiveFault`]s with a deadline, so the code that applies a fault
//! never asks where it came from, except to know who decides a per-request probability: the
//! hub for its own faults (its seeded generators make a run reproducible), a local draw for the
//! rest.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::RngExt as _;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::wire::{FakeMessage, GarbageForm, WireFault, WireKind};

/// How long a per-request decision may take before the request goes on without the fault: a
/// hub that is slow to answer must not turn every fault into latency.
pub const DECISION_TIMEOUT: Duration = Duration::from_millis(500);

/// Local (control API) faults are numbered from here, so that their indices can never be
/// mistaken for the hub's, which count from 0.
const LOCAL_INDEX_BASE: usize = 1 << 32;

/// How the fake is reached; some kinds only make sense on one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Stdio,
    StreamableHttp,
    /// Legacy HTTP+SSE (protocol 2024-11-05).
    Sse,
}

impl Transport {
    /// The name said in the hub's `hello`.
    pub fn wire_name(self) -> &'static str {
        match self {
            Transport::Stdio => "stdio",
            Transport::StreamableHttp => "streamable-http",
            Transport::Sse => "sse",
        }
    }
}

/// Who put a fault in force, and so who decides its per-request probability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Hub,
    Local,
}

/// One fault in force.
#[derive(Debug, Clone)]
pub struct ActiveFault {
    /// The hub's index for it (decisions name it), or a local number.
    pub index: usize,
    pub kind: WireKind,
    pub probability: f64,
    /// Bare tool names it is limited to; empty means every tool.
    pub tools: Vec<String>,
    /// When its window ends; `None` lasts until cleared.
    pub until: Option<Instant>,
    /// Only sessions whose handshake finished before `arrived` are affected (`scope:
    /// instance`).
    pub instance: bool,
    /// When this process first heard of it.
    pub arrived: Instant,
    /// Seeds the values this fake draws for it (see [`FaultState::value_draw`]).
    pub seed: u64,
    source: Source,
}

impl ActiveFault {
    fn live(&self, now: Instant) -> bool {
        self.until.is_none_or(|u| now < u)
    }

    /// Whether this fault concerns a request: `on.tool` is the tool's name for `tools/call`
    /// and `None` for any other request (`ping`, `tools/list`). A hang without a tool filter
    /// stops every request, so that a hung server also fails the client's `ping`; every other
    /// kind acts on tool calls only. A fault scoped to the instance spares sessions that
    /// started after it arrived.
    pub fn targets(&self, on: RequestRef<'_>) -> bool {
        if self.instance && on.born.is_none_or(|born| born >= self.arrived) {
            return false;
        }
        match on.tool {
            Some(name) => self.tools.is_empty() || self.tools.iter().any(|t| t == name),
            None => matches!(self.kind, WireKind::Hang) && self.tools.is_empty(),
        }
    }
}

/// The faults of one fake server process; cheap to clone, every clone sees the same set.
#[derive(Clone)]
pub struct FaultState {
    shared: Arc<Shared>,
}

struct Shared {
    transport: Transport,
    faults: Mutex<Vec<ActiveFault>>,
    /// Bumped on every change of `faults`, so that a hung request notices its window being
    /// closed early (a new snapshot without it, `/control/clear`, the hub going away).
    changed: watch::Sender<u64>,
    hub: Mutex<Option<HubLink>>,
    /// The `req` of the next `decide`: one counter per process, as the wire protocol says.
    next_req: AtomicU64,
    next_local: AtomicUsize,
    /// Answers to replace with garbage, by JSON-RPC id (its JSON text): the stdio writer
    /// looks each frame up here (see `stdio`).
    garbage: Mutex<HashMap<String, GarbageMark>>,
    /// Values drawn so far per fault and request, so that each attempt of a request that
    /// reaches this process gets its own (see [`FaultState::value_draw`]).
    values: Mutex<HashMap<(usize, u64), u64>>,
}

/// An answer a `garbage` fault will replace: in which form, and whom to report it to once it
/// has been.
#[derive(Debug, Clone)]
pub struct GarbageMark {
    pub fault: ActiveFault,
    /// The harness request the call belongs to.
    pub request: Option<u64>,
    pub form: GarbageForm,
    /// The draw that chose the form, also for the malformed result.
    pub pick: u64,
}

impl GarbageMark {
    /// The mark of a call that `fault` (a `garbage` fault) hit, in the form `pick` chooses
    /// ([`FaultState::value_draw`]).
    pub fn new(fault: &ActiveFault, request: Option<u64>, pick: u64) -> Self {
        let forms = match &fault.kind {
            WireKind::Garbage { forms } => forms.as_slice(),
            _ => &[],
        };
        let (form, pick) = super::garbage::choose(forms, pick);
        GarbageMark {
            fault: fault.clone(),
            request,
            form,
            pick,
        }
    }
}

/// A stable hash of a string (FNV-1a), for draws keyed by text.
fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The way to the hub for decisions.
struct HubLink {
    out: mpsc::UnboundedSender<FakeMessage>,
    pending: HashMap<u64, oneshot::Sender<bool>>,
}

/// A request that was cancelled by its client while a fault held it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request was cancelled while a fault held it")]
pub struct Cancelled;

/// The request a fault is asked about: a tool call, with the harness request it belongs to
/// when its arguments say so (`wire::request_of`), or another request (`ping`, `tools/list`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRef<'a> {
    /// The tool's name for `tools/call`; `None` for any other request.
    pub tool: Option<&'a str>,
    /// The harness request, for the hub's decisions and the delivery ledger.
    pub request: Option<u64>,
    /// When the session it came on finished its handshake, if it has; faults scoped to the
    /// instance affect only sessions born before they arrived.
    pub born: Option<Instant>,
}

impl<'a> RequestRef<'a> {
    pub fn call(tool: &'a str, request: Option<u64>) -> Self {
        RequestRef {
            tool: Some(tool),
            request,
            born: None,
        }
    }

    /// A request that is not a tool call.
    pub fn other() -> Self {
        RequestRef {
            tool: None,
            request: None,
            born: None,
        }
    }

    /// The same request, on a session born at `born`.
    pub fn on_session(self, born: Option<Instant>) -> Self {
        RequestRef { born, ..self }
    }
}

/// A poisoned lock only means another task panicked while holding it; the fault list is
/// still a valid list, so carry on with it rather than stop applying faults.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FaultState {
    pub fn new(transport: Transport) -> Self {
        FaultState {
            shared: Arc::new(Shared {
                transport,
                faults: Mutex::new(Vec::new()),
                changed: watch::Sender::new(0),
                hub: Mutex::new(None),
                next_req: AtomicU64::new(0),
                next_local: AtomicUsize::new(LOCAL_INDEX_BASE),
                garbage: Mutex::new(HashMap::new()),
                values: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn transport(&self) -> Transport {
        self.shared.transport
    }

    fn bump(&self) {
        self.shared.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A hub snapshot: its faults replace every earlier hub fault (local ones stay).
    pub fn set_from_hub(&self, active: Vec<WireFault>) {
        let now = Instant::now();
        for f in &active {
            if self.transport() == Transport::Stdio
                && matches!(f.kind, WireKind::HttpError { .. } | WireKind::Reset)
            {
                tracing::warn!(
                    index = f.index,
                    kind = ?f.kind,
                    "this fault needs HTTP and the fake serves stdio; ignored"
                );
            }
        }
        {
            let mut faults = lock(&self.shared.faults);
            // A fault already known keeps the moment it first arrived: a later snapshot only
            // moves its end.
            let arrived: HashMap<usize, Instant> = faults
                .iter()
                .filter(|f| f.source == Source::Hub)
                .map(|f| (f.index, f.arrived))
                .collect();
            faults.retain(|f| f.source != Source::Hub);
            faults.extend(active.into_iter().map(|f| ActiveFault {
                index: f.index,
                kind: f.kind,
                probability: f.probability,
                tools: f.tools,
                until: Some(now + Duration::from_millis(f.remaining_ms)),
                instance: f.instance,
                arrived: arrived.get(&f.index).copied().unwrap_or(now),
                seed: f.seed,
                source: Source::Hub,
            }));
        }
        self.bump();
    }

    /// A fault from the control API, for `for_ms` or until cleared. Returns its index.
    pub fn add_local(
        &self,
        kind: WireKind,
        probability: f64,
        tools: Vec<String>,
        for_ms: Option<u64>,
    ) -> usize {
        let index = self.shared.next_local.fetch_add(1, Ordering::Relaxed);
        let until = for_ms.map(|ms| Instant::now() + Duration::from_millis(ms));
        lock(&self.shared.faults).push(ActiveFault {
            index,
            kind,
            probability,
            tools,
            until,
            instance: false,
            arrived: Instant::now(),
            seed: index as u64,
            source: Source::Local,
        });
        self.bump();
        index
    }

    /// Ends every fault, wherever it came from.
    pub fn clear(&self) {
        lock(&self.shared.faults).clear();
        self.bump();
    }

    /// The hub is reachable through `out` from now on.
    pub fn attach_hub(&self, out: mpsc::UnboundedSender<FakeMessage>) {
        *lock(&self.shared.hub) = Some(HubLink {
            out,
            pending: HashMap::new(),
        });
    }

    /// The hub went away: the harness that set its faults is gone, so they end now, and the
    /// decisions still awaited are dropped (their requests go on without the fault).
    pub fn hub_gone(&self) {
        lock(&self.shared.hub).take();
        lock(&self.shared.faults).retain(|f| f.source != Source::Hub);
        self.bump();
    }

    /// The hub's answer to decision `req`.
    pub fn resolve(&self, req: u64, apply: bool) {
        let waiter = lock(&self.shared.hub)
            .as_mut()
            .and_then(|link| link.pending.remove(&req));
        match waiter {
            // The request may have given up waiting already; nothing else to do then.
            Some(tx) => {
                let _ = tx.send(apply);
            }
            None => tracing::debug!(req, "a decision nobody waits for (too late?)"),
        }
    }

    /// The faults in force now, dropping the ones whose window ended.
    pub fn active(&self) -> Vec<ActiveFault> {
        let now = Instant::now();
        let mut faults = lock(&self.shared.faults);
        faults.retain(|f| f.live(now));
        faults.clone()
    }

    /// Tells the hub that a `tools/call` arrived (the delivery ledger counts them), when this
    /// instance has a hub.
    pub fn note_call(&self, tool: &str, request: Option<u64>) {
        self.send_to_hub(FakeMessage::Call {
            tool: tool.to_string(),
            request,
        });
    }

    /// Tells the hub that one of its faults changed what this instance did (answered a request
    /// differently, delayed a start), so the ledger shows that the fault reached something.
    /// Faults of the control API are nobody's business but the fake's.
    pub fn note_applied(&self, fault: &ActiveFault, request: Option<u64>) {
        if fault.source == Source::Hub {
            self.send_to_hub(FakeMessage::Applied {
                fault: fault.index,
                request,
            });
        }
    }

    fn send_to_hub(&self, message: FakeMessage) {
        if let Some(link) = lock(&self.shared.hub).as_ref() {
            // A hub that went away has cleared its faults; nothing is owed to it.
            let _ = link.out.send(message);
        }
    }

    /// Whether fault `fault` applies to the request at hand.
    pub async fn decide(&self, fault: &ActiveFault, request: Option<u64>) -> bool {
        if fault.probability >= 1.0 {
            return true;
        }
        if fault.probability <= 0.0 {
            return false;
        }
        if fault.source == Source::Local {
            return rand::rng().random_bool(fault.probability);
        }
        let req = self.shared.next_req.fetch_add(1, Ordering::Relaxed);
        let answer = {
            let mut hub = lock(&self.shared.hub);
            let Some(link) = hub.as_mut() else {
                // A hub fault without a hub cannot happen (they end together); a local draw
                // is the honest fallback if it ever does.
                return rand::rng().random_bool(fault.probability);
            };
            let (tx, rx) = oneshot::channel();
            link.pending.insert(req, tx);
            let asked = link.out.send(FakeMessage::Decide {
                req,
                fault: fault.index,
                request,
            });
            if asked.is_err() {
                link.pending.remove(&req);
                return false;
            }
            rx
        };
        match tokio::time::timeout(DECISION_TIMEOUT, answer).await {
            Ok(Ok(apply)) => apply,
            Ok(Err(_)) => false,
            Err(_) => {
                tracing::warn!(req, fault = fault.index, "no decision from the hub in time");
                if let Some(link) = lock(&self.shared.hub).as_mut() {
                    link.pending.remove(&req);
                }
                false
            }
        }
    }

    /// The faults of the kinds `wanted` that target this request and that apply to it (each
    /// decided once, all at the same time so that several hub round trips do not add up).
    ///
    /// A fault that hits is not yet applied: the caller reports the ones it acts on with
    /// [`FaultState::note_applied`] (an HTTP answer can only carry one).
    pub async fn hits(
        &self,
        on: RequestRef<'_>,
        wanted: impl Fn(&WireKind) -> bool,
    ) -> Vec<ActiveFault> {
        let candidates: Vec<ActiveFault> = self
            .active()
            .into_iter()
            .filter(|f| wanted(&f.kind) && f.targets(on))
            .collect();
        if candidates.is_empty() {
            return candidates;
        }
        let decisions =
            futures::future::join_all(candidates.iter().map(|f| self.decide(f, on.request))).await;
        candidates
            .into_iter()
            .zip(decisions)
            .filter_map(|(f, apply)| apply.then_some(f))
            .collect()
    }

    /// Holds a request while a hang that applies to it is in force: until its window ends or
    /// it is taken away, or until the client cancels the request.
    pub async fn hold_while_hung(
        &self,
        on: RequestRef<'_>,
        cancel: &CancellationToken,
    ) -> Result<(), Cancelled> {
        // Subscribe before looking, so that a change between the look and the wait is seen.
        let mut changes = self.shared.changed.subscribe();
        let hits = self.hits(on, |k| matches!(k, WireKind::Hang)).await;
        for f in &hits {
            self.note_applied(f, on.request);
        }
        let hung: Vec<(Source, usize)> = hits.iter().map(|f| (f.source, f.index)).collect();
        if hung.is_empty() {
            return Ok(());
        }
        loop {
            // The latest end among the hangs that caught this request and are still in force
            // (a new snapshot may have moved it); `Some(None)` is a hang without an end.
            let end: Option<Option<Instant>> = self
                .active()
                .iter()
                .filter(|f| hung.contains(&(f.source, f.index)) && matches!(f.kind, WireKind::Hang))
                .map(|f| f.until)
                .reduce(|a, b| match (a, b) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                });
            let Some(end) = end else {
                return Ok(());
            };
            let window = async {
                match end {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = window => {}
                changed = changes.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
                _ = cancel.cancelled() => return Err(Cancelled),
            }
        }
    }

    /// How long `initialize` should wait now (the longest slow-start in force).
    pub fn slow_start_delay(&self) -> Option<Duration> {
        self.slow_start().map(|(_, delay)| delay)
    }

    /// The slow-start that delays `initialize` now (the longest in force), with its delay.
    pub fn slow_start(&self) -> Option<(ActiveFault, Duration)> {
        self.active()
            .into_iter()
            .filter_map(|f| match f.kind {
                WireKind::SlowStart { delay_ms } => Some((f, Duration::from_millis(delay_ms))),
                _ => None,
            })
            .max_by_key(|(_, d)| *d)
    }

    /// Whether a refuse window is open (asked once, at start-up).
    pub fn refuses(&self) -> bool {
        self.active()
            .iter()
            .any(|f| matches!(f.kind, WireKind::Refuse))
    }

    /// A value for `fault` acting on a request (a latency, a garbage form): a pure draw keyed
    /// by the fault's seed, the harness request (`rpc_id`, the call's JSON-RPC id, when it has
    /// none) and how many values this process drew for them before, so the same request gets
    /// the same value in every run with the seed, and a retry its own.
    pub fn value_draw(&self, fault: &ActiveFault, request: Option<u64>, rpc_id: &str) -> u64 {
        // Keyed by text only when there is no request: a proxy's own calls.
        let (space, by) = match request {
            Some(r) => (0, r),
            None => (1, hash(rpc_id)),
        };
        let attempt = {
            let mut values = lock(&self.shared.values);
            let n = values.entry((fault.index, by ^ space)).or_insert(0);
            *n += 1;
            *n - 1
        };
        super::wire::draw(&[fault.seed, space, by, attempt])
    }

    /// The answer with JSON-RPC id `rpc_id` (its JSON text) is to be replaced by garbage.
    pub fn mark_garbage(&self, rpc_id: String, mark: GarbageMark) {
        lock(&self.shared.garbage).insert(rpc_id, mark);
    }

    /// Whether any answer is marked (so the writer need not parse frames when none is).
    pub fn garbage_owed(&self) -> bool {
        !lock(&self.shared.garbage).is_empty()
    }

    /// Takes the mark of the answer with JSON-RPC id `rpc_id`, if it has one.
    pub fn take_garbage(&self, rpc_id: &str) -> Option<GarbageMark> {
        lock(&self.shared.garbage).remove(rpc_id)
    }
}

/// A delay from `min_ms..=max_ms` (the bounds in either order), chosen by `pick` (a
/// [`FaultState::value_draw`]), near enough to uniform for any range a scenario can give.
pub fn latency(min_ms: u64, max_ms: u64, pick: u64) -> Duration {
    let (lo, hi) = (min_ms.min(max_ms), min_ms.max(max_ms));
    let span = hi - lo;
    let offset = if span == u64::MAX {
        pick
    } else {
        pick % (span + 1)
    };
    Duration::from_millis(lo + offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(index: usize, kind: WireKind, probability: f64, remaining_ms: u64) -> WireFault {
        WireFault {
            index,
            kind,
            probability,
            tools: vec![],
            remaining_ms,
            seed: 0,
            instance: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn hub_windows_expire() {
        let state = FaultState::new(Transport::Stdio);
        state.set_from_hub(vec![
            wire(0, WireKind::ToolError, 1.0, 1000),
            wire(1, WireKind::SlowStart { delay_ms: 300 }, 1.0, 3000),
        ]);
        assert_eq!(state.active().len(), 2);
        assert_eq!(state.slow_start_delay(), Some(Duration::from_millis(300)));
        tokio::time::advance(Duration::from_millis(1001)).await;
        let left: Vec<usize> = state.active().iter().map(|f| f.index).collect();
        assert_eq!(left, vec![1]);
        tokio::time::advance(Duration::from_millis(2000)).await;
        assert!(state.active().is_empty());
        assert_eq!(state.slow_start_delay(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn local_windows_expire_and_unbounded_ones_stay() {
        let state = FaultState::new(Transport::StreamableHttp);
        state.add_local(WireKind::Garbage { forms: vec![] }, 1.0, vec![], Some(50));
        state.add_local(WireKind::Refuse, 1.0, vec![], None);
        tokio::time::advance(Duration::from_millis(60)).await;
        let kinds: Vec<WireKind> = state.active().into_iter().map(|f| f.kind).collect();
        assert_eq!(kinds, vec![WireKind::Refuse]);
        assert!(state.refuses());
        state.clear();
        assert!(!state.refuses());
    }

    #[tokio::test]
    async fn a_snapshot_replaces_hub_faults_only() {
        let state = FaultState::new(Transport::StreamableHttp);
        state.add_local(WireKind::Reset, 1.0, vec![], None);
        state.set_from_hub(vec![wire(0, WireKind::Hang, 1.0, 10_000)]);
        state.set_from_hub(vec![wire(1, WireKind::ToolError, 1.0, 10_000)]);
        let mut kinds: Vec<String> = state
            .active()
            .iter()
            .map(|f| format!("{:?}", f.kind))
            .collect();
        kinds.sort();
        assert_eq!(kinds, vec!["Reset", "ToolError"]);
        state.hub_gone();
        let kinds: Vec<WireKind> = state.active().into_iter().map(|f| f.kind).collect();
        assert_eq!(kinds, vec![WireKind::Reset]);
    }

    #[tokio::test]
    async fn the_tool_filter_limits_a_fault_to_those_tools() {
        let state = FaultState::new(Transport::Stdio);
        let mut only_add = wire(0, WireKind::ToolError, 1.0, 10_000);
        only_add.tools = vec!["add".into()];
        let mut hang_add = wire(1, WireKind::Hang, 1.0, 10_000);
        hang_add.tools = vec!["add".into()];
        state.set_from_hub(vec![only_add, hang_add]);
        let any = |_: &WireKind| true;
        assert_eq!(
            state.hits(RequestRef::call("add", None), any).await.len(),
            2
        );
        assert!(
            state
                .hits(RequestRef::call("echo", None), any)
                .await
                .is_empty()
        );
        // A hang limited to some tools leaves ping and tools/list alone.
        assert!(state.hits(RequestRef::other(), any).await.is_empty());
    }

    #[tokio::test]
    async fn an_unfiltered_hang_targets_every_request_other_kinds_only_calls() {
        let state = FaultState::new(Transport::Stdio);
        state.set_from_hub(vec![
            wire(0, WireKind::Hang, 1.0, 10_000),
            wire(1, WireKind::ToolError, 1.0, 10_000),
        ]);
        let on_ping: Vec<WireKind> = state
            .hits(RequestRef::other(), |_| true)
            .await
            .into_iter()
            .map(|f| f.kind)
            .collect();
        assert_eq!(on_ping, vec![WireKind::Hang]);
        assert_eq!(
            state
                .hits(RequestRef::call("echo", None), |_| true)
                .await
                .len(),
            2
        );
    }

    #[tokio::test]
    async fn probability_one_never_asks_the_hub() {
        let state = FaultState::new(Transport::Stdio);
        let (tx, mut rx) = mpsc::unbounded_channel();
        state.attach_hub(tx);
        state.set_from_hub(vec![wire(0, WireKind::ToolError, 1.0, 10_000)]);
        for _ in 0..5 {
            assert_eq!(
                state
                    .hits(RequestRef::call("echo", None), |_| true)
                    .await
                    .len(),
                1
            );
        }
        assert!(rx.try_recv().is_err(), "a decision was asked for");
    }

    #[tokio::test]
    async fn other_probabilities_ask_the_hub_and_obey() -> Result<(), Box<dyn std::error::Error>> {
        let state = FaultState::new(Transport::Stdio);
        let (tx, mut rx) = mpsc::unbounded_channel();
        state.attach_hub(tx);
        state.set_from_hub(vec![wire(7, WireKind::ToolError, 0.5, 10_000)]);
        let hub = {
            let state = state.clone();
            tokio::spawn(async move {
                let mut asked = Vec::new();
                for apply in [true, false] {
                    if let Some(FakeMessage::Decide { req, fault, .. }) = rx.recv().await {
                        asked.push((req, fault));
                        state.resolve(req, apply);
                    }
                }
                asked
            })
        };
        assert_eq!(
            state
                .hits(RequestRef::call("echo", None), |_| true)
                .await
                .len(),
            1
        );
        assert!(
            state
                .hits(RequestRef::call("echo", None), |_| true)
                .await
                .is_empty()
        );
        assert_eq!(hub.await?, vec![(0, 7), (1, 7)]);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_decision_does_not_apply() {
        let state = FaultState::new(Transport::Stdio);
        let (tx, _rx) = mpsc::unbounded_channel();
        state.attach_hub(tx);
        state.set_from_hub(vec![wire(0, WireKind::ToolError, 0.5, 10_000)]);
        let started = Instant::now();
        assert!(
            state
                .hits(RequestRef::call("echo", None), |_| true)
                .await
                .is_empty()
        );
        assert!(started.elapsed() >= DECISION_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hang_holds_until_its_window_ends_or_is_taken_away() {
        let state = FaultState::new(Transport::Stdio);
        let never = CancellationToken::new();
        state.set_from_hub(vec![wire(0, WireKind::Hang, 1.0, 2000)]);
        let started = Instant::now();
        assert_eq!(
            state
                .hold_while_hung(RequestRef::call("echo", None), &never)
                .await,
            Ok(())
        );
        assert!(started.elapsed() >= Duration::from_millis(2000));

        state.set_from_hub(vec![wire(1, WireKind::Hang, 1.0, 60_000)]);
        let held = {
            let state = state.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let r = state
                    .hold_while_hung(RequestRef::other(), &CancellationToken::new())
                    .await;
                (r, started.elapsed())
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        state.set_from_hub(vec![]);
        let Ok((r, took)) = held.await else {
            panic!("the held request panicked");
        };
        assert_eq!(r, Ok(()));
        assert!(took < Duration::from_secs(1), "held {took:?}");

        state.add_local(WireKind::Hang, 1.0, vec![], None);
        let cancel = CancellationToken::new();
        cancel.cancel();
        assert_eq!(
            state
                .hold_while_hung(RequestRef::call("echo", None), &cancel)
                .await,
            Err(Cancelled)
        );
    }

    /// `scope: instance`: a session born before the fault arrived is hit, one born after is
    /// not, and a snapshot that repeats the fault keeps its first arrival.
    #[tokio::test(start_paused = true)]
    async fn a_fault_scoped_to_the_instance_spares_later_sessions() {
        let state = FaultState::new(Transport::Stdio);
        let old = Instant::now();
        tokio::time::advance(Duration::from_millis(10)).await;
        let mut hang = wire(0, WireKind::Hang, 1.0, 60_000);
        hang.instance = true;
        state.set_from_hub(vec![hang.clone()]);
        tokio::time::advance(Duration::from_millis(10)).await;
        state.set_from_hub(vec![hang]);
        let young = Instant::now();
        let on = |born| RequestRef::call("echo", None).on_session(born);
        let hung = |born| {
            let state = state.clone();
            async move { state.hits(on(born), |_| true).await.len() }
        };
        assert_eq!(hung(Some(old)).await, 1, "alive at injection");
        assert_eq!(hung(Some(young)).await, 0, "started after it");
        assert_eq!(hung(None).await, 0, "no handshake yet");
        // Without the scope every session is hit.
        state.set_from_hub(vec![wire(1, WireKind::Hang, 1.0, 60_000)]);
        assert_eq!(hung(Some(young)).await, 1);
    }

    #[test]
    fn latency_draws_within_bounds() {
        let drawn: std::collections::BTreeSet<u128> = (0..200)
            .map(|k| latency(20, 10, crate::fake::wire::draw(&[k])).as_millis())
            .collect();
        assert!(drawn.iter().all(|d| (10..=20).contains(d)), "{drawn:?}");
        assert_eq!(drawn.len(), 11, "every value in the range: {drawn:?}");
        assert_eq!(latency(5, 5, 77), Duration::from_millis(5));
        assert_eq!(latency(10, 20, 3), latency(10, 20, 3));
    }
}
