//! `resultType` on results of protocol 2026-07-28 and later.
//!
//! That revision requires every result to say what it is (`"complete"`, or
//! `"input_required"` for a multi-round-trip request), and strict clients refuse one without
//! it: the official Python SDK (`mcp` 2.3.0, the client Open WebUI's native MCP support is
//! built on) fails `tools/list` with "resultType: Field required". rmcp's server (3.11) leaves
//! it out of ordinary results, so the proxy's MCP endpoint and the fake MCP server add
//! `"resultType": "complete"` to every result that has none, on answers to requests that
//! declare 2026-07-28 or later. Older revisions never get it: their strict peers reject
//! unknown keys on empty results. A leaf: imports nothing from the crate.

use axum::body::Body;
use axum::response::{IntoResponse as _, Response};
use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::Value;

/// The first protocol revision whose results carry `resultType`.
const FIRST_TAGGED: &str = "2026-07-28";
/// A JSON answer larger than this is passed on as it is (the endpoint's own answers are far
/// smaller; this only bounds what is buffered).
const MAX_JSON_ANSWER: usize = 64 * 1024 * 1024;

/// Whether the request declares protocol 2026-07-28 or later (`MCP-Protocol-Version`; revisions
/// are dates, so they order as text).
pub fn wants_result_type(headers: &http::HeaderMap) -> bool {
    headers
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v >= FIRST_TAGGED)
}

/// Adds `"resultType": "complete"` to the result of a JSON-RPC response (or of each response
/// of a batch) that has none. Says whether anything changed.
fn tag(message: &mut Value) -> bool {
    match message {
        Value::Array(batch) => {
            // Every response of the batch, not only up to the first that changed.
            let mut changed = false;
            for m in batch {
                changed |= tag(m);
            }
            changed
        }
        Value::Object(object) => match object.get_mut("result") {
            Some(Value::Object(result)) if !result.contains_key("resultType") => {
                result.insert("resultType".into(), Value::String("complete".into()));
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// The JSON text of a body with its results tagged, or `None` when nothing needed it.
fn tagged_json(body: &[u8]) -> Option<Vec<u8>> {
    let mut message: Value = serde_json::from_slice(body).ok()?;
    if !tag(&mut message) {
        return None;
    }
    serde_json::to_vec(&message).ok()
}

/// One SSE event with the JSON-RPC message in its data tagged; other fields (`id`, `event`,
/// `retry`, comments) kept in their order.
fn tagged_event(event: &str) -> String {
    let data: Vec<&str> = event
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    let Some(tagged) = (!data.is_empty())
        .then(|| tagged_json(data.join("\n").as_bytes()))
        .flatten()
    else {
        return event.to_string();
    };
    let mut out = String::with_capacity(event.len() + 32);
    let mut data_written = false;
    for line in event.lines() {
        if line.starts_with("data:") {
            if !data_written {
                out.push_str("data: ");
                out.push_str(&String::from_utf8_lossy(&tagged));
                out.push('\n');
                data_written = true;
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.pop();
    out
}

/// Splits the complete events off the front of `buf` (an event ends at a blank line) and
/// returns them tagged, each with its terminating blank line. Bytes, not text, are buffered:
/// a chunk may end inside a character. `scanned` is how far `buf` is known to hold no event
/// end, so a large event arriving in many chunks is searched once, not once per chunk.
fn drain_events(buf: &mut Vec<u8>, scanned: &mut usize) -> String {
    let mut out = String::new();
    loop {
        let from = scanned.saturating_sub(1).min(buf.len());
        let Some(at) = buf[from..].windows(2).position(|w| w == b"\n\n") else {
            *scanned = buf.len();
            return out;
        };
        let end = from + at;
        let event: Vec<u8> = buf.drain(..end + 2).collect();
        out.push_str(&tagged_event(&String::from_utf8_lossy(&event[..end])));
        out.push_str("\n\n");
        *scanned = 0;
    }
}

/// The response with `resultType` added to every result in it: a JSON body rewritten whole, an
/// event stream event by event as it arrives (so progress notifications still flow at once).
pub(super) async fn tag_results(response: Response) -> Response {
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let (mut parts, body) = response.into_parts();
    if content_type.starts_with("application/json") {
        let bytes = match axum::body::to_bytes(body, MAX_JSON_ANSWER).await {
            Ok(bytes) => bytes,
            Err(e) => {
                // Only an answer over MAX_JSON_ANSWER gets here; it is gone, so say so.
                tracing::warn!(error = %e, "an MCP answer could not be read to add resultType");
                let error = serde_json::json!({"detail": {"message":
                    "the answer was too large to pass on (over 64 MiB)"}});
                return (http::StatusCode::BAD_GATEWAY, axum::Json(error)).into_response();
            }
        };
        let out = tagged_json(&bytes).map_or(bytes, Bytes::from);
        parts.headers.remove(http::header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::from(out));
    }
    if !content_type.starts_with("text/event-stream") {
        return Response::from_parts(parts, body);
    }
    // An event may arrive split across chunks: whole events are rewritten and the rest is
    // kept for the next chunk.
    let stream = futures::stream::unfold(
        (body.into_data_stream(), Vec::new(), 0, false),
        |(mut stream, mut buf, mut scanned, done)| async move {
            if done {
                return None;
            }
            loop {
                match stream.next().await {
                    Some(Ok(chunk)) => {
                        buf.extend_from_slice(&chunk);
                        let out = drain_events(&mut buf, &mut scanned);
                        if !out.is_empty() {
                            return Some((Ok(Bytes::from(out)), (stream, buf, scanned, false)));
                        }
                    }
                    Some(Err(e)) => return Some((Err(e), (stream, buf, scanned, true))),
                    // The stream ended: whatever is left is passed on as it is.
                    None if buf.is_empty() => return None,
                    None => return Some((Ok(Bytes::from(buf)), (stream, Vec::new(), 0, true))),
                }
            }
        },
    );
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from_stream(stream))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn results_get_a_result_type_unless_they_have_one() {
        let mut list = json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": []}});
        assert!(tag(&mut list));
        assert_eq!(list["result"]["resultType"], "complete");
        let mut input =
            json!({"jsonrpc": "2.0", "id": 2, "result": {"resultType": "input_required"}});
        assert!(!tag(&mut input));
        assert_eq!(input["result"]["resultType"], "input_required");
        let mut empty = json!({"jsonrpc": "2.0", "id": 3, "result": {}});
        assert!(tag(&mut empty));
        assert_eq!(empty["result"], json!({"resultType": "complete"}));
        // Errors and notifications are not results.
        let mut error = json!({"jsonrpc": "2.0", "id": 4, "error": {"code": -1, "message": "x"}});
        let mut note = json!({"jsonrpc": "2.0", "method": "notifications/progress"});
        assert!(!tag(&mut error) && !tag(&mut note));
        let mut batch =
            json!([{"id": 1, "result": {}}, {"id": 2, "error": {}}, {"id": 3, "result": {}}]);
        assert!(tag(&mut batch));
        assert_eq!(batch[0]["result"]["resultType"], "complete");
        assert_eq!(batch[2]["result"]["resultType"], "complete");
    }

    #[test]
    fn only_2026_07_28_and_later_ask_for_it() {
        let with = |v: &'static str| {
            let mut h = http::HeaderMap::new();
            h.insert("mcp-protocol-version", http::HeaderValue::from_static(v));
            wants_result_type(&h)
        };
        assert!(with("2026-07-28"));
        assert!(with("2027-01-01"));
        assert!(!with("2025-11-25"));
        assert!(!wants_result_type(&http::HeaderMap::new()));
    }

    #[test]
    fn events_are_rewritten_whole_whatever_the_chunks() {
        let stream = "id: 7\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[\"é\"]}}\n\n: ping\n\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n";
        for split in [1, 5, 20, stream.len()] {
            let mut buf = Vec::new();
            let mut scanned = 0;
            let mut out = String::new();
            for chunk in stream.as_bytes().chunks(split) {
                buf.extend_from_slice(chunk);
                out.push_str(&drain_events(&mut buf, &mut scanned));
            }
            assert!(buf.is_empty());
            assert_eq!(
                out,
                "id: 7\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[\"é\"],\"resultType\":\"complete\"}}\n\n: ping\n\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n",
                "chunks of {split}"
            );
        }
    }
}
