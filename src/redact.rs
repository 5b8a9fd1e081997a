//! Keeping secrets out of what clients and logs see.
//!
//! Upstream URLs often carry credentials in their path or query (`/s/TOKEN/mcp`, `?key=...`),
//! and error messages from HTTP libraries repeat the whole URL. Everything the proxy shows
//! about an upstream (503 bodies, `/diagnostics`, logs) reduces URLs to their origin:
//! scheme, host and port. This module is a leaf: it imports nothing from the crate.

/// `scheme://host:port` of a URL (the port always shown), or `"<invalid URL>"`.
pub fn origin(url: &str) -> String {
    match url.parse::<http::Uri>() {
        Ok(uri) => match (uri.scheme_str(), uri.host()) {
            (Some(scheme), Some(host)) => format!("{scheme}://{}", authority(&uri, host)),
            _ => "<invalid URL>".into(),
        },
        Err(_) => "<invalid URL>".into(),
    }
}

/// `host:port` of a URL, for "cannot connect to 127.0.0.1:9" messages.
pub fn host_port(url: &str) -> String {
    match url.parse::<http::Uri>() {
        Ok(uri) => match uri.host() {
            Some(host) => authority(&uri, host),
            None => "<invalid URL>".into(),
        },
        Err(_) => "<invalid URL>".into(),
    }
}

fn authority(uri: &http::Uri, host: &str) -> String {
    let port = uri.port_u16().or(match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    });
    match port {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// `text` with every `http://` or `https://` URL in it reduced to its origin. User info
/// (`user:pass@`) is dropped with the rest.
pub fn urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = find_url(rest) {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>' | ',' | ']'))
            .unwrap_or(tail.len());
        let url = &tail[..end];
        // Drop user info before parsing: `http::Uri` refuses some of it.
        let cleaned = match url.split_once("://") {
            Some((scheme, after)) => {
                let host_part = after.split(['/', '?', '#']).next().unwrap_or("");
                let host_part = host_part.rsplit('@').next().unwrap_or(host_part);
                format!("{scheme}://{host_part}")
            }
            None => url.to_string(),
        };
        out.push_str(&origin(&cleaned));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn find_url(text: &str) -> Option<usize> {
    let http = text.find("http://");
    let https = text.find("https://");
    match (http, https) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A log writer that reduces every URL in what it writes to its origin, so that no log line,
/// ours or an SDK's (rmcp prints whole `reqwest` errors, URL and all, at debug level), carries
/// a secret from a URL's path or query. The formatter hands it one whole event per write.
pub struct Redacting<W>(pub W);

impl<W: std::io::Write> std::io::Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !buf.windows(3).any(|w| w == b"://") {
            return self.0.write(buf);
        }
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(urls_in(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_keep_scheme_host_and_port_only() {
        assert_eq!(
            origin("http://host:8080/s/SECRET-TOKEN/mcp?key=abc"),
            "http://host:8080"
        );
        assert_eq!(origin("https://example.com/mcp"), "https://example.com:443");
        assert_eq!(host_port("http://127.0.0.1:9/mcp"), "127.0.0.1:9");
    }

    #[test]
    fn urls_inside_text_are_reduced() {
        let text = "error sending request for url (http://user:pw@10.0.0.1:9/s/SECRET/mcp?k=v): refused, also https://x.io/a?token=T";
        let out = urls_in(text);
        assert!(
            !out.contains("SECRET") && !out.contains("token") && !out.contains("pw"),
            "{out}"
        );
        assert!(
            out.contains("http://10.0.0.1:9") && out.contains("https://x.io:443"),
            "{out}"
        );
        assert_eq!(urls_in("no url here"), "no url here");
    }

    #[test]
    fn the_log_writer_keeps_only_origins() {
        use std::io::Write as _;
        let mut out = Redacting(Vec::new());
        let line = "ERROR rmcp: Client(reqwest::Error { url: \"http://u:p@127.0.0.1:9/s/PATHSECRET/mcp?k=QUERYSECRET\" })\n";
        out.write_all(line.as_bytes()).unwrap();
        out.write_all(b"plain line\n").unwrap();
        let written = String::from_utf8(out.0).unwrap();
        assert!(
            !written.contains("SECRET") && !written.contains("u:p"),
            "{written}"
        );
        assert!(written.contains("http://127.0.0.1:9\""), "{written}");
        assert!(written.ends_with("plain line\n"), "{written}");
    }
}
