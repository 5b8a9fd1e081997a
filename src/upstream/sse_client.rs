//! A client for the legacy HTTP+SSE transport (MCP protocol 2024-11-05), which rmcp does not
//! ship, as an rmcp [`Transport`].
//!
//! How messages flow: [`SseClientTransport::connect`] opens the event stream (`GET` on the
//! configured URL, with the configured headers) and waits for its first event, `endpoint`,
//! whose data is the URL to post to (relative or absolute; resolved against the stream's URL
//! and required to stay on its origin, since our headers often carry credentials). From then
//! on a worker task reads the stream and hands every `message` event to rmcp, which matches
//! answers to requests by id; [`Transport::send`] posts each outgoing message to the endpoint
//! on its own (rmcp sends concurrently), and a 2xx (usually 202) is all the POST returns.
//!
//! When the stream drops, the worker opens it again (a few attempts with backoff, sending
//! `Last-Event-ID` when the server gave event ids). A server that kept our session says so by
//! sending the same endpoint again (and, if it keeps a log, the events we missed); any other
//! endpoint means it started a new session and ours is gone. Then, as when every attempt
//! fails, the worker ends, `receive` returns `None`, rmcp fails the calls still waiting with
//! "transport closed", and the proxy's supervisor replaces the session, exactly as for a stdio
//! child that died. A POST answered 404 means the server no longer knows the session: it fails
//! with [`SseError::SessionLost`] (classified as `Failure::SessionExpired`: the message never
//! reached a session, so sending the call again on a new one is safe), and so does every
//! later send without another POST.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use reqwest::Url;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::service::RoleClient;
use rmcp::transport::Transport;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::redact;

/// The largest event accepted, as rmcp's streamable-HTTP client does: a server that never
/// ends an event must not take the proxy's memory with it.
const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;
/// How long a reconnect attempt may take to get its `endpoint` event.
const ATTEMPT_WITHIN: Duration = Duration::from_secs(5);
/// Reconnect attempts after the stream dropped: the first at once (a dropped connection is
/// most often just that), then after pauses doubling from `FIRST_PAUSE`. Together well under
/// a second of waiting: a server that is not back by then is handled by the supervisor's own
/// backoff, with a fresh session.
const RECONNECT_ATTEMPTS: u32 = 5;
const FIRST_PAUSE: Duration = Duration::from_millis(50);
/// How long a POST may take. A legacy SSE server answers a POST at once (202) and sends the
/// answer on the stream, so a slow POST is a broken server; `server-everything` never answers
/// a POST for a session it does not know, which without this would pin the send for ever.
const POST_WITHIN: Duration = Duration::from_secs(30);
/// How long connecting to the server may take, for every request.
const CONNECT_WITHIN: Duration = Duration::from_secs(10);
/// Messages read from the stream that rmcp has not taken yet.
const INCOMING_QUEUE: usize = 64;

/// What went wrong on the legacy SSE transport. The messages are plain and show no URL path
/// (session ids and credentials live there).
#[derive(Debug, thiserror::Error)]
pub enum SseError {
    #[error("HTTP request failed: {}", crate::upstream::classify::root_cause(.0))]
    Request(#[source] reqwest::Error),
    #[error("the server answered HTTP {status}")]
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("the server no longer knows our session (HTTP 404)")]
    SessionLost,
    #[error("the server answered with {0:?} instead of an event stream")]
    NotEventStream(String),
    #[error("the event stream ended before its endpoint event")]
    NoEndpoint,
    #[error("the endpoint event does not hold a URL")]
    BadEndpoint,
    #[error("the endpoint is on another origin ({0}); our headers are not sent there")]
    CrossOrigin(String),
    #[error("an event was larger than {} MiB", MAX_EVENT_BYTES / (1024 * 1024))]
    EventTooLarge,
    #[error("header {0:?} is not valid")]
    BadHeader(String),
    #[error("the URL is not valid")]
    BadUrl,
    #[error("cannot encode the message: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("the event stream closed")]
    Closed,
}

/// What is shared by the transport, its sends and its worker.
struct Link {
    http: reqwest::Client,
    headers: HeaderMap,
    /// The stream's URL, which reconnects open again.
    url: Url,
    /// Where messages are posted; fixed for the life of the session.
    endpoint: Url,
    /// Set by a 404: no message can reach the session any more.
    lost: AtomicBool,
    /// Ends the worker (and with it the stream).
    stop: CancellationToken,
}

/// The legacy SSE transport of one session.
pub struct SseClientTransport {
    link: Arc<Link>,
    incoming: mpsc::Receiver<ServerJsonRpcMessage>,
    worker: Option<tokio::task::JoinHandle<()>>,
    /// Closing the stream when the transport is dropped without `close` tells the server the
    /// session is over, and ends the worker.
    _stop_on_drop: tokio_util::sync::DropGuard,
}

impl SseClientTransport {
    /// Opens the event stream at `url` with `headers` and waits for its endpoint.
    pub async fn connect(
        url: &str,
        headers: &BTreeMap<String, String>,
    ) -> Result<SseClientTransport, SseError> {
        let url = Url::parse(url).map_err(|_| SseError::BadUrl)?;
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) else {
                return Err(SseError::BadHeader(k.clone()));
            };
            map.insert(name, value);
        }
        let http = reqwest::Client::builder()
            .redirect(super::http_client::redirect_policy())
            .connect_timeout(CONNECT_WITHIN)
            .tcp_nodelay(true)
            .build()
            .map_err(SseError::Request)?;
        let (endpoint, stream) = open_stream(&http, &url, &map, None).await?;
        let stop = CancellationToken::new();
        let link = Arc::new(Link {
            http,
            headers: map,
            url,
            endpoint,
            lost: AtomicBool::new(false),
            stop: stop.clone(),
        });
        let (tx, incoming) = mpsc::channel(INCOMING_QUEUE);
        let worker = tokio::spawn(read_stream(Arc::clone(&link), stream, tx));
        Ok(SseClientTransport {
            link,
            incoming,
            worker: Some(worker),
            _stop_on_drop: stop.drop_guard(),
        })
    }
}

impl Transport<RoleClient> for SseClientTransport {
    type Error = SseError;

    fn name() -> std::borrow::Cow<'static, str> {
        "legacy SSE".into()
    }

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl Future<Output = Result<(), SseError>> + Send + 'static {
        let link = Arc::clone(&self.link);
        async move { link.post(&item).await }
    }

    fn receive(&mut self) -> impl Future<Output = Option<ServerJsonRpcMessage>> + Send {
        self.incoming.recv()
    }

    async fn close(&mut self) -> Result<(), SseError> {
        self.link.stop.cancel();
        if let Some(worker) = self.worker.take() {
            // The worker only waits on the stream and on `stop`; it ends at once.
            let _ = worker.await;
        }
        Ok(())
    }
}

impl Link {
    async fn post(&self, message: &ClientJsonRpcMessage) -> Result<(), SseError> {
        if self.lost.load(Ordering::Relaxed) {
            return Err(SseError::SessionLost);
        }
        if self.stop.is_cancelled() {
            return Err(SseError::Closed);
        }
        let body = serde_json::to_vec(message).map_err(SseError::Encode)?;
        let response = self
            .http
            .post(self.endpoint.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .timeout(POST_WITHIN)
            .body(body)
            .send()
            .await
            .map_err(SseError::Request)?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        if status == reqwest::StatusCode::NOT_FOUND {
            self.lost.store(true, Ordering::Relaxed);
            tracing::debug!(server = %redact::origin(self.url.as_str()), "a POST got 404: the session is lost");
            return Err(SseError::SessionLost);
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Err(SseError::Status {
            status: status.as_u16(),
            retry_after,
        })
    }
}

/// Opens the event stream and reads up to its `endpoint` event. `last_event_id` asks a server
/// that keeps a log for the events after it.
async fn open_stream(
    http: &reqwest::Client,
    url: &Url,
    headers: &HeaderMap,
    last_event_id: Option<&str>,
) -> Result<(Url, EventStream), SseError> {
    let mut request = http
        .get(url.clone())
        .headers(headers.clone())
        .header(ACCEPT, "text/event-stream");
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = request.send().await.map_err(SseError::Request)?;
    let status = response.status();
    if !status.is_success() {
        return Err(SseError::Status {
            status: status.as_u16(),
            retry_after: None,
        });
    }
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if !content_type
        .to_ascii_lowercase()
        .starts_with("text/event-stream")
    {
        return Err(SseError::NotEventStream(content_type));
    }
    let mut stream = EventStream::new(response.bytes_stream().boxed());
    loop {
        match stream.next().await {
            None => return Err(SseError::NoEndpoint),
            Some(Err(e)) => return Err(e),
            Some(Ok(event)) if event.kind() == "endpoint" => {
                return Ok((resolve_endpoint(url, &event.data)?, stream));
            }
            // The spec sends the endpoint first; anything before it has no session to go to.
            Some(Ok(event)) => {
                tracing::debug!(kind = %event.kind(), "ignoring an event before the endpoint");
            }
        }
    }
}

/// The endpoint URL, resolved against the stream's URL, on the same origin.
fn resolve_endpoint(base: &Url, data: &str) -> Result<Url, SseError> {
    let endpoint = base.join(data.trim()).map_err(|_| SseError::BadEndpoint)?;
    if endpoint.origin() != base.origin() {
        return Err(SseError::CrossOrigin(redact::origin(endpoint.as_str())));
    }
    Ok(endpoint)
}

/// The worker: hands `message` events to rmcp, reconnects a dropped stream, and ends (which
/// closes the transport) when the session is gone.
async fn read_stream(
    link: Arc<Link>,
    mut stream: EventStream,
    tx: mpsc::Sender<ServerJsonRpcMessage>,
) {
    let origin = redact::origin(link.url.as_str());
    let mut last_event_id: Option<String> = None;
    let why = loop {
        let next = tokio::select! {
            next = stream.next() => next,
            _ = link.stop.cancelled() => break None,
        };
        let dropped = match next {
            Some(Ok(event)) => {
                if let Some(id) = &event.id {
                    last_event_id = Some(id.clone());
                }
                match event.kind() {
                    "message" => match serde_json::from_str::<ServerJsonRpcMessage>(&event.data) {
                        Ok(message) => {
                            let delivered = tokio::select! {
                                sent = tx.send(message) => sent.is_ok(),
                                _ = link.stop.cancelled() => false,
                            };
                            if !delivered {
                                break None;
                            }
                        }
                        // As rmcp's stdio transport skips a line that is not JSON-RPC: the
                        // answer it may have stood for is not recoverable, the next ones are.
                        Err(e) => {
                            tracing::warn!(server = %origin, error = %e, "ignoring an event that is not JSON-RPC")
                        }
                    },
                    "endpoint" => match resolve_endpoint(&link.url, &event.data) {
                        Ok(endpoint) if endpoint == link.endpoint => {}
                        _ => {
                            break Some(
                                "the server moved the session to another endpoint".to_string(),
                            );
                        }
                    },
                    other => tracing::debug!(server = %origin, kind = other, "ignoring an event"),
                }
                continue;
            }
            Some(Err(e)) => e.to_string(),
            None => "the server ended it".to_string(),
        };
        tracing::debug!(server = %origin, why = %dropped, "the event stream dropped; reconnecting");
        match reconnect(&link, last_event_id.as_deref()).await {
            Ok(fresh) => {
                tracing::info!(server = %origin, "event stream reconnected to the same session");
                stream = fresh;
            }
            Err(why) => break Some(why),
        }
    };
    if let Some(why) = why {
        tracing::info!(server = %origin, "legacy SSE session ended: {why}");
    }
    // Dropping `tx` ends `receive`, and with it the rmcp service.
}

/// Opens the stream again, a few times with backoff. `Ok` only when the server still knows
/// our session (it names the same endpoint); otherwise why the session is over.
async fn reconnect(link: &Link, last_event_id: Option<&str>) -> Result<EventStream, String> {
    let mut pause = Duration::ZERO;
    let mut last_error = String::new();
    for _ in 0..RECONNECT_ATTEMPTS {
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = link.stop.cancelled() => return Err("the transport was closed".into()),
        }
        pause = (pause * 2).max(FIRST_PAUSE);
        let attempt = tokio::time::timeout(
            ATTEMPT_WITHIN,
            open_stream(&link.http, &link.url, &link.headers, last_event_id),
        );
        let outcome = tokio::select! {
            outcome = attempt => outcome,
            _ = link.stop.cancelled() => return Err("the transport was closed".into()),
        };
        match outcome {
            Ok(Ok((endpoint, stream))) if endpoint == link.endpoint => return Ok(stream),
            // The new stream belongs to a session we never initialised: dropping it closes it.
            Ok(Ok(_)) => {
                return Err(
                    "the server no longer knows our session (it started a new one on reconnect)"
                        .into(),
                );
            }
            Ok(Err(e)) => last_error = e.to_string(),
            Err(_) => last_error = format!("no endpoint event within {ATTEMPT_WITHIN:?}"),
        }
    }
    Err(format!(
        "the event stream dropped and {RECONNECT_ATTEMPTS} attempts to reopen it failed (last: {last_error})"
    ))
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Event {
    /// The `event:` field; `None` means the default, `message`.
    pub event: Option<String>,
    pub data: String,
    pub id: Option<String>,
}

impl Event {
    fn kind(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }
}

/// Events read from a response body.
struct EventStream {
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    parser: EventParser,
}

impl EventStream {
    fn new(body: BoxStream<'static, reqwest::Result<Bytes>>) -> Self {
        EventStream {
            body,
            parser: EventParser::new(MAX_EVENT_BYTES),
        }
    }

    /// The next event; `None` when the body ended (an event cut off by the end is dropped, as
    /// the SSE spec says).
    async fn next(&mut self) -> Option<Result<Event, SseError>> {
        loop {
            if let Some(event) = self.parser.ready.pop_front() {
                return Some(Ok(event));
            }
            match self.body.next().await? {
                Ok(chunk) => {
                    if let Err(e) = self.parser.feed(&chunk) {
                        return Some(Err(e));
                    }
                }
                Err(e) => return Some(Err(SseError::Request(e))),
            }
        }
    }
}

/// The event-stream format as the WHATWG spec parses it: lines end with CR, LF or CRLF; a blank
/// line dispatches the event; `:` starts a comment; unknown fields, and lines without a colon,
/// are ignored rather than treated as errors (a stray line must not cost the whole stream).
pub(crate) struct EventParser {
    max: usize,
    line: Vec<u8>,
    /// The previous chunk ended with CR: an LF starting this one belongs to it.
    after_cr: bool,
    first_line: bool,
    current: Event,
    has_data: bool,
    /// Bytes of the event being read.
    size: usize,
    pub(crate) ready: std::collections::VecDeque<Event>,
}

impl EventParser {
    pub(crate) fn new(max: usize) -> Self {
        EventParser {
            max,
            line: Vec::new(),
            after_cr: false,
            first_line: true,
            current: Event::default(),
            has_data: false,
            size: 0,
            ready: std::collections::VecDeque::new(),
        }
    }

    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> Result<(), SseError> {
        if self.after_cr && bytes.first() == Some(&b'\n') {
            bytes = &bytes[1..];
        }
        self.after_cr = false;
        while let Some(end) = bytes.iter().position(|b| matches!(b, b'\n' | b'\r')) {
            self.grow(end)?;
            self.line.extend_from_slice(&bytes[..end]);
            let line = std::mem::take(&mut self.line);
            self.parse_line(&line);
            self.line = line;
            self.line.clear();
            if bytes[end] == b'\r' {
                match bytes.get(end + 1) {
                    Some(b'\n') => bytes = &bytes[end + 2..],
                    Some(_) => bytes = &bytes[end + 1..],
                    None => {
                        self.after_cr = true;
                        bytes = &[];
                    }
                }
            } else {
                bytes = &bytes[end + 1..];
            }
        }
        self.grow(bytes.len())?;
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn grow(&mut self, by: usize) -> Result<(), SseError> {
        self.size = self.size.saturating_add(by);
        if self.size > self.max {
            return Err(SseError::EventTooLarge);
        }
        Ok(())
    }

    fn parse_line(&mut self, line: &[u8]) {
        let line = if std::mem::take(&mut self.first_line) {
            line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line)
        } else {
            line
        };
        if line.is_empty() {
            let event = std::mem::take(&mut self.current);
            if std::mem::take(&mut self.has_data) {
                self.ready.push_back(event);
            }
            self.size = 0;
            return;
        }
        let (name, value) = match line.iter().position(|b| *b == b':') {
            Some(0) => return,
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        let value = String::from_utf8_lossy(value);
        match name {
            b"data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(&value);
                self.has_data = true;
            }
            b"event" => self.current.event = Some(value.into_owned()),
            // An id with NUL is ignored, as the spec says.
            b"id" if !value.contains('\0') => self.current.id = Some(value.into_owned()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    use axum::extract::State;
    use axum::http::StatusCode;
    use rmcp::model::{ClientRequest, PingRequest, RequestId};

    use super::*;

    fn parse(chunks: &[&[u8]]) -> Result<Vec<Event>, SseError> {
        let mut p = EventParser::new(64);
        for c in chunks {
            p.feed(c)?;
        }
        Ok(p.ready.into_iter().collect())
    }

    fn ev(event: Option<&str>, data: &str, id: Option<&str>) -> Event {
        Event {
            event: event.map(Into::into),
            data: data.into(),
            id: id.map(Into::into),
        }
    }

    #[test]
    fn events_split_anywhere_and_every_line_ending() -> Result<(), SseError> {
        let got = parse(&[
            b"\xEF\xBB\xBFevent: endpoint\r",
            b"\ndata: /messages?s=1\r\n\r",
            b"\n: a comment\nid: 7\ndata: {\"a\"\ndata: :1}\n\n",
            b"data:no space\r\rdata: cut",
        ])?;
        assert_eq!(
            got,
            vec![
                ev(Some("endpoint"), "/messages?s=1", None),
                ev(None, "{\"a\"\n:1}", Some("7")),
                ev(None, "no space", None),
            ]
        );
        Ok(())
    }

    #[test]
    fn stray_lines_and_unknown_fields_are_ignored() -> Result<(), SseError> {
        let got =
            parse(&[b"this is not json-rpc\nretry: x\nfoo: bar\n\nevent: x\n\ndata: ok\n\n"])?;
        // The stray line alone dispatches nothing; an event without data is not dispatched.
        assert_eq!(got, vec![ev(None, "ok", None)]);
        Ok(())
    }

    #[test]
    fn an_event_over_the_limit_is_an_error_and_the_limit_is_per_event() {
        assert!(
            parse(&[
                b"data: 0123456789",
                b"0123456789012345678901234567890123456789012345678901234567890\n"
            ])
            .is_err()
        );
        let many: Vec<&[u8]> = vec![b"data: 0123456789012345678901234567890123456789\n\n"; 10];
        assert_eq!(parse(&many).map(|v| v.len()).ok(), Some(10));
    }

    #[test]
    fn endpoints_resolve_against_the_stream_and_stay_on_its_origin() -> Result<(), SseError> {
        let base = Url::parse("http://127.0.0.1:9/a/sse?token=x").map_err(|_| SseError::BadUrl)?;
        assert_eq!(
            resolve_endpoint(&base, "/messages?sessionId=1")?.as_str(),
            "http://127.0.0.1:9/messages?sessionId=1"
        );
        assert_eq!(
            resolve_endpoint(&base, "messages?sessionId=1")?.as_str(),
            "http://127.0.0.1:9/a/messages?sessionId=1"
        );
        assert_eq!(
            resolve_endpoint(&base, "http://127.0.0.1:9/m")?.as_str(),
            "http://127.0.0.1:9/m"
        );
        let err = resolve_endpoint(&base, "http://evil.example/m?secret=1")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("another origin") && !err.contains("secret"),
            "{err}"
        );
        Ok(())
    }

    /// A scripted legacy SSE server: the first stream names `messages?n=1` (relative) and
    /// carries an empty result for every request posted; any later stream names another
    /// endpoint, as a server that lost the session would. `lose` makes POSTs answer 404.
    #[derive(Default)]
    struct Scripted {
        keys: Mutex<Vec<Option<String>>>,
        gets: AtomicUsize,
        posts: AtomicUsize,
        lose: AtomicBool,
        events: Mutex<Option<mpsc::UnboundedSender<String>>>,
    }

    impl Scripted {
        fn saw(&self, headers: &axum::http::HeaderMap) {
            let key = headers
                .get("x-key")
                .and_then(|v| v.to_str().ok())
                .map(String::from);
            if let Ok(mut keys) = self.keys.lock() {
                keys.push(key);
            }
        }
    }

    async fn scripted_stream(
        State(s): State<Arc<Scripted>>,
        headers: axum::http::HeaderMap,
    ) -> axum::response::Response {
        s.saw(&headers);
        let first = s.gets.fetch_add(1, Ordering::SeqCst) == 0;
        let endpoint = if first {
            "messages?n=1"
        } else {
            "messages?n=2"
        };
        let opening = futures::stream::once(std::future::ready(Ok::<_, std::io::Error>(
            Bytes::from(format!("event: endpoint\ndata: {endpoint}\n\n")),
        )));
        let body = if first {
            let (tx, rx) = mpsc::unbounded_channel::<String>();
            if let Ok(mut events) = s.events.lock() {
                *events = Some(tx);
            }
            let rest = futures::stream::unfold(rx, |mut rx| async move {
                let event = rx.recv().await?;
                Some((Ok(Bytes::from(event)), rx))
            });
            axum::body::Body::from_stream(opening.chain(rest))
        } else {
            axum::body::Body::from_stream(opening)
        };
        axum::response::Response::builder()
            .header("content-type", "text/event-stream")
            .body(body)
            .unwrap_or_default()
    }

    async fn scripted_post(
        State(s): State<Arc<Scripted>>,
        headers: axum::http::HeaderMap,
        body: Bytes,
    ) -> StatusCode {
        s.saw(&headers);
        s.posts.fetch_add(1, Ordering::SeqCst);
        if s.lose.load(Ordering::SeqCst) {
            return StatusCode::NOT_FOUND;
        }
        let id = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("id").cloned());
        if let (Some(id), Ok(events)) = (id, s.events.lock())
            && let Some(tx) = events.as_ref()
        {
            let _ = tx.send(format!(
                "event: message\ndata: {{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{}}}}\n\n"
            ));
        }
        StatusCode::ACCEPTED
    }

    fn ping(id: i64) -> ClientJsonRpcMessage {
        ClientJsonRpcMessage::request(
            ClientRequest::PingRequest(PingRequest::default()),
            RequestId::Number(id),
        )
    }

    #[tokio::test]
    async fn headers_on_every_request_a_404_loses_the_session_and_a_new_endpoint_closes()
    -> Result<(), Box<dyn std::error::Error>> {
        let server = Arc::new(Scripted::default());
        let app = axum::Router::new()
            .route("/a/sse", axum::routing::get(scripted_stream))
            .route("/a/messages", axum::routing::post(scripted_post))
            .with_state(Arc::clone(&server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/a/sse", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        let headers = BTreeMap::from([("X-Key".to_string(), "k".to_string())]);
        let mut transport = SseClientTransport::connect(&url, &headers).await?;
        assert!(
            transport
                .link
                .endpoint
                .as_str()
                .ends_with("/a/messages?n=1"),
            "the relative endpoint resolves against the stream's URL"
        );

        transport.send(ping(1)).await?;
        let answer = tokio::time::timeout(Duration::from_secs(5), transport.receive()).await?;
        assert!(
            matches!(&answer, Some(ServerJsonRpcMessage::Response(r)) if r.id == RequestId::Number(1)),
            "{answer:?}"
        );

        server.lose.store(true, Ordering::SeqCst);
        assert!(matches!(
            transport.send(ping(2)).await,
            Err(SseError::SessionLost)
        ));
        // Once lost, sends fail at once without a POST.
        assert!(matches!(
            transport.send(ping(3)).await,
            Err(SseError::SessionLost)
        ));
        assert_eq!(server.posts.load(Ordering::SeqCst), 2);

        // The stream ends; the reconnect is given another endpoint: the transport closes.
        server.events.lock().map(|mut e| e.take()).ok();
        let end = tokio::time::timeout(Duration::from_secs(5), transport.receive()).await?;
        assert!(end.is_none(), "{end:?}");
        assert_eq!(server.gets.load(Ordering::SeqCst), 2);
        let keys = server.keys.lock().map(|k| k.clone()).unwrap_or_default();
        assert_eq!(keys.len(), 4, "two GETs and two POSTs: {keys:?}");
        assert!(keys.iter().all(|k| k.as_deref() == Some("k")), "{keys:?}");
        transport.close().await?;
        Ok(())
    }
}
