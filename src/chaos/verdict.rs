//! The SLO arithmetic of a chaos run: from one record per request and the fault events to a
//! pass/fail verdict per SLO.
//!
//! The definitions are those of `SCENARIOS.md`, made precise here because a report is only
//! trusted if two people computing it by hand get the same numbers:
//!
//! - A fault event **clears** at its `cleared_at`: for a one-shot fault (crash, session-loss)
//!   the moment it was injected, for a windowed one the end of its window. The runtime passes
//!   the moments it measured; [`FaultEvent::planned`] gives the scheduled ones.
//! - An event concerns only requests to **its own server** (`all`: every server). Events that
//!   share a server and whose disturbed intervals overlap are **judged together**: the recovery
//!   clock of each starts when the last of them has cleared (a crash inside a `refuse` window
//!   cannot recover before the window ends). The grouping is found by repetition: judge each
//!   group, merge the groups whose intervals now overlap on a shared server, judge again, until
//!   nothing merges (groups only grow, so this ends).
//! - Its **recovery time** runs from the start of its clock to the *answer* of the first request
//!   *sent* at or after that moment that succeeded, among the requests the fault could hit (its
//!   server, and its tools when it names some). "First" is by send time: a request sent earlier
//!   that happens to be answered later was in flight during the fault and shows nothing about
//!   recovery. Without such a success the event is **unrecovered**.
//! - The **recovery rate** is the share of events whose recovery time is at most
//!   `recovery_within` (or, when the scenario sets no recovery SLO, the share recovered at all).
//!   With no events it is 1.0, and the report says that nothing was there to recover from.
//! - An event **disturbs** its server(s) from `injected_at` to its clock start plus the smaller
//!   of its recovery time and `recovery_within` (unrecovered: plus `recovery_within`), both ends
//!   included. So one slow or failed recovery excludes at most `recovery_within` of traffic after
//!   the fault, never the rest of the run, and a fault on one server never excuses failures on
//!   another.
//! - The **success rate** is successes over the requests *sent* outside every disturbed interval
//!   of their own server (requests the harness could not send are not the proxy's and are left
//!   out). It is computed over the run and per server, and the SLO must hold for both: a fault
//!   on one server that breaks another fails the run. When no request is outside, it cannot be
//!   measured, and an SLO on it fails with a note: an objective that could not be checked must
//!   not pass silently.
//! - A **wrong answer** (2xx without the right answer) is never excluded by any interval.
//! - A **hung** request had no answer at its client deadline; leaked processes are counted by the
//!   runtime after shutdown.
//! - Latency is the time from the intended send time to the HTTP answer, over requests that got
//!   one; the `p99_latency` SLO uses those sent outside the disturbed intervals of their server.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::record::{Ledger, PROBE_IDS};
use super::scenario::{Amplification, CallSpec, FaultSpec, SloSpec, Target};

/// Compared shares may be computed (`99 / 100`) or written (`0.99`); this absorbs the rounding.
const SHARE_EPSILON: f64 = 1e-9;

/// How one request ended, as the load driver classified it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// HTTP 2xx whose body carries the right answer for this request (see `answers`).
    Success,
    /// HTTP 2xx with any other body: a foreign answer, garbage passed on, a made-up body.
    /// Always a failure, never excluded by any window.
    WrongAnswer,
    /// Any other HTTP status.
    HttpError,
    /// No answer by the client deadline.
    Hung,
    /// No HTTP answer at all: connection refused or reset.
    ConnectError,
    /// The harness could not send it (its own cap on requests in flight, its file
    /// descriptors): never the proxy's fault, and it makes the run invalid.
    NotSent,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Success,
        Outcome::WrongAnswer,
        Outcome::HttpError,
        Outcome::Hung,
        Outcome::ConnectError,
        Outcome::NotSent,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::WrongAnswer => "wrong answer",
            Outcome::HttpError => "http error",
            Outcome::Hung => "hung",
            Outcome::ConnectError => "connect error",
            Outcome::NotSent => "not sent",
        }
    }
}

/// One request of the load, as the runtime recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    pub id: u64,
    /// Index into `load.calls`.
    pub call: usize,
    /// When the open-loop schedule meant it to leave, since the start of the run; latency is
    /// timed from here (wrk2's rule), so a harness that falls behind cannot hide its lag.
    pub intended_at: Duration,
    /// When it really left.
    pub sent_at: Duration,
    /// When the answer (or the connection failure) arrived; `None` for hung requests.
    pub answered_at: Option<Duration>,
    /// HTTP status, when there was one.
    pub status: Option<u16>,
    pub outcome: Outcome,
}

impl RequestRecord {
    /// Whether the proxy gave an HTTP answer.
    pub fn answered(&self) -> bool {
        matches!(
            self.outcome,
            Outcome::Success | Outcome::WrongAnswer | Outcome::HttpError
        ) && self.answered_at.is_some()
    }

    /// Time from the intended send time to the HTTP answer, for answered requests.
    pub fn latency(&self) -> Option<Duration> {
        if !self.answered() {
            return None;
        }
        self.answered_at.map(|a| a.saturating_sub(self.intended_at))
    }

    /// How late the harness sent it.
    pub fn send_lag(&self) -> Duration {
        self.sent_at.saturating_sub(self.intended_at)
    }
}

/// One fault event as it happened (or was planned).
#[derive(Debug, Clone, PartialEq)]
pub struct FaultEvent {
    /// [`FaultSpec::index`].
    pub index: usize,
    /// The kind's label, e.g. `http-error`.
    pub kind: String,
    pub server: Target,
    /// Bare tool names the fault was limited to; empty means every tool.
    pub tools: Vec<String>,
    pub injected_at: Duration,
    /// One-shot: equal to `injected_at`; windowed: the end of the window.
    pub cleared_at: Duration,
    /// A one-shot kind (crash, session-loss): it acts on instances, not requests.
    pub one_shot: bool,
    /// Share of requests it hits (per-request kinds); 1 otherwise.
    pub probability: f64,
    /// `scope: instance`: its recovery clock starts at injection, not at the window's end,
    /// because a proxy can replace what it hit while the window is still open.
    pub from_injection: bool,
}

impl FaultEvent {
    /// The event as scheduled, for when the runtime has no measured moments.
    pub fn planned(spec: &FaultSpec) -> Self {
        FaultEvent {
            index: spec.index,
            kind: spec.kind.label().to_string(),
            server: spec.server.clone(),
            tools: spec.tools.clone(),
            injected_at: spec.at,
            cleared_at: spec.clears_at(),
            one_shot: spec.kind.is_one_shot(),
            probability: spec.probability,
            from_injection: spec.instance_scope,
        }
    }

    /// Whether a request of this call could be hit by the event, and so can show its recovery.
    /// A record whose call index is unknown only matches events on every server and tool.
    fn affects(&self, call: Option<&CallSpec>) -> bool {
        match call {
            Some(c) => {
                self.server.matches(&c.server)
                    && (self.tools.is_empty() || self.tools.contains(&c.tool))
            }
            None => self.server == Target::All && self.tools.is_empty(),
        }
    }
}

/// Everything the verdict is computed from.
#[derive(Debug, Clone, Copy)]
pub struct VerdictInput<'a> {
    pub slo: &'a SloSpec,
    /// `load.calls`, to know which server and tool each record went to.
    pub calls: &'a [CallSpec],
    pub events: &'a [FaultEvent],
    pub records: &'a [RequestRecord],
    /// Fake servers still alive after shutdown, as the runtime counted them.
    pub leaked_processes: u64,
    /// What the faults reached, from the hub; `None` when there was no hub (a load driven
    /// against a scripted endpoint), and then delivery is not judged.
    pub ledger: Option<&'a Ledger>,
}

/// The send lag's p99 above which a run is invalid: the harness fell so far behind its own
/// schedule that it no longer measured an open-loop load. A tenth of a second is far above
/// what a healthy run shows (a few milliseconds) and far below the recovery times judged.
pub const SEND_LAG_P99_LIMIT: Duration = Duration::from_millis(100);

/// The chance below which a working fault is assumed to have hit at least one request: a
/// window with probability `p` that saw `n` requests changes none with chance `(1-p)^n`.
const MISS_CHANCE: f64 = 1e-6;

/// Why a run proves nothing about the proxy, whatever its SLOs say (exit 3).
#[derive(Debug, Clone, PartialEq)]
pub enum Invalidity {
    /// A one-shot fault found no instance of its server(s): none had ever connected to the hub.
    NotReached {
        index: usize,
        kind: String,
        server: String,
        at: Duration,
        /// Requests to its server(s) over the run.
        requests: u64,
    },
    /// A windowed fault changed nothing although enough requests to its server(s) were sent
    /// inside its window that a working fault would have, and the proxy never started or
    /// never called that server.
    ChangedNothing {
        index: usize,
        kind: String,
        server: String,
        window: (Duration, Duration),
        /// Requests to its server(s) (and tools) sent inside the window.
        requests: u64,
        /// Fake instances it was in force on.
        instances: u64,
    },
    /// The harness could not send some requests (its own limits).
    NotSent { count: u64 },
    /// The harness sent late.
    SendLag { p99: Duration, limit: Duration },
}

impl std::fmt::Display for Invalidity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalidity::NotReached {
                index,
                kind,
                server,
                at,
                requests,
            } => write!(
                f,
                "fault #{index} ({kind} on {server} at {}) reached no instance of {server}, \
                 although {requests} requests went to it: no fake server of that name was \
                 connected to the harness; likely the target did not start the scenario's \
                 servers from the config it was given",
                format_duration(*at)
            ),
            Invalidity::ChangedNothing {
                index,
                kind,
                server,
                window,
                requests,
                instances,
            } => write!(
                f,
                "fault #{index} ({kind} on {server}, {}) changed nothing, although {requests} \
                 requests to {server} were sent inside its window and it was in force on \
                 {instances} instance(s): {}",
                format_window(window.0, window.1),
                if *instances == 0 {
                    "no fake server of that name was connected to the harness; likely the target did not start the scenario's servers from the config it was given"
                } else {
                    "no call of the load ever reached that server; likely the proxy answers without calling it"
                }
            ),
            Invalidity::NotSent { count } => write!(
                f,
                "{count} requests could not be sent (the harness's own limits: load.max_in_flight \
                 or file descriptors); the load was not the one the scenario asks for"
            ),
            Invalidity::SendLag { p99, limit } => write!(
                f,
                "the harness sent late: send lag p99 {} over the {} limit; the machine is too \
                 busy for this rate, and the latencies measured are the harness's as much as \
                 the proxy's",
                format_duration(*p99),
                format_duration(*limit)
            ),
        }
    }
}

/// The judgement of one SLO.
#[derive(Debug, Clone, PartialEq)]
pub struct SloResult {
    /// The SLO's key in the scenario, e.g. `success_rate`.
    pub name: String,
    /// What it had to be, for people: `>= 99.00%`.
    pub target: String,
    /// What it was: `99.50% (199 of 200 requests)`.
    pub measured: String,
    pub passed: bool,
    /// Why a result is special (nothing to measure, nothing to recover from).
    pub note: Option<String>,
}

/// One fault event and how the proxy came back from it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventResult {
    pub index: usize,
    pub kind: String,
    /// Server name or `all`, for people.
    pub server: String,
    /// The servers whose requests it concerns.
    pub target: Target,
    pub injected_at: Duration,
    pub cleared_at: Duration,
    /// When its recovery clock started: its own clear, or the last clear among the events
    /// judged with it.
    pub clock_from: Duration,
    /// The other events judged together with this one (sharing a server, overlapping).
    pub judged_with: Vec<usize>,
    /// From `clock_from` to the answer of the first later-sent success; `None`: unrecovered.
    pub recovery_time: Option<Duration>,
    /// Recovered within `recovery_within` (or at all, when that is not set).
    pub recovered: bool,
    /// The request that showed the recovery.
    pub recovered_by: Option<u64>,
    /// End of the disturbed interval: `clock_from` plus the smaller of the recovery time and
    /// `recovery_within` (unrecovered: plus `recovery_within`, or nothing when it is not set).
    pub disturbed_until: Duration,
}

impl EventResult {
    /// Whether a request to `server` (`None`: unknown) sent at `t` falls in this event's
    /// disturbed interval.
    pub fn disturbs(&self, server: Option<&str>, t: Duration) -> bool {
        let concerned = match server {
            Some(s) => self.target.matches(s),
            None => self.target == Target::All,
        };
        concerned && t >= self.injected_at && t <= self.disturbed_until
    }

    /// The moment the recovery was seen, if it was.
    pub fn recovered_at(&self) -> Option<Duration> {
        self.recovery_time.map(|r| self.clock_from + r)
    }
}

/// Counts over a set of records (the whole run, or one server's).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Totals {
    pub sent: u64,
    /// Requests that got an HTTP answer (success or HTTP error).
    pub answered: u64,
    pub success: u64,
    /// By status; 0 stands for an HTTP error recorded without its status.
    pub http_errors: BTreeMap<u16, u64>,
    pub hung: u64,
    pub connect_errors: u64,
    /// 2xx answers without the right answer in them.
    pub wrong_answers: u64,
    /// Requests the harness could not send.
    pub not_sent: u64,
    /// Requests sent outside every disturbed interval of their server (and sent at all): the
    /// success rate's denominator.
    pub outside: u64,
    /// Successes among them.
    pub outside_success: u64,
    /// Requests sent inside a window of a fault that could hit them (windowed kinds only).
    pub in_windows: u64,
    /// Successes among them.
    pub in_windows_success: u64,
}

impl Totals {
    pub fn http_error_count(&self) -> u64 {
        self.http_errors.values().sum()
    }
}

/// Latency percentiles of a set of answered requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentiles {
    pub count: u64,
    /// Quantiles from an HDR histogram with 3 significant digits (microsecond unit), so each is
    /// within 0.1% of the exact value.
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    /// Exact.
    pub max: Duration,
}

impl Percentiles {
    /// `None` for an empty set.
    pub fn of(latencies: impl IntoIterator<Item = Duration>) -> Option<Percentiles> {
        // `new` sizes itself as values come, so no latency is ever out of range.
        let mut histogram = Histogram::<u64>::new(3).ok()?;
        let mut max = Duration::ZERO;
        for latency in latencies {
            let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
            // `record` grows the histogram to fit; `saturating_record` would clamp to its
            // current top instead, which is only the fallback if growing fails.
            if histogram.record(micros).is_err() {
                histogram.saturating_record(micros);
            }
            max = max.max(latency);
        }
        if histogram.is_empty() {
            return None;
        }
        let at = |q: f64| Duration::from_micros(histogram.value_at_quantile(q)).min(max);
        Some(Percentiles {
            count: histogram.len(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max,
        })
    }
}

/// Latency over all answered requests and over those outside every disturbed interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LatencyReport {
    pub all: Option<Percentiles>,
    pub outside: Option<Percentiles>,
}

/// One server's share of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerReport {
    pub name: String,
    pub totals: Totals,
    pub latency: LatencyReport,
    /// `None` when none of its requests was sent outside its disturbed intervals.
    pub success_rate: Option<f64>,
    /// The `tools/call` requests its fakes received for the load's requests; `None` without
    /// a ledger.
    pub upstream: Option<UpstreamCalls>,
}

/// Calls a server's fakes received for the load's requests (readiness calls and calls the
/// harness did not make are left out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpstreamCalls {
    pub calls: u64,
    /// Those for requests sent inside a window of a fault on the server.
    pub calls_in_windows: u64,
}

impl ServerReport {
    /// Upstream calls per client request it sent, over the run.
    pub fn amplification(&self) -> Option<f64> {
        let sent = self.totals.sent - self.totals.not_sent;
        let up = self.upstream?;
        (sent > 0).then(|| up.calls as f64 / sent as f64)
    }

    /// Upstream calls per client request sent inside its fault windows.
    pub fn window_amplification(&self) -> Option<f64> {
        let up = self.upstream?;
        (self.totals.in_windows > 0)
            .then(|| up.calls_in_windows as f64 / self.totals.in_windows as f64)
    }

    /// Successes among its requests sent inside its fault windows.
    pub fn window_success_rate(&self) -> Option<f64> {
        let t = &self.totals;
        (t.in_windows > 0).then(|| t.in_windows_success as f64 / t.in_windows as f64)
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub slos: Vec<SloResult>,
    pub events: Vec<EventResult>,
    pub totals: Totals,
    pub latency: LatencyReport,
    /// Per server, in the order of `load.calls`' first mention.
    pub servers: Vec<ServerReport>,
    /// Share of events recovered (within `recovery_within` when set); 1.0 with no events.
    pub recovery_rate: f64,
    /// `None` when no request was sent outside the disturbed intervals.
    pub success_rate: Option<f64>,
    /// Successes among requests sent inside fault windows; `None` when there were none.
    pub window_success_rate: Option<f64>,
    /// How late the harness sent, over the requests it sent.
    pub send_lag: Option<Percentiles>,
    /// Why the run proves nothing; empty for a valid run.
    pub invalid: Vec<Invalidity>,
    /// The first requests (at most [`FAILURES_LISTED`]) that failed outside every disturbed
    /// interval of their server: what the success rate holds against the proxy.
    pub failures_outside: Vec<FailureSeen>,
}

/// How many failures outside the disturbed intervals the verdict lists.
pub const FAILURES_LISTED: usize = 100;

/// One request that failed outside every disturbed interval of its server.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureSeen {
    pub id: u64,
    pub server: String,
    pub sent_at: Duration,
    pub status: Option<u16>,
    pub outcome: Outcome,
}

impl Verdict {
    /// The run was valid and every SLO held.
    pub fn passed(&self) -> bool {
        self.valid() && self.slos.iter().all(|s| s.passed)
    }

    /// `PASS`, `FAIL` or `INVALID`.
    pub fn word(&self) -> &'static str {
        if !self.valid() {
            "INVALID"
        } else if self.passed() {
            "PASS"
        } else {
            "FAIL"
        }
    }

    /// Nothing makes the run invalid (see [`Invalidity`]).
    pub fn valid(&self) -> bool {
        self.invalid.is_empty()
    }

    /// Computes the verdict from what the run measured.
    pub fn evaluate(input: &VerdictInput<'_>) -> Verdict {
        let within = input.slo.recovery_within;
        let events = judge_events(input);

        // Per server, in the order the calls first name them; a record whose call index is
        // unknown (a plan built by hand) is counted under "?".
        let mut tallies: Vec<(String, Tally)> = Vec::new();
        for c in input.calls {
            if !tallies.iter().any(|(n, _)| *n == c.server) {
                tallies.push((c.server.clone(), Tally::default()));
            }
        }
        let mut overall = Tally::default();
        // Per request id: its server's place in `tallies` and whether it was sent in a window,
        // to attribute the upstream calls of the ledger.
        let mut by_id: HashMap<u64, (usize, bool)> = HashMap::new();
        let mut failures_outside = Vec::new();
        for r in input.records {
            let call = input.calls.get(r.call);
            let server = call.map(|c| c.server.as_str());
            let outside = !events.iter().any(|e| e.disturbs(server, r.sent_at));
            let in_window = r.outcome != Outcome::NotSent
                && input.events.iter().any(|e| {
                    !e.one_shot
                        && e.affects(call)
                        && r.sent_at >= e.injected_at
                        && r.sent_at < e.cleared_at
                });
            overall.add(r, outside, in_window);
            if outside
                && !matches!(r.outcome, Outcome::Success | Outcome::NotSent)
                && failures_outside.len() < FAILURES_LISTED
            {
                failures_outside.push(FailureSeen {
                    id: r.id,
                    server: server.unwrap_or("?").to_string(),
                    sent_at: r.sent_at,
                    status: r.status,
                    outcome: r.outcome,
                });
            }
            let name = server.unwrap_or("?");
            let at = match tallies.iter().position(|(n, _)| n == name) {
                Some(at) => at,
                None => {
                    tallies.push((name.to_string(), Tally::default()));
                    tallies.len() - 1
                }
            };
            tallies[at].1.add(r, outside, in_window);
            by_id.insert(r.id, (at, in_window));
        }
        let mut upstream = vec![UpstreamCalls::default(); tallies.len()];
        if let Some(ledger) = input.ledger {
            for call in &ledger.calls {
                let Some(&(at, in_window)) = call
                    .request
                    .filter(|r| *r < PROBE_IDS)
                    .and_then(|r| by_id.get(&r))
                else {
                    continue;
                };
                upstream[at].calls += 1;
                if in_window {
                    upstream[at].calls_in_windows += 1;
                }
            }
        }
        let servers: Vec<ServerReport> = tallies
            .into_iter()
            .zip(upstream)
            .map(|((name, t), up)| {
                let (totals, latency, success_rate) = t.finish();
                ServerReport {
                    name,
                    totals,
                    latency,
                    success_rate,
                    upstream: input.ledger.map(|_| up),
                }
            })
            .collect();
        let (totals, latency, success_rate) = overall.finish();

        let recovered = events.iter().filter(|e| e.recovered).count();
        let recovery_rate = if events.is_empty() {
            1.0
        } else {
            recovered as f64 / events.len() as f64
        };

        let mut slos = Vec::new();
        if let Some(target) = input.slo.recovery_rate {
            let within_text = within
                .map(|w| format!(" within {}", format_duration(w)))
                .unwrap_or_default();
            slos.push(SloResult {
                name: "recovery_rate".into(),
                target: format!(">= {}{within_text}", format_share(target)),
                measured: format!(
                    "{} ({recovered} of {} events)",
                    format_share(recovery_rate),
                    events.len()
                ),
                passed: recovery_rate + SHARE_EPSILON >= target,
                note: events.is_empty().then(|| {
                    "no fault events: nothing to recover from, counted as 100%".to_string()
                }),
            });
        }
        if let Some(target) = input.slo.success_rate {
            slos.push(success_rate_slo(target, &totals, success_rate, &servers));
        }
        if let Some(target) = input.slo.window_success_rate {
            slos.push(window_success_rate_slo(target, &totals));
        }
        if let Some(target) = input.slo.amplification {
            slos.push(amplification_slo(target, &servers, input.ledger.is_some()));
        }
        slos.push(SloResult {
            name: "hung_requests".into(),
            target: format!("<= {}", input.slo.hung_requests),
            measured: totals.hung.to_string(),
            passed: totals.hung <= input.slo.hung_requests,
            note: None,
        });
        slos.push(SloResult {
            name: "wrong_answers".into(),
            target: format!("<= {}", input.slo.wrong_answers),
            measured: totals.wrong_answers.to_string(),
            passed: totals.wrong_answers <= input.slo.wrong_answers,
            note: (totals.wrong_answers > 0).then(|| {
                "2xx answers that did not carry the right answer for their request".to_string()
            }),
        });
        slos.push(SloResult {
            name: "leaked_processes".into(),
            target: format!("<= {}", input.slo.leaked_processes),
            measured: input.leaked_processes.to_string(),
            passed: input.leaked_processes <= input.slo.leaked_processes,
            note: None,
        });
        if let Some(target) = input.slo.p99_latency {
            let (measured, passed, note) = match latency.outside {
                Some(p) => (
                    format!("{} ({} requests)", format_duration(p.p99), p.count),
                    p.p99 <= target,
                    None,
                ),
                None => (
                    "not measurable".to_string(),
                    false,
                    Some(
                        "no answered requests outside fault windows and recovery periods"
                            .to_string(),
                    ),
                ),
            };
            slos.push(SloResult {
                name: "p99_latency".into(),
                target: format!("<= {} outside fault windows", format_duration(target)),
                measured,
                passed,
                note,
            });
        }

        let send_lag = Percentiles::of(
            input
                .records
                .iter()
                .filter(|r| r.outcome != Outcome::NotSent)
                .map(RequestRecord::send_lag),
        );
        let invalid = invalidities(input, &totals, send_lag);
        let window_success_rate = (totals.in_windows > 0)
            .then(|| totals.in_windows_success as f64 / totals.in_windows as f64);
        Verdict {
            slos,
            events,
            totals,
            latency,
            servers,
            recovery_rate,
            success_rate,
            window_success_rate,
            send_lag,
            invalid,
            failures_outside,
        }
    }
}

/// Everything that makes the run invalid (see [`Invalidity`]).
fn invalidities(
    input: &VerdictInput<'_>,
    totals: &Totals,
    send_lag: Option<Percentiles>,
) -> Vec<Invalidity> {
    let mut invalid = Vec::new();
    if let Some(ledger) = input.ledger {
        for e in input.events {
            let delivery = ledger.delivery(e.index);
            let on_target = |server: &str| e.server.matches(server);
            let to_target = |r: &&RequestRecord| {
                r.outcome != Outcome::NotSent
                    && input
                        .calls
                        .get(r.call)
                        .is_some_and(|c| on_target(&c.server))
            };
            // A fault that found nothing is the run's problem only when nothing shows that the
            // proxy ever used its server: no instance of it ever connected (never started),
            // or none of the load's calls ever reached it (answered without calling). A proxy
            // that used the server and then lost it (never restarted a crashed child, stopped
            // calling it) is judged by the SLOs instead.
            let never_started = ledger
                .first_connected(on_target)
                .is_none_or(|t| t > e.cleared_at);
            let never_called = ledger.load_calls_to(on_target) == 0;
            if e.one_shot {
                let requests = input.records.iter().filter(to_target).count() as u64;
                if delivery.instances_reached == 0 && never_started && requests > 0 {
                    invalid.push(Invalidity::NotReached {
                        index: e.index,
                        kind: e.kind.clone(),
                        server: e.server.to_string(),
                        at: e.injected_at,
                        requests,
                    });
                }
                continue;
            }
            // Windowed: it must have changed something, if enough requests that it could hit
            // were sent inside it.
            let requests = input
                .records
                .iter()
                .filter(to_target)
                .filter(|r| e.affects(input.calls.get(r.call)))
                .filter(|r| r.sent_at >= e.injected_at && r.sent_at < e.cleared_at)
                .count() as u64;
            if delivery.requests_changed == 0
                && (never_started || never_called)
                && requests >= requests_to_show(e.probability)
            {
                invalid.push(Invalidity::ChangedNothing {
                    index: e.index,
                    kind: e.kind.clone(),
                    server: e.server.to_string(),
                    window: (e.injected_at, e.cleared_at),
                    requests,
                    instances: delivery.instances_reached,
                });
            }
        }
    }
    if totals.not_sent > 0 {
        invalid.push(Invalidity::NotSent {
            count: totals.not_sent,
        });
    }
    if let Some(lag) = send_lag
        && lag.p99 > SEND_LAG_P99_LIMIT
    {
        invalid.push(Invalidity::SendLag {
            p99: lag.p99,
            limit: SEND_LAG_P99_LIMIT,
        });
    }
    invalid
}

/// How many requests a window of probability `p` must see before changing none of them is
/// evidence that it reached nothing: the least `n` with `(1-p)^n <= MISS_CHANCE`.
fn requests_to_show(p: f64) -> u64 {
    if p >= 1.0 {
        return 1;
    }
    if p <= 0.0 {
        return u64::MAX;
    }
    (MISS_CHANCE.ln() / (1.0 - p).ln()).ceil().max(1.0) as u64
}

/// Counts and latencies of a set of records, as they are added.
#[derive(Default)]
struct Tally {
    totals: Totals,
    all: Vec<Duration>,
    outside: Vec<Duration>,
}

impl Tally {
    fn add(&mut self, r: &RequestRecord, outside: bool, in_window: bool) {
        let t = &mut self.totals;
        t.sent += 1;
        match r.outcome {
            Outcome::Success => t.success += 1,
            Outcome::HttpError => *t.http_errors.entry(r.status.unwrap_or(0)).or_default() += 1,
            Outcome::Hung => t.hung += 1,
            Outcome::ConnectError => t.connect_errors += 1,
            Outcome::WrongAnswer => t.wrong_answers += 1,
            Outcome::NotSent => t.not_sent += 1,
        }
        if r.answered() {
            t.answered += 1;
        }
        if let Some(latency) = r.latency() {
            self.all.push(latency);
            if outside {
                self.outside.push(latency);
            }
        }
        if in_window {
            t.in_windows += 1;
            if r.outcome == Outcome::Success {
                t.in_windows_success += 1;
            }
        }
        // A request the harness never sent says nothing about the proxy.
        if outside && r.outcome != Outcome::NotSent {
            t.outside += 1;
            if r.outcome == Outcome::Success {
                t.outside_success += 1;
            }
        }
    }

    fn finish(self) -> (Totals, LatencyReport, Option<f64>) {
        let t = self.totals;
        let rate = (t.outside > 0).then(|| t.outside_success as f64 / t.outside as f64);
        let latency = LatencyReport {
            all: Percentiles::of(self.all),
            outside: Percentiles::of(self.outside),
        };
        (t, latency, rate)
    }
}

/// The success-rate SLO: over the run and for every server that had traffic.
fn success_rate_slo(
    target: f64,
    totals: &Totals,
    rate: Option<f64>,
    servers: &[ServerReport],
) -> SloResult {
    let share = |rate: f64, t: &Totals| {
        format!(
            "{} ({} of {} requests)",
            format_share(rate),
            t.outside_success,
            t.outside
        )
    };
    let mut measured = rate.map_or_else(|| "not measurable".to_string(), |r| share(r, totals));
    let mut passed = rate.is_some_and(|r| r + SHARE_EPSILON >= target);
    let mut notes = Vec::new();
    if rate.is_none() {
        notes.push("no requests outside fault windows and recovery periods".to_string());
    }
    // Per server only when more than one had traffic: with one, it is the overall figure.
    let had_traffic = |s: &&ServerReport| s.totals.sent > s.totals.not_sent;
    if servers.iter().filter(had_traffic).count() > 1 {
        for s in servers.iter().filter(had_traffic) {
            match s.success_rate {
                Some(r) if r + SHARE_EPSILON >= target => {}
                Some(r) => {
                    passed = false;
                    let _ = write!(measured, "; {}: {}", s.name, share(r, &s.totals));
                }
                None => {
                    passed = false;
                    let _ = write!(measured, "; {}: not measurable", s.name);
                    notes.push(format!(
                        "no request to {} was sent outside its fault windows and recovery periods",
                        s.name
                    ));
                }
            }
        }
    }
    SloResult {
        name: "success_rate".into(),
        target: format!(
            ">= {} outside fault windows, overall and per server",
            format_share(target)
        ),
        measured,
        passed,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    }
}

/// The window-success-rate SLO: what the proxy did for requests sent while a fault was on.
fn window_success_rate_slo(target: f64, totals: &Totals) -> SloResult {
    let rate = (totals.in_windows > 0)
        .then(|| totals.in_windows_success as f64 / totals.in_windows as f64);
    let (measured, passed, note) = match rate {
        Some(r) => (
            format!(
                "{} ({} of {} requests in fault windows)",
                format_share(r),
                totals.in_windows_success,
                totals.in_windows
            ),
            r + SHARE_EPSILON >= target,
            None,
        ),
        None => (
            "not measurable".to_string(),
            false,
            Some("no request was sent inside a fault window".to_string()),
        ),
    };
    SloResult {
        name: "window_success_rate".into(),
        target: format!(">= {} inside fault windows", format_share(target)),
        measured,
        passed,
        note,
    }
}

/// The amplification SLO: upstream calls per client request, for every server with traffic,
/// over the run and inside its windows, each against its bound; the worst excess is shown.
fn amplification_slo(
    bounds: Amplification,
    servers: &[ServerReport],
    have_ledger: bool,
) -> SloResult {
    // (measured, bound, what), for every figure that has a bound.
    let mut figures: Vec<(f64, f64, String)> = Vec::new();
    for s in servers {
        let up = s.upstream.unwrap_or_default();
        let sent = s.totals.sent - s.totals.not_sent;
        if let (Some(a), Some(bound)) = (s.amplification(), bounds.run) {
            figures.push((
                a,
                bound,
                format!("{}: {} calls for {sent} requests", s.name, up.calls),
            ));
        }
        if let (Some(a), Some(bound)) = (s.window_amplification(), bounds.windows) {
            figures.push((
                a,
                bound,
                format!(
                    "{} in fault windows: {} calls for {} requests",
                    s.name, up.calls_in_windows, s.totals.in_windows
                ),
            ));
        }
    }
    // The figure furthest over (or nearest to) its bound.
    let worst = figures
        .into_iter()
        .max_by(|a, b| (a.0 / a.1).total_cmp(&(b.0 / b.1)));
    let (measured, passed, note) = match worst {
        Some((a, bound, what)) => (format!("{a:.2} ({what})"), a <= bound + SHARE_EPSILON, None),
        None => (
            "not measurable".to_string(),
            false,
            Some(if have_ledger {
                "no request that a bound applies to reached a server".to_string()
            } else {
                "no delivery ledger: the fakes' calls were not counted".to_string()
            }),
        ),
    };
    let target = match (bounds.run, bounds.windows) {
        (Some(r), Some(w)) if r == w => format!("<= {r:.2} upstream calls per request"),
        (r, w) => {
            let mut parts = Vec::new();
            if let Some(r) = r {
                parts.push(format!("<= {r:.2} over the run"));
            }
            if let Some(w) = w {
                parts.push(format!("<= {w:.2} in fault windows"));
            }
            format!("{} (upstream calls per request)", parts.join(", "))
        }
    };
    SloResult {
        name: "amplification".into(),
        target,
        measured,
        passed,
        note,
    }
}

/// Whether two events can disturb requests to the same server.
fn share_a_server(a: &Target, b: &Target) -> bool {
    match (a, b) {
        (Target::All, _) | (_, Target::All) => true,
        (Target::One(x), Target::One(y)) => x == y,
    }
}

/// Judges every event: groups of events that share a server and overlap, each group's clock,
/// each event's recovery and disturbed interval (see the module documentation).
fn judge_events(input: &VerdictInput<'_>) -> Vec<EventResult> {
    let events = input.events;
    // Each event's group, as the index of a representative event.
    let mut group: Vec<usize> = (0..events.len()).collect();
    loop {
        let results: Vec<EventResult> = (0..events.len())
            .map(|i| {
                let with: Vec<usize> = (0..events.len())
                    .filter(|&j| j != i && group[j] == group[i])
                    .collect();
                judge_event(&events[i], &with, input)
            })
            .collect();
        let mut merged = false;
        for i in 0..events.len() {
            for j in i + 1..events.len() {
                let (a, b) = (&results[i], &results[j]);
                let overlap =
                    a.injected_at <= b.disturbed_until && b.injected_at <= a.disturbed_until;
                if group[i] != group[j] && overlap && share_a_server(&a.target, &b.target) {
                    let (keep, gone) = (group[i].min(group[j]), group[i].max(group[j]));
                    for g in group.iter_mut().filter(|g| **g == gone) {
                        *g = keep;
                    }
                    merged = true;
                }
            }
        }
        if !merged {
            return results;
        }
    }
}

/// One event, judged with the events of `with` (indices into `input.events`).
fn judge_event(e: &FaultEvent, with: &[usize], input: &VerdictInput<'_>) -> EventResult {
    // A runtime that measured a clear moment before the injection has a bug; do not let it make
    // a recovery look faster than the fault.
    // A fault scoped to the instance "clears" for its clock at injection: from then on new
    // sessions are healthy.
    let clear = |e: &FaultEvent| {
        if e.from_injection {
            e.injected_at
        } else {
            e.cleared_at.max(e.injected_at)
        }
    };
    let cleared_at = e.cleared_at.max(e.injected_at);
    let clock_from = with
        .iter()
        .filter_map(|&j| input.events.get(j))
        .map(clear)
        .fold(clear(e), Duration::max);
    let first_success = input
        .records
        .iter()
        .filter(|r| r.outcome == Outcome::Success && r.sent_at >= clock_from)
        .filter(|r| e.affects(input.calls.get(r.call)))
        .filter_map(|r| r.answered_at.map(|a| (r.sent_at, a, r.id)))
        .min();
    let (recovery_time, recovered_by) = match first_success {
        Some((_, answered_at, id)) => (Some(answered_at.saturating_sub(clock_from)), Some(id)),
        None => (None, None),
    };
    let within = input.slo.recovery_within;
    let recovered = match (recovery_time, within) {
        (Some(r), Some(w)) => r <= w,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let excused = match (recovery_time, within) {
        (Some(r), Some(w)) => r.min(w),
        (Some(r), None) => r,
        (None, w) => w.unwrap_or(Duration::ZERO),
    };
    EventResult {
        index: e.index,
        kind: e.kind.clone(),
        server: e.server.to_string(),
        target: e.server.clone(),
        injected_at: e.injected_at,
        cleared_at,
        clock_from,
        judged_with: with
            .iter()
            .filter_map(|&j| input.events.get(j).map(|o| o.index))
            .collect(),
        recovery_time,
        recovered,
        recovered_by,
        disturbed_until: clock_from + excused,
    }
}

/// `99.50%`: two decimals, so that SLOs such as 0.999 show their difference.
pub fn format_share(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

/// A short duration for tables: `850ms`, `1.25s`, `12s`, `0.4ms`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 1.0 && !d.is_zero() {
        format!("{ms:.1}ms")
    } else if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else {
        let s = format!("{:.3}", d.as_secs_f64());
        let s = s.trim_end_matches('0').trim_end_matches('.');
        format!("{s}s")
    }
}

/// The window of an event for tables: `at 5s` for one-shot faults, `10s..20s` for windows.
pub fn format_window(injected_at: Duration, cleared_at: Duration) -> String {
    if cleared_at <= injected_at {
        format!("at {}", format_duration(injected_at))
    } else {
        format!(
            "{}..{}",
            format_duration(injected_at),
            format_duration(cleared_at)
        )
    }
}

/// A plain-text table of the verdict, for terminals and CI logs.
pub fn render_table(v: &Verdict) -> String {
    let mut rows = vec![vec![
        "SLO".to_string(),
        "target".to_string(),
        "measured".to_string(),
        "result".to_string(),
    ]];
    for s in &v.slos {
        let mut measured = s.measured.clone();
        if let Some(note) = &s.note {
            let _ = write!(measured, " [{note}]");
        }
        rows.push(vec![
            s.name.clone(),
            s.target.clone(),
            measured,
            pass_fail(s.passed).to_string(),
        ]);
    }
    let mut out = columns(&rows);
    let _ = writeln!(out, "verdict: {}", v.word());
    for why in &v.invalid {
        let _ = writeln!(out, "invalid run: {why}");
    }

    if v.servers.len() > 1 {
        out.push('\n');
        let mut rows = vec![vec![
            "server".to_string(),
            "sent".to_string(),
            "success".to_string(),
            "failed".to_string(),
            "outside faults".to_string(),
            "p99".to_string(),
        ]];
        for s in &v.servers {
            let t = &s.totals;
            rows.push(vec![
                s.name.clone(),
                t.sent.to_string(),
                t.success.to_string(),
                (t.sent - t.success - t.not_sent).to_string(),
                s.success_rate.map_or_else(
                    || "not measurable".to_string(),
                    |r| {
                        format!(
                            "{} of {} ({})",
                            t.outside_success,
                            t.outside,
                            format_share(r)
                        )
                    },
                ),
                s.latency
                    .all
                    .map_or_else(|| "-".to_string(), |p| format_duration(p.p99)),
            ]);
        }
        out.push_str(&columns(&rows));
    }
    out.push('\n');
    if v.events.is_empty() {
        out.push_str("fault events: none\n");
        return out;
    }
    let mut rows = vec![vec![
        "event".to_string(),
        "kind".to_string(),
        "server".to_string(),
        "window".to_string(),
        "recovery".to_string(),
        "result".to_string(),
    ]];
    for e in &v.events {
        rows.push(vec![
            format!("#{}", e.index),
            e.kind.clone(),
            e.server.clone(),
            format_window(e.injected_at, e.cleared_at),
            match (e.recovery_time, e.judged_with.is_empty()) {
                (None, _) => "never".to_string(),
                (Some(r), true) => format_duration(r),
                (Some(r), false) => format!(
                    "{} from {} (with {})",
                    format_duration(r),
                    format_duration(e.clock_from),
                    e.judged_with
                        .iter()
                        .map(|i| format!("#{i}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
            if e.recovered {
                "recovered"
            } else {
                "NOT RECOVERED"
            }
            .to_string(),
        ]);
    }
    out.push_str(&columns(&rows));
    out
}

fn pass_fail(passed: bool) -> &'static str {
    if passed { "PASS" } else { "FAIL" }
}

/// Left-aligned columns separated by two spaces, with a rule under the header.
fn columns(rows: &[Vec<String>]) -> String {
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..width)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| format!("{cell:<w$}", w = widths[c]))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(out, "{}", rule.join("  "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::scenario::Target;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn calls() -> Vec<CallSpec> {
        calls_of(&["flaky/echo", "other/add"])
    }

    fn calls_of(routes: &[&str]) -> Vec<CallSpec> {
        routes
            .iter()
            .map(|route| {
                let (server, tool) = route.split_once('/').unwrap();
                CallSpec {
                    server: server.into(),
                    tool: tool.into(),
                    args: Default::default(),
                    weight: 1,
                    line: 1,
                }
            })
            .collect()
    }

    fn record(
        id: u64,
        sent: u64,
        answered: Option<u64>,
        status: Option<u16>,
        outcome: Outcome,
    ) -> RequestRecord {
        RequestRecord {
            id,
            call: 0,
            intended_at: ms(sent),
            sent_at: ms(sent),
            answered_at: answered.map(ms),
            status,
            outcome,
        }
    }
    fn ok(id: u64, sent: u64, answered: u64) -> RequestRecord {
        record(id, sent, Some(answered), Some(200), Outcome::Success)
    }
    fn failed(id: u64, sent: u64, answered: u64, status: u16) -> RequestRecord {
        record(id, sent, Some(answered), Some(status), Outcome::HttpError)
    }
    fn hung(id: u64, sent: u64) -> RequestRecord {
        record(id, sent, None, None, Outcome::Hung)
    }
    fn refused(id: u64, sent: u64) -> RequestRecord {
        record(id, sent, Some(sent + 1), None, Outcome::ConnectError)
    }

    fn event(index: usize, kind: &str, server: Target, injected: u64, cleared: u64) -> FaultEvent {
        FaultEvent {
            index,
            kind: kind.into(),
            server,
            tools: Vec::new(),
            injected_at: ms(injected),
            cleared_at: ms(cleared),
            one_shot: injected == cleared,
            probability: 1.0,
            from_injection: false,
        }
    }

    fn slo() -> SloSpec {
        SloSpec {
            recovery_rate: Some(0.9),
            recovery_within: Some(ms(1000)),
            success_rate: Some(0.99),
            hung_requests: 0,
            leaked_processes: 0,
            p99_latency: None,
            wrong_answers: 0,
            window_success_rate: None,
            amplification: None,
        }
    }

    fn evaluate(slo: &SloSpec, events: &[FaultEvent], records: &[RequestRecord]) -> Verdict {
        let calls = calls();
        Verdict::evaluate(&VerdictInput {
            slo,
            calls: &calls,
            events,
            records,
            leaked_processes: 0,
            ledger: None,
        })
    }

    /// Servers are reported once each, in the order the calls first name them, those without
    /// a request included; a request whose call is unknown is counted under "?".
    #[test]
    fn servers_are_listed_once_in_the_order_the_calls_name_them() {
        let calls = calls_of(&["flaky/echo", "flaky/add", "other/add"]);
        let records = [
            RequestRecord {
                call: 2,
                ..ok(0, 10, 20)
            },
            RequestRecord {
                call: 7,
                ..ok(1, 30, 40)
            },
        ];
        let v = Verdict::evaluate(&VerdictInput {
            slo: &slo(),
            calls: &calls,
            events: &[],
            records: &records,
            leaked_processes: 0,
            ledger: None,
        });
        let names: Vec<(&str, u64)> = v
            .servers
            .iter()
            .map(|s| (s.name.as_str(), s.totals.sent))
            .collect();
        assert_eq!(names, [("flaky", 0), ("other", 1), ("?", 1)]);
    }

    /// The report lists the first failures seen outside every fault window and recovery
    /// period, and only those: not the ones a fault explains, not successes, not requests the
    /// harness never sent; at most `FAILURES_LISTED`.
    #[test]
    fn failures_outside_the_windows_are_listed_up_to_the_cap() {
        let mut records = vec![
            failed(0, 1500, 1510, 500),
            ok(1, 5, 6),
            record(2, 6, None, None, Outcome::NotSent),
        ];
        records.extend((0..150).map(|i| failed(10 + i, 10 + i, 11 + i, 502)));
        records.push(ok(500, 2500, 2510));
        let events = [event(
            0,
            "http-500",
            Target::One("flaky".into()),
            1000,
            2000,
        )];
        let v = evaluate(&slo(), &events, &records);
        let listed: Vec<u64> = v.failures_outside.iter().map(|f| f.id).collect();
        assert_eq!(
            listed,
            (10..10 + FAILURES_LISTED as u64).collect::<Vec<_>>()
        );
        assert_eq!(v.failures_outside[0].status, Some(502));
        assert_eq!(v.failures_outside[0].server, "flaky");
    }

    /// The wrong-answer SLO explains itself only when there is something to explain.
    #[test]
    fn wrong_answers_are_explained_only_when_there_are_some() {
        let clean = evaluate(&slo(), &[], &[ok(0, 10, 20)]);
        assert_eq!(slo_named(&clean, "wrong_answers").note, None);
        let wrong = evaluate(
            &slo(),
            &[],
            &[
                ok(0, 10, 20),
                record(1, 30, Some(40), Some(200), Outcome::WrongAnswer),
            ],
        );
        let w = slo_named(&wrong, "wrong_answers");
        assert!(!w.passed);
        assert!(
            w.note
                .as_deref()
                .is_some_and(|n| n.contains("right answer")),
            "{w:?}"
        );
    }

    /// The success rate inside fault windows exists only when requests were sent in one.
    #[test]
    fn a_window_success_rate_needs_requests_in_a_window() {
        let none = evaluate(&slo(), &[], &[ok(0, 10, 20)]);
        assert_eq!(none.window_success_rate, None);
        let events = [event(
            0,
            "http-500",
            Target::One("flaky".into()),
            1000,
            2000,
        )];
        let some = evaluate(
            &slo(),
            &events,
            &[ok(0, 1100, 1110), failed(1, 1200, 1210, 500)],
        );
        assert_eq!(some.window_success_rate, Some(0.5));
        // The SLO on it: not measurable (and missed) without requests in a window.
        let half = SloSpec {
            window_success_rate: Some(0.5),
            ..slo()
        };
        let none = evaluate(&half, &[], &[ok(0, 10, 20)]);
        let w = slo_named(&none, "window_success_rate");
        assert_eq!((w.measured.as_str(), w.passed), ("not measurable", false));
        let some = evaluate(
            &half,
            &events,
            &[ok(0, 1100, 1110), failed(1, 1200, 1210, 500)],
        );
        let w = slo_named(&some, "window_success_rate");
        assert!(w.passed && w.measured.contains("1 of 2"), "{w:?}");
    }

    /// A share that meets its target up to rounding passes, overall and per server (the
    /// target as written, `0.666666666667`, is a hair above two thirds computed).
    #[test]
    fn a_success_rate_at_its_target_up_to_rounding_passes_overall_and_per_server() {
        let on_other = |r: RequestRecord| RequestRecord { call: 1, ..r };
        let records = [
            ok(0, 10, 11),
            ok(1, 20, 21),
            failed(2, 30, 31, 500),
            on_other(ok(3, 40, 41)),
            on_other(ok(4, 50, 51)),
            on_other(failed(5, 60, 61, 500)),
        ];
        let at_target = SloSpec {
            success_rate: Some(2.0 / 3.0 + 1e-12),
            ..slo()
        };
        let v = evaluate(&at_target, &[], &records);
        let s = slo_named(&v, "success_rate");
        assert!(s.passed, "{s:?}");
        // Two servers, each meeting the target: no server is named as missing it.
        let all_ok: Vec<RequestRecord> = (0..6)
            .map(|i| {
                let r = ok(i, 10 * i, 10 * i + 1);
                if i % 2 == 0 { r } else { on_other(r) }
            })
            .collect();
        let v = evaluate(&slo(), &[], &all_ok);
        let s = slo_named(&v, "success_rate");
        assert!(s.passed && !s.measured.contains(';'), "{s:?}");
    }

    fn server_with(
        name: &str,
        sent: u64,
        not_sent: u64,
        in_windows: u64,
        up: UpstreamCalls,
    ) -> ServerReport {
        ServerReport {
            name: name.into(),
            totals: Totals {
                sent,
                not_sent,
                in_windows,
                ..Totals::default()
            },
            latency: LatencyReport::default(),
            success_rate: None,
            upstream: Some(up),
        }
    }

    /// The amplification SLO shows the figure furthest over its bound (by ratio, not by
    /// difference), passes a figure at its bound up to rounding, names the requests actually
    /// sent, and states one bound once when run and windows share it.
    #[test]
    fn amplification_shows_the_worst_figure_by_its_ratio_to_its_bound() {
        let calls = |calls, calls_in_windows| UpstreamCalls {
            calls,
            calls_in_windows,
        };
        let a = server_with("a", 12, 2, 5, calls(11, 10));
        let b = server_with("b", 10, 0, 0, calls(13, 0));
        // a over the run: 1.1 of a 1.2 bound; a in windows: 2.0 of a 1.5 bound (the worst,
        // 1.33 of it); b over the run: 1.3 of 1.2.
        let bounds = Amplification {
            run: Some(1.2),
            windows: Some(1.5),
        };
        let r = amplification_slo(bounds, &[a.clone(), b.clone()], true);
        assert!(!r.passed);
        assert_eq!(
            r.measured,
            "2.00 (a in fault windows: 10 calls for 5 requests)"
        );
        assert_eq!(
            r.target,
            "<= 1.20 over the run, <= 1.50 in fault windows (upstream calls per request)"
        );
        // By ratio, not by product: 1.3 of a 1.0 bound is worse than 2.0 of 1.9; the requests
        // named are those sent (12, of which 2 were not).
        let c = server_with("a", 12, 2, 5, calls(13, 10));
        let ratio = Amplification {
            run: Some(1.0),
            windows: Some(1.9),
        };
        let r = amplification_slo(ratio, &[c], true);
        assert_eq!(r.measured, "1.30 (a: 13 calls for 10 requests)");
        // At the bound up to rounding: 11 calls for 10 requests against 1.1.
        let at = server_with("a", 10, 0, 0, calls(11, 0));
        let one = Amplification {
            run: Some(1.1),
            windows: Some(1.1),
        };
        let r = amplification_slo(one, &[at], true);
        assert!(r.passed, "{r:?}");
        assert_eq!(r.target, "<= 1.10 upstream calls per request");
        assert_eq!(r.measured, "1.10 (a: 11 calls for 10 requests)");
    }

    fn slo_named<'v>(v: &'v Verdict, name: &str) -> &'v SloResult {
        v.slos.iter().find(|s| s.name == name).unwrap()
    }

    #[test]
    fn recovery_is_timed_from_the_clear_moment_to_the_first_success_sent_after_it() {
        // An http-error window from 1000 to 2000 ms.
        let events = [event(
            0,
            "http-error",
            Target::One("flaky".into()),
            1000,
            2000,
        )];
        let records = [
            ok(1, 500, 520),
            failed(2, 1200, 1210, 500),
            // Sent inside the window, answered after it: in flight during the fault, so it
            // proves nothing about recovery.
            ok(3, 1900, 2300),
            failed(4, 2100, 2150, 503),
            // The first success sent at or after 2000: answered at 2450, so recovery = 450 ms.
            ok(5, 2200, 2450),
            // Sent later but answered sooner; "first" is by send time, so it is not the one.
            ok(6, 2300, 2310),
            ok(7, 3000, 3010),
        ];
        let v = evaluate(&slo(), &events, &records);
        let e = &v.events[0];
        assert_eq!(e.recovery_time, Some(ms(450)));
        assert_eq!(
            e.recovered_at(),
            Some(ms(2450)),
            "the clear plus the recovery time"
        );
        assert_eq!(e.recovered_by, Some(5));
        assert!(e.recovered, "450 ms <= 1 s");
        assert_eq!(e.disturbed_until, ms(2450));
        assert_eq!(v.recovery_rate, 1.0);
        // Disturbed: [1000, 2450]. Outside: #1 (500) and #7 (3000), both successes.
        assert_eq!((v.totals.outside, v.totals.outside_success), (2, 2));
        assert_eq!(v.success_rate, Some(1.0));
        assert_eq!(v.totals.sent, 7);
        assert_eq!(v.totals.success, 5);
        assert_eq!(v.totals.http_errors, BTreeMap::from([(500, 1), (503, 1)]));
        assert!(v.passed(), "{}", render_table(&v));
        let table = render_table(&v);
        let row = table.lines().find(|l| l.starts_with("recovery_rate"));
        assert!(row.is_some_and(|r| r.ends_with("PASS")), "{table}");
    }

    #[test]
    fn a_recovery_slower_than_recovery_within_is_not_recovered() {
        let events = [event(0, "hang", Target::All, 1000, 2000)];
        // First success sent after 2000 is answered at 3500: recovery 1.5 s > 1 s.
        let records = [ok(1, 2100, 3500), ok(2, 4000, 4010)];
        let v = evaluate(&slo(), &events, &records);
        assert_eq!(v.events[0].recovery_time, Some(ms(1500)));
        assert!(!v.events[0].recovered);
        assert_eq!(v.recovery_rate, 0.0);
        assert!(!slo_named(&v, "recovery_rate").passed);
    }

    #[test]
    fn a_fault_never_followed_by_a_success_is_unrecovered() {
        // A crash at 1000 ms: one-shot, so it clears at once.
        let events = [event(0, "crash", Target::All, 1000, 1000)];
        let records = [
            ok(1, 500, 510),
            refused(2, 1500),
            failed(3, 2000, 2005, 502),
            hung(4, 2500),
        ];
        let v = evaluate(&slo(), &events, &records);
        let e = &v.events[0];
        // Unrecovered: disturbed to the clear plus recovery_within (1 s), not to the end.
        assert_eq!(
            (e.recovery_time, e.recovered, e.disturbed_until),
            (None, false, ms(2000))
        );
        assert_eq!(v.recovery_rate, 0.0);
        // Disturbed [1000, 2000]: #1 and the hung #4 (2500) are outside.
        assert_eq!((v.totals.outside, v.totals.outside_success), (2, 1));
        assert_eq!(v.totals.hung, 1);
        assert_eq!(v.totals.connect_errors, 1);
        assert_eq!(v.totals.answered, 2, "#1 and #3 got HTTP answers");
        assert!(!slo_named(&v, "recovery_rate").passed);
        assert!(!slo_named(&v, "hung_requests").passed);
        assert!(!slo_named(&v, "success_rate").passed);
        assert!(!v.passed());
        let table = render_table(&v);
        assert!(table.contains("NOT RECOVERED"), "{table}");
        assert!(table.contains("at 1s"), "{table}");
        let row = |name: &str| table.lines().find(|l| l.starts_with(name)).unwrap_or("");
        assert!(row("recovery_rate").ends_with("FAIL"), "{table}");
        // Two servers in the load: a table per server.
        assert!(table.lines().any(|l| l.starts_with("server")), "{table}");
        let calls = calls_of(&["flaky/echo"]);
        let one = Verdict::evaluate(&VerdictInput {
            slo: &slo(),
            calls: &calls,
            events: &events,
            records: &records,
            leaked_processes: 0,
            ledger: None,
        });
        let table = render_table(&one);
        assert!(
            !table.lines().any(|l| l.starts_with("server")),
            "one server: {table}"
        );
    }

    #[test]
    fn requests_in_windows_and_recovery_periods_are_left_out_of_the_success_rate() {
        // Window 1000..2000; the first success sent after it is #30, answered at 2600, so the
        // disturbed interval is [1000, 2600], both ends included.
        let events = [event(
            0,
            "http-error",
            Target::One("flaky".into()),
            1000,
            2000,
        )];
        let mut records = Vec::new();
        // 10 before the window, one of them failed: 9 of 10.
        for i in 0..10u64 {
            if i == 5 {
                records.push(failed(i, i * 100, i * 100 + 5, 500));
            } else {
                records.push(ok(i, i * 100, i * 100 + 5));
            }
        }
        // Failures at the edges and inside, all excluded.
        records.push(failed(20, 1000, 1001, 500));
        records.push(failed(21, 1500, 1501, 500));
        records.push(failed(22, 2000, 2001, 500));
        records.push(ok(30, 2100, 2600));
        records.push(failed(31, 2600, 2601, 500));
        // 10 after, all fine: 10 of 10.
        for i in 0..10u64 {
            records.push(ok(40 + i, 2700 + i * 100, 2705 + i * 100));
        }
        let v = evaluate(&slo(), &events, &records);
        assert_eq!(v.events[0].recovery_time, Some(ms(600)));
        // 19 successes of 20 outside: 95%, below 99%.
        assert_eq!((v.totals.outside, v.totals.outside_success), (20, 19));
        assert_eq!(v.success_rate, Some(0.95));
        let s = slo_named(&v, "success_rate");
        assert!(!s.passed);
        assert_eq!(s.measured, "95.00% (19 of 20 requests)");
    }

    #[test]
    fn a_run_without_faults_has_a_full_recovery_rate_and_says_why() {
        let records = [ok(1, 0, 10), ok(2, 100, 110), failed(3, 200, 210, 500)];
        let v = evaluate(&slo(), &[], &records);
        assert_eq!(v.recovery_rate, 1.0);
        let r = slo_named(&v, "recovery_rate");
        assert!(r.passed);
        assert!(r.note.as_deref().unwrap_or("").contains("no fault events"));
        // Every request is outside: 2 of 3.
        assert_eq!((v.totals.outside, v.totals.outside_success), (3, 2));
        assert!(render_table(&v).contains("fault events: none"));
    }

    #[test]
    fn overlapping_faults_on_a_server_are_judged_together() {
        // A: http-error on flaky 1000..3000. B: crash of every server at 2000, inside A. They
        // share flaky and overlap, so both clocks start when A clears, at 3000.
        let events = [
            event(0, "http-error", Target::One("flaky".into()), 1000, 3000),
            event(1, "crash", Target::All, 2000, 2000),
        ];
        let records = [
            ok(1, 500, 510),
            // Sent after B's crash but inside A's window: recovers neither.
            ok(2, 2500, 2520),
            failed(3, 2800, 2801, 500),
            // The first success sent at or after 3000: 3300 - 3000 = 300 ms, for both.
            ok(4, 3200, 3300),
            ok(5, 3300, 3310),
            ok(6, 4000, 4010),
        ];
        let v = evaluate(&slo(), &events, &records);
        assert_eq!(v.events[0].recovery_time, Some(ms(300)));
        assert_eq!(v.events[1].recovery_time, Some(ms(300)));
        assert_eq!(v.events[1].recovered_by, Some(4));
        assert_eq!(
            (v.events[0].clock_from, v.events[1].clock_from),
            (ms(3000), ms(3000))
        );
        assert_eq!(v.events[0].judged_with, vec![1]);
        assert_eq!(v.events[1].judged_with, vec![0]);
        assert_eq!(v.recovery_rate, 1.0);
        // Disturbed: [1000, 3300] and [2000, 3300]. Outside: #1 and #6 (#5 at 3300 is on the
        // edge, included).
        assert_eq!((v.totals.outside, v.totals.outside_success), (2, 2));
        assert!(render_table(&v).contains("from 3s (with #1)"));
    }

    /// `scope: instance`: the clock starts at injection, because the proxy can replace what
    /// the fault hit while its window is still open; requests after that recovery count.
    #[test]
    fn a_fault_scoped_to_the_instance_is_timed_from_injection() {
        let mut hang = event(0, "hang", Target::One("flaky".into()), 1000, 9000);
        hang.from_injection = true;
        let records = [
            ok(1, 500, 505),
            hung(2, 1100),
            failed(3, 2000, 2100, 504),
            // The replaced session answers: 3010 - 1000 = 2010 ms after injection.
            ok(4, 3000, 3010),
            // Inside the window but after the recovery: counted, and one failed.
            failed(5, 5000, 5005, 504),
            ok(6, 6000, 6005),
        ];
        let mut slo = slo();
        slo.recovery_within = Some(ms(3000));
        slo.window_success_rate = Some(0.5);
        let v = evaluate(&slo, &[hang], &records);
        let e = &v.events[0];
        assert_eq!(
            (e.clock_from, e.recovery_time, e.recovered),
            (ms(1000), Some(ms(2010)), true)
        );
        assert_eq!(e.cleared_at, ms(9000), "the window still ends at 9 s");
        assert_eq!(e.disturbed_until, ms(3010));
        // Outside: #1, #5 and #6.
        assert_eq!((v.totals.outside, v.totals.outside_success), (3, 2));
        // Inside the window: #2..#6, two successes.
        assert_eq!((v.totals.in_windows, v.totals.in_windows_success), (5, 2));
        assert_eq!(v.window_success_rate, Some(0.4));
        assert!(!slo_named(&v, "window_success_rate").passed);
    }

    /// Amplification: upstream calls per client request, from the ledger's calls by request
    /// id, over the run and over the requests sent inside windows; each against its bound.
    #[test]
    fn amplification_is_counted_from_the_ledger_by_request() {
        let events = [event(
            0,
            "http-error",
            Target::One("flaky".into()),
            1000,
            2000,
        )];
        // 30 requests 100 ms apart; the 10 sent in 1000..2000 are in the window.
        let records: Vec<RequestRecord> = (0..30u64).map(|i| ok(i, i * 100, i * 100 + 5)).collect();
        let mut ledger = ledger(&[(0, 1, 10)]);
        ledger.instances.push(instance("flaky", 0));
        for r in &records {
            // One call each; three for each request in the window (two retries); plus calls
            // the load did not make, which do not count.
            let n = if (1000..2000).contains(&r.sent_at.as_millis()) {
                3
            } else {
                1
            };
            for _ in 0..n {
                ledger.calls.push(call("flaky", Some(r.id)));
            }
        }
        ledger.calls.push(call("flaky", None));
        ledger
            .calls
            .push(call("flaky", Some(crate::chaos::record::PROBE_IDS + 2)));
        let calls = calls();
        let eval = |bounds: Amplification| {
            let mut slo = slo();
            slo.amplification = Some(bounds);
            Verdict::evaluate(&VerdictInput {
                slo: &slo,
                calls: &calls,
                events: &events,
                records: &records,
                leaked_processes: 0,
                ledger: Some(&ledger),
            })
        };
        let v = eval(Amplification {
            run: Some(2.0),
            windows: Some(2.0),
        });
        let flaky = &v.servers[0];
        // Run: 20 + 30 = 50 calls for 30 requests; windows: 30 for 10.
        assert_eq!(
            flaky.upstream,
            Some(UpstreamCalls {
                calls: 50,
                calls_in_windows: 30
            })
        );
        assert!((flaky.amplification().unwrap() - 50.0 / 30.0).abs() < 1e-9);
        assert_eq!(flaky.window_amplification(), Some(3.0));
        let a = slo_named(&v, "amplification");
        assert!(!a.passed);
        assert!(
            a.measured
                .starts_with("3.00 (flaky in fault windows: 30 calls for 10 requests)"),
            "{}",
            a.measured
        );
        // Only the run bounded: 1.67 <= 2 passes.
        assert!(
            slo_named(
                &eval(Amplification {
                    run: Some(2.0),
                    windows: None
                }),
                "amplification"
            )
            .passed
        );
        // A bound under 1 in windows asks for shedding.
        let v = eval(Amplification {
            run: None,
            windows: Some(0.5),
        });
        assert!(!slo_named(&v, "amplification").passed);
        // Without a ledger nothing can be said, and the SLO fails.
        let mut slo = slo();
        slo.amplification = Some(Amplification {
            run: Some(2.0),
            windows: None,
        });
        let v = Verdict::evaluate(&VerdictInput {
            slo: &slo,
            calls: &calls,
            events: &events,
            records: &records,
            leaked_processes: 0,
            ledger: None,
        });
        let a = slo_named(&v, "amplification");
        assert!(
            !a.passed
                && a.note
                    .as_deref()
                    .unwrap_or("")
                    .contains("no delivery ledger")
        );
    }

    /// Finding 8 of issue 13: a crash injected inside a `refuse` window cannot recover before
    /// the window clears, yet its recovery time ran from the crash and it failed its SLO.
    #[test]
    fn a_crash_inside_a_refuse_window_is_timed_from_the_windows_end() {
        let events = [
            event(0, "refuse", Target::One("flaky".into()), 0, 3000),
            event(1, "crash", Target::One("flaky".into()), 1000, 1000),
            // On another server, overlapping in time: judged alone.
            event(2, "hang", Target::One("other".into()), 2000, 2500),
        ];
        let mut records = Vec::new();
        for i in 0..50u64 {
            let t = 50 + i * 100;
            // flaky refuses connections until 3000; from 3050 on its calls take 100 ms.
            records.push(if t < 3000 {
                refused(i, t)
            } else {
                ok(i, t, t + 100)
            });
            let mut o = ok(100 + i, t, t + 10);
            o.call = 1;
            records.push(o);
        }
        let v = evaluate(&slo(), &events, &records);
        // Both flaky events: 3150 - 3000 = 150 ms, within 1 s.
        assert_eq!(v.events[0].recovery_time, Some(ms(150)));
        assert_eq!(v.events[1].recovery_time, Some(ms(150)));
        assert!(v.events[1].recovered);
        // The hang on `other` recovers on its own: first `other` call sent at or after 2500 is
        // the one sent at 2550, answered at 2560.
        assert_eq!(v.events[2].recovery_time, Some(ms(60)));
        assert_eq!(v.recovery_rate, 1.0);
        assert!(slo_named(&v, "recovery_rate").passed);
        assert!(v.events[2].judged_with.is_empty());
    }

    /// Events are grouped by their disturbed intervals, not only their windows: a crash during
    /// another crash's slow recovery pushes both clocks to the later one.
    #[test]
    fn a_crash_during_anothers_recovery_joins_it() {
        let events = [
            event(0, "crash", Target::One("flaky".into()), 1000, 1000),
            event(1, "crash", Target::One("flaky".into()), 1300, 1300),
        ];
        let records = [
            failed(1, 1100, 1110, 502),
            ok(2, 1500, 1600),
            ok(3, 1700, 1710),
        ];
        let v = evaluate(&slo(), &events, &records);
        // Alone, #0 would recover in 600 ms ([1000, 1600]), which covers #1's crash at 1300;
        // together both clocks start at 1300: 1600 - 1300 = 300 ms.
        assert_eq!(v.events[0].recovery_time, Some(ms(300)));
        assert_eq!(v.events[1].recovery_time, Some(ms(300)));
        assert_eq!(v.events[0].judged_with, vec![1]);
    }

    /// Finding 2 of issue 13: one unrecovered event removed the rest of the run from the
    /// success rate. Nine crashes on `flaky`, each recovered in 55 ms; a short window on
    /// `other` after which `other` answers 503 for good. The numbers are worked out by hand.
    #[test]
    fn an_unrecovered_event_excuses_only_recovery_within_after_it() {
        let mut events: Vec<FaultEvent> = (1..=9u64)
            .map(|k| {
                event(
                    k as usize - 1,
                    "crash",
                    Target::One("flaky".into()),
                    k * 1000,
                    k * 1000,
                )
            })
            .collect();
        events.push(event(
            9,
            "tool-error",
            Target::One("other".into()),
            10_000,
            10_400,
        ));
        let mut records = Vec::new();
        for i in 0..200u64 {
            let t = 50 + i * 100;
            records.push(ok(i, t, t + 5));
            let mut o = if t < 10_000 {
                ok(1000 + i, t, t + 5)
            } else {
                failed(1000 + i, t, t + 5, 503)
            };
            o.call = 1;
            records.push(o);
        }
        let v = evaluate(&slo(), &events, &records);
        assert_eq!(
            v.events.iter().filter(|e| e.recovered).count(),
            9,
            "the nine crashes recover, the window on other does not"
        );
        assert!(slo_named(&v, "recovery_rate").passed, "9 of 10 >= 90%");
        // flaky: 200 sent, the 9 sent at k*1000+50 fall in [k*1000, k*1000+55]: 191 outside,
        // all successes. other: 100 before 10 000, all fine; the window and its 1 s of
        // recovery_within exclude 10 050..11 350 (14); the 86 sent from 11 450 on failed.
        assert_eq!((v.totals.outside, v.totals.outside_success), (377, 291));
        let s = slo_named(&v, "success_rate");
        assert!(!s.passed, "{s:?}");
        assert!(!v.passed());
    }

    /// Finding 3 of issue 13: a request inside any event's window was excused whatever server it
    /// went to, so a proxy that failed every server while one was faulted passed.
    #[test]
    fn a_fault_on_one_server_does_not_excuse_failures_on_another() {
        let events = [event(
            0,
            "http-error",
            Target::One("other".into()),
            1000,
            2000,
        )];
        let mut records = Vec::new();
        for i in 0..30u64 {
            let t = 50 + i * 100;
            let faulted = (1000..2000).contains(&t);
            // flaky (not faulted) fails too while other is faulted: the broken behaviour.
            records.push(if faulted {
                failed(i, t, t + 5, 502)
            } else {
                ok(i, t, t + 5)
            });
            let mut o = if faulted {
                failed(100 + i, t, t + 5, 500)
            } else {
                ok(100 + i, t, t + 5)
            };
            o.call = 1;
            records.push(o);
        }
        let v = evaluate(&slo(), &events, &records);
        // other recovers at 2055 (sent 2050): disturbed [1000, 2055]; its outside requests are
        // 50..950 and 2150..2950, 19 successes. flaky: all 30 outside, 20 successes.
        assert_eq!((v.totals.outside, v.totals.outside_success), (49, 39));
        let s = slo_named(&v, "success_rate");
        assert!(!s.passed, "{s:?}");
        assert!(!v.passed());
    }

    /// The verdict's per-server figures, hand-counted: flaky has one failure outside, other
    /// has one inside its window.
    #[test]
    fn counts_and_rates_are_reported_per_server() {
        let events = [event(
            0,
            "http-error",
            Target::One("other".into()),
            1000,
            2000,
        )];
        let mut records = Vec::new();
        for i in 0..30u64 {
            let t = 50 + i * 100;
            records.push(if i == 3 {
                failed(i, t, t + 5, 502)
            } else {
                ok(i, t, t + 5)
            });
            let mut o = if i == 15 {
                failed(100 + i, t, t + 5, 500)
            } else {
                ok(100 + i, t, t + 5)
            };
            o.call = 1;
            records.push(o);
        }
        let v = evaluate(&slo(), &events, &records);
        let names: Vec<&str> = v.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["flaky", "other"]);
        let (flaky, other) = (&v.servers[0], &v.servers[1]);
        assert_eq!(
            (
                flaky.totals.sent,
                flaky.totals.success,
                flaky.totals.outside,
                flaky.totals.outside_success
            ),
            (30, 29, 30, 29)
        );
        assert_eq!(flaky.totals.http_errors, BTreeMap::from([(502, 1)]));
        // other: the failure at 1550 is in the window; the first success after 2000 is sent
        // at 2050 and answered at 2055, so [1000, 2055] excludes 1050..2050, 11 requests.
        assert_eq!(
            (
                other.totals.sent,
                other.totals.success,
                other.totals.outside,
                other.totals.outside_success
            ),
            (30, 29, 19, 19)
        );
        assert_eq!(other.success_rate, Some(1.0));
        assert_eq!(flaky.latency.all.map(|p| p.count), Some(30));
        // flaky's 29 of 30 is under 99%, and the SLO names it.
        let s = slo_named(&v, "success_rate");
        assert!(!s.passed);
        assert!(
            s.measured.contains("flaky: 96.67% (29 of 30"),
            "{}",
            s.measured
        );
        let table = render_table(&v);
        assert!(table.contains("19 of 19 (100.00%)"), "{table}");
        assert!(table.lines().any(|l| l.starts_with("server")), "{table}");
    }

    #[test]
    fn recovery_is_seen_only_through_requests_the_fault_can_hit() {
        // A fault on server `other` (call 1); successes on `flaky` (call 0) say nothing about it.
        let events = [event(0, "hang", Target::One("other".into()), 1000, 2000)];
        let mut on_other = ok(2, 2500, 2600);
        on_other.call = 1;
        let records = [ok(1, 2100, 2110), on_other];
        let v = evaluate(&slo(), &events, &records);
        assert_eq!(v.events[0].recovered_by, Some(2));
        assert_eq!(v.events[0].recovery_time, Some(ms(600)));
    }

    #[test]
    fn hung_requests_are_counted() {
        let records = [ok(1, 0, 10), hung(2, 100), hung(3, 200), hung(4, 300)];
        let mut slo = slo();
        slo.hung_requests = 2;
        let v = evaluate(&slo, &[], &records);
        assert_eq!(v.totals.hung, 3);
        assert_eq!(v.totals.answered, 1);
        let h = slo_named(&v, "hung_requests");
        assert_eq!(
            (h.measured.as_str(), h.target.as_str(), h.passed),
            ("3", "<= 2", false)
        );
        slo.hung_requests = 3;
        assert!(slo_named(&evaluate(&slo, &[], &records), "hung_requests").passed);
    }

    #[test]
    fn an_slo_that_cannot_be_measured_fails_with_a_note() {
        // The fault is never recovered, so every request after it is disturbed; none before it.
        let events = [event(0, "crash", Target::All, 0, 0)];
        let records = [refused(1, 100), refused(2, 200)];
        let mut slo = slo();
        slo.p99_latency = Some(ms(500));
        let v = evaluate(&slo, &events, &records);
        assert_eq!(v.success_rate, None);
        for name in ["success_rate", "p99_latency"] {
            let s = slo_named(&v, name);
            assert!(!s.passed, "{name}");
            assert!(
                s.note.as_deref().unwrap_or("").contains("no "),
                "{name}: {s:?}"
            );
        }
    }

    #[test]
    fn latency_percentiles_and_the_p99_slo_use_requests_outside_disturbance() {
        // 100 quick answers outside (1..=100 ms), one 5 s answer inside a window, and the 10 ms
        // success that ends its recovery.
        let mut records: Vec<RequestRecord> = (1..=100u64)
            .map(|i| ok(i, 10_000 + i * 10, 10_000 + i * 11))
            .collect();
        records.push(failed(200, 1500, 6500, 504));
        // Recovers the window at 2110 ms; sent inside the disturbed interval, so not outside.
        records.push(ok(201, 2100, 2110));
        let events = [event(0, "hang", Target::All, 1000, 2000)];
        let mut slo = slo();
        slo.p99_latency = Some(ms(200));
        let v = evaluate(&slo, &events, &records);
        let all = v.latency.all.unwrap();
        let outside = v.latency.outside.unwrap();
        assert_eq!(all.count, 102);
        assert_eq!(all.max, ms(5000));
        assert_eq!(outside.count, 100);
        // Latencies outside are i ms for i in 1..=100: p50 = 50 ms, p99 = 99 ms, max = 100 ms,
        // each within the histogram's 0.1%.
        let close = |d: Duration, want: u64| {
            (d.as_secs_f64() * 1000.0 - want as f64).abs() <= want as f64 * 0.001
        };
        assert!(close(outside.p50, 50), "{outside:?}");
        assert!(close(outside.p99, 99), "{outside:?}");
        assert_eq!(outside.max, ms(100));
        assert!(slo_named(&v, "p99_latency").passed);
    }

    #[test]
    fn formats_are_short() {
        assert_eq!(format_duration(ms(850)), "850ms");
        assert_eq!(format_duration(ms(1250)), "1.25s");
        assert_eq!(format_duration(Duration::from_secs(12)), "12s");
        assert_eq!(format_duration(Duration::from_micros(400)), "0.4ms");
        assert_eq!(format_window(ms(5000), ms(5000)), "at 5s");
        assert_eq!(format_window(ms(10_000), ms(20_000)), "10s..20s");
        assert_eq!(format_share(0.995), "99.50%");
        assert_eq!(format_duration(ms(1)), "1ms");
    }

    /// Columns as wide as their widest cell, two spaces apart, one rule under the header only.
    #[test]
    fn columns_line_up_under_one_rule() {
        let rows = [
            vec!["a".to_string(), "bb".to_string()],
            vec!["ccc".to_string(), "d".to_string()],
            vec!["e".to_string(), "f".to_string()],
        ];
        assert_eq!(columns(&rows), "a    bb\n---  --\nccc  d\ne    f\n");
    }

    /// A request whose call the load does not list (its index is out of range) can show the
    /// recovery only of an event on every server and every tool: it might have gone anywhere.
    #[test]
    fn a_request_of_an_unknown_call_shows_only_an_event_on_everything_recovered() {
        let unknown = RequestRecord {
            call: 99,
            ..ok(1, 1500, 1510)
        };
        let on_everything = event(0, "crash", Target::All, 1000, 1000);
        let on_a_tool = FaultEvent {
            tools: vec!["echo".into()],
            ..on_everything.clone()
        };
        let on_a_server = FaultEvent {
            server: Target::One("flaky".into()),
            ..on_everything.clone()
        };
        for (e, recovered) in [
            (on_everything, true),
            (on_a_tool, false),
            (on_a_server, false),
        ] {
            let v = evaluate(
                &slo(),
                std::slice::from_ref(&e),
                std::slice::from_ref(&unknown),
            );
            assert_eq!(v.events[0].recovered, recovered, "{e:?}");
        }
    }

    /// A request whose server is unknown is disturbed only by an event on every server; one on
    /// a named server leaves it in the success rate.
    #[test]
    fn a_request_of_an_unknown_call_is_disturbed_only_by_an_event_on_every_server() {
        // A 1000..2000 window; the failure at 1500 went to no known server.
        let unknown_failure = RequestRecord {
            call: 99,
            ..failed(2, 1500, 1510, 500)
        };
        // #3 shows the recovery (disturbed until its answer, 2110); #1 and #4 are outside.
        let records = [
            ok(1, 500, 510),
            unknown_failure,
            ok(3, 2100, 2110),
            ok(4, 3000, 3010),
        ];
        let on_a_server = event(0, "http-error", Target::One("flaky".into()), 1000, 2000);
        let v = evaluate(&slo(), &[on_a_server], &records);
        assert_eq!((v.totals.outside, v.totals.outside_success), (3, 2));
        let on_every_server = event(0, "http-error", Target::All, 1000, 2000);
        let v = evaluate(&slo(), &[on_every_server], &records);
        assert_eq!((v.totals.outside, v.totals.outside_success), (2, 2));
    }

    /// A server's ratios: upstream calls per request sent (those the harness could not send
    /// left out), per request sent in its windows, successes in its windows; none without
    /// requests to divide by.
    #[test]
    fn a_servers_ratios_need_requests_to_divide_by() {
        let report = |sent, not_sent, in_windows, in_windows_success| ServerReport {
            name: "flaky".into(),
            totals: Totals {
                sent,
                not_sent,
                in_windows,
                in_windows_success,
                ..Totals::default()
            },
            latency: LatencyReport::default(),
            success_rate: None,
            upstream: Some(UpstreamCalls {
                calls: 6,
                calls_in_windows: 3,
            }),
        };
        let busy = report(5, 1, 4, 3);
        assert_eq!(
            busy.amplification(),
            Some(1.5),
            "6 calls for 4 requests sent"
        );
        assert_eq!(busy.window_amplification(), Some(0.75));
        assert_eq!(busy.window_success_rate(), Some(0.75));
        let idle = report(2, 2, 0, 0);
        assert_eq!(idle.amplification(), None, "nothing was sent");
        assert_eq!(idle.window_amplification(), None);
        assert_eq!(idle.window_success_rate(), None);
        let unledgered = ServerReport {
            upstream: None,
            ..busy
        };
        assert_eq!(unledgered.amplification(), None);
        assert_eq!(unledgered.window_amplification(), None);
    }

    /// The words the JSON report's `failures_outside[].outcome` and the HTML legend use, which
    /// readers of the report match on: each outcome its own.
    #[test]
    fn outcomes_are_named_in_the_reports_words() {
        let labels: Vec<&str> = Outcome::ALL.iter().map(|o| o.label()).collect();
        assert_eq!(
            labels,
            [
                "success",
                "wrong answer",
                "http error",
                "hung",
                "connect error",
                "not sent"
            ]
        );
    }

    fn arb_outcome() -> impl Strategy<Value = Outcome> {
        prop_oneof![
            4 => Just(Outcome::Success),
            2 => Just(Outcome::HttpError),
            1 => Just(Outcome::Hung),
            1 => Just(Outcome::ConnectError),
        ]
    }

    fn arb_record() -> impl Strategy<Value = RequestRecord> {
        (0u64..8000, 0u64..1500, arb_outcome(), 0usize..2).prop_map(
            |(sent, latency, outcome, call)| {
                let answered = (outcome != Outcome::Hung).then_some(sent + latency);
                let status = match outcome {
                    Outcome::Success => Some(200),
                    Outcome::HttpError => Some(500),
                    _ => None,
                };
                RequestRecord {
                    id: 0,
                    call,
                    intended_at: ms(sent),
                    sent_at: ms(sent),
                    answered_at: answered.map(ms),
                    status,
                    outcome,
                }
            },
        )
    }

    fn arb_event() -> impl Strategy<Value = FaultEvent> {
        (0u64..5000, 0u64..2000, 0usize..3).prop_map(|(at, window, server)| FaultEvent {
            index: 0,
            kind: "hang".into(),
            server: match server {
                0 => Target::All,
                1 => Target::One("flaky".into()),
                _ => Target::One("other".into()),
            },
            tools: Vec::new(),
            injected_at: ms(at),
            cleared_at: ms(at + window),
            one_shot: window == 0,
            probability: 1.0,
            from_injection: false,
        })
    }

    fn not_sent(id: u64, intended: u64) -> RequestRecord {
        record(id, intended, None, None, Outcome::NotSent)
    }

    fn ledger(events: &[(usize, u64, u64)]) -> Ledger {
        Ledger {
            events: events
                .iter()
                .map(|&(i, reached, changed)| {
                    (
                        i,
                        crate::chaos::record::Delivery {
                            instances_reached: reached,
                            requests_changed: changed,
                        },
                    )
                })
                .collect(),
            ..Ledger::default()
        }
    }

    fn instance(server: &str, at: u64) -> crate::chaos::record::InstanceRecord {
        crate::chaos::record::InstanceRecord {
            server: server.into(),
            pid: 1,
            transport: "stdio".into(),
            connected_at: ms(at),
            calls: 0,
        }
    }

    fn call(server: &str, request: Option<u64>) -> crate::chaos::record::CallSeen {
        crate::chaos::record::CallSeen {
            at: ms(0),
            server: server.into(),
            request,
        }
    }

    fn evaluate_with(events: &[FaultEvent], records: &[RequestRecord], ledger: &Ledger) -> Verdict {
        let calls = calls();
        Verdict::evaluate(&VerdictInput {
            slo: &slo(),
            calls: &calls,
            events,
            records,
            leaked_processes: 0,
            ledger: Some(ledger),
        })
    }

    /// A run whose faults reached nothing proves nothing, however good its numbers: a
    /// one-shot fault that found no instance, a window that changed no request although
    /// requests to its server were sent inside it.
    #[test]
    fn faults_that_reached_nothing_make_the_run_invalid() {
        let events = [
            event(0, "crash", Target::One("flaky".into()), 1000, 1000),
            event(1, "tool-error", Target::One("flaky".into()), 2000, 3000),
        ];
        let records: Vec<RequestRecord> = (0..40u64).map(|i| ok(i, i * 100, i * 100 + 5)).collect();
        let v = evaluate_with(&events, &records, &ledger(&[]));
        assert!(v.slos.iter().all(|s| s.passed), "every SLO holds...");
        assert!(!v.passed(), "...and yet the run does not pass");
        assert_eq!(v.word(), "INVALID");
        assert!(matches!(
            v.invalid[..],
            [
                Invalidity::NotReached {
                    index: 0,
                    requests: 40,
                    ..
                },
                Invalidity::ChangedNothing {
                    index: 1,
                    requests: 10,
                    instances: 0,
                    ..
                }
            ]
        ));
        assert!(render_table(&v).contains("invalid run: fault #0 (crash on flaky at 1s)"));
        // Delivered: valid.
        let v = evaluate_with(&events, &records, &ledger(&[(0, 1, 1), (1, 1, 4)]));
        assert!(v.valid() && v.passed(), "{:?}", v.invalid);

        // An instance of flaky was there all along, but no call of the load ever reached it:
        // the proxy answers without calling it.
        let mut there = ledger(&[(0, 1, 1), (1, 1, 0)]);
        there.instances.push(instance("flaky", 0));
        there
            .calls
            .push(call("flaky", Some(crate::chaos::record::PROBE_IDS + 1)));
        let v = evaluate_with(&events, &records, &there);
        assert!(
            matches!(
                v.invalid[..],
                [Invalidity::ChangedNothing {
                    index: 1,
                    instances: 1,
                    ..
                }]
            ),
            "{:?}",
            v.invalid
        );
        assert!(
            v.invalid[0]
                .to_string()
                .contains("answers without calling it")
        );
    }

    /// A crash that killed nothing makes the run invalid when the server had not started by
    /// then: its first instance connected after the crash's moment (not at it) counts as
    /// "never started" for that crash.
    #[test]
    fn a_server_first_connected_after_a_crash_had_not_started_for_it() {
        let events = [event(0, "crash", Target::One("flaky".into()), 1000, 1000)];
        let records: Vec<RequestRecord> = (0..40u64).map(|i| ok(i, i * 100, i * 100 + 5)).collect();
        for (connected, invalid) in [(500, false), (1000, false), (1001, true)] {
            let mut seen = ledger(&[(0, 0, 0)]);
            seen.instances.push(instance("flaky", connected));
            let v = evaluate_with(&events, &records, &seen);
            assert_eq!(
                matches!(v.invalid[..], [Invalidity::NotReached { index: 0, .. }]),
                invalid,
                "first connected at {connected} ms: {:?}",
                v.invalid
            );
        }
    }

    /// A proxy that used a server and then lost it (a child it never restarted) left later
    /// faults nothing to reach: that is the proxy's failure, for the SLOs to judge, not an
    /// invalid run.
    #[test]
    fn a_server_the_proxy_used_and_lost_does_not_make_the_run_invalid() {
        let events = [
            event(0, "crash", Target::One("flaky".into()), 1000, 1000),
            event(1, "crash", Target::One("flaky".into()), 2000, 2000),
            event(2, "tool-error", Target::One("flaky".into()), 2500, 3000),
        ];
        let records: Vec<RequestRecord> = (0..40u64)
            .map(|i| {
                if i < 10 {
                    ok(i, i * 100, i * 100 + 5)
                } else {
                    failed(i, i * 100, i * 100 + 5, 502)
                }
            })
            .collect();
        let mut used = ledger(&[(0, 1, 1)]);
        used.instances.push(instance("flaky", 0));
        used.calls.push(call("flaky", Some(3)));
        let v = evaluate_with(&events, &records, &used);
        assert!(v.valid(), "{:?}", v.invalid);
        assert!(!v.passed());
        assert!(!slo_named(&v, "recovery_rate").passed);
    }

    /// A window that could have missed every request by chance is not held against the run:
    /// p = 0.1 over 100 requests changes none with chance 0.9^100 = 2.7e-5, above one in a
    /// million; over 140 requests (5.5e-7) it is.
    #[test]
    fn a_window_is_judged_only_with_enough_traffic_for_its_probability() {
        assert_eq!(requests_to_show(1.0), 1);
        assert_eq!(requests_to_show(0.5), 20);
        assert_eq!(requests_to_show(0.1), 132);
        let mut e = event(0, "tool-error", Target::One("flaky".into()), 0, 100_000);
        e.probability = 0.1;
        let few: Vec<RequestRecord> = (0..100u64).map(|i| ok(i, i * 10, i * 10 + 5)).collect();
        assert!(evaluate_with(&[e.clone()], &few, &ledger(&[(0, 1, 0)])).valid());
        let many: Vec<RequestRecord> = (0..140u64).map(|i| ok(i, i * 10, i * 10 + 5)).collect();
        assert!(!evaluate_with(&[e], &many, &ledger(&[(0, 1, 0)])).valid());
        // No traffic to its server at all: nothing to say.
        let crash = event(0, "crash", Target::One("other".into()), 500, 500);
        assert!(evaluate_with(&[crash], &few, &ledger(&[])).valid());
    }

    /// Requests the harness could not send, or sent late, make the run invalid: the load was
    /// not the one the scenario asks for.
    #[test]
    fn a_harness_that_fell_behind_makes_the_run_invalid() {
        let mut records: Vec<RequestRecord> =
            (0..200u64).map(|i| ok(i, i * 10, i * 10 + 5)).collect();
        let v = evaluate_with(&[], &records, &Ledger::default());
        assert!(v.valid());
        assert_eq!(v.send_lag.map(|l| l.max), Some(Duration::ZERO));
        records.push(not_sent(200, 2000));
        let v = evaluate_with(&[], &records, &Ledger::default());
        assert_eq!(v.invalid, [Invalidity::NotSent { count: 1 }]);
        // The not-sent request is not counted as a proxy failure either.
        assert_eq!((v.totals.outside, v.totals.outside_success), (200, 200));
        records.pop();
        // Three of 200 sent 150 ms late: the p99 is 150 ms, over the 100 ms limit.
        for r in records.iter_mut().take(3) {
            r.sent_at = r.intended_at + ms(150);
        }
        let v = evaluate_with(&[], &records, &Ledger::default());
        assert!(
            matches!(v.invalid[..], [Invalidity::SendLag { p99, .. }] if p99 >= ms(149)),
            "{:?}",
            v.invalid
        );
        // A p99 of exactly the limit is within it.
        for r in records.iter_mut().take(3) {
            r.sent_at = r.intended_at + SEND_LAG_P99_LIMIT;
        }
        let v = evaluate_with(&[], &records, &Ledger::default());
        assert_eq!(v.send_lag.map(|l| l.p99), Some(SEND_LAG_P99_LIMIT));
        assert!(v.valid(), "{:?}", v.invalid);
        // Two late of 200 stay under the p99.
        records[2].sent_at = records[2].intended_at;
        assert!(evaluate_with(&[], &records, &Ledger::default()).valid());
    }

    /// Whether `t` lies in `[from, to]`: written out here rather than taken from the verdict, so
    /// that the properties below do not check the verdict against itself.
    fn within_interval(t: Duration, from: Duration, to: Duration) -> bool {
        from <= t && t <= to
    }

    proptest! {
        /// The definitions of `SCENARIOS.md`, checked as properties of every verdict rather
        /// than recomputed with the verdict's own helpers.
        #[test]
        fn verdict_invariants(
            mut records in prop::collection::vec(arb_record(), 0..60),
            mut events in prop::collection::vec(arb_event(), 0..5),
            within in 1u64..3000,
        ) {
            for (i, r) in records.iter_mut().enumerate() {
                r.id = i as u64;
            }
            for (i, e) in events.iter_mut().enumerate() {
                e.index = i;
            }
            let mut slo = slo();
            slo.recovery_within = Some(ms(within));
            let calls = calls();
            let v = Verdict::evaluate(&VerdictInput { slo: &slo, calls: &calls, events: &events, records: &records, leaked_processes: 0, ledger: None });

            prop_assert!((0.0..=1.0).contains(&v.recovery_rate));
            prop_assert_eq!(v.events.len(), events.len());
            prop_assert_eq!(v.totals.sent, records.len() as u64);
            prop_assert_eq!(
                v.totals.success + v.totals.http_error_count() + v.totals.hung + v.totals.connect_errors,
                v.totals.sent
            );
            let server_of = |r: &RequestRecord| calls[r.call].server.clone();
            let on = |target: &Target, server: &str| match target {
                Target::All => true,
                Target::One(s) => s == server,
            };
            let shared = |a: &Target, b: &Target| match (a, b) {
                (Target::One(x), Target::One(y)) => x == y,
                _ => true,
            };
            for e in &v.events {
                let ev = &events[e.index];
                let own_clear = ev.cleared_at.max(ev.injected_at);
                // The clock starts at the last clear of the events judged together.
                let last_clear = e.judged_with.iter()
                    .map(|&j| events[j].cleared_at.max(events[j].injected_at))
                    .fold(own_clear, Duration::max);
                prop_assert_eq!(e.clock_from, last_clear);
                // Judged together is symmetric and closed.
                for &j in &e.judged_with {
                    let other = &v.events[j];
                    prop_assert!(other.judged_with.contains(&e.index));
                    for &k in &e.judged_with {
                        prop_assert!(k == j || other.judged_with.contains(&k));
                    }
                }
                // Events that are not judged together and share a server do not overlap.
                for other in &v.events {
                    if other.index != e.index
                        && !e.judged_with.contains(&other.index)
                        && shared(&ev.server, &events[other.index].server)
                    {
                        prop_assert!(
                            other.injected_at > e.disturbed_until || e.injected_at > other.disturbed_until,
                            "{:?} and {:?} overlap", e, other
                        );
                    }
                }
                let relevant = |o: &RequestRecord| {
                    o.outcome == Outcome::Success
                        && o.sent_at >= e.clock_from
                        && on(&ev.server, &server_of(o))
                };
                match (e.recovery_time, e.recovered_by) {
                    (Some(rt), Some(id)) => {
                        let r = &records[id as usize];
                        // The recovering request succeeded, was sent at or after the clock's
                        // start, and no earlier-sent success after it exists for this fault.
                        prop_assert!(relevant(r));
                        prop_assert_eq!(r.answered_at, Some(e.clock_from + rt));
                        prop_assert!(!records.iter().any(|o| relevant(o) && o.sent_at < r.sent_at));
                        prop_assert_eq!(e.recovered, rt <= ms(within));
                        prop_assert_eq!(e.disturbed_until, e.clock_from + rt.min(ms(within)));
                    }
                    (None, None) => {
                        prop_assert!(!e.recovered);
                        prop_assert!(!records.iter().any(relevant));
                        prop_assert_eq!(e.disturbed_until, e.clock_from + ms(within));
                    }
                    other => prop_assert!(false, "recovery time and request disagree: {:?}", other),
                }
            }
            // Outside: sent outside every reported interval of an event on its own server.
            let outside: Vec<&RequestRecord> = records
                .iter()
                .filter(|r| {
                    !v.events.iter().any(|e| {
                        on(&events[e.index].server, &server_of(r))
                            && within_interval(r.sent_at, e.injected_at, e.disturbed_until)
                    })
                })
                .collect();
            prop_assert_eq!(v.totals.outside, outside.len() as u64);
            prop_assert_eq!(
                v.totals.outside_success,
                outside.iter().filter(|r| r.outcome == Outcome::Success).count() as u64
            );
            prop_assert_eq!(v.success_rate.is_none(), v.totals.outside == 0);
            // Per server: the parts add up to the whole.
            prop_assert_eq!(v.servers.iter().map(|s| s.totals.sent).sum::<u64>(), v.totals.sent);
            prop_assert_eq!(v.servers.iter().map(|s| s.totals.outside).sum::<u64>(), v.totals.outside);
            prop_assert_eq!(
                v.servers.iter().map(|s| s.totals.outside_success).sum::<u64>(),
                v.totals.outside_success
            );
            let recovered = v.events.iter().filter(|e| e.recovered).count();
            if !events.is_empty() {
                prop_assert!((v.recovery_rate - recovered as f64 / events.len() as f64).abs() < 1e-12);
            }
            prop_assert_eq!(v.passed(), v.slos.iter().all(|s| s.passed));
        }
    }
}
