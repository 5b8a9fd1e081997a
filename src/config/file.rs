//! The Claude Desktop `mcpServers` file format, as mcpo reads it, plus our own optional keys.
//!
//! The file is read as untyped JSON first and checked key by key, instead of through a serde
//! derive, so that every error can say which server and which key is wrong, and so that keys we
//! do not know (other tools' settings such as `autoApprove`) are tolerated the way mcpo
//! tolerates them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value};

use super::{
    CacheConfig, ConfigError, HeaderForwarding, MonitorOverrides, OAuthConfig, OAuthStorage,
    RESERVED_NAMES, ServerConfig, Transport, parse_transport_type,
};

/// Keys of the top level of a config file.
pub(super) const TOP_LEVEL_KEYS: &[&str] = &["mcpServers", "monitor"];

/// Keys of the top-level `"monitor"` object.
pub(super) const MONITOR_KEYS: &[&str] = &[
    "enabled",
    "interval",
    "cpu_usage_warning",
    "memory_usage_warning",
    "error_rate_warning",
    "response_time_warning",
];

/// Keys of a server's `"pool"` object.
pub(super) const POOL_KEYS: &[&str] = &["min", "max"];

/// Keys of a server's `"cache"` object (`read_only` is accepted for `readOnly`).
pub(super) const CACHE_KEYS: &[&str] = &["tools", "ttl", "readOnly", "read_only"];

/// Keys of a server entry that we understand; anything else is logged and ignored.
pub(super) const KNOWN_SERVER_KEYS: &[&str] = &[
    "command",
    "args",
    "env",
    "type",
    "url",
    "headers",
    "disabledTools",
    "disabled_tools",
    "client_header_forwarding",
    "oauth",
    "timeout",
    "max_timeout",
    "disabled",
    "cwd",
    "pool",
    "retryable_tools",
    "retryableTools",
    "cache",
    "readOnly",
];

/// Headers that the MCP transport itself owns; a config may not set them.
const TRANSPORT_OWNED_HEADERS: &[&str] = &["accept", "mcp-session-id", "last-event-id"];

/// Everything a config file says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParsedConfig {
    pub servers: Vec<ServerConfig>,
    pub monitor: MonitorOverrides,
}

/// Reads and validates a config file.
pub fn parse_config_file(path: &Path) -> Result<ParsedConfig, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: file.clone(),
        source,
    })?;
    parse_full_config_str(&text, &file)
}

/// Validates config text (the servers only); `file` is only used in error messages.
pub fn parse_config_str(text: &str, file: &str) -> Result<Vec<ServerConfig>, ConfigError> {
    parse_full_config_str(text, file).map(|c| c.servers)
}

/// Validates config text; `file` is only used in error messages.
pub fn parse_full_config_str(text: &str, file: &str) -> Result<ParsedConfig, ConfigError> {
    let root: Value = serde_json::from_str(text).map_err(|e| ConfigError::Json {
        file: file.to_string(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let invalid = |message: String| ConfigError::Invalid {
        file: file.to_string(),
        message,
    };
    let Value::Object(root) = root else {
        return Err(invalid(
            "the top level must be a JSON object with an \"mcpServers\" key".into(),
        ));
    };
    let servers = match root.get("mcpServers") {
        None => return Err(invalid("missing key \"mcpServers\"".into())),
        Some(Value::Object(servers)) => servers,
        Some(other) => {
            return Err(invalid(format!(
                "\"mcpServers\" must be an object of servers, found {}",
                kind_of(other)
            )));
        }
    };
    if servers.is_empty() {
        return Err(invalid(
            "\"mcpServers\" is empty: configure at least one server".into(),
        ));
    }
    let mut out = Vec::with_capacity(servers.len());
    for (name, entry) in servers {
        let err = |message: String| ConfigError::Server {
            file: file.to_string(),
            server: name.clone(),
            message,
        };
        check_server_name(name).map_err(&err)?;
        let Value::Object(entry) = entry else {
            return Err(err(format!(
                "must be an object with \"command\" or \"url\", found {}",
                kind_of(entry)
            )));
        };
        if entry.get("disabled") == Some(&Value::Bool(true)) {
            tracing::info!(server = %name, "server is marked \"disabled\" in the config; skipped");
            continue;
        }
        if let Some(server) = parse_server(name, entry).map_err(err)? {
            out.push(server);
        }
    }
    if out.is_empty() {
        return Err(invalid(
            "every server in \"mcpServers\" is disabled: nothing to serve".into(),
        ));
    }
    let monitor = match root.get("monitor") {
        None | Some(Value::Null) => MonitorOverrides::default(),
        Some(Value::Object(m)) => parse_monitor(m).map_err(invalid)?,
        Some(other) => {
            return Err(invalid(format!(
                "key \"monitor\" must be an object of thresholds, found {}",
                kind_of(other)
            )));
        }
    };
    Ok(ParsedConfig {
        servers: out,
        monitor,
    })
}

/// The top-level `"monitor"` object. Unlike server entries (which other tools share), it is
/// ours alone, so an unknown key is a mistake, not another tool's setting.
fn parse_monitor(m: &Map<String, Value>) -> Result<MonitorOverrides, String> {
    let mut out = MonitorOverrides::default();
    for (key, v) in m {
        let number = |min: f64, max: f64| -> Result<f64, String> {
            v.as_f64()
                .filter(|n| n.is_finite() && *n >= min && *n <= max)
                .ok_or_else(|| {
                    format!(
                        "key \"monitor.{key}\" must be a number from {min} to {max}, found {}",
                        short(v)
                    )
                })
        };
        match key.as_str() {
            "enabled" => {
                out.enabled = Some(v.as_bool().ok_or_else(|| {
                    format!(
                        "key \"monitor.enabled\" must be true or false, found {}",
                        short(v)
                    )
                })?)
            }
            "interval" => {
                out.interval = Some(seconds(v).ok_or_else(|| {
                    format!(
                        "key \"monitor.interval\" must be a positive number of seconds, found {}",
                        short(v)
                    )
                })?)
            }
            "cpu_usage_warning" => out.cpu_usage_warning = Some(number(0.0, 100.0)?),
            "memory_usage_warning" => out.memory_usage_warning = Some(number(0.0, 100.0)?),
            "error_rate_warning" => out.error_rate_warning = Some(number(0.0, 1.0)?),
            "response_time_warning" => {
                out.response_time_warning = Some(number(0.0, super::MAX_DURATION_SECS)?)
            }
            other => {
                return Err(format!(
                    "unknown key \"monitor.{other}\"; known: {}",
                    MONITOR_KEYS.join(", ")
                ));
            }
        }
    }
    Ok(out)
}

fn check_server_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("the server name is empty".into());
    }
    if RESERVED_NAMES.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        return Err(format!(
            "the name clashes with the proxy's own route /{name}; rename the server"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| matches!(c, '/' | '?' | '#' | '%' | '\\') || c.is_control())
    {
        return Err(format!(
            "the name contains {c:?}, which cannot appear in a URL path segment"
        ));
    }
    Ok(())
}

fn parse_server(name: &str, entry: &Map<String, Value>) -> Result<Option<ServerConfig>, String> {
    for key in entry.keys() {
        if !KNOWN_SERVER_KEYS.contains(&key.as_str()) {
            tracing::warn!(server = %name, key = %key, "unknown key in server config; ignored");
        }
    }
    let declared = match entry.get("type") {
        None => None,
        Some(Value::String(t)) => Some(parse_transport_type(t).ok_or_else(|| {
            format!(
                "key \"type\": unknown transport {t:?}; use \"stdio\", \"sse\" or \"streamable-http\""
            )
        })?),
        Some(other) => return Err(format!("key \"type\" must be a string, found {}", kind_of(other))),
    };
    let command = opt_string(entry, "command")?;
    let url = opt_string(entry, "url")?;
    let transport = match (command, url) {
        (Some(_), Some(_)) => {
            return Err("has both \"command\" and \"url\"; keep exactly one".into());
        }
        (None, None) => {
            return Err("needs \"command\" (a stdio server) or \"url\" (a remote server)".into());
        }
        (Some(command), None) => {
            if let Some(t) = declared
                && t != "stdio"
            {
                return Err(format!(
                    "key \"type\" is {t:?} but the server has a \"command\"; remote servers need \"url\""
                ));
            }
            if command.trim().is_empty() {
                return Err("key \"command\" is empty".into());
            }
            let cwd = opt_string(entry, "cwd")?.map(std::path::PathBuf::from);
            if let Some(dir) = &cwd
                && !dir.is_dir()
            {
                return Err(format!("key \"cwd\": {} is not a directory", dir.display()));
            }
            Transport::Stdio {
                command,
                args: string_list(entry, "args")?.unwrap_or_default(),
                env: string_map(entry, "env", true)?,
                cwd,
            }
        }
        (None, Some(url)) => {
            check_url(&url)?;
            let headers = string_map(entry, "headers", false)?;
            check_headers(&headers)?;
            match declared {
                // mcpo reads a `url` without `type` as legacy SSE; so do we.
                None | Some("sse") => Transport::Sse { url, headers },
                Some("streamable-http") => Transport::StreamableHttp { url, headers },
                Some(_) => {
                    return Err(
                        "key \"type\" is \"stdio\" but the server has a \"url\"; stdio servers need \"command\""
                            .into(),
                    );
                }
            }
        }
    };
    let mut disabled_tools = BTreeSet::new();
    for key in ["disabledTools", "disabled_tools"] {
        if let Some(list) = string_list(entry, key)? {
            disabled_tools.extend(list);
        }
    }
    let timeout = match entry.get("timeout") {
        None | Some(Value::Null) => None,
        Some(v) => Some(seconds(v).ok_or_else(|| {
            format!(
                "key \"timeout\" must be a number of seconds above 0 and at most {} (a year), found {}",
                super::MAX_DURATION_SECS,
                short(v)
            )
        })?),
    };
    let max_timeout = match entry.get("max_timeout") {
        None | Some(Value::Null) => None,
        Some(v) => Some(seconds(v).ok_or_else(|| {
            format!(
                "key \"max_timeout\" must be a number of seconds above 0 and at most {} (a year), found {}",
                super::MAX_DURATION_SECS,
                short(v)
            )
        })?),
    };
    let header_forwarding = match entry.get("client_header_forwarding") {
        None | Some(Value::Null) => None,
        Some(Value::Object(obj)) => Some(parse_forwarding(obj)?),
        Some(other) => {
            return Err(format!(
                "key \"client_header_forwarding\" must be an object, found {}",
                kind_of(other)
            ));
        }
    };
    let (pool_min, pool_max) = match entry.get("pool") {
        None | Some(Value::Null) => (None, None),
        Some(Value::Object(pool)) => {
            let size = |key: &str| -> Result<Option<usize>, String> {
                match pool.get(key) {
                    None | Some(Value::Null) => Ok(None),
                    Some(v) => v
                        .as_u64()
                        .filter(|n| (1..=64).contains(n))
                        .map(|n| Some(n as usize))
                        .ok_or_else(|| {
                            format!(
                                "key \"pool.{key}\" must be a whole number from 1 to 64, found {}",
                                short(v)
                            )
                        }),
                }
            };
            let (min, max) = (size("min")?, size("max")?);
            if let (Some(min), Some(max)) = (min, max)
                && min > max
            {
                return Err(format!(
                    "key \"pool\": min ({min}) is larger than max ({max})"
                ));
            }
            (min, max)
        }
        Some(other) => {
            return Err(format!(
                "key \"pool\" must be an object like {{\"min\": 1, \"max\": 4}}, found {}",
                kind_of(other)
            ));
        }
    };
    let mut retryable_tools = BTreeSet::new();
    for key in ["retryable_tools", "retryableTools"] {
        if let Some(list) = string_list(entry, key)? {
            retryable_tools.extend(list);
        }
    }
    let cache = parse_cache(entry)?;
    let oauth = match entry.get("oauth") {
        None | Some(Value::Null) => None,
        Some(Value::Object(o)) => match &transport {
            Transport::StreamableHttp { url, headers } => Some(parse_oauth(o, url, headers)?),
            other => {
                return Err(format!(
                    "key \"oauth\": OAuth is supported only for streamable-HTTP servers (\"type\": \"streamable-http\"), and this one is {}",
                    other.kind()
                ));
            }
        },
        Some(other) => {
            return Err(format!(
                "key \"oauth\" must be an object like {{\"server_url\": \"https://...\"}}, found {}",
                kind_of(other)
            ));
        }
    };
    Ok(Some(ServerConfig {
        name: name.to_string(),
        cache,
        transport,
        disabled_tools,
        timeout,
        max_timeout,
        header_forwarding,
        pool_min,
        pool_max,
        retryable_tools,
        oauth,
    }))
}

/// Keys of a server's `"oauth"` object: mcpo's, and no others.
pub(super) const OAUTH_KEYS: &[&str] = &[
    "server_url",
    "client_metadata",
    "callback_port",
    "use_loopback",
    "storage_type",
];

/// A streamable-HTTP server's `"oauth"` object. Unlike a server entry, which other tools
/// share, it is read only by mcpo and proxies like it, so an unknown key is a typo to report.
fn parse_oauth(
    o: &Map<String, Value>,
    url: &str,
    headers: &BTreeMap<String, String>,
) -> Result<OAuthConfig, String> {
    if let Some(key) = o.keys().find(|k| !OAUTH_KEYS.contains(&k.as_str())) {
        return Err(format!(
            "unknown key \"oauth.{key}\"; known: {}",
            OAUTH_KEYS.join(", ")
        ));
    }
    if headers
        .keys()
        .any(|h| h.eq_ignore_ascii_case("authorization"))
    {
        return Err(
            "key \"headers\": \"Authorization\" is set by OAuth for this server; remove it or the \"oauth\" key"
                .into(),
        );
    }
    let server_url = match o.get("server_url") {
        None | Some(Value::Null) => url.to_string(),
        Some(Value::String(s)) => {
            check_url(s).map_err(|e| e.replacen("\"url\"", "\"oauth.server_url\"", 1))?;
            s.clone()
        }
        Some(other) => {
            return Err(format!(
                "key \"oauth.server_url\" must be a string, found {}",
                kind_of(other)
            ));
        }
    };
    let client_metadata = match o.get("client_metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => {
            check_client_metadata(m)?;
            m.clone()
        }
        Some(other) => {
            return Err(format!(
                "key \"oauth.client_metadata\" must be an object, found {}",
                kind_of(other)
            ));
        }
    };
    let callback_port = match o.get("callback_port") {
        None | Some(Value::Null) => 3030,
        Some(v) => v
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p >= 1)
            .ok_or_else(|| {
                format!(
                    "key \"oauth.callback_port\" must be a port number from 1 to 65535, found {}",
                    short(v)
                )
            })?,
    };
    let use_loopback = match o.get("use_loopback") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(format!(
                "key \"oauth.use_loopback\" must be true or false, found {}",
                kind_of(other)
            ));
        }
    };
    let file = || -> Result<OAuthStorage, String> {
        Ok(OAuthStorage::File {
            dir: super::oauth_token_dir()
                .map_err(|e| format!("key \"oauth.storage_type\": {e}"))?,
        })
    };
    let storage = match o.get("storage_type") {
        None | Some(Value::Null) => file()?,
        Some(Value::String(s)) if s == "file" => file()?,
        Some(Value::String(s)) if s == "memory" => OAuthStorage::Memory,
        Some(other) => {
            return Err(format!(
                "key \"oauth.storage_type\" must be \"file\" or \"memory\", found {}",
                short(other)
            ));
        }
    };
    Ok(OAuthConfig {
        server_url,
        client_metadata,
        callback_port,
        use_loopback,
        storage,
    })
}

/// The client metadata the proxy itself reads must have the types RFC 7591 gives it; the rest
/// is the authorization server's business.
fn check_client_metadata(m: &Map<String, Value>) -> Result<(), String> {
    for key in ["client_name", "scope"] {
        match m.get(key) {
            None | Some(Value::Null | Value::String(_)) => {}
            Some(other) => {
                return Err(format!(
                    "key \"oauth.client_metadata.{key}\" must be a string, found {}",
                    kind_of(other)
                ));
            }
        }
    }
    if let Some(uris) =
        string_list(m, "redirect_uris").map_err(|e| format!("oauth.client_metadata: {e}"))?
    {
        let Some(first) = uris.first() else {
            return Err("key \"oauth.client_metadata.redirect_uris\" is empty".into());
        };
        check_url(first)
            .map_err(|e| e.replacen("\"url\"", "\"oauth.client_metadata.redirect_uris\"[0]", 1))?;
    }
    Ok(())
}

/// A server's `"cache"` object, and the shorthand `"readOnly": true` on the server itself.
fn parse_cache(entry: &Map<String, Value>) -> Result<Option<CacheConfig>, String> {
    let shorthand = match entry.get("readOnly") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(format!(
                "key \"readOnly\" must be true or false, found {}",
                kind_of(other)
            ));
        }
    };
    let mut cache = match entry.get("cache") {
        None | Some(Value::Null) => {
            return Ok(shorthand.then(|| CacheConfig {
                read_only: true,
                ..CacheConfig::default()
            }));
        }
        Some(Value::Object(c)) => {
            for key in c.keys() {
                if !CACHE_KEYS.contains(&key.as_str()) {
                    return Err(format!(
                        "unknown key \"cache.{key}\"; known: tools, ttl, readOnly"
                    ));
                }
            }
            let read_only = match c.get("readOnly").or_else(|| c.get("read_only")) {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(other) => {
                    return Err(format!(
                        "key \"cache.readOnly\" must be true or false, found {}",
                        kind_of(other)
                    ));
                }
            };
            let ttl = match c.get("ttl") {
                None | Some(Value::Null) => None,
                Some(v) => Some(seconds(v).ok_or_else(|| {
                    format!(
                        "key \"cache.ttl\" must be a positive number of seconds, found {}",
                        short(v)
                    )
                })?),
            };
            CacheConfig {
                tools: string_list(c, "tools")
                    .map_err(|e| format!("cache: {e}"))?
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
                read_only,
                ttl,
            }
        }
        Some(other) => {
            return Err(format!(
                "key \"cache\" must be an object like {{\"tools\": [\"search\"], \"ttl\": 60}}, found {}",
                kind_of(other)
            ));
        }
    };
    cache.read_only |= shorthand;
    Ok(Some(cache))
}

fn parse_forwarding(obj: &Map<String, Value>) -> Result<HeaderForwarding, String> {
    // mcpo's default: forwarding is off until enabled.
    let enabled = match obj.get("enabled") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(format!(
                "key \"client_header_forwarding.enabled\" must be true or false, found {}",
                kind_of(other)
            ));
        }
    };
    let list = |key: &str| -> Result<Vec<String>, String> {
        Ok(string_list(obj, key)
            .map_err(|e| format!("client_header_forwarding: {e}"))?
            .unwrap_or_default())
    };
    Ok(HeaderForwarding {
        enabled,
        whitelist: list("whitelist")?,
        blacklist: list("blacklist")?,
    })
}

/// A positive number of seconds, as a number or a numeric string.
pub(crate) fn seconds(v: &Value) -> Option<Duration> {
    let secs = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    super::duration_from_secs(secs)
}

pub(crate) fn check_url(url: &str) -> Result<(), String> {
    match url.parse::<http::Uri>() {
        Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => {
            Ok(())
        }
        // Never the URL itself: its path or query may hold a secret, and this message reaches
        // the log at start-up and on every reload.
        _ => Err(match url.split_once("://") {
            Some((scheme, _))
                if scheme.len() <= 12 && scheme.chars().all(|c| c.is_ascii_alphanumeric()) =>
            {
                format!(
                    "key \"url\": the scheme is {scheme:?}, not http or https (the rest of the URL is not shown: it may hold a secret)"
                )
            }
            _ => "key \"url\": not an http:// or https:// URL with a host (not shown: it may hold a secret)"
                .to_string(),
        }),
    }
}

pub(crate) fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), String> {
    for (name, value) in headers {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(format!(
                "key \"headers\": {name:?} is not a valid header name"
            ));
        }
        if http::HeaderValue::from_str(value).is_err() {
            return Err(format!(
                "key \"headers\": the value of {name:?} is not a valid header value"
            ));
        }
        if TRANSPORT_OWNED_HEADERS
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
        {
            return Err(format!(
                "key \"headers\": {name:?} is set by the MCP transport itself and cannot be configured"
            ));
        }
    }
    Ok(())
}

fn opt_string(entry: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match entry.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!(
            "key \"{key}\" must be a string, found {}",
            kind_of(other)
        )),
    }
}

fn string_list(entry: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, String> {
    match entry.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(format!(
                    "key \"{key}\"[{i}] must be a string, found {}",
                    kind_of(other)
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(format!(
            "key \"{key}\" must be a list of strings, found {}",
            kind_of(other)
        )),
    }
}

/// An object of strings. Environment values may also be numbers or booleans, which Claude-style
/// configs contain in the wild; they are passed on as their JSON text.
fn string_map(
    entry: &Map<String, Value>,
    key: &str,
    allow_scalars: bool,
) -> Result<BTreeMap<String, String>, String> {
    match entry.get(key) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                Value::Number(_) | Value::Bool(_) if allow_scalars => {
                    Ok((k.clone(), v.to_string()))
                }
                other => Err(format!(
                    "key \"{key}.{k}\" must be a string, found {}",
                    kind_of(other)
                )),
            })
            .collect(),
        Some(other) => Err(format!(
            "key \"{key}\" must be an object of strings, found {}",
            kind_of(other)
        )),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.len() > 40 {
        format!("{}...", &text[..text.floor_char_boundary(40)])
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<ServerConfig>, String> {
        parse_config_str(text, "config.json").map_err(|e| e.to_string())
    }

    #[test]
    fn parses_stdio_and_remote_servers() {
        let servers = parse(
            r#"{"mcpServers": {
                "time": {"command": "uvx", "args": ["mcp-server-time"], "env": {"TZ": "UTC", "N": 3}},
                "remote": {"type": "streamable_http", "url": "http://127.0.0.1:9/mcp", "headers": {"Authorization": "Bearer x"}, "disabledTools": ["a"]}
            }}"#,
        )
        .unwrap();
        assert_eq!(servers.len(), 2);
        assert!(
            matches!(&servers[0].transport, Transport::Stdio { command, args, env, .. }
            if command == "uvx" && args == &["mcp-server-time"] && env["N"] == "3")
        );
        assert!(
            matches!(&servers[1].transport, Transport::StreamableHttp { headers, .. }
            if headers["Authorization"] == "Bearer x")
        );
        assert!(servers[1].disabled_tools.contains("a"));
    }

    #[test]
    fn a_url_without_type_and_type_sse_are_legacy_sse() {
        let servers = parse(
            r#"{"mcpServers": {
                "bare": {"url": "http://127.0.0.1:9/sse"},
                "typed": {"type": "sse", "url": "http://127.0.0.1:9/sse", "headers": {"X-Key": "k"}}
            }}"#,
        )
        .unwrap();
        assert!(
            matches!(&servers[0].transport, Transport::Sse { url, headers } if url == "http://127.0.0.1:9/sse" && headers.is_empty())
        );
        assert!(
            matches!(&servers[1].transport, Transport::Sse { headers, .. } if headers["X-Key"] == "k")
        );
        let err = parse(r#"{"mcpServers": {"a": {"type": "sse", "command": "x"}}}"#).unwrap_err();
        assert!(
            err.contains("server 'a'") && err.contains("\"url\""),
            "{err}"
        );
    }

    #[test]
    fn errors_name_the_file_server_and_key() {
        let cases = [
            ("{", "config.json: invalid JSON"),
            ("[]", "config.json: the top level must be"),
            ("{}", "config.json: missing key \"mcpServers\""),
            (r#"{"mcpServers": {}}"#, "\"mcpServers\" is empty"),
            (
                r#"{"mcpServers": {"a": {}}}"#,
                "server 'a': needs \"command\"",
            ),
            (
                r#"{"mcpServers": {"a": {"command": 1}}}"#,
                "server 'a': key \"command\" must be a string",
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "args": "y"}}}"#,
                "server 'a': key \"args\" must be a list",
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "args": [1]}}}"#,
                "key \"args\"[0] must be a string",
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "env": {"K": []}}}}"#,
                "key \"env.K\" must be a string",
            ),
            (
                r#"{"mcpServers": {"docs": {"command": "x"}}}"#,
                "server 'docs': the name clashes",
            ),
            (
                r#"{"mcpServers": {"metrics": {"command": "x"}}}"#,
                "server 'metrics'",
            ),
            (
                r#"{"mcpServers": {"a/b": {"command": "x"}}}"#,
                "server 'a/b': the name contains",
            ),
            (
                r#"{"mcpServers": {"a": {"url": "ftp://x"}}}"#,
                "key \"url\"",
            ),
            (
                r#"{"mcpServers": {"a": {"type": "ws", "url": "http://x"}}}"#,
                "key \"type\": unknown transport",
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "timeout": -1}}}"#,
                "key \"timeout\"",
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "timeout": 1e19}}}"#,
                "key \"timeout\"",
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "cwd": "/nonexistent/dir"}}}"#,
                "key \"cwd\"",
            ),
            (
                r#"{"mcpServers": {"a": {"type": "streamable-http", "url": "http://x", "headers": {"Mcp-Session-Id": "1"}}}}"#,
                "Mcp-Session-Id",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn oauth_takes_mcpos_keys_with_its_defaults() {
        let servers = parse(
            r#"{"mcpServers": {
                "a": {"type": "streamable-http", "url": "http://127.0.0.1:9/mcp", "oauth": {}},
                "b": {"type": "streamable-http", "url": "http://127.0.0.1:9/mcp", "oauth": {
                    "server_url": "http://127.0.0.1:8/mcp",
                    "client_metadata": {"client_name": "n", "scope": "read write",
                        "redirect_uris": ["http://localhost:4000/callback"], "logo_uri": "x"},
                    "callback_port": 4000, "use_loopback": false, "storage_type": "memory"}}
            }}"#,
        )
        .unwrap();
        let a = servers[0].oauth.as_ref().unwrap();
        assert_eq!(a.server_url, "http://127.0.0.1:9/mcp");
        assert_eq!(a.callback_port, 3030);
        assert!(a.use_loopback);
        assert!(matches!(a.storage, OAuthStorage::File { .. }));
        assert_eq!(a.redirect_uri(), "http://localhost:3030/callback");
        assert_eq!(a.client_name("a"), "MCPO Client for a");
        let b = servers[1].oauth.as_ref().unwrap();
        assert_eq!(b.server_url, "http://127.0.0.1:8/mcp");
        assert_eq!((b.callback_port, b.use_loopback), (4000, false));
        assert_eq!(b.storage, OAuthStorage::Memory);
        assert_eq!(b.scopes(), ["read", "write"]);
        assert_eq!(b.client_name("b"), "n");
        assert!(servers.iter().all(|s| s.name != "a" || s.oauth.is_some()));
    }

    #[test]
    fn oauth_errors_name_the_server_and_key() {
        let http = |oauth: &str| {
            format!(
                r#"{{"mcpServers": {{"s": {{"type": "streamable-http", "url": "http://127.0.0.1:9/mcp", "oauth": {oauth}}}}}}}"#
            )
        };
        let cases = [
            (http(r#"{"server": "x"}"#), "server 's': unknown key \"oauth.server\""),
            (http(r#"{"callback_port": 0}"#), "key \"oauth.callback_port\""),
            (http(r#"{"callback_port": 65536}"#), "key \"oauth.callback_port\""),
            (http(r#"{"callback_port": "3030"}"#), "key \"oauth.callback_port\""),
            (http(r#"{"storage_type": "disk"}"#), "key \"oauth.storage_type\""),
            (http(r#"{"server_url": "ftp://x"}"#), "key \"oauth.server_url\""),
            (http(r#"{"use_loopback": "yes"}"#), "key \"oauth.use_loopback\""),
            (http(r#"{"client_metadata": []}"#), "key \"oauth.client_metadata\""),
            (
                http(r#"{"client_metadata": {"redirect_uris": []}}"#),
                "redirect_uris",
            ),
            (http(r#"true"#), "key \"oauth\" must be an object"),
            (
                r#"{"mcpServers": {"s": {"command": "x", "oauth": {}}}}"#.into(),
                "server 's': key \"oauth\": OAuth is supported only for streamable-HTTP servers",
            ),
            (
                r#"{"mcpServers": {"s": {"url": "http://127.0.0.1:9/sse", "oauth": {}}}}"#.into(),
                "and this one is sse",
            ),
            (
                r#"{"mcpServers": {"s": {"type": "streamable-http", "url": "http://127.0.0.1:9/mcp", "headers": {"authorization": "Bearer x"}, "oauth": {}}}}"#.into(),
                "\"Authorization\" is set by OAuth",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(&text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn disabled_servers_are_skipped() {
        let servers = parse(
            r#"{"mcpServers": {"a": {"command": "x", "disabled": true}, "b": {"command": "y"}}}"#,
        )
        .unwrap();
        assert_eq!(servers.len(), 1);
        assert_eq!(servers[0].name, "b");
    }

    #[test]
    fn timeout_accepts_numbers_and_strings() {
        let servers =
            parse(r#"{"mcpServers": {"a": {"command": "x", "timeout": 2.5}, "b": {"command": "y", "timeout": "3"}}}"#)
                .unwrap();
        assert_eq!(servers[0].timeout, Some(Duration::from_millis(2500)));
        assert_eq!(servers[1].timeout, Some(Duration::from_secs(3)));
    }
}
