//! Chaos scenario files: what a run starts, how it loads the proxy, which faults it injects when,
//! and which SLOs it must meet.
//!
//! The parser is strict on purpose. A scenario that silently ignored a misspelt key (`probabilty`)
//! or a window that runs past the end of the run would pass CI while testing nothing, so every
//! such mistake is an error that names the file, the line and the key, e.g.
//! `fault-scenarios/x.yaml:14: faults[0].probability: must be between 0 and 1, found 1.5`.
//!
//! # Why a hand-written walker over `saphyr`'s marked tree
//! `yaml_serde` (the maintained `serde_yaml`) was the first candidate: its errors carry a
//! location, and `#[serde(deny_unknown_fields)]` would catch unknown keys. But only serde's own
//! errors get that location. The semantic checks (a fault on an unknown server, a window past
//! `duration`, a transport that cannot have a fault kind) run after deserialising, when the
//! positions are gone, and `yaml_serde::Value` keeps none. Recovering them would mean parsing the
//! file a second time with another parser just to look up lines, and two parsers can disagree
//! (libyaml is YAML 1.1, most others 1.2). `saphyr` (the successor of `yaml-rust2`, maintained,
//! pure Rust, five small dependencies with default features off) loads the file once into
//! `MarkedYaml`, a tree in which every key and value carries its span. Walking that tree by hand
//! costs a few helper functions but gives one place where every error, syntactic or semantic, is
//! built with its file, line and dotted key path. `saphyr` also rejects duplicate keys by default
//! and bounds alias expansion. `marked-yaml` offers a similar tree but is built on `yaml-rust2`,
//! which its own authors now point away from.
//!
//! Durations are humantime strings (`500ms`, `10s`, `1m`) or plain numbers meaning seconds; the
//! `humantime` crate parses the strings (what `humantime-serde` uses underneath, without serde).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::time::Duration;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};
use serde_json::{Map as JsonMap, Number, Value as Json};

pub use crate::fake::wire::GarbageForm;

/// The client deadline of a request when `load.deadline` is not given.
pub const DEFAULT_CLIENT_DEADLINE: Duration = Duration::from_secs(15);

/// The seed when the file gives none (the command line may still override it).
pub const DEFAULT_SEED: u64 = 0;

/// The kind labels as written in files, in the order of `SCENARIOS.md`.
pub const FAULT_KINDS: &[&str] = &[
    "crash",
    "hang",
    "latency",
    "http-error",
    "jsonrpc-error",
    "tool-error",
    "session-loss",
    "reset",
    "garbage",
    "slow-start",
    "refuse",
];

/// One chaos scenario, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    /// Free text for people; empty when the file has none.
    pub description: String,
    /// Seeds the generator that draws every per-request fault decision, so a run can be repeated.
    pub seed: u64,
    /// Length of the load phase; every fault event happens inside it.
    pub duration: Duration,
    /// The fake MCP servers, at least one, with distinct names.
    pub servers: Vec<ServerSpec>,
    pub proxy: ProxySpec,
    pub load: LoadSpec,
    /// Fault events in file order, with `every`/`count` repetitions already expanded; each one's
    /// `index` is its position here.
    pub faults: Vec<FaultSpec>,
    pub slo: SloSpec,
}

impl Scenario {
    /// Whether a fault kind can happen on a server of this transport at all.
    ///
    /// Stdio has no HTTP between proxy and server (so no status to answer and no connection to
    /// reset) and no session to forget; everything else the fake can do on any transport.
    /// Over legacy SSE an HTTP error answers the POST, a reset cuts the session's event stream
    /// and session loss ends it (see `fake::sse`).
    pub fn transport_supports(kind: &FaultKind, transport: Transport) -> bool {
        match kind {
            FaultKind::SessionLoss | FaultKind::HttpError { .. } | FaultKind::Reset => {
                transport != Transport::Stdio
            }
            FaultKind::Crash
            | FaultKind::Hang
            | FaultKind::Latency { .. }
            | FaultKind::JsonRpcError { .. }
            | FaultKind::ToolError
            | FaultKind::Garbage { .. }
            | FaultKind::SlowStart { .. }
            | FaultKind::Refuse => true,
        }
    }

    /// The server of that name.
    pub fn server(&self, name: &str) -> Option<&ServerSpec> {
        self.servers.iter().find(|s| s.name == name)
    }
}

/// One fake MCP server the harness starts (or lets the proxy start, for stdio).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSpec {
    /// Also its mount name in the proxy: `POST /{name}/{tool}`.
    pub name: String,
    pub transport: Transport,
    /// Pool bounds for this server in the proxy config; `None` leaves the proxy's setting.
    pub pool: Option<PoolSpec>,
    /// Line of the entry in the file, for messages the runtime may add later.
    pub line: usize,
}

/// How the proxy reaches a fake server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Stdio,
    StreamableHttp,
    /// The legacy HTTP+SSE transport (protocol 2024-11-05).
    Sse,
}

impl Transport {
    /// The spelling in scenario files.
    pub fn label(self) -> &'static str {
        match self {
            Transport::Stdio => "stdio",
            Transport::StreamableHttp => "streamable-http",
            Transport::Sse => "sse",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Pool size bounds, as the proxy config takes them (each from 1 to 64, `min <= max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolSpec {
    pub min: Option<usize>,
    pub max: Option<usize>,
}

/// Settings merged into the proxy's config for every server, plus the proxy's environment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProxySpec {
    /// The proxy's per-call deadline.
    pub timeout: Option<Duration>,
    pub pool: Option<PoolSpec>,
    /// Bare tool names the proxy may send again after a failure.
    pub retryable_tools: Vec<String>,
    /// Extra environment of the proxy process (e.g. `MCPO_ERROR_RECOVERY_ENABLED`).
    pub env: BTreeMap<String, String>,
}

/// The open-loop load: requests leave at `rate` per second whatever the answers do.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadSpec {
    /// Requests per second, > 0.
    pub rate: f64,
    /// What to call, at least one; each request picks one by weight.
    pub calls: Vec<CallSpec>,
    /// Client-side deadline of each request; a request without an answer by then is hung.
    pub deadline: Duration,
    /// The harness's cap on requests in flight: a request due while this many are unanswered
    /// is `not-sent` (the harness's limit, never the proxy's fault) and makes the run invalid.
    pub max_in_flight: usize,
}

/// `load.max_in_flight` when the file does not say: far above what the shipped scenarios
/// need (rate x deadline), and within the file descriptors of a default Linux session once
/// the soft limit is raised to the hard one.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 2000;

/// One kind of request the load sends: `POST /{server}/{tool}` with `args` as the body.
#[derive(Debug, Clone, PartialEq)]
pub struct CallSpec {
    pub server: String,
    pub tool: String,
    /// The JSON body (tool arguments).
    pub args: JsonMap<String, Json>,
    /// Relative weight, >= 1.
    pub weight: u32,
    pub line: usize,
}

impl CallSpec {
    /// `server/tool`, as written in the file and as the proxy routes it.
    pub fn route(&self) -> String {
        format!("{}/{}", self.server, self.tool)
    }
}

/// Which servers a fault applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    All,
    One(String),
}

impl Target {
    pub fn matches(&self, server: &str) -> bool {
        match self {
            Target::All => true,
            Target::One(name) => name == server,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::All => f.write_str("all"),
            Target::One(name) => f.write_str(name),
        }
    }
}

/// What a fault does, with the parameters of its kind.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// One-shot: the fake exits at once.
    Crash,
    /// One-shot: the fake forgets every session.
    SessionLoss,
    /// Windowed, per request: no answer, connection kept open.
    Hang,
    /// Windowed, per request: each answer is delayed by a uniform draw from `min..=max`
    /// (`min == max` for a fixed delay).
    Latency { min: Duration, max: Duration },
    /// Windowed, per request: answer HTTP `status`, with `Retry-After: retry_after` if given.
    HttpError {
        status: u16,
        retry_after: Option<u64>,
    },
    /// Windowed, per request: answer a JSON-RPC error.
    JsonRpcError { code: i32, message: Option<String> },
    /// Windowed, per request: answer a tool result with `isError: true`.
    ToolError,
    /// Windowed, per request: close the connection in the middle of the answer.
    Reset,
    /// Windowed, per request: send garbage in place of the answer, in one of `forms` (each
    /// request its own, drawn from the seed; every form when empty). Every form works on
    /// every transport (see `fake::garbage`).
    Garbage { forms: Vec<GarbageForm> },
    /// Windowed: `initialize` waits `delay` (also after a restart).
    SlowStart { delay: Duration },
    /// Windowed: the fake exits during start-up.
    Refuse,
}

impl FaultKind {
    /// The spelling in scenario files and reports.
    pub fn label(&self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::SessionLoss => "session-loss",
            FaultKind::Hang => "hang",
            FaultKind::Latency { .. } => "latency",
            FaultKind::HttpError { .. } => "http-error",
            FaultKind::JsonRpcError { .. } => "jsonrpc-error",
            FaultKind::ToolError => "tool-error",
            FaultKind::Reset => "reset",
            FaultKind::Garbage { .. } => "garbage",
            FaultKind::SlowStart { .. } => "slow-start",
            FaultKind::Refuse => "refuse",
        }
    }

    /// One-shot kinds happen once at `at` and have no window.
    pub fn is_one_shot(&self) -> bool {
        is_one_shot_label(self.label())
    }

    /// Per-request kinds are drawn for each request with `probability` and may be limited to
    /// some tools; the others act on the whole server.
    pub fn is_per_request(&self) -> bool {
        is_per_request_label(self.label())
    }
}

fn is_one_shot_label(label: &str) -> bool {
    matches!(label, "crash" | "session-loss")
}

fn is_per_request_label(label: &str) -> bool {
    matches!(
        label,
        "hang" | "latency" | "http-error" | "jsonrpc-error" | "tool-error" | "reset" | "garbage"
    )
}

/// Keys that only some kinds take, by kind.
fn kind_parameters(label: &str) -> &'static [&'static str] {
    match label {
        "hang" => &["scope"],
        "latency" => &["ms", "min", "max", "scope"],
        "http-error" => &["status", "retry_after"],
        "jsonrpc-error" => &["code", "message"],
        "slow-start" => &["delay"],
        "garbage" => &["form"],
        _ => &[],
    }
}

/// One fault event, after `every`/`count` expansion.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSpec {
    /// Position in [`Scenario::faults`]; reports and decisions name events by it.
    pub index: usize,
    /// Position of the entry in the file's `faults` list it came from (repetitions share it).
    pub entry: usize,
    /// Injection time, from the start of the load.
    pub at: Duration,
    /// `for`: how long a windowed fault lasts; `None` for one-shot kinds.
    pub window: Option<Duration>,
    pub server: Target,
    pub kind: FaultKind,
    /// Chance that one request is hit, for per-request kinds; 1 otherwise.
    pub probability: f64,
    /// Bare tool names the fault is limited to; empty means every tool.
    pub tools: Vec<String>,
    /// `scope: instance` (hang, latency): only sessions and processes alive at injection are
    /// affected, and recovery is timed from injection: the proxy must notice and replace them.
    pub instance_scope: bool,
    /// Line of the entry in the file.
    pub line: usize,
}

impl FaultSpec {
    /// The moment the fault is over as planned: `at` for one-shot kinds (the damage is done at
    /// injection and recovery starts at once), `at + for` for windowed kinds.
    pub fn clears_at(&self) -> Duration {
        self.at + self.window.unwrap_or(Duration::ZERO)
    }

    /// Whether a call of `server/tool` can be hit by this fault.
    pub fn affects(&self, server: &str, tool: &str) -> bool {
        self.server.matches(server)
            && (self.tools.is_empty() || self.tools.iter().any(|t| t == tool))
    }
}

/// The objectives a run is judged by.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SloSpec {
    /// Minimum share of fault events recovered within `recovery_within`.
    pub recovery_rate: Option<f64>,
    /// Given together with `recovery_rate`.
    pub recovery_within: Option<Duration>,
    /// Minimum share of successes among requests sent outside every disturbed interval.
    pub success_rate: Option<f64>,
    /// Maximum number of hung requests; 0 unless the file says otherwise, because a request that
    /// never gets an answer is a bug unless the scenario expects it.
    pub hung_requests: u64,
    /// Maximum number of fake servers alive after shutdown; 0 unless the file says otherwise.
    pub leaked_processes: u64,
    /// Maximum p99 latency over requests outside every disturbed interval.
    pub p99_latency: Option<Duration>,
    /// Maximum number of 2xx answers without the right answer; 0 unless the file says
    /// otherwise, and never excluded by any window.
    pub wrong_answers: u64,
    /// Minimum share of successes among the requests to a faulted server sent inside its
    /// windows: what a proxy does while the fault is on, which the success rate leaves out.
    pub window_success_rate: Option<f64>,
    /// Maximum `tools/call` requests the fakes of a server received per client request to it.
    pub amplification: Option<Amplification>,
}

/// The bounds of the amplification SLO. `amplification: 1.5` bounds both; the mapping form
/// `{run: 1.2, windows: 0.5}` bounds each on its own, and a `windows` bound under 1 asks the
/// proxy to shed load while a server fails (pass fewer calls on than it gets).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Amplification {
    /// Over the whole run (at least 1: every request is one call when all is well).
    pub run: Option<f64>,
    /// Over the requests sent inside the server's fault windows.
    pub windows: Option<f64>,
}

/// Why a scenario file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{file}: cannot read the scenario file: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// The text is not YAML, or not one YAML mapping.
    #[error("{file}:{line}: {message}")]
    Syntax {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// The YAML is fine but a key or value is not.
    #[error("{file}:{line}: {key}: {message}")]
    Invalid {
        file: String,
        line: usize,
        /// Dotted path of the key, e.g. `faults[0].probability`.
        key: String,
        message: String,
    },
}

impl ScenarioError {
    pub fn file(&self) -> &str {
        match self {
            ScenarioError::Read { file, .. }
            | ScenarioError::Syntax { file, .. }
            | ScenarioError::Invalid { file, .. } => file,
        }
    }

    /// 1-based line, when the error has one.
    pub fn line(&self) -> Option<usize> {
        match self {
            ScenarioError::Read { .. } => None,
            ScenarioError::Syntax { line, .. } | ScenarioError::Invalid { line, .. } => Some(*line),
        }
    }

    /// The key path, when the error is about one key.
    pub fn key(&self) -> Option<&str> {
        match self {
            ScenarioError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// Reads and validates a scenario file.
pub fn parse_scenario_file(path: &Path) -> std::result::Result<Scenario, ScenarioError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        file: file.clone(),
        source,
    })?;
    parse_scenario_str(&text, &file)
}

/// Validates scenario text; `file` is only used in error messages.
pub fn parse_scenario_str(text: &str, file: &str) -> std::result::Result<Scenario, ScenarioError> {
    let docs = MarkedYaml::load_from_str(text).map_err(|e| ScenarioError::Syntax {
        file: file.to_string(),
        line: e.marker().line(),
        column: e.marker().col() + 1,
        message: format!("not valid YAML: {}", e.info()),
    })?;
    let p = Parser { file };
    let root = match docs.as_slice() {
        [] => return Err(p.syntax(
            1,
            "the file is empty; a scenario needs at least name, duration, servers, load and slo",
        )),
        [root] => root,
        [_, second, ..] => {
            return Err(p.syntax(
                second.span.start.line(),
                format!(
                    "the file holds {} YAML documents; a scenario is exactly one",
                    docs.len()
                ),
            ));
        }
    };
    if !matches!(root.data, YamlData::Mapping(_)) {
        return Err(p.syntax(
            line_of(root),
            format!(
                "a scenario is a mapping of keys (name, duration, servers, ...), found {}",
                kind_of(root)
            ),
        ));
    }
    p.scenario(root)
}

/// The key path and line of one value in the file.
struct Field<'a, 'i> {
    path: String,
    line: usize,
    node: &'a MarkedYaml<'i>,
}

/// The entries of one mapping, already checked against the keys allowed there.
struct Fields<'a, 'i> {
    path: String,
    /// Line of the key or list item that holds the mapping: missing keys are reported there.
    line: usize,
    entries: Vec<Field<'a, 'i>>,
}

impl<'a, 'i> Fields<'a, 'i> {
    fn key_path(&self, key: &str) -> String {
        join_key(&self.path, key)
    }

    fn get(&self, key: &str) -> Option<&Field<'a, 'i>> {
        let path = self.key_path(key);
        self.entries.iter().find(|f| f.path == path)
    }

    fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
}

fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn line_of(node: &MarkedYaml<'_>) -> usize {
    node.span.start.line().max(1)
}

/// What a node is, for messages ("expected a number, found a list").
fn kind_of(node: &MarkedYaml<'_>) -> String {
    match &node.data {
        YamlData::Value(Scalar::Null) => "nothing (null)".to_string(),
        YamlData::Value(Scalar::Boolean(b)) => format!("`{b}`"),
        YamlData::Value(Scalar::Integer(i)) => format!("`{i}`"),
        YamlData::Value(Scalar::FloatingPoint(f)) => format!("`{f}`"),
        YamlData::Value(Scalar::String(s)) => format!("`{s}`"),
        YamlData::Sequence(_) => "a list".to_string(),
        YamlData::Mapping(_) => "a mapping".to_string(),
        YamlData::Tagged(tag, _) => format!("a value tagged `{tag}`"),
        YamlData::Alias(_) | YamlData::BadValue | YamlData::Representation(..) => {
            "an unreadable value".to_string()
        }
    }
}

/// Levenshtein distance, for "did you mean" hints on misspelt keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn suggestion(key: &str, allowed: &[&str]) -> String {
    let best = allowed
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, k)) if d <= 2 => format!(" (did you mean `{k}`?)"),
        _ => String::new(),
    }
}

fn fmt_secs(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// How a duration value must be bounded.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bound {
    /// `at` may be zero.
    NonNegative,
    Positive,
}

struct Parser<'f> {
    file: &'f str,
}

type Result<T> = std::result::Result<T, ScenarioError>;

impl Parser<'_> {
    fn syntax(&self, line: usize, message: impl Into<String>) -> ScenarioError {
        ScenarioError::Syntax {
            file: self.file.to_string(),
            line,
            column: 1,
            message: message.into(),
        }
    }

    fn invalid(&self, line: usize, key: &str, message: impl Into<String>) -> ScenarioError {
        ScenarioError::Invalid {
            file: self.file.to_string(),
            line,
            key: key.to_string(),
            message: message.into(),
        }
    }

    fn field_error(&self, f: &Field<'_, '_>, message: impl Into<String>) -> ScenarioError {
        self.invalid(f.line, &f.path, message)
    }

    /// Opens a mapping and rejects any key outside `allowed`; unknown keys are checked first
    /// because a misspelt key is the likeliest cause of any later "missing key" error.
    fn fields<'a, 'i>(&self, f: &Field<'a, 'i>, allowed: &[&str]) -> Result<Fields<'a, 'i>> {
        let YamlData::Mapping(map) = &f.node.data else {
            return Err(self.field_error(
                f,
                format!("expected a mapping of keys, found {}", kind_of(f.node)),
            ));
        };
        let mut entries = Vec::with_capacity(map.len());
        for (k, v) in map {
            let line = line_of(k);
            let YamlData::Value(Scalar::String(key)) = &k.data else {
                return Err(self.invalid(
                    line,
                    &f.path,
                    format!("keys must be text, found {}", kind_of(k)),
                ));
            };
            let path = join_key(&f.path, key);
            if !allowed.contains(&key.as_ref()) {
                return Err(self.invalid(
                    line,
                    &path,
                    format!(
                        "unknown key{}; allowed here: {}",
                        suggestion(key, allowed),
                        allowed.join(", ")
                    ),
                ));
            }
            entries.push(Field {
                path,
                line,
                node: v,
            });
        }
        Ok(Fields {
            path: f.path.clone(),
            line: f.line,
            entries,
        })
    }

    fn require<'m, 'a, 'i>(&self, m: &'m Fields<'a, 'i>, key: &str) -> Result<&'m Field<'a, 'i>> {
        m.get(key)
            .ok_or_else(|| self.invalid(m.line, &m.key_path(key), "missing required key"))
    }

    fn items<'a, 'i>(&self, f: &Field<'a, 'i>) -> Result<Vec<Field<'a, 'i>>> {
        let YamlData::Sequence(seq) = &f.node.data else {
            return Err(self.field_error(f, format!("expected a list, found {}", kind_of(f.node))));
        };
        Ok(seq
            .iter()
            .enumerate()
            .map(|(i, node)| Field {
                path: format!("{}[{i}]", f.path),
                line: line_of(node),
                node,
            })
            .collect())
    }

    fn string(&self, f: &Field<'_, '_>) -> Result<String> {
        match &f.node.data {
            YamlData::Value(Scalar::String(s)) => Ok(s.to_string()),
            _ => Err(self.field_error(
                f,
                format!(
                    "expected text, found {} (quote it to make it text)",
                    kind_of(f.node)
                ),
            )),
        }
    }

    fn nonempty_string(&self, f: &Field<'_, '_>) -> Result<String> {
        let s = self.string(f)?;
        if s.trim().is_empty() {
            return Err(self.field_error(f, "must not be empty"));
        }
        Ok(s)
    }

    fn number(&self, f: &Field<'_, '_>) -> Result<f64> {
        let n = match &f.node.data {
            YamlData::Value(Scalar::Integer(i)) => *i as f64,
            YamlData::Value(Scalar::FloatingPoint(x)) => x.into_inner(),
            _ => {
                return Err(
                    self.field_error(f, format!("expected a number, found {}", kind_of(f.node)))
                );
            }
        };
        if !n.is_finite() {
            return Err(self.field_error(f, format!("expected a finite number, found {n}")));
        }
        Ok(n)
    }

    fn integer(&self, f: &Field<'_, '_>) -> Result<i64> {
        match &f.node.data {
            YamlData::Value(Scalar::Integer(i)) => Ok(*i),
            _ => Err(self.field_error(
                f,
                format!("expected a whole number, found {}", kind_of(f.node)),
            )),
        }
    }

    fn unsigned(&self, f: &Field<'_, '_>) -> Result<u64> {
        let i = self.integer(f)?;
        u64::try_from(i)
            .map_err(|_| self.field_error(f, format!("must not be negative, found {i}")))
    }

    /// A share from 0 to 1, as probabilities and SLO rates are written.
    fn share(&self, f: &Field<'_, '_>) -> Result<f64> {
        let x = self.number(f)?;
        if !(0.0..=1.0).contains(&x) {
            return Err(self.field_error(f, format!("must be between 0 and 1, found {x}")));
        }
        Ok(x)
    }

    /// A duration: a humantime string (`500ms`, `10s`, `1m 30s`) or a plain number of seconds.
    fn duration(&self, f: &Field<'_, '_>, bound: Bound) -> Result<Duration> {
        let d = match &f.node.data {
            YamlData::Value(Scalar::Integer(i)) => {
                let secs = u64::try_from(*i)
                    .map_err(|_| self.field_error(f, format!("must not be negative, found {i}")))?;
                Duration::from_secs(secs)
            }
            YamlData::Value(Scalar::FloatingPoint(x)) => {
                let x = x.into_inner();
                if !x.is_finite() || x < 0.0 {
                    return Err(self.field_error(
                        f,
                        format!("must be a non-negative number of seconds, found {x}"),
                    ));
                }
                Duration::try_from_secs_f64(x)
                    .map_err(|e| self.field_error(f, format!("cannot be {x} seconds: {e}")))?
            }
            YamlData::Value(Scalar::String(s)) => self.duration_text(f, s)?,
            _ => {
                return Err(self.field_error(
                    f,
                    format!(
                        "expected a duration such as `10s` or `500ms`, found {}",
                        kind_of(f.node)
                    ),
                ));
            }
        };
        if bound == Bound::Positive && d.is_zero() {
            return Err(self.field_error(f, "must be longer than zero"));
        }
        Ok(d)
    }

    fn duration_text(&self, f: &Field<'_, '_>, s: &str) -> Result<Duration> {
        let s = s.trim();
        if s.starts_with('-') {
            return Err(self.field_error(f, format!("`{s}` is negative; durations cannot be")));
        }
        humantime::parse_duration(s).map_err(|e| {
            self.field_error(
                f,
                format!("`{s}` is not a duration ({e}); write e.g. `500ms`, `10s`, `1m` or a number of seconds"),
            )
        })
    }

    fn scenario(&self, root: &MarkedYaml<'_>) -> Result<Scenario> {
        let root = Field {
            path: String::new(),
            line: line_of(root),
            node: root,
        };
        let m = self.fields(
            &root,
            &[
                "name",
                "description",
                "seed",
                "duration",
                "servers",
                "proxy",
                "load",
                "faults",
                "slo",
            ],
        )?;
        // Required keys are looked up before anything is parsed, so that a file missing several
        // of them is told about the first in reading order rather than about a later detail.
        for key in ["name", "duration", "servers", "load", "slo"] {
            self.require(&m, key)?;
        }
        let name = self.nonempty_string(self.require(&m, "name")?)?;
        let description = m
            .get("description")
            .map(|f| self.string(f))
            .transpose()?
            .unwrap_or_default();
        let seed = m
            .get("seed")
            .map(|f| self.unsigned(f))
            .transpose()?
            .unwrap_or(DEFAULT_SEED);
        let duration_field = self.require(&m, "duration")?;
        let duration = self.duration(duration_field, Bound::Positive)?;
        let servers = self.servers(self.require(&m, "servers")?)?;
        let proxy = match m.get("proxy") {
            Some(f) => self.proxy(f)?,
            None => ProxySpec::default(),
        };
        let load = self.load(self.require(&m, "load")?, &servers)?;
        let faults = match m.get("faults") {
            Some(f) => self.faults(f, duration, &servers, &load.calls)?,
            None => Vec::new(),
        };
        let slo = self.slo(self.require(&m, "slo")?)?;
        // A fault must leave the proxy the time the SLO gives it to recover, or the event fails
        // for a reason of the scenario's own making.
        if let Some(within) = slo.recovery_within {
            for fault in &faults {
                let clock = if fault.instance_scope {
                    fault.at
                } else {
                    fault.clears_at()
                };
                if clock + within > duration {
                    return Err(self.invalid(
                        fault.line,
                        &format!("faults[{}]", fault.entry),
                        format!(
                            "{} at {} leaves {} of run after it, less than slo.recovery_within ({}): no recovery could be seen in time; end it earlier or run longer",
                            fault.kind.label(),
                            fmt_secs(clock),
                            fmt_secs(duration.saturating_sub(clock)),
                            fmt_secs(within)
                        ),
                    ));
                }
            }
        }
        Ok(Scenario {
            name,
            description,
            seed,
            duration,
            servers,
            proxy,
            load,
            faults,
            slo,
        })
    }

    fn servers(&self, f: &Field<'_, '_>) -> Result<Vec<ServerSpec>> {
        let items = self.items(f)?;
        if items.is_empty() {
            return Err(self.field_error(f, "must name at least one server"));
        }
        let mut servers: Vec<ServerSpec> = Vec::with_capacity(items.len());
        for item in &items {
            let m = self.fields(item, &["name", "transport", "pool"])?;
            let name_field = self.require(&m, "name")?;
            let name = self.server_name(name_field)?;
            if let Some(first) = servers.iter().find(|s| s.name == name) {
                return Err(self.field_error(
                    name_field,
                    format!(
                        "duplicate server name `{name}` (first used on line {})",
                        first.line
                    ),
                ));
            }
            let transport_field = self.require(&m, "transport")?;
            let transport = match self.string(transport_field)?.as_str() {
                "stdio" => Transport::Stdio,
                "streamable-http" => Transport::StreamableHttp,
                "sse" => Transport::Sse,
                other => {
                    return Err(self.field_error(
                        transport_field,
                        format!("unknown transport `{other}`; use stdio, streamable-http or sse"),
                    ));
                }
            };
            let pool = m.get("pool").map(|p| self.pool(p)).transpose()?;
            servers.push(ServerSpec {
                name,
                transport,
                pool,
                line: item.line,
            });
        }
        Ok(servers)
    }

    fn server_name(&self, f: &Field<'_, '_>) -> Result<String> {
        let name = self.nonempty_string(f)?;
        if name == "all" {
            return Err(self.field_error(
                f,
                "`all` is reserved: a fault's `server: all` means every server",
            ));
        }
        if crate::config::RESERVED_NAMES.contains(&name.as_str()) {
            return Err(self.field_error(
                f,
                format!("`{name}` is a route of the proxy itself and cannot be a server name"),
            ));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(self.field_error(
                f,
                format!("`{name}` is not a usable server name: use letters, digits, `-`, `_` and `.` only"),
            ));
        }
        Ok(name)
    }

    fn pool(&self, f: &Field<'_, '_>) -> Result<PoolSpec> {
        let m = self.fields(f, &["min", "max"])?;
        let size = |key: &str| -> Result<Option<usize>> {
            let Some(field) = m.get(key) else {
                return Ok(None);
            };
            let n = self.integer(field)?;
            if !(1..=64).contains(&n) {
                return Err(self.field_error(
                    field,
                    format!("must be a whole number from 1 to 64, found {n}"),
                ));
            }
            Ok(usize::try_from(n).ok())
        };
        let pool = PoolSpec {
            min: size("min")?,
            max: size("max")?,
        };
        if let (Some(min), Some(max)) = (pool.min, pool.max)
            && min > max
        {
            return Err(self.field_error(f, format!("min ({min}) is larger than max ({max})")));
        }
        Ok(pool)
    }

    fn proxy(&self, f: &Field<'_, '_>) -> Result<ProxySpec> {
        let m = self.fields(f, &["timeout", "pool", "retryable_tools", "env"])?;
        let timeout = m
            .get("timeout")
            .map(|t| self.duration(t, Bound::Positive))
            .transpose()?;
        let pool = m.get("pool").map(|p| self.pool(p)).transpose()?;
        let mut retryable_tools = Vec::new();
        if let Some(list) = m.get("retryable_tools") {
            for item in self.items(list)? {
                retryable_tools.push(self.bare_tool(&item)?);
            }
        }
        let mut env = BTreeMap::new();
        if let Some(env_field) = m.get("env") {
            let YamlData::Mapping(map) = &env_field.node.data else {
                return Err(self.field_error(
                    env_field,
                    format!(
                        "expected a mapping of variables, found {}",
                        kind_of(env_field.node)
                    ),
                ));
            };
            for (k, v) in map {
                let line = line_of(k);
                let YamlData::Value(Scalar::String(key)) = &k.data else {
                    return Err(self.invalid(
                        line,
                        &env_field.path,
                        format!("variable names must be text, found {}", kind_of(k)),
                    ));
                };
                let path = join_key(&env_field.path, key);
                if key.is_empty() || key.contains(['=', '\0']) {
                    return Err(self.invalid(line, &path, "not a valid environment variable name"));
                }
                // Numbers and booleans are taken as their text, since that is what the process
                // sees anyway; lists and mappings have no obvious text form.
                let value = match &v.data {
                    YamlData::Value(Scalar::String(s)) => s.to_string(),
                    YamlData::Value(Scalar::Integer(i)) => i.to_string(),
                    YamlData::Value(Scalar::FloatingPoint(x)) => x.to_string(),
                    YamlData::Value(Scalar::Boolean(b)) => b.to_string(),
                    _ => {
                        return Err(self.invalid(
                            line,
                            &path,
                            format!("expected text, found {}", kind_of(v)),
                        ));
                    }
                };
                if value.contains('\0') {
                    return Err(self.invalid(line, &path, "values cannot contain a NUL character"));
                }
                env.insert(key.to_string(), value);
            }
        }
        Ok(ProxySpec {
            timeout,
            pool,
            retryable_tools,
            env,
        })
    }

    /// A tool name without its server, as `tools:` filters and `retryable_tools` take them.
    fn bare_tool(&self, f: &Field<'_, '_>) -> Result<String> {
        let tool = self.nonempty_string(f)?;
        if tool.contains('/') {
            return Err(self.field_error(
                f,
                format!("`{tool}`: name the tool alone, without its server"),
            ));
        }
        Ok(tool)
    }

    fn load(&self, f: &Field<'_, '_>, servers: &[ServerSpec]) -> Result<LoadSpec> {
        let m = self.fields(f, &["rate", "calls", "deadline", "max_in_flight"])?;
        let rate_field = self.require(&m, "rate")?;
        let calls_field = self.require(&m, "calls")?;
        let rate = self.number(rate_field)?;
        if rate <= 0.0 {
            return Err(self.field_error(
                rate_field,
                format!("must be more than 0 requests per second, found {rate}"),
            ));
        }
        let items = self.items(calls_field)?;
        if items.is_empty() {
            return Err(self.field_error(calls_field, "must list at least one call"));
        }
        let mut calls = Vec::with_capacity(items.len());
        for item in &items {
            calls.push(self.call(item, servers)?);
        }
        let deadline = m
            .get("deadline")
            .map(|d| self.duration(d, Bound::Positive))
            .transpose()?
            .unwrap_or(DEFAULT_CLIENT_DEADLINE);
        let max_in_flight = match m.get("max_in_flight") {
            None => DEFAULT_MAX_IN_FLIGHT,
            Some(f) => {
                let n = self.unsigned(f)?;
                usize::try_from(n)
                    .ok()
                    .filter(|n| (1..=100_000).contains(n))
                    .ok_or_else(|| {
                        self.field_error(f, format!("must be from 1 to 100000, found {n}"))
                    })?
            }
        };
        Ok(LoadSpec {
            rate,
            calls,
            deadline,
            max_in_flight,
        })
    }

    fn call(&self, item: &Field<'_, '_>, servers: &[ServerSpec]) -> Result<CallSpec> {
        let m = self.fields(item, &["tool", "args", "weight"])?;
        let tool_field = self.require(&m, "tool")?;
        let route = self.nonempty_string(tool_field)?;
        let Some((server, tool)) = route
            .split_once('/')
            .filter(|(s, t)| !s.is_empty() && !t.is_empty() && !t.contains('/'))
        else {
            return Err(self.field_error(
                tool_field,
                format!("`{route}` is not of the form `server/tool`"),
            ));
        };
        if !servers.iter().any(|s| s.name == server) {
            return Err(self.field_error(
                tool_field,
                format!(
                    "no server named `{server}` in `servers` (known: {})",
                    server_list(servers)
                ),
            ));
        }
        let args = match m.get("args") {
            None => JsonMap::new(),
            Some(a) => match self.json(a)? {
                Json::Object(map) => map,
                _ => {
                    return Err(self.field_error(
                        a,
                        format!(
                            "tool arguments must be a mapping, found {}",
                            kind_of(a.node)
                        ),
                    ));
                }
            },
        };
        // Every answer is checked, so the harness must know what this call's answer is.
        if let Err(e) = super::answers::check_call(tool, &args) {
            let f = m.get("args").unwrap_or(tool_field);
            return Err(self.field_error(f, e.to_string()));
        }
        let weight = match m.get("weight") {
            None => 1,
            Some(w) => {
                let n = self.integer(w)?;
                u32::try_from(n).ok().filter(|n| *n >= 1).ok_or_else(|| {
                    self.field_error(
                        w,
                        format!("must be a whole number of at least 1, found {n}"),
                    )
                })?
            }
        };
        Ok(CallSpec {
            server: server.to_string(),
            tool: tool.to_string(),
            args,
            weight,
            line: item.line,
        })
    }

    /// Converts a YAML value into the JSON the proxy is sent.
    fn json(&self, f: &Field<'_, '_>) -> Result<Json> {
        Ok(match &f.node.data {
            YamlData::Value(Scalar::Null) => Json::Null,
            YamlData::Value(Scalar::Boolean(b)) => Json::Bool(*b),
            YamlData::Value(Scalar::Integer(i)) => Json::Number((*i).into()),
            YamlData::Value(Scalar::FloatingPoint(x)) => Json::Number(
                Number::from_f64(x.into_inner())
                    .ok_or_else(|| self.field_error(f, "JSON has no infinity or NaN"))?,
            ),
            YamlData::Value(Scalar::String(s)) => Json::String(s.to_string()),
            YamlData::Sequence(_) => Json::Array(
                self.items(f)?
                    .iter()
                    .map(|item| self.json(item))
                    .collect::<Result<Vec<_>>>()?,
            ),
            YamlData::Mapping(map) => {
                let mut out = JsonMap::new();
                for (k, v) in map {
                    let line = line_of(k);
                    let YamlData::Value(Scalar::String(key)) = &k.data else {
                        return Err(self.invalid(
                            line,
                            &f.path,
                            format!("JSON keys must be text, found {}", kind_of(k)),
                        ));
                    };
                    let child = Field {
                        path: join_key(&f.path, key),
                        line,
                        node: v,
                    };
                    out.insert(key.to_string(), self.json(&child)?);
                }
                Json::Object(out)
            }
            _ => {
                return Err(
                    self.field_error(f, format!("cannot be sent as JSON: {}", kind_of(f.node)))
                );
            }
        })
    }

    fn faults(
        &self,
        f: &Field<'_, '_>,
        duration: Duration,
        servers: &[ServerSpec],
        calls: &[CallSpec],
    ) -> Result<Vec<FaultSpec>> {
        let mut out = Vec::new();
        for (entry, item) in self.items(f)?.iter().enumerate() {
            self.fault(item, entry, duration, servers, calls, &mut out)?;
        }
        Ok(out)
    }

    /// Parses one `faults` entry and appends its events (several when it repeats).
    fn fault(
        &self,
        item: &Field<'_, '_>,
        entry: usize,
        duration: Duration,
        servers: &[ServerSpec],
        calls: &[CallSpec],
        out: &mut Vec<FaultSpec>,
    ) -> Result<()> {
        // The kind decides which keys are allowed, so it is read before the keys are checked.
        let YamlData::Mapping(map) = &item.node.data else {
            return Err(self.field_error(
                item,
                format!(
                    "a fault is a mapping such as {{at: 10s, for: 5s, kind: hang}}, found {}",
                    kind_of(item.node)
                ),
            ));
        };
        let kind_node = map
            .iter()
            .find(|(k, _)| matches!(&k.data, YamlData::Value(Scalar::String(s)) if s == "kind"));
        let Some((kind_key, kind_value)) = kind_node else {
            return Err(self.invalid(
                item.line,
                &join_key(&item.path, "kind"),
                format!("missing required key; one of: {}", FAULT_KINDS.join(", ")),
            ));
        };
        let kind_field = Field {
            path: join_key(&item.path, "kind"),
            line: line_of(kind_key),
            node: kind_value,
        };
        let label = self.string(&kind_field)?;
        if !FAULT_KINDS.contains(&label.as_str()) {
            return Err(self.field_error(
                &kind_field,
                format!(
                    "unknown fault kind `{label}`{}; one of: {}",
                    suggestion(&label, FAULT_KINDS),
                    FAULT_KINDS.join(", ")
                ),
            ));
        }
        let one_shot = is_one_shot_label(&label);
        let per_request = is_per_request_label(&label);
        // Keys that exist but not for this kind get a message saying why, not just "unknown".
        for (k, _) in map {
            let YamlData::Value(Scalar::String(key)) = &k.data else {
                continue;
            };
            let why = match key.as_ref() {
                "for" if one_shot => Some(format!(
                    "`{label}` is a one-shot fault with no window; leave `for` out (use `every` and `count` to repeat it)"
                )),
                "every" | "count" if !one_shot => Some(format!(
                    "only one-shot faults (crash, session-loss) repeat with `every`/`count`; write `{label}` windows as separate entries"
                )),
                "probability" | "tools" if !per_request => Some(format!(
                    "`{label}` acts on the whole server, not on single requests, so `{key}` does not apply"
                )),
                _ => None,
            };
            if let Some(why) = why {
                return Err(self.invalid(line_of(k), &join_key(&item.path, key), why));
            }
        }
        let mut allowed: Vec<&str> = vec!["at", "server", "kind"];
        if one_shot {
            allowed.extend(["every", "count"]);
        } else {
            allowed.push("for");
        }
        if per_request {
            allowed.extend(["probability", "tools"]);
        }
        allowed.extend(kind_parameters(&label));
        let m = self.fields(item, &allowed)?;

        let at_field = self.require(&m, "at")?;
        let at = self.duration(at_field, Bound::NonNegative)?;
        if at >= duration {
            return Err(self.field_error(
                at_field,
                format!(
                    "{} is not before the end of the run (duration {})",
                    fmt_secs(at),
                    fmt_secs(duration)
                ),
            ));
        }
        let window = if one_shot {
            None
        } else {
            let for_field = self.require(&m, "for")?;
            let window = self.duration(for_field, Bound::Positive)?;
            if at + window > duration {
                return Err(self.field_error(
                    for_field,
                    format!(
                        "the window {}..{} ends after the run (duration {})",
                        fmt_secs(at),
                        fmt_secs(at + window),
                        fmt_secs(duration)
                    ),
                ));
            }
            Some(window)
        };

        let server = match m.get("server") {
            None => Target::All,
            Some(s) => {
                let name = self.nonempty_string(s)?;
                if name == "all" {
                    Target::All
                } else if servers.iter().any(|sv| sv.name == name) {
                    Target::One(name)
                } else {
                    return Err(self.field_error(
                        s,
                        format!(
                            "no server named `{name}` in `servers` (known: {}, or `all`)",
                            server_list(servers)
                        ),
                    ));
                }
            }
        };
        let probability = m
            .get("probability")
            .map(|p| {
                let x = self.share(p)?;
                if x == 0.0 {
                    return Err(self.field_error(
                        p,
                        "a fault with probability 0 never applies, so it tests nothing; leave the fault out or give a chance above 0",
                    ));
                }
                Ok(x)
            })
            .transpose()?
            .unwrap_or(1.0);
        let mut tools = Vec::new();
        if let Some(list) = m.get("tools") {
            let items = self.items(list)?;
            if items.is_empty() {
                return Err(self.field_error(
                    list,
                    "an empty list would match no call; leave `tools` out to mean every tool",
                ));
            }
            for t in &items {
                tools.push(self.bare_tool(t)?);
            }
        }
        let kind = self.fault_kind(&label, &m)?;
        let instance_scope = match m.get("scope") {
            None => false,
            Some(f) => match self.string(f)?.as_str() {
                "instance" => true,
                "server" => false,
                other => {
                    return Err(self.field_error(
                        f,
                        format!(
                            "`{other}` is no scope; `instance` (only the sessions and processes alive at injection) or `server` (every one, the default)"
                        ),
                    ));
                }
            },
        };

        // A fault that cannot happen on its server's transport would make the run test nothing.
        for sv in servers.iter().filter(|sv| server.matches(&sv.name)) {
            if !Scenario::transport_supports(&kind, sv.transport) {
                return Err(self.field_error(
                    &kind_field,
                    format!(
                        "`{label}` cannot happen on server `{}`, which uses {}{}",
                        sv.name,
                        sv.transport,
                        if server == Target::All {
                            "; name a server that supports it"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }
        // Recovery is observed through requests the fault can hit; without any, the event could
        // never count as recovered and the scenario would fail for a reason of its own making.
        let probe = FaultSpec {
            index: 0,
            entry,
            at,
            window,
            server: server.clone(),
            kind: kind.clone(),
            probability,
            tools: tools.clone(),
            instance_scope,
            line: item.line,
        };
        if !calls.iter().any(|c| probe.affects(&c.server, &c.tool)) {
            let (key, what) = if tools.is_empty() {
                (
                    "server",
                    format!("no call in `load.calls` goes to server `{server}`"),
                )
            } else {
                (
                    "tools",
                    format!(
                        "no call in `load.calls` goes to one of these tools on server `{server}`"
                    ),
                )
            };
            let f = m.get(key).unwrap_or(&kind_field);
            return Err(self.field_error(
                f,
                format!("{what}, so recovery from this fault could not be measured"),
            ));
        }

        let repetitions = self.repetitions(&m, at, duration)?;
        for start in repetitions {
            out.push(FaultSpec {
                index: out.len(),
                at: start,
                ..probe.clone()
            });
        }
        Ok(())
    }

    /// The injection times of a one-shot entry: `at`, or `count` of them `every` apart.
    fn repetitions(
        &self,
        m: &Fields<'_, '_>,
        at: Duration,
        duration: Duration,
    ) -> Result<Vec<Duration>> {
        match (m.get("every"), m.get("count")) {
            (None, None) => Ok(vec![at]),
            (Some(_), None) => Err(self.invalid(
                m.line,
                &m.key_path("count"),
                "`every` needs `count` (how many times)",
            )),
            (None, Some(_)) => Err(self.invalid(
                m.line,
                &m.key_path("every"),
                "`count` needs `every` (how far apart)",
            )),
            (Some(every_field), Some(count_field)) => {
                let every = self.duration(every_field, Bound::Positive)?;
                let count = self.unsigned(count_field)?;
                if count == 0 {
                    return Err(self.field_error(count_field, "must be at least 1"));
                }
                let mut times = Vec::new();
                for k in 0..count {
                    let t = u32::try_from(k)
                        .ok()
                        .and_then(|k| every.checked_mul(k))
                        .and_then(|offset| at.checked_add(offset))
                        .filter(|t| *t < duration);
                    let Some(t) = t else {
                        return Err(self.field_error(
                            count_field,
                            format!(
                                "repetition {} of {count} would be at {}, not before the end of the run (duration {})",
                                k + 1,
                                fmt_secs(at + every.saturating_mul(u32::try_from(k).unwrap_or(u32::MAX))),
                                fmt_secs(duration)
                            ),
                        ));
                    };
                    times.push(t);
                }
                Ok(times)
            }
        }
    }

    fn fault_kind(&self, label: &str, m: &Fields<'_, '_>) -> Result<FaultKind> {
        Ok(match label {
            "crash" => FaultKind::Crash,
            "session-loss" => FaultKind::SessionLoss,
            "hang" => FaultKind::Hang,
            "tool-error" => FaultKind::ToolError,
            "reset" => FaultKind::Reset,
            "garbage" => FaultKind::Garbage {
                forms: m
                    .get("form")
                    .map(|f| self.garbage_forms(f))
                    .transpose()?
                    .unwrap_or_default(),
            },
            "refuse" => FaultKind::Refuse,
            "latency" => self.latency(m)?,
            "http-error" => {
                let status_field = self.require(m, "status")?;
                let status = self.integer(status_field)?;
                let status = u16::try_from(status)
                    .ok()
                    .filter(|s| (400..=599).contains(s))
                    .ok_or_else(|| {
                        self.field_error(
                            status_field,
                            format!("must be an HTTP error status from 400 to 599, found {status}"),
                        )
                    })?;
                let retry_after = m.get("retry_after").map(|r| self.unsigned(r)).transpose()?;
                FaultKind::HttpError {
                    status,
                    retry_after,
                }
            }
            "jsonrpc-error" => {
                let code_field = self.require(m, "code")?;
                let code = self.integer(code_field)?;
                let code = i32::try_from(code).map_err(|_| {
                    self.field_error(
                        code_field,
                        format!("JSON-RPC codes are 32-bit integers, found {code}"),
                    )
                })?;
                let message = m.get("message").map(|s| self.string(s)).transpose()?;
                FaultKind::JsonRpcError { code, message }
            }
            "slow-start" => {
                let delay = self.duration(self.require(m, "delay")?, Bound::Positive)?;
                FaultKind::SlowStart { delay }
            }
            // Unknown labels were rejected before the keys were checked.
            other => {
                return Err(self.invalid(
                    m.line,
                    &m.key_path("kind"),
                    format!("unknown fault kind `{other}`"),
                ));
            }
        })
    }

    /// `form: cut-answer` or `form: [wrong-id, malformed-result]`: the forms a garbage fault
    /// may take; without it, every form.
    fn garbage_forms(&self, f: &Field<'_, '_>) -> Result<Vec<GarbageForm>> {
        let items = match &f.node.data {
            YamlData::Sequence(_) => {
                let items = self.items(f)?;
                if items.is_empty() {
                    return Err(self.field_error(
                        f,
                        "an empty list allows no form; leave `form` out to mean every form",
                    ));
                }
                items
            }
            _ => vec![Field {
                path: f.path.clone(),
                line: f.line,
                node: f.node,
            }],
        };
        let known: Vec<&str> = GarbageForm::ALL.iter().map(|g| g.label()).collect();
        let mut forms = Vec::new();
        for item in &items {
            let label = self.string(item)?;
            let Some(form) = GarbageForm::from_label(&label) else {
                return Err(self.field_error(
                    item,
                    format!(
                        "unknown garbage form `{label}`{}; one of: {}",
                        suggestion(&label, &known),
                        known.join(", ")
                    ),
                ));
            };
            if !forms.contains(&form) {
                forms.push(form);
            }
        }
        Ok(forms)
    }

    /// `ms: 200` (a number is milliseconds, or a duration with a unit) for a fixed delay, or
    /// `min:`/`max:` durations for a uniform one. Plain numbers under `min`/`max` are refused:
    /// next to `ms` they would read as milliseconds but everywhere else they mean seconds.
    fn latency(&self, m: &Fields<'_, '_>) -> Result<FaultKind> {
        if let Some(ms_field) = m.get("ms") {
            if m.has("min") || m.has("max") {
                return Err(self.field_error(
                    ms_field,
                    "give either `ms` (a fixed delay) or `min` and `max`, not both",
                ));
            }
            let d = match &ms_field.node.data {
                YamlData::Value(Scalar::Integer(_) | Scalar::FloatingPoint(_)) => {
                    let ms = self.number(ms_field)?;
                    if ms < 0.0 {
                        return Err(
                            self.field_error(ms_field, format!("must not be negative, found {ms}"))
                        );
                    }
                    Duration::try_from_secs_f64(ms / 1000.0).map_err(|e| {
                        self.field_error(ms_field, format!("cannot be {ms} ms: {e}"))
                    })?
                }
                _ => self.duration(ms_field, Bound::NonNegative)?,
            };
            if d.is_zero() {
                return Err(self.field_error(ms_field, "must be longer than zero"));
            }
            return Ok(FaultKind::Latency { min: d, max: d });
        }
        let bound = |key: &str| -> Result<Duration> {
            let f = self.require(m, key)?;
            if matches!(
                &f.node.data,
                YamlData::Value(Scalar::Integer(_) | Scalar::FloatingPoint(_))
            ) {
                let n = self.number(f)?;
                return Err(self.field_error(f, format!("give a unit, e.g. `{n}ms` or `{n}s`")));
            }
            self.duration(f, Bound::NonNegative)
        };
        if !m.has("min") && !m.has("max") {
            return Err(self.invalid(
                m.line,
                &m.key_path("ms"),
                "a latency fault needs `ms` (fixed) or `min` and `max`",
            ));
        }
        let (min, max) = (bound("min")?, bound("max")?);
        if min > max {
            return Err(self.invalid(
                m.get("min").map_or(m.line, |f| f.line),
                &m.key_path("min"),
                format!(
                    "min ({}) is larger than max ({})",
                    fmt_secs(min),
                    fmt_secs(max)
                ),
            ));
        }
        if max.is_zero() {
            return Err(self.invalid(
                m.get("max").map_or(m.line, |f| f.line),
                &m.key_path("max"),
                "must be longer than zero",
            ));
        }
        Ok(FaultKind::Latency { min, max })
    }

    fn slo(&self, f: &Field<'_, '_>) -> Result<SloSpec> {
        let m = self.fields(
            f,
            &[
                "recovery_rate",
                "recovery_within",
                "success_rate",
                "hung_requests",
                "leaked_processes",
                "p99_latency",
                "wrong_answers",
                "window_success_rate",
                "amplification",
            ],
        )?;
        // A share of 0 is met by anything: an objective that cannot fail.
        let objective = |key: &str| {
            m.get(key)
                .map(|r| {
                    let x = self.share(r)?;
                    if x == 0.0 {
                        return Err(self.field_error(
                            r,
                            "0 is met by any run, so it checks nothing; give a share above 0 or leave it out",
                        ));
                    }
                    Ok(x)
                })
                .transpose()
        };
        let objectives = [
            "recovery_rate",
            "success_rate",
            "window_success_rate",
            "amplification",
            "p99_latency",
        ];
        if !objectives.iter().any(|k| m.has(k)) {
            return Err(self.invalid(
                m.line,
                &m.path,
                format!(
                    "asks for nothing a proxy could fail; give at least one of {} (hung_requests, leaked_processes and wrong_answers are checked anyway, 0 unless given)",
                    objectives.join(", ")
                ),
            ));
        }
        let recovery_rate = objective("recovery_rate")?;
        let recovery_within = m
            .get("recovery_within")
            .map(|r| self.duration(r, Bound::Positive))
            .transpose()?;
        match (recovery_rate.is_some(), recovery_within.is_some()) {
            (true, false) => {
                return Err(self.invalid(m.line, &m.key_path("recovery_within"), "`recovery_rate` needs `recovery_within` (how soon an event counts as recovered)"));
            }
            (false, true) => {
                return Err(self.invalid(m.line, &m.key_path("recovery_rate"), "`recovery_within` needs `recovery_rate` (the share of events that must recover)"));
            }
            _ => {}
        }
        Ok(SloSpec {
            recovery_rate,
            recovery_within,
            success_rate: objective("success_rate")?,
            hung_requests: m
                .get("hung_requests")
                .map(|r| self.unsigned(r))
                .transpose()?
                .unwrap_or(0),
            leaked_processes: m
                .get("leaked_processes")
                .map(|r| self.unsigned(r))
                .transpose()?
                .unwrap_or(0),
            p99_latency: m
                .get("p99_latency")
                .map(|r| self.duration(r, Bound::Positive))
                .transpose()?,
            wrong_answers: m
                .get("wrong_answers")
                .map(|r| self.unsigned(r))
                .transpose()?
                .unwrap_or(0),
            window_success_rate: objective("window_success_rate")?,
            amplification: m
                .get("amplification")
                .map(|r| self.amplification(r))
                .transpose()?,
        })
    }

    /// `amplification: N` or `amplification: {run: N, windows: M}`.
    fn amplification(&self, f: &Field<'_, '_>) -> Result<Amplification> {
        let run_bound = |f: &Field<'_, '_>| {
            let x = self.number(f)?;
            if x < 1.0 {
                return Err(self.field_error(
                    f,
                    format!(
                        "upstream calls per client request over the run: at least 1 (every request is one call when all is well), found {x}"
                    ),
                ));
            }
            Ok(x)
        };
        if !matches!(f.node.data, YamlData::Mapping(_)) {
            let x = run_bound(f)?;
            return Ok(Amplification {
                run: Some(x),
                windows: Some(x),
            });
        }
        let m = self.fields(f, &["run", "windows"])?;
        let windows = m
            .get("windows")
            .map(|w| {
                let x = self.number(w)?;
                if x <= 0.0 {
                    return Err(self.field_error(w, format!("must be more than 0, found {x}")));
                }
                Ok(x)
            })
            .transpose()?;
        let run = m.get("run").map(run_bound).transpose()?;
        if run.is_none() && windows.is_none() {
            return Err(self.invalid(
                m.line,
                &m.path,
                "give `run`, `windows` or both (upstream calls per client request)",
            ));
        }
        Ok(Amplification { run, windows })
    }
}

fn server_list(servers: &[ServerSpec]) -> String {
    let names: BTreeSet<&str> = servers.iter().map(|s| s.name.as_str()).collect();
    names.into_iter().collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "fault-scenarios/x.yaml";

    /// A valid scenario using every section; the line numbers in the tests below refer to it.
    const VALID: &str = r#"name: 500-storm
description: 80% of calls get HTTP 500 for 10 s
seed: 7
duration: 40s
servers:
  - name: flaky
    transport: streamable-http
    pool: {min: 1, max: 4}
  - name: local
    transport: stdio
proxy:
  timeout: 5s
  pool: {min: 1, max: 2}
  retryable_tools: [add]
  env: {MCPO_ERROR_RECOVERY_ENABLED: "false", MCPO_N: 3}
load:
  rate: 50
  calls:
    - {tool: flaky/echo, args: {message: hi}, weight: 3}
    - {tool: local/add, args: {a: 1, b: 2, list: [true, 2.5, null]}}
  deadline: 15s
faults:
  - {at: 10s, for: 10s, server: flaky, kind: http-error, status: 500, probability: 0.8}
  - {at: 5s, kind: crash, server: local, every: 3s, count: 3}
  - at: 25s
    for: 2s
    kind: latency
    min: 50ms
    max: 2s
    tools: [echo]
slo:
  recovery_rate: 0.90
  recovery_within: 10s
  success_rate: 0.99
  hung_requests: 0
  leaked_processes: 0
  p99_latency: 2s
"#;

    fn parse(text: &str) -> std::result::Result<Scenario, ScenarioError> {
        parse_scenario_str(text, FILE)
    }

    /// `VALID` with one piece of text replaced, which must be there exactly once.
    fn edit(from: &str, to: &str) -> String {
        assert_eq!(
            VALID.matches(from).count(),
            1,
            "`{from}` must occur once in VALID"
        );
        VALID.replacen(from, to, 1)
    }

    /// Asserts that `text` is rejected at `line` for `key`, with `fragment` in the message, and
    /// that the message shows file, line and key the way users see them.
    #[track_caller]
    fn rejects(text: &str, line: usize, key: &str, fragment: &str) {
        let err = match parse(text) {
            Ok(_) => panic!("accepted; expected an error at {line} for {key}"),
            Err(e) => e,
        };
        let shown = err.to_string();
        assert_eq!(err.file(), FILE, "{shown}");
        assert_eq!(err.line(), Some(line), "{shown}");
        assert_eq!(err.key(), Some(key), "{shown}");
        assert!(
            shown.starts_with(&format!("{FILE}:{line}: {key}: ")),
            "{shown}"
        );
        assert!(shown.contains(fragment), "`{fragment}` not in: {shown}");
    }

    #[test]
    fn full_file_round_trip() {
        let s = parse(VALID).unwrap();
        assert_eq!(s.name, "500-storm");
        assert_eq!(s.description, "80% of calls get HTTP 500 for 10 s");
        assert_eq!(s.seed, 7);
        assert_eq!(s.duration, Duration::from_secs(40));
        assert_eq!(
            s.servers,
            vec![
                ServerSpec {
                    name: "flaky".into(),
                    transport: Transport::StreamableHttp,
                    pool: Some(PoolSpec {
                        min: Some(1),
                        max: Some(4)
                    }),
                    line: 6,
                },
                ServerSpec {
                    name: "local".into(),
                    transport: Transport::Stdio,
                    pool: None,
                    line: 9
                },
            ]
        );
        assert_eq!(s.proxy.timeout, Some(Duration::from_secs(5)));
        assert_eq!(
            s.proxy.pool,
            Some(PoolSpec {
                min: Some(1),
                max: Some(2)
            })
        );
        assert_eq!(s.proxy.retryable_tools, vec!["add".to_string()]);
        assert_eq!(
            s.proxy
                .env
                .get("MCPO_ERROR_RECOVERY_ENABLED")
                .map(String::as_str),
            Some("false")
        );
        assert_eq!(s.proxy.env.get("MCPO_N").map(String::as_str), Some("3"));
        assert_eq!(s.load.rate, 50.0);
        assert_eq!(s.load.deadline, Duration::from_secs(15));
        assert_eq!(s.load.calls.len(), 2);
        assert_eq!(s.load.calls[0].route(), "flaky/echo");
        assert_eq!(s.load.calls[0].weight, 3);
        assert_eq!(s.load.calls[0].line, 19);
        assert_eq!(
            Json::Object(s.load.calls[0].args.clone()),
            serde_json::json!({"message": "hi"})
        );
        assert_eq!(s.load.calls[1].weight, 1);
        assert_eq!(
            Json::Object(s.load.calls[1].args.clone()),
            serde_json::json!({"a": 1, "b": 2, "list": [true, 2.5, null]})
        );

        // One http-error window, three crashes (expanded), one latency window.
        assert_eq!(s.faults.len(), 5);
        let storm = &s.faults[0];
        assert_eq!(storm.index, 0);
        assert_eq!(storm.entry, 0);
        assert_eq!(storm.line, 23);
        assert_eq!(storm.at, Duration::from_secs(10));
        assert_eq!(storm.window, Some(Duration::from_secs(10)));
        assert_eq!(storm.clears_at(), Duration::from_secs(20));
        assert_eq!(storm.server, Target::One("flaky".into()));
        assert_eq!(
            storm.kind,
            FaultKind::HttpError {
                status: 500,
                retry_after: None
            }
        );
        assert_eq!(storm.probability, 0.8);
        assert!(storm.tools.is_empty());
        let latency = &s.faults[4];
        assert_eq!((latency.index, latency.entry, latency.line), (4, 2, 25));
        assert_eq!(latency.server, Target::All);
        assert_eq!(
            latency.kind,
            FaultKind::Latency {
                min: Duration::from_millis(50),
                max: Duration::from_secs(2)
            }
        );
        assert_eq!(latency.probability, 1.0);
        assert_eq!(latency.tools, vec!["echo".to_string()]);
        assert!(latency.affects("flaky", "echo"));
        assert!(!latency.affects("flaky", "add"));

        assert_eq!(
            s.slo,
            SloSpec {
                recovery_rate: Some(0.9),
                recovery_within: Some(Duration::from_secs(10)),
                success_rate: Some(0.99),
                hung_requests: 0,
                leaked_processes: 0,
                p99_latency: Some(Duration::from_secs(2)),
                wrong_answers: 0,
                window_success_rate: None,
                amplification: None,
            }
        );
    }

    #[test]
    fn every_and_count_expand_into_separate_events() {
        let s = parse(VALID).unwrap();
        let crashes: Vec<&FaultSpec> = s
            .faults
            .iter()
            .filter(|f| f.kind == FaultKind::Crash)
            .collect();
        assert_eq!(crashes.len(), 3);
        let times: Vec<Duration> = crashes.iter().map(|f| f.at).collect();
        assert_eq!(times, [5, 8, 11].map(Duration::from_secs));
        for (i, crash) in crashes.iter().enumerate() {
            assert_eq!(crash.index, i + 1, "indexes run on across the expansion");
            assert_eq!(crash.entry, 1);
            assert_eq!(crash.line, 24);
            assert_eq!(crash.window, None);
            assert_eq!(
                crash.clears_at(),
                crash.at,
                "a one-shot fault clears when injected"
            );
        }
        // A repetition past the end of the run is an error, not a silently dropped event.
        rejects(
            &edit("every: 3s, count: 3", "every: 10s, count: 5"),
            24,
            "faults[1].count",
            "repetition 5 of 5 would be at 45s",
        );
        rejects(
            &edit("every: 3s, count: 3", "every: 3s"),
            24,
            "faults[1].count",
            "`every` needs `count`",
        );
        rejects(
            &edit("every: 3s, count: 3", "every: 3s, count: 0"),
            24,
            "faults[1].count",
            "at least 1",
        );
    }

    #[test]
    fn durations_take_units_or_seconds() {
        let s = parse(&edit("duration: 40s", "duration: 40")).unwrap();
        assert_eq!(s.duration, Duration::from_secs(40));
        let s = parse(&edit("duration: 40s", "duration: 39.5")).unwrap();
        assert_eq!(s.duration, Duration::from_millis(39_500));
        let s = parse(&edit("duration: 40s", "duration: 1m")).unwrap();
        assert_eq!(s.duration, Duration::from_secs(60));
        let s = parse(&edit("timeout: 5s", "timeout: 500ms")).unwrap();
        assert_eq!(s.proxy.timeout, Some(Duration::from_millis(500)));
    }

    #[test]
    fn latency_takes_fixed_ms_or_a_range() {
        let fixed = |ms: &str| -> FaultKind {
            let s = parse(&edit("min: 50ms\n    max: 2s", &format!("ms: {ms}"))).unwrap();
            s.faults[4].kind.clone()
        };
        let d = Duration::from_millis(200);
        assert_eq!(fixed("200"), FaultKind::Latency { min: d, max: d });
        assert_eq!(fixed("200ms"), FaultKind::Latency { min: d, max: d });
        rejects(
            &edit("max: 2s", "max: 2"),
            29,
            "faults[2].max",
            "give a unit",
        );
        rejects(
            &edit("min: 50ms", "min: 3s"),
            28,
            "faults[2].min",
            "larger than max",
        );
        rejects(
            &edit("max: 2s", "max: 2s\n    ms: 100"),
            30,
            "faults[2].ms",
            "not both",
        );
    }

    #[test]
    fn unknown_keys_are_errors_at_every_level() {
        rejects(
            &edit("duration: 40s", "duraton: 40s"),
            4,
            "duraton",
            "did you mean `duration`",
        );
        rejects(
            &edit("    pool: {min: 1, max: 4}", "    pool: {min: 1, maxx: 4}"),
            8,
            "servers[0].pool.maxx",
            "unknown key",
        );
        rejects(
            &edit("probability: 0.8", "probabilty: 0.8"),
            23,
            "faults[0].probabilty",
            "did you mean `probability`",
        );
        rejects(
            &edit("  p99_latency: 2s", "  p99: 2s"),
            37,
            "slo.p99",
            "unknown key",
        );
        rejects(
            &edit("  deadline: 15s", "  timeout: 15s"),
            21,
            "load.timeout",
            "allowed here: rate, calls, deadline",
        );
        // A key of another kind, or one that the kind cannot have, says why.
        rejects(
            &edit("kind: crash,", "kind: crash, status: 500,"),
            24,
            "faults[1].status",
            "unknown key",
        );
        rejects(
            &edit("kind: crash,", "kind: crash, for: 2s,"),
            24,
            "faults[1].for",
            "one-shot",
        );
        rejects(
            &edit("    tools: [echo]", "    tools: [echo]\n    every: 2s"),
            31,
            "faults[2].every",
            "only one-shot",
        );
        rejects(
            &edit("kind: crash,", "kind: crash, probability: 0.5,"),
            24,
            "faults[1].probability",
            "whole server",
        );
    }

    #[test]
    fn bad_durations_are_errors() {
        rejects(
            &edit("duration: 40s", "duration: 10x"),
            4,
            "duration",
            "`10x` is not a duration",
        );
        rejects(
            &edit("  deadline: 15s", "  deadline: -1s"),
            21,
            "load.deadline",
            "negative",
        );
        rejects(
            &edit("  deadline: 15s", "  deadline: -1"),
            21,
            "load.deadline",
            "must not be negative",
        );
        rejects(
            &edit("duration: 40s", "duration: 0s"),
            4,
            "duration",
            "longer than zero",
        );
        rejects(
            &edit("for: 10s,", "for: 0s,"),
            23,
            "faults[0].for",
            "longer than zero",
        );
        rejects(
            &edit("recovery_within: 10s", "recovery_within: soon"),
            33,
            "slo.recovery_within",
            "not a duration",
        );
        rejects(
            &edit("duration: 40s", "duration: [40s]"),
            4,
            "duration",
            "expected a duration",
        );
    }

    #[test]
    fn fault_on_unknown_server_is_an_error() {
        rejects(
            &edit("server: flaky,", "server: flakey,"),
            23,
            "faults[0].server",
            "no server named `flakey`",
        );
    }

    #[test]
    fn fault_window_past_the_duration_is_an_error() {
        rejects(
            &edit("at: 25s", "at: 39s"),
            26,
            "faults[2].for",
            "the window 39s..41s ends after the run",
        );
    }

    #[test]
    fn fault_at_past_the_duration_is_an_error() {
        rejects(
            &edit("{at: 5s, kind: crash", "{at: 41s, kind: crash"),
            24,
            "faults[1].at",
            "not before the end of the run",
        );
        rejects(
            &edit("{at: 5s, kind: crash", "{at: 40s, kind: crash"),
            24,
            "faults[1].at",
            "not before the end of the run",
        );
    }

    #[test]
    fn probability_outside_zero_to_one_is_an_error() {
        let err = parse(&edit("probability: 0.8", "probability: 1.5")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "fault-scenarios/x.yaml:23: faults[0].probability: must be between 0 and 1, found 1.5"
        );
        rejects(
            &edit("probability: 0.8", "probability: -0.1"),
            23,
            "faults[0].probability",
            "found -0.1",
        );
        rejects(
            &edit("probability: 0.8", "probability: often"),
            23,
            "faults[0].probability",
            "expected a number",
        );
    }

    #[test]
    fn rate_must_be_positive() {
        rejects(&edit("rate: 50", "rate: 0"), 17, "load.rate", "more than 0");
        rejects(
            &edit("rate: 50", "rate: -3.5"),
            17,
            "load.rate",
            "more than 0",
        );
    }

    #[test]
    fn calls_must_name_a_known_server_and_tool() {
        rejects(
            &edit("tool: local/add", "tool: remote/add"),
            20,
            "load.calls[1].tool",
            "no server named `remote`",
        );
        rejects(
            &edit("tool: local/add", "tool: add"),
            20,
            "load.calls[1].tool",
            "not of the form `server/tool`",
        );
        rejects(
            &edit("tool: local/add", "tool: local/"),
            20,
            "load.calls[1].tool",
            "not of the form",
        );
        rejects(
            &edit("weight: 3", "weight: 0"),
            19,
            "load.calls[0].weight",
            "at least 1",
        );
    }

    #[test]
    fn empty_servers_and_calls_are_errors() {
        let no_servers = edit(
            "servers:\n  - name: flaky\n    transport: streamable-http\n    pool: {min: 1, max: 4}\n  - name: local\n    transport: stdio\n",
            "servers: []\n",
        );
        rejects(&no_servers, 5, "servers", "at least one server");
        let no_calls = edit(
            "  calls:\n    - {tool: flaky/echo, args: {message: hi}, weight: 3}\n    - {tool: local/add, args: {a: 1, b: 2, list: [true, 2.5, null]}}\n",
            "  calls: []\n",
        );
        rejects(&no_calls, 18, "load.calls", "at least one call");
    }

    #[test]
    fn duplicate_server_names_are_errors() {
        rejects(
            &edit("name: local", "name: flaky"),
            9,
            "servers[1].name",
            "duplicate server name `flaky` (first used on line 6)",
        );
        rejects(
            &edit("name: local", "name: all"),
            9,
            "servers[1].name",
            "reserved",
        );
    }

    #[test]
    fn window_success_rate_amplification_and_scope_parse_and_are_checked() {
        let s = parse(&edit(
            "  p99_latency: 2s\n",
            "  p99_latency: 2s\n  window_success_rate: 0.5\n  amplification: {run: 1.2, windows: 0.5}\n",
        ))
        .unwrap();
        assert_eq!(s.slo.window_success_rate, Some(0.5));
        assert_eq!(
            s.slo.amplification,
            Some(Amplification {
                run: Some(1.2),
                windows: Some(0.5)
            })
        );
        let s = parse(&edit(
            "  p99_latency: 2s\n",
            "  p99_latency: 2s\n  amplification: 2\n",
        ))
        .unwrap();
        assert_eq!(
            s.slo.amplification,
            Some(Amplification {
                run: Some(2.0),
                windows: Some(2.0)
            })
        );
        rejects(
            &edit(
                "  p99_latency: 2s\n",
                "  p99_latency: 2s\n  amplification: 0.5\n",
            ),
            38,
            "slo.amplification",
            "at least 1",
        );
        rejects(
            &edit(
                "  p99_latency: 2s\n",
                "  p99_latency: 2s\n  amplification: {windows: 0}\n",
            ),
            38,
            "slo.amplification.windows",
            "more than 0",
        );
        rejects(
            &edit(
                "  p99_latency: 2s\n",
                "  p99_latency: 2s\n  amplification: {}\n",
            ),
            38,
            "slo.amplification",
            "give `run`, `windows` or both",
        );
        rejects(
            &edit(
                "  p99_latency: 2s\n",
                "  p99_latency: 2s\n  window_success_rate: 2\n",
            ),
            38,
            "slo.window_success_rate",
            "between 0 and 1",
        );
        let s = parse(&edit(
            "    kind: latency\n",
            "    kind: latency\n    scope: instance\n",
        ))
        .unwrap();
        assert!(s.faults.last().unwrap().instance_scope);
        assert!(!s.faults[0].instance_scope);
        rejects(
            &edit(
                "    kind: latency\n",
                "    kind: latency\n    scope: some\n",
            ),
            28,
            "faults[2].scope",
            "`instance` (only the sessions and processes alive at injection)",
        );
        // Only hang and latency have a scope.
        rejects(
            &edit("probability: 0.8}", "probability: 0.8, scope: instance}"),
            23,
            "faults[0].scope",
            "unknown key",
        );
    }

    /// Finding 11 of issue 13: scenarios that cannot fail, or cannot pass, were accepted.
    #[test]
    fn hollow_scenarios_are_refused() {
        rejects(
            &edit("probability: 0.8", "probability: 0"),
            23,
            "faults[0].probability",
            "probability 0 never applies, so it tests nothing",
        );
        rejects(
            &edit("recovery_rate: 0.90", "recovery_rate: 0"),
            32,
            "slo.recovery_rate",
            "0 is met by any run",
        );
        rejects(
            &edit("success_rate: 0.99", "success_rate: 0.0"),
            34,
            "slo.success_rate",
            "0 is met by any run",
        );
        rejects(
            &edit("  rate: 50\n", "  rate: 0\n"),
            17,
            "load.rate",
            "must be more than 0 requests per second",
        );
        // Only the defaults: nothing a proxy could fail but what is checked anyway.
        let only_defaults = VALID
            .split("slo:")
            .next()
            .map(|head| format!("{head}slo:\n  hung_requests: 0\n  leaked_processes: 0\n"))
            .unwrap();
        rejects(
            &only_defaults,
            31,
            "slo",
            "asks for nothing a proxy could fail; give at least one of recovery_rate",
        );
        rejects(
            &only_defaults.replace(
                "slo:\n  hung_requests: 0\n  leaked_processes: 0\n",
                "slo: {}\n",
            ),
            31,
            "slo",
            "asks for nothing a proxy could fail",
        );
        // A window that ends 5 s before the end of the run, with 10 s to recover: the event
        // could never count as recovered.
        rejects(
            &edit("  - at: 25s\n    for: 2s\n", "  - at: 33s\n    for: 2s\n"),
            25,
            "faults[2]",
            "latency at 35s leaves 5s of run after it, less than slo.recovery_within (10s)",
        );
        rejects(
            &edit("every: 3s, count: 3}", "every: 3s, count: 11}"),
            24,
            "faults[1]",
            "crash at 32s leaves 8s of run after it",
        );
    }

    #[test]
    fn slo_rates_must_be_shares() {
        rejects(
            &edit("success_rate: 0.99", "success_rate: 99"),
            34,
            "slo.success_rate",
            "between 0 and 1, found 99",
        );
        rejects(
            &edit("recovery_rate: 0.90", "recovery_rate: 1.01"),
            32,
            "slo.recovery_rate",
            "between 0 and 1",
        );
        rejects(
            &edit("  hung_requests: 0", "  hung_requests: -1"),
            35,
            "slo.hung_requests",
            "must not be negative",
        );
    }

    #[test]
    fn missing_required_keys_are_errors() {
        rejects(
            &edit("name: 500-storm\n", ""),
            1,
            "name",
            "missing required key",
        );
        rejects(
            &edit("duration: 40s\n", ""),
            1,
            "duration",
            "missing required key",
        );
        let without = |section_start: &str, next: &str| -> String {
            let from = VALID.find(section_start).unwrap();
            let to = VALID.find(next).unwrap();
            format!("{}{}", &VALID[..from], &VALID[to..])
        };
        rejects(
            &without("servers:", "proxy:"),
            1,
            "servers",
            "missing required key",
        );
        rejects(
            &without("load:", "faults:"),
            1,
            "load",
            "missing required key",
        );
        rejects(
            &VALID[..VALID.find("slo:").unwrap()],
            1,
            "slo",
            "missing required key",
        );
        rejects(
            &edit("  rate: 50\n", ""),
            16,
            "load.rate",
            "missing required key",
        );
        rejects(
            &edit("    transport: stdio\n", ""),
            9,
            "servers[1].transport",
            "missing required key",
        );
        rejects(
            &edit(" kind: http-error,", ""),
            23,
            "faults[0].kind",
            "missing required key",
        );
        rejects(
            &edit("status: 500, ", ""),
            23,
            "faults[0].status",
            "missing required key",
        );
        rejects(
            &edit("    for: 2s\n", ""),
            25,
            "faults[2].for",
            "missing required key",
        );
        rejects(
            &edit("  recovery_within: 10s\n", ""),
            31,
            "slo.recovery_within",
            "needs `recovery_within`",
        );
    }

    #[test]
    fn faults_that_cannot_happen_on_the_transport_are_errors() {
        rejects(
            &edit("kind: crash,", "kind: session-loss,"),
            24,
            "faults[1].kind",
            "`session-loss` cannot happen on server `local`, which uses stdio",
        );
        rejects(
            &edit(
                "server: flaky, kind: http-error",
                "server: local, kind: http-error",
            ),
            23,
            "faults[0].kind",
            "uses stdio",
        );
        rejects(
            &edit(
                "server: flaky, kind: http-error",
                "server: all, kind: http-error",
            ),
            23,
            "faults[0].kind",
            "name a server",
        );
        rejects(
            &edit("kind: latency\n    min: 50ms\n    max: 2s", "kind: reset"),
            27,
            "faults[2].kind",
            "`reset` cannot happen on server `local`",
        );
        // Garbage is possible everywhere.
        let s = parse(&edit(
            "kind: latency\n    min: 50ms\n    max: 2s",
            "kind: garbage",
        ))
        .unwrap();
        assert_eq!(s.faults[4].kind, FaultKind::Garbage { forms: vec![] });
        for transport in [Transport::Stdio, Transport::StreamableHttp, Transport::Sse] {
            assert!(Scenario::transport_supports(
                &FaultKind::Garbage {
                    forms: GarbageForm::ALL.to_vec()
                },
                transport
            ));
        }
        // Legacy SSE has HTTP and sessions: every kind can happen there.
        for kind in [
            FaultKind::SessionLoss,
            FaultKind::Reset,
            FaultKind::HttpError {
                status: 503,
                retry_after: None,
            },
            FaultKind::Garbage { forms: vec![] },
            FaultKind::Crash,
            FaultKind::Refuse,
        ] {
            assert!(
                Scenario::transport_supports(&kind, Transport::Sse),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn garbage_takes_one_form_or_a_list_of_them() {
        let with = |form: &str| {
            edit(
                "kind: latency\n    min: 50ms\n    max: 2s",
                &format!("kind: garbage\n    form: {form}"),
            )
        };
        let kind = |text: &str| parse(text).map(|s| s.faults[4].kind.clone()).unwrap();
        assert_eq!(
            kind(&with("cut-answer")),
            FaultKind::Garbage {
                forms: vec![GarbageForm::CutAnswer]
            }
        );
        assert_eq!(
            kind(&with("[wrong-id, malformed-result, wrong-id]")),
            FaultKind::Garbage {
                forms: vec![GarbageForm::WrongId, GarbageForm::MalformedResult]
            }
        );
        rejects(
            &with("cut-anwser"),
            28,
            "faults[2].form",
            "unknown garbage form `cut-anwser` (did you mean `cut-answer`?); one of: text, not-jsonrpc, wrong-id, malformed-result, cut-answer",
        );
        rejects(
            &with("[text, nope]"),
            28,
            "faults[2].form[1]",
            "unknown garbage form `nope`",
        );
        rejects(
            &with("[]"),
            28,
            "faults[2].form",
            "an empty list allows no form",
        );
        // Only garbage has forms.
        rejects(
            &edit(
                "kind: latency\n    min: 50ms\n    max: 2s",
                "kind: tool-error\n    form: text",
            ),
            28,
            "faults[2].form",
            "",
        );
    }

    #[test]
    fn faults_must_be_measurable() {
        rejects(
            &edit("tools: [echo]", "tools: [slow]"),
            30,
            "faults[2].tools",
            "no call in `load.calls`",
        );
        rejects(
            &edit("tools: [echo]", "tools: [flaky/echo]"),
            30,
            "faults[2].tools[0]",
            "without its server",
        );
    }

    #[test]
    fn yaml_syntax_errors_name_the_line() {
        let err = parse(&edit("  rate: 50", "  rate: [50")).unwrap_err();
        assert!(matches!(err, ScenarioError::Syntax { .. }), "{err}");
        assert!(err.to_string().starts_with(FILE), "{err}");
        assert!(err.line().is_some_and(|l| l >= 17), "{err}");
        let err = parse(&edit("seed: 7", "seed: 7\nseed: 8")).unwrap_err();
        assert!(err.to_string().contains("duplicate"), "{err}");
        assert_eq!(err.line(), Some(4), "{err}");
        let err = parse("").unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        let err = parse("- a\n- b\n").unwrap_err();
        assert!(err.to_string().contains("found a list"), "{err}");
    }

    #[test]
    fn file_errors_name_the_file() {
        let err = parse_scenario_file(Path::new("/nonexistent/scenario.yaml")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/scenario.yaml: cannot read"),
            "{err}"
        );
    }
}
