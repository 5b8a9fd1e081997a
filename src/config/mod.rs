//! Configuration: the `mcpServers` file, the command line and the environment, parsed once into
//! typed structs with defaults and validation.
//!
//! Everything the rest of the proxy needs to know about its setup is in [`ServeConfig`]. Nothing
//! outside this module (and `cli`) reads files or environment variables for settings, so a
//! reader can find every knob here and a test can build a config without touching the process.

mod file;
mod settings;
mod tls;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub use file::{ParsedConfig, parse_config_file, parse_config_str, parse_full_config_str};
pub use settings::{ServeConfig, from_cli};
pub use tls::TlsSettings;

/// Every key a config file may hold, by the section it sits in (`""` for the top level): the
/// parser's own lists, so the configuration reference is checked against what is parsed.
pub fn file_keys() -> [(&'static str, &'static [&'static str]); 6] {
    [
        ("", file::TOP_LEVEL_KEYS),
        ("monitor.", file::MONITOR_KEYS),
        ("mcpServers.<name>.", file::KNOWN_SERVER_KEYS),
        ("mcpServers.<name>.pool.", file::POOL_KEYS),
        ("mcpServers.<name>.cache.", file::CACHE_KEYS),
        ("mcpServers.<name>.oauth.", file::OAUTH_KEYS),
    ]
}

/// Route names that belong to the proxy itself and so cannot be server names.
pub const RESERVED_NAMES: &[&str] = &[
    "docs",
    "openapi.json",
    "redoc",
    "metrics",
    "diagnostics",
    "health",
    "healthz",
    "readyz",
    "status",
    "_assets",
];

/// One upstream MCP server as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// The name under which the server is mounted (`/{name}/{tool}`); empty in single-server
    /// mode, where tools are at the root.
    pub name: String,
    pub transport: Transport,
    /// Tools that are listed upstream but not exposed.
    pub disabled_tools: BTreeSet<String>,
    /// Deadline of one tool call; `None` means the proxy-wide default.
    pub timeout: Option<Duration>,
    /// How far progress notifications may extend a call; `None`: the proxy-wide default.
    pub max_timeout: Option<Duration>,
    /// Which headers of the incoming HTTP request are passed on to the tool call.
    pub header_forwarding: Option<HeaderForwarding>,
    /// Pool size bounds for this server; `None` means the proxy-wide setting.
    pub pool_min: Option<usize>,
    pub pool_max: Option<usize>,
    /// Tools that may be sent again after a failure although the server does not declare them
    /// idempotent.
    pub retryable_tools: BTreeSet<String>,
    /// Which tool results may be answered from the result cache.
    pub cache: Option<CacheConfig>,
    /// OAuth 2.1 for a streamable-HTTP server (`"oauth"`); `None`: no authorization flow.
    pub oauth: Option<OAuthConfig>,
}

/// A streamable-HTTP server's `"oauth"` object, with mcpo's keys and defaults.
#[derive(Clone, PartialEq)]
pub struct OAuthConfig {
    /// Where authorization discovery starts: the MCP server's URL unless set.
    pub server_url: String,
    /// Client metadata for dynamic registration (RFC 7591), as written in the file.
    pub client_metadata: serde_json::Map<String, serde_json::Value>,
    /// The loopback port the authorization server redirects the browser to.
    pub callback_port: u16,
    /// True: a loopback listener receives the redirect. False: the redirect URL is pasted on
    /// the proxy's standard input, as mcpo asks for it.
    pub use_loopback: bool,
    pub storage: OAuthStorage,
}

/// Where a server's tokens and registered client are kept.
#[derive(Debug, Clone, PartialEq)]
pub enum OAuthStorage {
    /// Files in this directory, named as mcpo names them (`~/.mcpo/tokens` by default).
    File { dir: std::path::PathBuf },
    /// In the proxy's memory only: every start authorizes again.
    Memory,
}

impl OAuthConfig {
    /// The redirect URI registered and sent: the first of `client_metadata.redirect_uris`, or
    /// mcpo's `http://localhost:{callback_port}/callback`.
    pub fn redirect_uri(&self) -> String {
        self.client_metadata
            .get("redirect_uris")
            .and_then(|v| v.as_array())
            .and_then(|uris| uris.first())
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| format!("http://localhost:{}/callback", self.callback_port))
    }

    /// The scopes asked for: `client_metadata.scope`, split on whitespace.
    pub fn scopes(&self) -> Vec<String> {
        self.client_metadata
            .get("scope")
            .and_then(|v| v.as_str())
            .map(|s| s.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// The client name registered: `client_metadata.client_name`, or mcpo's default.
    pub fn client_name(&self, server: &str) -> String {
        self.client_metadata
            .get("client_name")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| format!("MCPO Client for {server}"))
    }
}

/// URLs by their origin, metadata by its keys: paths and values may carry secrets.
impl std::fmt::Debug for OAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthConfig")
            .field("server_url", &crate::redact::origin(&self.server_url))
            .field(
                "client_metadata",
                &self.client_metadata.keys().collect::<Vec<_>>(),
            )
            .field("callback_port", &self.callback_port)
            .field("use_loopback", &self.use_loopback)
            .field("storage", &self.storage)
            .finish()
    }
}

/// The environment variable naming the directory of OAuth token files.
pub const OAUTH_DIR_ENV: &str = "MCPO_OAUTH_DIR";

/// The directory of OAuth token files: `$MCPO_OAUTH_DIR`, else mcpo's `~/.mcpo/tokens`.
pub fn oauth_token_dir() -> Result<std::path::PathBuf, String> {
    if let Some(dir) = std::env::var_os(OAUTH_DIR_ENV).filter(|d| !d.is_empty()) {
        return Ok(dir.into());
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(std::path::PathBuf::from(home).join(".mcpo").join("tokens")),
        None => Err(format!(
            "no home directory to keep OAuth tokens in (~/.mcpo/tokens): set {OAUTH_DIR_ENV}, or \"storage_type\": \"memory\""
        )),
    }
}

/// A server's `"cache"` object: tools named, or (with `readOnly`) every tool that declares
/// `readOnlyHint`, answered from the cache for `ttl`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CacheConfig {
    pub tools: BTreeSet<String>,
    pub read_only: bool,
    /// `None`: `MCPO_CACHE_DEFAULT_TTL`.
    pub ttl: Option<Duration>,
}

/// The config file's top-level `"monitor"` object: each key overrides the default and is in
/// turn overridden by its `MCPO_*` variable.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MonitorOverrides {
    pub enabled: Option<bool>,
    pub interval: Option<Duration>,
    pub cpu_usage_warning: Option<f64>,
    pub memory_usage_warning: Option<f64>,
    pub error_rate_warning: Option<f64>,
    pub response_time_warning: Option<f64>,
}

impl ServerConfig {
    /// A server with default settings, for tests and library users.
    pub fn new(name: &str, transport: Transport) -> Self {
        ServerConfig {
            name: name.to_string(),
            transport,
            disabled_tools: BTreeSet::new(),
            timeout: None,
            max_timeout: None,
            header_forwarding: None,
            pool_min: None,
            pool_max: None,
            retryable_tools: BTreeSet::new(),
            cache: None,
            oauth: None,
        }
    }
}

/// How the proxy reaches an upstream server. Its `Debug` shows no environment values, header
/// values or URL paths: those are where secrets live.
#[derive(Clone, PartialEq)]
pub enum Transport {
    /// A child process speaking JSON-RPC on stdin/stdout.
    Stdio {
        command: String,
        args: Vec<String>,
        /// Merged over the proxy's own environment.
        env: BTreeMap<String, String>,
        /// Working directory of the process; `None` keeps the proxy's.
        cwd: Option<std::path::PathBuf>,
    },
    /// MCP streamable HTTP.
    StreamableHttp {
        url: String,
        headers: BTreeMap<String, String>,
    },
    /// Legacy HTTP+SSE (protocol 2024-11-05).
    Sse {
        url: String,
        headers: BTreeMap<String, String>,
    },
    /// A server in the same process, reached over an in-memory byte stream (newline-delimited
    /// JSON-RPC, as over stdio) that the connector opens for each session. No config file can
    /// name it: it exists so that `benches/` can measure the whole request path without a
    /// process or a socket in it, and so that a library user can embed a server.
    InMemory(InMemoryConnector),
}

/// Opens one in-memory connection per session: the proxy speaks MCP on the stream it returns,
/// the server on the other end of the `tokio::io::duplex` pair.
#[derive(Clone)]
pub struct InMemoryConnector(std::sync::Arc<dyn Fn() -> tokio::io::DuplexStream + Send + Sync>);

impl InMemoryConnector {
    pub fn new(connect: impl Fn() -> tokio::io::DuplexStream + Send + Sync + 'static) -> Self {
        InMemoryConnector(std::sync::Arc::new(connect))
    }

    /// A new connection (called from inside the runtime: the connector may spawn the server).
    pub fn connect(&self) -> tokio::io::DuplexStream {
        (self.0)()
    }
}

/// Two connectors are the same server only if they are the same connector (a reload keeps it).
impl PartialEq for InMemoryConnector {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Keys shown, values hidden.
struct KeysOnly<'a>(&'a BTreeMap<String, String>);

impl std::fmt::Debug for KeysOnly<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "<redacted>")))
            .finish()
    }
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Stdio {
                command,
                args,
                env,
                cwd,
            } => f
                .debug_struct("Stdio")
                .field("command", command)
                .field("args", &format_args!("<{} args>", args.len()))
                .field("env", &KeysOnly(env))
                .field("cwd", cwd)
                .finish(),
            Transport::StreamableHttp { url, headers } | Transport::Sse { url, headers } => f
                .debug_struct(if matches!(self, Transport::Sse { .. }) {
                    "Sse"
                } else {
                    "StreamableHttp"
                })
                .field("url", &crate::redact::origin(url))
                .field("headers", &KeysOnly(headers))
                .finish(),
            Transport::InMemory(_) => f.write_str("InMemory"),
        }
    }
}

impl Transport {
    /// The short name used in logs, diagnostics and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Transport::Stdio { .. } => "stdio",
            Transport::StreamableHttp { .. } => "streamable-http",
            Transport::Sse { .. } => "sse",
            Transport::InMemory(_) => "in-memory",
        }
    }
}

/// Request headers that carry the client's credentials.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie"];

/// `client_header_forwarding` of a server: which incoming headers reach the upstream.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HeaderForwarding {
    pub enabled: bool,
    /// Patterns with `*` wildcards, matched case-insensitively; empty means every header.
    pub whitelist: Vec<String>,
    /// Patterns with `*` wildcards that are never forwarded, even when whitelisted.
    pub blacklist: Vec<String>,
}

/// Errors in a config file or on the command line. Each message names the file, the server and
/// the key, so the user can fix it without reading our code.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: invalid JSON at line {line}, column {column}: {message}")]
    Json {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
    #[error("{file}: server '{server}': {message}")]
    Server {
        file: String,
        server: String,
        message: String,
    },
    #[error("{flag}: {message}")]
    Flag { flag: String, message: String },
}

/// The longest duration any setting may have: a year. Longer values are certainly typos, and
/// deadlines are added to the current instant, which overflows (and would panic) for values
/// near `u64::MAX` seconds.
pub const MAX_DURATION_SECS: f64 = 365.0 * 24.0 * 3600.0;

/// A positive, finite number of seconds no larger than [`MAX_DURATION_SECS`], as a `Duration`.
/// Every duration read from a flag, the environment or a config file goes through here.
pub fn duration_from_secs(secs: f64) -> Option<Duration> {
    if !(secs.is_finite() && secs > 0.0 && secs <= MAX_DURATION_SECS) {
        return None;
    }
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
}

/// Normalises the spellings of a transport type that mcpo and Claude-style configs accept.
pub fn parse_transport_type(raw: &str) -> Option<&'static str> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "stdio" => Some("stdio"),
        "sse" => Some("sse"),
        "streamable-http" | "streamable_http" | "streamablehttp" | "http" => {
            Some("streamable-http")
        }
        _ => None,
    }
}

/// Matches `name` against a pattern where `*` stands for any run of characters,
/// case-insensitively (HTTP header names are case-insensitive).
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let name = name.to_ascii_lowercase();
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let mut rest = name.as_str();
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(pos) => rest = &rest[pos + part.len()..],
                None => return false,
            }
        }
    }
    true
}

impl HeaderForwarding {
    /// Whether the incoming header `name` is passed on to the upstream.
    ///
    /// The client's own credentials (`Authorization`, `Proxy-Authorization`, `Cookie`) are
    /// never forwarded by an empty whitelist or a wildcard: they usually carry the key for this
    /// proxy, not for the upstream. Naming one in the whitelist exactly forwards it.
    pub fn allows(&self, name: &str) -> bool {
        if !self.enabled {
            return false;
        }
        if self.blacklist.iter().any(|p| wildcard_match(p, name)) {
            return false;
        }
        if CREDENTIAL_HEADERS
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
        {
            return self
                .whitelist
                .iter()
                .any(|p| !p.contains('*') && p.eq_ignore_ascii_case(name));
        }
        self.whitelist.is_empty() || self.whitelist.iter().any(|p| wildcard_match(p, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_globs() {
        assert!(wildcard_match("x-user-*", "X-User-Id"));
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match("*-id", "x-request-id"));
        assert!(wildcard_match("a*b*c", "aXXbYYc"));
        assert!(!wildcard_match("a*b*c", "aXXbYY"));
        assert!(!wildcard_match("x-user-*", "authorization"));
        assert!(wildcard_match("authorization", "Authorization"));
    }

    #[test]
    fn blacklist_wins_over_whitelist() {
        let f = HeaderForwarding {
            enabled: true,
            whitelist: vec!["x-*".into()],
            blacklist: vec!["x-secret*".into()],
        };
        assert!(f.allows("x-user"));
        assert!(!f.allows("x-secret-token"));
        assert!(!f.allows("cookie"));
        let off = HeaderForwarding {
            enabled: false,
            ..f
        };
        assert!(!off.allows("x-user"));
    }

    /// Finding 9 of the hardening issue: with forwarding on and no whitelist, the proxy's own
    /// `Authorization` and the client's cookies went upstream.
    #[test]
    fn credentials_are_forwarded_only_when_named() {
        let open = HeaderForwarding {
            enabled: true,
            ..HeaderForwarding::default()
        };
        assert!(open.allows("x-user-id"));
        for h in ["Authorization", "cookie", "Proxy-Authorization"] {
            assert!(!open.allows(h), "{h}");
        }
        let star = HeaderForwarding {
            enabled: true,
            whitelist: vec!["*".into()],
            blacklist: vec![],
        };
        assert!(!star.allows("authorization"));
        let named = HeaderForwarding {
            enabled: true,
            whitelist: vec!["Authorization".into()],
            blacklist: vec![],
        };
        assert!(named.allows("authorization") && !named.allows("cookie"));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let t = Transport::StreamableHttp {
            url: "http://h:1/s/SECRET-PATH/mcp".into(),
            headers: BTreeMap::from([("Authorization".into(), "Bearer SECRET-HEADER".into())]),
        };
        let s = Transport::Stdio {
            command: "x".into(),
            args: vec!["--token=SECRET-ARG".into()],
            env: BTreeMap::from([("API_KEY".into(), "SECRET-ENV".into())]),
            cwd: None,
        };
        let shown = format!("{t:?} {s:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(
            shown.contains("Authorization") && shown.contains("API_KEY"),
            "{shown}"
        );
    }

    #[test]
    fn transport_spellings() {
        for s in [
            "streamable-http",
            "streamable_http",
            "streamablehttp",
            "http",
        ] {
            assert_eq!(parse_transport_type(s), Some("streamable-http"));
        }
        assert_eq!(parse_transport_type("SSE"), Some("sse"));
        assert_eq!(parse_transport_type("websocket"), None);
    }
}
