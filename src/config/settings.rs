//! The settings of one `mcpo serve` run, built from the command line (which clap has already
//! merged with `MCPO_*` environment variables) and the config file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::file::{ParsedConfig, check_headers, check_url, parse_config_file};
use super::{ConfigError, ServerConfig, Transport, parse_transport_type};
use crate::cli::ServeArgs;

/// Everything `serve` needs, validated. Its `Debug` hides the API key and environment values.
#[derive(Clone)]
pub struct ServeConfig {
    pub host: String,
    pub port: u16,
    pub cors_allow_origins: Vec<String>,
    /// Serve HTTPS with these (`--ssl-certfile`, `--ssl-keyfile`); `None` serves plain HTTP.
    pub tls: Option<super::TlsSettings>,
    pub api_key: Option<String>,
    pub strict_auth: bool,
    /// OpenAPI info of the root app.
    pub title: String,
    pub description: String,
    pub api_version: String,
    /// Prefix of every URL as the client sees it (reverse proxy), without a trailing `/`.
    pub root_path: String,
    /// Prefix under which servers are mounted, always starting and ending with `/`.
    pub path_prefix: String,
    /// True when the servers come from a config file (`/{server}/{tool}` routes); false in
    /// single-server mode (`/{tool}` routes).
    pub config_mode: bool,
    pub config_path: Option<PathBuf>,
    pub servers: Vec<ServerConfig>,
    /// Extra environment for every stdio server (`--env`, `--env-path`); a server's own `env`
    /// wins over it.
    pub stdio_env: BTreeMap<String, String>,
    pub tool_timeout: Duration,
    /// How far progress may extend a call.
    pub max_tool_timeout: Duration,
    pub connect_timeout: Duration,
    pub log_level: String,
    /// Pool size per server unless the server sets its own.
    pub pool_min: usize,
    pub pool_max: usize,
    /// A pool member above the minimum idle this long is retired.
    pub pool_idle: Duration,
    /// How long calls in flight get to finish on shutdown.
    pub drain_timeout: Duration,
    /// Lame duck after a signal, before the drain (`--shutdown-delay`); zero skips it.
    pub shutdown_delay: Duration,
    /// Attempts per call, the first included.
    pub max_recovery_attempts: u32,
    /// False gives mcpo's behaviour: no retries, breaker or proactive restarts.
    pub recovery_enabled: bool,
    pub metrics_enabled: bool,
    pub recovery_target: Duration,
    pub cache_max_size: u64,
    pub cache_max_bytes: u64,
    /// Where replicas share cached results (`--cache-redis-url`).
    pub cache_redis_url: Option<crate::shared_cache::RedisUrl>,
    pub cache_default_ttl: Duration,
    /// What one server's tool listing may hold.
    pub listing: crate::catalog::ListingLimits,
    /// How long a client has to send a request body.
    pub body_timeout: Duration,
    /// How long a client has to send a request head, and a keep-alive connection may idle.
    pub header_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Without a key, whether loopback clients see privileged details (`--trust-loopback`).
    pub trust_loopback: bool,
    /// What joins server and tool names on `/mcp`.
    pub mcp_separator: String,
    /// MCP sessions per endpoint at most.
    pub max_mcp_sessions: usize,
    pub monitor: crate::monitor::MonitorSettings,
    /// Watch the config file and apply server changes without a restart.
    pub hot_reload: bool,
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("strict_auth", &self.strict_auth)
            .field("config_path", &self.config_path)
            .field("servers", &self.servers)
            .field("stdio_env", &self.stdio_env.keys().collect::<Vec<_>>())
            .field("tool_timeout", &self.tool_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("pool", &(self.pool_min, self.pool_max))
            .field("recovery_enabled", &self.recovery_enabled)
            .finish_non_exhaustive()
    }
}

impl ServeConfig {
    /// A config for tests and library users: the given servers in config mode, defaults for the
    /// rest, listening on 127.0.0.1 with a port chosen by the OS.
    pub fn for_servers(servers: Vec<ServerConfig>) -> Self {
        ServeConfig {
            host: "127.0.0.1".into(),
            port: 0,
            cors_allow_origins: vec!["*".into()],
            tls: None,
            api_key: None,
            strict_auth: false,
            title: "MCP OpenAPI Proxy".into(),
            description: "Automatically generated API from MCP Tool Schemas".into(),
            api_version: "1.0".into(),
            root_path: String::new(),
            path_prefix: "/".into(),
            config_mode: true,
            config_path: None,
            servers,
            stdio_env: BTreeMap::new(),
            tool_timeout: Duration::from_secs(60),
            max_tool_timeout: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(60),
            log_level: "INFO".into(),
            pool_min: 1,
            pool_max: 1,
            pool_idle: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(10),
            shutdown_delay: Duration::ZERO,
            max_recovery_attempts: 3,
            recovery_enabled: true,
            metrics_enabled: true,
            recovery_target: Duration::from_secs(10),
            cache_max_size: 1000,
            cache_max_bytes: 64 * 1024 * 1024,
            cache_redis_url: None,
            cache_default_ttl: Duration::from_secs(300),
            listing: crate::catalog::ListingLimits::default(),
            body_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(30),
            max_connections: 4096,
            trust_loopback: false,
            mcp_separator: "__".into(),
            max_mcp_sessions: 1000,
            monitor: crate::monitor::MonitorSettings::default(),
            hot_reload: false,
        }
    }

    /// The deadline of one call to `server`.
    pub fn deadline_for(&self, server: &ServerConfig) -> Duration {
        server.timeout.unwrap_or(self.tool_timeout)
    }
}

/// Validates the command line and loads the config file it names.
pub fn from_cli(args: &ServeArgs) -> Result<ServeConfig, ConfigError> {
    let flag = |flag: &str, message: String| ConfigError::Flag {
        flag: flag.to_string(),
        message,
    };
    if args.hot_reload && args.config.is_none() {
        return Err(flag(
            "--hot-reload",
            "watches the config file: give --config FILE".into(),
        ));
    }
    let secs = |name: &str, value: f64| {
        positive_secs(value).ok_or_else(|| {
            flag(
                name,
                format!(
                    "must be a number of seconds above 0 and at most {} (a year), found {value}",
                    super::MAX_DURATION_SECS
                ),
            )
        })
    };
    let tool_timeout = secs("--tool-timeout", args.tool_timeout)?;
    let max_tool_timeout = secs("--max-tool-timeout", args.max_tool_timeout)?;
    let connect_timeout = secs("--connect-timeout", args.connect_timeout)?;
    let pool_idle = secs("--pool-idle-timeout", args.pool_idle_timeout)?;
    let drain_timeout = secs("--drain-timeout", args.drain_timeout)?;
    let shutdown_delay = match args.shutdown_delay {
        0.0 => Duration::ZERO,
        d => secs("--shutdown-delay", d)?,
    };
    let recovery_target = secs("--recovery-target", args.recovery_target)?;
    let cache_default_ttl = secs("--cache-default-ttl", args.cache_default_ttl)?;
    let body_timeout = secs("--body-timeout", args.body_timeout)?;
    let cache_redis_url = match args.cache_redis_url.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(url) => Some(
            crate::shared_cache::RedisUrl::parse(url)
                .map_err(|e| flag("--cache-redis-url", e.to_string()))?,
        ),
    };
    let header_timeout = secs("--header-timeout", args.header_timeout)?;
    let separator = &args.mcp_separator;
    if separator.is_empty()
        || separator.len() > 8
        || !separator
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(flag(
            "--mcp-separator",
            format!("must be 1 to 8 letters, digits, '_' or '-', found {separator:?}"),
        ));
    }
    if args.max_mcp_sessions == 0 {
        return Err(flag("--max-mcp-sessions", "must be at least 1".into()));
    }
    if args.max_connections == 0 {
        return Err(flag("--max-connections", "must be at least 1".into()));
    }
    if args.cache_max_size == 0 {
        return Err(flag("--cache-max-size", "must be at least 1".into()));
    }
    if args.cache_max_bytes < 1024 * 1024 {
        return Err(flag(
            "--cache-max-bytes",
            format!(
                "must be at least 1048576 (1 MiB), found {}",
                args.cache_max_bytes
            ),
        ));
    }
    if args.max_tools == 0 {
        return Err(flag("--max-tools", "must be at least 1".into()));
    }
    if args.max_listing_bytes < 1024 {
        return Err(flag(
            "--max-listing-bytes",
            format!("must be at least 1024, found {}", args.max_listing_bytes),
        ));
    }
    if !(1..=64).contains(&args.pool_min_connections) {
        return Err(flag(
            "--pool-min-connections",
            "must be from 1 to 64".into(),
        ));
    }
    if !(1..=64).contains(&args.pool_max_connections) {
        return Err(flag(
            "--pool-max-connections",
            "must be from 1 to 64".into(),
        ));
    }
    if args.max_recovery_attempts == 0 {
        return Err(flag("--max-recovery-attempts", "must be at least 1".into()));
    }
    let mut stdio_env = BTreeMap::new();
    if let Some(path) = &args.env_path {
        let iter = dotenvy::from_path_iter(path)
            .map_err(|e| flag("--env-path", format!("{}: {e}", path.display())))?;
        for item in iter {
            let (k, v) =
                item.map_err(|e| flag("--env-path", format!("{}: {e}", path.display())))?;
            stdio_env.insert(k, v);
        }
    }
    for pair in &args.env {
        let (k, v) = pair
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| flag("--env", format!("{pair:?} is not KEY=VALUE")))?;
        stdio_env.insert(k.to_string(), v.to_string());
    }
    let words = server_words(args)?;
    let (config_mode, servers) = match (&args.config, words.is_empty()) {
        (Some(_), false) => {
            return Err(flag(
                "--config",
                "give either --config or a server command (after -- or with --command), not both"
                    .into(),
            ));
        }
        (None, true) => {
            return Err(flag(
                "--config",
                "nothing to serve: give --config FILE or a server command after -- \
                 (try `mcpo serve --config demo/config.json`)"
                    .into(),
            ));
        }
        (Some(path), true) => (true, parse_config_file(path)?),
        (None, false) => (
            false,
            ParsedConfig {
                servers: vec![single_server(args, words)?],
                ..ParsedConfig::default()
            },
        ),
    };
    let monitor = monitor_settings(args, &servers.monitor)?;
    let servers = servers.servers;
    let tls = super::tls::from_flags(args.ssl_certfile.as_deref(), args.ssl_keyfile.as_deref())?;
    if args.api_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
        // As in mcpo, an empty key means no key; but an empty value is more often a secret
        // that a template or an orchestrator failed to fill in than a choice, so say it.
        tracing::warn!(
            "--api-key / MCPO_API_KEY is set but empty: the proxy runs WITHOUT authentication; unset it to silence this, or give it a value"
        );
    }
    Ok(ServeConfig {
        host: args.host.clone(),
        port: args.port,
        cors_allow_origins: args.cors_allow_origins.clone(),
        tls,
        api_key: args.api_key.clone().filter(|k| !k.trim().is_empty()),
        strict_auth: args.strict_auth,
        title: args.name.clone(),
        description: args.description.clone(),
        api_version: args.api_version.clone(),
        root_path: args.root_path.trim_end_matches('/').to_string(),
        path_prefix: normalise_prefix(&args.path_prefix),
        config_mode,
        config_path: args.config.clone(),
        servers,
        stdio_env,
        tool_timeout,
        max_tool_timeout,
        connect_timeout,
        log_level: args.log_level().to_string(),
        pool_min: args.pool_min_connections,
        pool_max: args.pool_max_connections.max(args.pool_min_connections),
        pool_idle,
        drain_timeout,
        shutdown_delay,
        max_recovery_attempts: args.max_recovery_attempts,
        recovery_enabled: args.error_recovery_enabled,
        metrics_enabled: args.metrics_enabled,
        recovery_target,
        cache_max_size: args.cache_max_size,
        cache_max_bytes: args.cache_max_bytes,
        cache_redis_url,
        cache_default_ttl,
        listing: crate::catalog::ListingLimits {
            max_tools: args.max_tools,
            max_bytes: args.max_listing_bytes,
        },
        body_timeout,
        header_timeout,
        max_connections: args.max_connections,
        trust_loopback: args.trust_loopback,
        mcp_separator: args.mcp_separator.clone(),
        max_mcp_sessions: args.max_mcp_sessions,
        monitor,
        hot_reload: args.hot_reload,
    })
}

/// The monitor's settings: defaults, then the config file's `"monitor"`, then `MCPO_*`
/// variables and flags.
fn monitor_settings(
    args: &ServeArgs,
    file: &super::MonitorOverrides,
) -> Result<crate::monitor::MonitorSettings, ConfigError> {
    let flag = |flag: &str, message: String| ConfigError::Flag {
        flag: flag.to_string(),
        message,
    };
    let mut m = crate::monitor::MonitorSettings::default();
    if let Some(v) = file.enabled {
        m.enabled = v;
    }
    if let Some(v) = file.interval {
        m.interval = v;
    }
    let pick = |file: Option<f64>, arg: Option<f64>, default: f64| arg.or(file).unwrap_or(default);
    m.cpu_usage_warning = pick(
        file.cpu_usage_warning,
        args.cpu_usage_warning,
        m.cpu_usage_warning,
    );
    m.memory_usage_warning = pick(
        file.memory_usage_warning,
        args.memory_usage_warning,
        m.memory_usage_warning,
    );
    m.error_rate_warning = pick(
        file.error_rate_warning,
        args.error_rate_warning,
        m.error_rate_warning,
    );
    m.response_time_warning = pick(
        file.response_time_warning,
        args.response_time_warning,
        m.response_time_warning,
    );
    if let Some(v) = args.monitor_enabled {
        m.enabled = v;
    }
    if let Some(secs) = args.monitor_interval {
        m.interval = positive_secs(secs).ok_or_else(|| {
            flag(
                "--monitor-interval",
                format!("must be a positive number of seconds, found {secs}"),
            )
        })?;
    }
    for (name, value, max) in [
        ("--cpu-usage-warning", m.cpu_usage_warning, 100.0),
        ("--memory-usage-warning", m.memory_usage_warning, 100.0),
        ("--error-rate-warning", m.error_rate_warning, 1.0),
        (
            "--response-time-warning",
            m.response_time_warning,
            super::MAX_DURATION_SECS,
        ),
    ] {
        if !(value.is_finite() && (0.0..=max).contains(&value)) {
            return Err(flag(
                name,
                format!("must be from 0 to {max}, found {value}"),
            ));
        }
    }
    Ok(m)
}

/// The single server's command (or URL) and arguments: the words after `--`, or
/// `--command` and `--args` split as a shell would split them.
fn server_words(args: &ServeArgs) -> Result<Vec<String>, ConfigError> {
    let flag = |name: &str, message: String| ConfigError::Flag {
        flag: name.into(),
        message,
    };
    match (&args.server_command, &args.server_args) {
        (None, None) => Ok(args.command.clone()),
        (None, Some(_)) => Err(flag(
            "--args",
            "needs --command (the program the arguments are for)".into(),
        )),
        (Some(_), _) if !args.command.is_empty() => Err(flag(
            "--command",
            format!(
                "give the server either with --command/--args or after --, not both \
                 (found {:?} after --)",
                args.command.join(" ")
            ),
        )),
        (Some(command), rest) => {
            let mut words = vec![command.clone()];
            if let Some(text) = rest {
                words.extend(shlex::split(text).ok_or_else(|| {
                    flag(
                        "--args",
                        format!("{text:?} has an unclosed quote or a trailing backslash"),
                    )
                })?);
            }
            Ok(words)
        }
    }
}

fn single_server(args: &ServeArgs, words: Vec<String>) -> Result<ServerConfig, ConfigError> {
    let flag = |message: String| ConfigError::Flag {
        flag: "--type".into(),
        message,
    };
    let kind = parse_transport_type(&args.server_type).ok_or_else(|| {
        flag(format!(
            "unknown server type {:?}; use stdio, sse or streamable-http",
            args.server_type
        ))
    })?;
    let headers: BTreeMap<String, String> = match &args.header {
        None => BTreeMap::new(),
        Some(text) => serde_json::from_str(text).map_err(|e| ConfigError::Flag {
            flag: "--header".into(),
            message: format!("must be a JSON object of strings: {e}"),
        })?,
    };
    check_headers(&headers).map_err(|message| ConfigError::Flag {
        flag: "--header".into(),
        message,
    })?;
    let mut words = words.into_iter();
    let first = words.next().unwrap_or_default();
    if kind != "stdio" {
        check_url(&first).map_err(|message| ConfigError::Flag {
            flag: "the server URL after --".into(),
            message: message.replace("key \"url\": ", ""),
        })?;
    }
    let transport = match kind {
        "stdio" => Transport::Stdio {
            command: first,
            args: words.collect(),
            env: BTreeMap::new(),
            cwd: None,
        },
        "streamable-http" => Transport::StreamableHttp {
            url: first,
            headers,
        },
        _ => Transport::Sse {
            url: first,
            headers,
        },
    };
    Ok(ServerConfig::new("", transport))
}

fn positive_secs(secs: f64) -> Option<Duration> {
    super::duration_from_secs(secs)
}

/// `api` or `/api/` become `/api/`; `` and `/` become `/`.
fn normalise_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        "/".into()
    } else {
        format!("/{trimmed}/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// Parses a command line as `main` does; clap errors become flag errors.
    fn parse(args: &[&str]) -> Result<ServeConfig, ConfigError> {
        let cli = crate::cli::Cli::try_parse_from(args).map_err(|e| ConfigError::Flag {
            flag: "command line".into(),
            message: e.to_string(),
        })?;
        match cli.into_command() {
            crate::cli::Command::Serve(serve) => from_cli(&serve),
            other => Err(ConfigError::Flag {
                flag: "command line".into(),
                message: format!("unexpected command {other:?}"),
            }),
        }
    }

    #[test]
    fn bare_command_means_serve_in_single_server_mode() -> TestResult {
        let cfg = parse(&[
            "mcpo",
            "--port",
            "9",
            "--",
            "uvx",
            "mcp-server-time",
            "--local-timezone=UTC",
        ])?;
        assert!(!cfg.config_mode);
        assert_eq!(cfg.port, 9);
        assert!(
            matches!(&cfg.servers[0].transport, Transport::Stdio { command, args, .. }
            if command == "uvx" && args.len() == 2)
        );
        Ok(())
    }

    #[test]
    fn unsupported_flags_say_so() {
        let err = parse(&["mcpo", "--hot-reload", "--", "x"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--hot-reload") && err.contains("--config"),
            "{err}"
        );
    }

    #[test]
    fn env_flags_and_prefixes() -> TestResult {
        let cfg = parse(&[
            "mcpo",
            "serve",
            "-e",
            "A=1",
            "--env",
            "B=x=y",
            "--path-prefix",
            "api",
            "--root-path",
            "/r/",
            "--",
            "x",
        ])?;
        assert_eq!(cfg.stdio_env["A"], "1");
        assert_eq!(cfg.stdio_env["B"], "x=y");
        assert_eq!(cfg.path_prefix, "/api/");
        assert_eq!(cfg.root_path, "/r");
        assert!(parse(&["mcpo", "-e", "novalue", "--", "x"]).is_err());
        Ok(())
    }

    #[test]
    fn single_remote_server_takes_headers() -> TestResult {
        let cfg = parse(&[
            "mcpo",
            "--type",
            "streamable_http",
            "-H",
            r#"{"X-A": "1"}"#,
            "--",
            "http://127.0.0.1:1/mcp",
        ])?;
        assert!(
            matches!(&cfg.servers[0].transport, Transport::StreamableHttp { headers, .. } if headers["X-A"] == "1")
        );
        assert!(
            parse(&[
                "mcpo",
                "--type",
                "streamable-http",
                "-H",
                "[1]",
                "--",
                "http://x"
            ])
            .is_err()
        );
        Ok(())
    }

    #[test]
    fn single_sse_server_takes_headers() -> TestResult {
        let cfg = parse(&[
            "mcpo",
            "--type",
            "sse",
            "--header",
            r#"{"Authorization": "Bearer t"}"#,
            "--",
            "http://127.0.0.1:1/sse",
        ])?;
        assert!(!cfg.config_mode);
        assert!(
            matches!(&cfg.servers[0].transport, Transport::Sse { url, headers }
            if url == "http://127.0.0.1:1/sse" && headers["Authorization"] == "Bearer t")
        );
        Ok(())
    }

    #[test]
    fn env_path_is_read_and_env_flags_win() -> TestResult {
        let path = std::env::temp_dir().join(format!("mcpo-env-{}", std::process::id()));
        std::fs::write(&path, "# comment\nA=from-file\nB=\"quoted value\"\n")?;
        let file = path.display().to_string();
        let cfg = parse(&["mcpo", "--env-path", &file, "-e", "A=from-flag", "--", "x"]);
        let _ = std::fs::remove_file(&path);
        let cfg = cfg?;
        assert_eq!(cfg.stdio_env["A"], "from-flag");
        assert_eq!(cfg.stdio_env["B"], "quoted value");
        let err = parse(&["mcpo", "--env-path", "/nonexistent/.env", "--", "x"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--env-path") && err.contains("/nonexistent/.env"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn debug_hides_the_key_and_env_values() -> TestResult {
        let cfg = parse(&[
            "mcpo",
            "-k",
            "SECRET-KEY",
            "-e",
            "TOKEN=SECRET-ENV",
            "--",
            "x",
        ])?;
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("TOKEN"), "{shown}");
        Ok(())
    }

    #[test]
    fn command_and_args_mean_the_words_after_the_separator() -> TestResult {
        let guide = parse(&[
            "mcpo",
            "--server-type",
            "stdio",
            "--command",
            "python",
            "--args",
            "server.py --flag 'a b' \"c d\"",
        ])?;
        let plain = parse(&["mcpo", "--", "python", "server.py", "--flag", "a b", "c d"])?;
        assert_eq!(guide.servers, plain.servers);
        assert!(!guide.config_mode);
        let alone = parse(&["mcpo", "--command", "uvx"])?;
        assert!(
            matches!(&alone.servers[0].transport, Transport::Stdio { command, args, .. }
            if command == "uvx" && args.is_empty())
        );
        let refused = [
            (
                vec!["mcpo", "--command", "python", "--", "server.py"],
                "--command",
            ),
            (
                vec!["mcpo", "--args", "server.py", "--", "python"],
                "--args",
            ),
            (
                vec!["mcpo", "--command", "python", "--args", "'open"],
                "--args",
            ),
            (
                vec!["mcpo", "--config", "c.json", "--command", "python"],
                "--config",
            ),
        ];
        for (line, flag) in refused {
            let err = parse(&line).unwrap_err().to_string();
            assert!(err.starts_with(flag), "{line:?}: {err}");
        }
        Ok(())
    }

    #[test]
    fn needs_something_to_serve() {
        let err = parse(&["mcpo"]).unwrap_err().to_string();
        assert!(err.contains("nothing to serve"), "{err}");
    }
}
