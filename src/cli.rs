//! Every command-line flag, its help and its environment variable, in one place.
//!
//! The flags of `serve` match the Python `mcpo` 0.0.20 one for one (names, short forms and
//! defaults), because users arrive with scripts and service files written for it. A bare
//! `mcpo --config x.json` or `mcpo -- cmd args` still means `serve`. `MCPO_*` environment
//! variables are read here through clap and nowhere else.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "mcpo",
    about = "Expose MCP servers as an OpenAPI HTTP API that recovers by itself",
    args_conflicts_with_subcommands = true,
    version,
    // `--version`/`-v` is the OpenAPI version string in mcpo, not ours: ours is `-V` and
    // `mcpo version`.
    disable_version_flag = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Print mcpo's own version and exit (`--version` is the OpenAPI document's, as in mcpo).
    #[arg(short = 'V', action = clap::ArgAction::Version)]
    pub print_version: Option<bool>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

// Parsed once at start-up, so the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the proxy (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Run a small, honest MCP server for tests, demos and the chaos harness.
    FakeServer(FakeServerArgs),
    /// Run a fault scenario against a proxy and check its recovery SLOs (exit 0: all held,
    /// 1: one was missed, 2: invalid scenario or command line, 3: invalid run: a fault that
    /// reached nothing, a harness that fell behind, a proxy never ready).
    Chaos(ChaosArgs),
    /// Print this build's version, commit-independent: `mcpo <version> (<os>/<arch>)`.
    Version,
    /// Print the configuration reference of `docs/configuration.md` (its generated part).
    #[command(hide = true)]
    ConfigReference {
        /// Replace the generated part of this Markdown file (between its markers) instead.
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// Check that a running proxy is healthy: GET the URL, exit 0 on a 2xx, 1 otherwise (for
    /// container images without curl).
    Healthcheck(HealthcheckArgs),
}

#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// What to ask; `/readyz` checks that every server is ready as well.
    #[arg(default_value = "http://127.0.0.1:8000/healthz")]
    pub url: String,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5.0)]
    pub timeout: f64,
}

/// `mcpo <version> (<os>/<arch>)`, as `mcpo version` and `mcpo -V` print it.
pub fn version_line() -> String {
    format!(
        "mcpo {} ({}/{})",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

#[derive(Debug, Clone, Args)]
pub struct ChaosArgs {
    /// The scenario file (YAML), e.g. fault-scenarios/500-storm.yaml.
    #[arg(required_unless_present = "example")]
    pub file: Option<PathBuf>,
    /// Print an annotated example scenario (valid as it is) and exit.
    #[arg(long, conflicts_with = "file")]
    pub example: bool,
    /// Run against another mcpo-compatible proxy: a shell command in which `{config}` and
    /// `{port}` are replaced, e.g. "mcpo --port {port} --config {config}".
    #[arg(long)]
    pub target: Option<String>,
    /// The proxy's front the load goes through: `http` (`POST /{server}/{tool}`) or `mcp`
    /// (`tools/call` on one session of its MCP endpoint).
    #[arg(long, default_value = "http", value_parser = ["http", "mcp"])]
    pub via: String,
    /// With `--via mcp`: the MCP endpoint's path on the proxy; `{server}` is replaced, for
    /// gateways with an endpoint per server (one session is opened on each).
    #[arg(long = "mcp-path", default_value = "/mcp")]
    pub mcp_path: String,
    /// With `--via mcp`: the tool's name on the endpoint; `{server}` and `{tool}` are replaced.
    #[arg(long = "mcp-tool-name", default_value = "{server}__{tool}")]
    pub mcp_tool_name: String,
    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write a JUnit XML report here (one test case per SLO and per fault event).
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Write a self-contained HTML report with a timeline chart here.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Override the scenario's seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Only check the scenario file (exit 0 when valid, 2 with the problem otherwise).
    #[arg(long)]
    pub check: bool,
    /// The harness's own log level (DEBUG, INFO, WARNING, ERROR).
    #[arg(long = "log-level", env = "LOG_LEVEL", default_value = "WARNING")]
    pub log_level: String,
}

#[derive(Clone, Args)]
pub struct ServeArgs {
    /// Bind address.
    #[arg(
        help_heading = "Network",
        long,
        env = "MCPO_HOST",
        default_value = "0.0.0.0"
    )]
    pub host: String,
    /// Port to listen on.
    #[arg(
        help_heading = "Network",
        long,
        short = 'p',
        env = "MCPO_PORT",
        default_value_t = 8000
    )]
    pub port: u16,
    /// Allowed CORS origins (repeatable; `*` allows every origin).
    #[arg(
        help_heading = "Network",
        long = "cors-allow-origins",
        default_value = "*"
    )]
    pub cors_allow_origins: Vec<String>,
    /// API key that protects the tool routes (Bearer token).
    #[arg(
        help_heading = "Authentication",
        long = "api-key",
        short = 'k',
        env = "MCPO_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
    /// The API key also protects docs, OpenAPI, metrics and diagnostics.
    #[arg(
        help_heading = "Authentication",
        long = "strict-auth",
        env = "MCPO_STRICT_AUTH"
    )]
    pub strict_auth: bool,
    /// KEY=VALUE passed to stdio servers (repeatable).
    #[arg(
        help_heading = "Servers",
        long = "env",
        short = 'e',
        value_name = "KEY=VALUE"
    )]
    pub env: Vec<String>,
    /// A dotenv file of KEY=VALUE lines passed to stdio servers.
    #[arg(help_heading = "Servers", long = "env-path")]
    pub env_path: Option<PathBuf>,
    /// Transport of the single server (given after `--` or with `--command`): stdio, sse or
    /// streamable-http.
    #[arg(
        help_heading = "Servers",
        long = "type",
        visible_alias = "server-type",
        default_value = "stdio"
    )]
    pub server_type: String,
    /// The single server's command (or URL), another spelling of `-- COMMAND`: `--command
    /// python --args "server.py --flag 'a b'"` means `-- python server.py --flag 'a b'`.
    #[arg(help_heading = "Servers", long = "command", value_name = "COMMAND")]
    pub server_command: Option<String>,
    /// The arguments of `--command` in one string, split into words as a shell would.
    #[arg(
        help_heading = "Servers",
        long = "args",
        value_name = "ARGS",
        allow_hyphen_values = true
    )]
    pub server_args: Option<String>,
    /// Config file in the Claude Desktop `mcpServers` format.
    #[arg(help_heading = "Servers", long, short = 'c', env = "MCPO_CONFIG")]
    pub config: Option<PathBuf>,
    /// OpenAPI title of the root app.
    #[arg(
        help_heading = "OpenAPI document",
        long,
        short = 'n',
        default_value = "MCP OpenAPI Proxy"
    )]
    pub name: String,
    /// OpenAPI description of the root app.
    #[arg(
        help_heading = "OpenAPI document",
        long,
        short = 'd',
        default_value = "Automatically generated API from MCP Tool Schemas"
    )]
    pub description: String,
    /// OpenAPI version of the root app.
    #[arg(
        help_heading = "OpenAPI document",
        long = "version",
        short = 'v',
        default_value = "1.0"
    )]
    pub api_version: String,
    /// Serve HTTPS with this PEM certificate chain (needs --ssl-keyfile).
    #[arg(
        help_heading = "TLS",
        long = "ssl-certfile",
        short = 't',
        value_name = "FILE"
    )]
    pub ssl_certfile: Option<PathBuf>,
    /// The PEM private key of --ssl-certfile (PKCS#8, RSA or EC; not encrypted).
    #[arg(
        help_heading = "TLS",
        long = "ssl-keyfile",
        short = 'K',
        value_name = "FILE"
    )]
    pub ssl_keyfile: Option<PathBuf>,
    /// Root path when running behind a reverse proxy (used in OpenAPI `servers` and docs).
    #[arg(
        help_heading = "Network",
        long = "root-path",
        env = "MCPO_ROOT_PATH",
        default_value = ""
    )]
    pub root_path: String,
    /// URL prefix under which the configured servers are mounted.
    #[arg(
        help_heading = "Network",
        long = "path-prefix",
        env = "MCPO_PATH_PREFIX",
        default_value = "/"
    )]
    pub path_prefix: String,
    /// JSON object of HTTP headers for the single remote server.
    #[arg(help_heading = "Servers", long = "header", short = 'H')]
    pub header: Option<String>,
    /// Watch the config file and apply changes without a restart.
    #[arg(help_heading = "Servers", long = "hot-reload")]
    pub hot_reload: bool,
    /// With no API key, show privileged diagnostics (child stderr, PIDs, token paths, OAuth
    /// authorization URLs) and allow restarts to clients on loopback that name a loopback
    /// host and send no cross-origin Origin. Off, they are only in the log.
    #[arg(
        help_heading = "Authentication",
        long = "trust-loopback",
        env = "MCPO_TRUST_LOOPBACK"
    )]
    pub trust_loopback: bool,
    /// What joins a server's name and a tool's on `/mcp` (`time__now`); letters, digits, `_`
    /// and `-`, at most 8.
    #[arg(
        help_heading = "Servers",
        long = "mcp-separator",
        env = "MCPO_MCP_SEPARATOR",
        default_value = "__"
    )]
    pub mcp_separator: String,
    /// At most this many MCP sessions (`Mcp-Session-Id`) at once on each MCP endpoint; a new
    /// one past it is answered 503. Idle sessions end after 5 minutes.
    #[arg(
        help_heading = "Limits",
        long = "max-mcp-sessions",
        env = "MCPO_MAX_MCP_SESSIONS",
        default_value_t = 1000
    )]
    pub max_mcp_sessions: usize,
    /// Seconds a client has to send a request's head (the request line and headers); a
    /// keep-alive connection idle for as long is closed.
    #[arg(
        help_heading = "Limits",
        long = "header-timeout",
        env = "MCPO_HEADER_TIMEOUT",
        default_value_t = 30.0
    )]
    pub header_timeout: f64,
    /// Connections served at once; past it a connection is answered 503 with Retry-After
    /// (lowered to what the open-file limit holds).
    #[arg(
        help_heading = "Limits",
        long = "max-connections",
        env = "MCPO_MAX_CONNECTIONS",
        default_value_t = 4096
    )]
    pub max_connections: usize,
    /// Seconds a client has to send a request's body once its headers are in; then 408.
    #[arg(
        help_heading = "Limits",
        long = "body-timeout",
        env = "MCPO_BODY_TIMEOUT",
        default_value_t = 30.0
    )]
    pub body_timeout: f64,
    /// Tools served per server at most; a server that lists more has the rest withheld (named
    /// in /diagnostics).
    #[arg(
        help_heading = "Limits",
        long = "max-tools",
        env = "MCPO_MAX_TOOLS",
        default_value_t = 1000
    )]
    pub max_tools: usize,
    /// Bytes of tool definitions (names, descriptions, schemas) served per server at most;
    /// tools past it are withheld.
    #[arg(
        help_heading = "Limits",
        long = "max-listing-bytes",
        env = "MCPO_MAX_LISTING_BYTES",
        default_value_t = 8 * 1024 * 1024
    )]
    pub max_listing_bytes: usize,
    /// DEBUG, INFO, WARNING, ERROR or CRITICAL [default: INFO]. The flag wins over
    /// MCPO_LOG_LEVEL, which wins over LOG_LEVEL (mcpo's variable).
    #[arg(help_heading = "Logging", long = "log-level", env = "MCPO_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// mcpo's `LOG_LEVEL`, which clap cannot give as a second variable of `--log-level`.
    #[arg(skip = std::env::var("LOG_LEVEL").ok().filter(|v| !v.is_empty()))]
    pub log_level_fallback: Option<String>,
    /// Deadline of one tool call in seconds, unless a server sets its own `timeout`.
    #[arg(
        help_heading = "Timeouts and recovery",
        long = "tool-timeout",
        env = "MCPO_TOOL_TIMEOUT",
        default_value_t = 60.0
    )]
    pub tool_timeout: f64,
    /// Deadline in seconds for connecting to one upstream (spawn, handshake, tool listing).
    #[arg(
        help_heading = "Timeouts and recovery",
        long = "connect-timeout",
        env = "MCPO_CONNECT_TIMEOUT",
        default_value_t = 60.0
    )]
    pub connect_timeout: f64,
    /// Upstream sessions kept warm per server (stdio: child processes).
    #[arg(
        help_heading = "Pool",
        long = "pool-min-connections",
        env = "MCPO_POOL_MIN_CONNECTIONS",
        default_value_t = 1
    )]
    pub pool_min_connections: usize,
    /// Upstream sessions per server at most; the pool grows under load up to this.
    #[arg(
        help_heading = "Pool",
        long = "pool-max-connections",
        env = "MCPO_POOL_MAX_CONNECTIONS",
        default_value_t = 1
    )]
    pub pool_max_connections: usize,
    /// Seconds a pool member above the minimum may stay idle before it is retired.
    #[arg(
        help_heading = "Pool",
        long = "pool-idle-timeout",
        env = "MCPO_POOL_IDLE_TIMEOUT",
        default_value_t = 60.0
    )]
    pub pool_idle_timeout: f64,
    /// Seconds a call may run in all while its server reports progress
    /// (`notifications/progress`): each report gives it another --tool-timeout, up to this
    /// (never less than --tool-timeout; a server's "max_timeout" overrides it).
    #[arg(
        help_heading = "Timeouts and recovery",
        long = "max-tool-timeout",
        env = "MCPO_MAX_TOOL_TIMEOUT",
        default_value_t = 600.0
    )]
    pub max_tool_timeout: f64,
    /// Seconds that calls in flight get to finish after SIGTERM or SIGINT, before sessions and
    /// children are closed.
    #[arg(
        help_heading = "Timeouts and recovery",
        long = "drain-timeout",
        env = "MCPO_DRAIN_TIMEOUT",
        default_value_t = 10.0
    )]
    pub drain_timeout: f64,
    /// Seconds of lame duck after SIGTERM or SIGINT, before the drain: `/readyz` answers 503
    /// and answers carry `Connection: close` while the proxy goes on accepting and serving, so
    /// that balancers stop sending before the listener closes. 0 (the default) skips it.
    #[arg(
        help_heading = "Timeouts and recovery",
        long = "shutdown-delay",
        env = "MCPO_SHUTDOWN_DELAY",
        default_value_t = 0.0
    )]
    pub shutdown_delay: f64,
    /// Attempts per tool call, the first included, when a failure is safe to recover from.
    #[arg(
        help_heading = "Timeouts and recovery",
        long = "max-recovery-attempts",
        env = "MCPO_MAX_RECOVERY_ATTEMPTS",
        default_value_t = 3
    )]
    pub max_recovery_attempts: u32,
    /// `false` stops recording metrics (for measuring what recording costs).
    #[arg(help_heading = "Metrics and monitor", long = "metrics-enabled", env = "MCPO_METRICS_ENABLED", default_value_t = true,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub metrics_enabled: bool,
    /// Seconds within which a recovery episode counts as recovered (`recovery_success_rate`).
    #[arg(
        help_heading = "Timeouts and recovery",
        long = "recovery-target",
        env = "MCPO_RECOVERY_TARGET",
        default_value_t = 10.0
    )]
    pub recovery_target: f64,
    /// Entries the result cache holds at most (all servers together).
    #[arg(
        help_heading = "Cache",
        long = "cache-max-size",
        env = "MCPO_CACHE_MAX_SIZE",
        default_value_t = 1000
    )]
    pub cache_max_size: u64,
    /// Bytes the result cache holds at most (about: results as JSON text, and their keys).
    #[arg(
        help_heading = "Cache",
        long = "cache-max-bytes",
        env = "MCPO_CACHE_MAX_BYTES",
        default_value_t = 64 * 1024 * 1024
    )]
    pub cache_max_bytes: u64,
    /// A Redis URL (`redis://[:password@]host:port/db`, `rediss://` for TLS, or
    /// `redis+unix:///path`): replicas share cached results through it, behind each one's own
    /// cache. Redis down or slow is a miss, never an error.
    #[arg(
        help_heading = "Cache",
        long = "cache-redis-url",
        env = "MCPO_CACHE_REDIS_URL",
        hide_env_values = true
    )]
    pub cache_redis_url: Option<String>,
    /// Seconds a cached result lives unless its server's `cache.ttl` says otherwise.
    #[arg(
        help_heading = "Cache",
        long = "cache-default-ttl",
        env = "MCPO_CACHE_DEFAULT_TTL",
        default_value_t = 300.0
    )]
    pub cache_default_ttl: f64,
    /// Whether the monitor samples CPU and memory and raises alerts (default: the config
    /// file's `monitor.enabled`, else true).
    #[arg(help_heading = "Metrics and monitor", long = "monitor-enabled", env = "MCPO_MONITOR_ENABLED",
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub monitor_enabled: Option<bool>,
    /// Seconds between monitor samples (default: `monitor.interval`, else 30).
    #[arg(
        help_heading = "Metrics and monitor",
        long = "monitor-interval",
        env = "MCPO_MONITOR_INTERVAL"
    )]
    pub monitor_interval: Option<f64>,
    /// Alert above this machine CPU use, percent (default 70).
    #[arg(
        help_heading = "Metrics and monitor",
        long = "cpu-usage-warning",
        env = "MCPO_CPU_USAGE_WARNING"
    )]
    pub cpu_usage_warning: Option<f64>,
    /// Alert above this machine memory use, percent (default 80).
    #[arg(
        help_heading = "Metrics and monitor",
        long = "memory-usage-warning",
        env = "MCPO_MEMORY_USAGE_WARNING"
    )]
    pub memory_usage_warning: Option<f64>,
    /// Alert above this share of failed calls (default 0.05).
    #[arg(
        help_heading = "Metrics and monitor",
        long = "error-rate-warning",
        env = "MCPO_ERROR_RATE_WARNING"
    )]
    pub error_rate_warning: Option<f64>,
    /// Alert above this mean response time, seconds (default 5).
    #[arg(
        help_heading = "Metrics and monitor",
        long = "response-time-warning",
        env = "MCPO_RESPONSE_TIME_WARNING"
    )]
    pub response_time_warning: Option<f64>,
    /// `false` turns automatic recovery off (mcpo's behaviour, for comparison).
    #[arg(help_heading = "Timeouts and recovery", long = "error-recovery-enabled", env = "MCPO_ERROR_RECOVERY_ENABLED", default_value_t = true,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub error_recovery_enabled: bool,
    /// The command (stdio) or URL (remote) of a single server.
    #[arg(help_heading = "Servers", last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct FakeServerArgs {
    /// stdio, streamable-http, or sse (the legacy HTTP+SSE transport: `GET /sse`).
    #[arg(long, default_value = "stdio")]
    pub transport: String,
    /// Port for streamable-http and sse (0 picks a free one; the address is printed on stdout).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Bind address for streamable-http and sse.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Name reported in `serverInfo`.
    #[arg(long, default_value = "fake")]
    pub id: String,
    /// A chaos harness's fault hub (HOST:PORT) to connect to: announce `--id` and this PID,
    /// and apply the faults it sends (what `mcpo chaos` starts its fakes with).
    #[arg(long)]
    pub hub: Option<String>,
    /// stdio only: exit this many milliseconds after each handshake (a crash loop).
    #[arg(long = "die-after-ms")]
    pub die_after_ms: Option<u64>,
    /// Append a line to FILE for every `incr` call as it starts: how often the tool ran,
    /// across processes (a test that kills the server mid-call reads it).
    #[arg(long, value_name = "FILE")]
    pub journal: Option<std::path::PathBuf>,
    /// Also list the tools in FILE (a JSON array of tool definitions, listed as they are):
    /// for tests that feed a proxy odd or hostile listings. Calling them is an unknown tool.
    #[arg(long = "extra-tools", value_name = "FILE")]
    pub extra_tools: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for ServeArgs {
    // Written out so that the API key can never reach a log through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeArgs")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("config", &self.config)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("server_type", &self.server_type)
            .field("command", &self.command.first())
            .finish_non_exhaustive()
    }
}

impl ServeArgs {
    /// The log level: `--log-level`, else `MCPO_LOG_LEVEL`, else `LOG_LEVEL`, else INFO.
    pub fn log_level(&self) -> &str {
        self.log_level
            .as_deref()
            .or(self.log_level_fallback.as_deref())
            .unwrap_or("INFO")
    }
}

impl Cli {
    /// The command to run, with the mcpo-compatible default of `serve`.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Serve(self.serve))
    }
}
