//! The fake server over the legacy HTTP+SSE transport (MCP protocol 2024-11-05).
//!
//! `GET /sse` opens a session: its stream starts with `event: endpoint` naming
//! `/messages?sessionId=ID`, and carries every message the server sends as `event: message`.
//! `POST /messages?sessionId=ID` hands one JSON-RPC message to that session's MCP server (the
//! same [`FakeServer`] handler as on the other transports) and is answered 202 at once; the
//! answer follows on the stream. An unknown session id gets 404, as from a server that
//! restarted. `/control/*` is the same control API as on streamable HTTP.
//!
//! Every event carries an id (`ID.SEQ`) and each session keeps its recent events, so a client
//! whose stream dropped can open it again with `Last-Event-ID` and get the same endpoint and
//! the events it missed (the reference TypeScript server cannot do that: it ends the session
//! with its stream). A session without a stream is forgotten after [`DETACHED_GRACE`].
//!
//! Faults of the HTTP layer, per `tools/call`: `http-error` answers the POST with the status
//! (the message is dropped); `reset` cuts the stream in the middle of that call's answer (the
//! answer stays in the session's log, so a client that resumes gets it whole); `garbage`
//! replaces that call's answer event's data by its garbage (`garbage::mangle`: a `cut-answer`
//! is the answer's first half in a whole event). `session-loss` forgets every
//! session: POSTs to them get 404, their streams end, and they cannot be resumed.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::RngExt as _;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::service::{RoleServer, ServiceExt as _};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::FakeServer;
use super::control::{RESET_AFTER, apply_fault, http_error, sse_response};
use super::faults::{FaultState, GarbageMark, RequestRef};
use super::wire::WireKind;

/// How long a session whose stream dropped waits to be resumed before it is forgotten.
pub const DETACHED_GRACE: Duration = Duration::from_secs(10);
/// Events kept per session for clients that resume.
const LOG_EVENTS: usize = 1024;

/// A poisoned lock only means a task panicked while holding it; the data is still whole.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The fake's SSE state: its sessions and counters. The faults are the server's.
pub struct SseFake {
    server: FakeServer,
    sessions: Mutex<HashMap<String, Arc<SseSession>>>,
    /// Messages posted to a known session.
    requests: AtomicU64,
    tool_calls: AtomicU64,
    /// Streams opened, and how many of them resumed a session.
    streams: AtomicU64,
    resumed: AtomicU64,
}

/// What a fault of the HTTP layer does to one call's answer.
#[derive(Debug, Clone)]
enum Mark {
    Cut,
    Garbage(GarbageMark),
}

/// One event of a session's stream, whole, as written.
struct Logged {
    seq: u64,
    text: Bytes,
    /// Cut the next stream that writes it in the middle (a `reset`), once.
    cut: bool,
}

struct Log {
    next_seq: u64,
    events: VecDeque<Logged>,
}

/// One session: its MCP server's inbox, the log of what it sent, and its stream's generation.
struct SseSession {
    id: String,
    inbox: mpsc::UnboundedSender<ClientJsonRpcMessage>,
    log: Mutex<Log>,
    /// Bumped on every new event and every new stream, so streams wake up to look.
    changed: watch::Sender<u64>,
    /// The session is forgotten: its streams end and its server stops.
    ended: CancellationToken,
    /// Answer faults by request id (its JSON text).
    marks: Mutex<HashMap<String, Mark>>,
    /// Which stream is attached now; an older one ends when a newer one attaches.
    generation: AtomicU64,
}

impl SseSession {
    /// Sends `message` on the session's stream (as the session's MCP transport).
    fn send(
        &self,
        message: &ServerJsonRpcMessage,
        faults: &FaultState,
    ) -> Result<(), std::io::Error> {
        if self.ended.is_cancelled() {
            return Err(std::io::ErrorKind::NotConnected.into());
        }
        let answers = match message {
            ServerJsonRpcMessage::Response(r) => Some(&r.id),
            ServerJsonRpcMessage::Error(e) => e.id.as_ref(),
            _ => None,
        };
        let mark = answers
            .and_then(|id| serde_json::to_string(id).ok())
            .and_then(|id| lock(&self.marks).remove(&id));
        let mut data = serde_json::to_string(message).map_err(std::io::Error::other)?;
        if let Some(Mark::Garbage(garbage)) = &mark {
            data = super::garbage::mangle(garbage.form, garbage.pick, &data);
            faults.note_applied(&garbage.fault, garbage.request);
        }
        {
            let mut log = lock(&self.log);
            self.append(&mut log, &data, matches!(mark, Some(Mark::Cut)));
        }
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    fn append(&self, log: &mut Log, data: &str, cut: bool) {
        let seq = log.next_seq;
        log.next_seq += 1;
        let text = format!("id: {}.{seq}\nevent: message\ndata: {data}\n\n", self.id);
        log.events.push_back(Logged {
            seq,
            text: Bytes::from(text),
            cut,
        });
        while log.events.len() > LOG_EVENTS {
            log.events.pop_front();
        }
    }

    /// Whether every event after `seq` is still in the log.
    fn can_resume_after(&self, seq: u64) -> bool {
        let log = lock(&self.log);
        seq < log.next_seq && log.events.front().is_none_or(|e| e.seq <= seq + 1)
    }

    /// The first event after `cursor`: its seq, its text, and whether to cut it.
    fn event_after(&self, cursor: u64) -> Option<(u64, Bytes, bool)> {
        let mut log = lock(&self.log);
        let event = log.events.iter_mut().find(|e| e.seq > cursor)?;
        Some((
            event.seq,
            event.text.clone(),
            std::mem::take(&mut event.cut),
        ))
    }

    fn endpoint_event(&self, cursor: u64) -> Bytes {
        Bytes::from(format!(
            "id: {}.{cursor}\nevent: endpoint\ndata: /messages?sessionId={}\n\n",
            self.id, self.id
        ))
    }
}

/// The MCP side of a session, as an rmcp transport: messages posted to the session in, the
/// server's messages onto its stream out.
struct SessionTransport {
    session: Arc<SseSession>,
    /// To report a garbage fault applied when it is.
    faults: FaultState,
    inbox: mpsc::UnboundedReceiver<ClientJsonRpcMessage>,
}

impl rmcp::transport::Transport<RoleServer> for SessionTransport {
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: ServerJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        std::future::ready(self.session.send(&item, &self.faults))
    }

    fn receive(&mut self) -> impl Future<Output = Option<ClientJsonRpcMessage>> + Send {
        let ended = self.session.ended.clone();
        let inbox = &mut self.inbox;
        async move {
            tokio::select! {
                message = inbox.recv() => message,
                _ = ended.cancelled() => None,
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl SseFake {
    pub fn new(server: FakeServer) -> Arc<Self> {
        Arc::new(SseFake {
            server,
            sessions: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
            tool_calls: AtomicU64::new(0),
            streams: AtomicU64::new(0),
            resumed: AtomicU64::new(0),
        })
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/sse", get(open_stream))
            .route("/messages", post(post_message))
            .route("/control/fault", post(set_fault))
            .route("/control/clear", post(clear))
            .route("/control/stats", get(stats))
            .with_state(self)
    }

    fn faults(&self) -> &FaultState {
        &self.server.faults
    }

    fn session(&self, id: &str) -> Option<Arc<SseSession>> {
        lock(&self.sessions).get(id).cloned()
    }

    /// Forgets every session, as a server that restarted would have.
    pub fn forget_sessions(&self) {
        let gone: Vec<Arc<SseSession>> = lock(&self.sessions).drain().map(|(_, s)| s).collect();
        for session in gone {
            session.ended.cancel();
        }
    }

    /// A new session with its MCP server running.
    fn open_session(self: &Arc<Self>) -> Arc<SseSession> {
        let id = format!("{:032x}", rand::rng().random::<u128>());
        let (inbox, rx) = mpsc::unbounded_channel();
        let session = Arc::new(SseSession {
            id: id.clone(),
            inbox,
            // Seq 0 is the endpoint event; messages count from 1.
            log: Mutex::new(Log {
                next_seq: 1,
                events: VecDeque::new(),
            }),
            changed: watch::Sender::new(0),
            ended: CancellationToken::new(),
            marks: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        });
        lock(&self.sessions).insert(id, Arc::clone(&session));
        let transport = SessionTransport {
            session: Arc::clone(&session),
            faults: self.faults().clone(),
            inbox: rx,
        };
        let server = self.server.for_session();
        let ended = session.ended.clone();
        tokio::spawn(async move {
            match server.serve(transport).await {
                Ok(running) => {
                    tokio::select! {
                        _ = running.waiting() => {}
                        _ = ended.cancelled() => {}
                    }
                }
                Err(e) => tracing::debug!(error = %e, "an SSE session ended before its handshake"),
            }
        });
        session
    }

    /// Forgets `session` if no stream attached to it since generation `generation` ended.
    fn reap_later(self: &Arc<Self>, session: &Arc<SseSession>, generation: u64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (fake, session) = (Arc::clone(self), Arc::clone(session));
        runtime.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(DETACHED_GRACE) => {}
                _ = session.ended.cancelled() => return,
            }
            if session.generation.load(Ordering::SeqCst) == generation {
                let mut sessions = lock(&fake.sessions);
                if sessions
                    .get(&session.id)
                    .is_some_and(|s| Arc::ptr_eq(s, &session))
                {
                    sessions.remove(&session.id);
                }
                drop(sessions);
                session.ended.cancel();
            }
        });
    }
}

/// Ends with the stream it belongs to: a session whose stream went away is forgotten unless
/// it is resumed in time.
struct Detached {
    fake: Arc<SseFake>,
    session: Arc<SseSession>,
    generation: u64,
}

impl Drop for Detached {
    fn drop(&mut self) {
        self.fake.reap_later(&self.session, self.generation);
    }
}

/// Where a stream is: the endpoint event to send first, then the log from `cursor` on.
struct Cursor {
    session: Arc<SseSession>,
    changes: watch::Receiver<u64>,
    generation: u64,
    first: Option<Bytes>,
    cursor: u64,
    /// A cut is under way: the connection breaks next.
    breaking: bool,
    _detached: Detached,
}

/// The next piece of a stream's body, `None` when the stream ends.
async fn next_piece(mut c: Cursor) -> Option<(Result<Bytes, std::io::Error>, Cursor)> {
    if let Some(first) = c.first.take() {
        return Some((Ok(first), c));
    }
    if std::mem::take(&mut c.breaking) {
        // Give the first half time to reach the client before the connection goes, so it
        // sees a break in the middle of an event rather than a clean end.
        tokio::time::sleep(RESET_AFTER).await;
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected reset");
        return Some((Err(reset), c));
    }
    loop {
        let current = c.session.generation.load(Ordering::SeqCst) == c.generation;
        if c.session.ended.is_cancelled() || !current {
            return None;
        }
        c.changes.borrow_and_update();
        if let Some((seq, text, cut)) = c.session.event_after(c.cursor) {
            if cut {
                // Half the event, then the break. The event stays whole in the log, and the
                // cursor before it: a resumed stream sends it again.
                c.breaking = true;
                return Some((Ok(text.slice(..text.len() / 2)), c));
            }
            c.cursor = seq;
            return Some((Ok(text), c));
        }
        tokio::select! {
            changed = c.changes.changed() => {
                if changed.is_err() {
                    return None;
                }
            }
            _ = c.session.ended.cancelled() => return None,
        }
    }
}

async fn open_stream(State(fake): State<Arc<SseFake>>, headers: HeaderMap) -> Response {
    fake.streams.fetch_add(1, Ordering::Relaxed);
    // `ID.SEQ`: the session, and the last event the client saw.
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit_once('.'))
        .and_then(|(id, seq)| Some((fake.session(id)?, seq.parse::<u64>().ok()?)))
        .filter(|(session, seq)| session.can_resume_after(*seq));
    let (session, cursor) = match resume {
        Some((session, seq)) => {
            fake.resumed.fetch_add(1, Ordering::Relaxed);
            (session, seq)
        }
        None => (fake.open_session(), 0),
    };
    let generation = session.generation.fetch_add(1, Ordering::SeqCst) + 1;
    // Wakes an older stream of the session, which then sees it is no longer current.
    session.changed.send_modify(|n| *n = n.wrapping_add(1));
    let start = Cursor {
        changes: session.changed.subscribe(),
        generation,
        first: Some(session.endpoint_event(cursor)),
        cursor,
        breaking: false,
        _detached: Detached {
            fake: Arc::clone(&fake),
            session: Arc::clone(&session),
            generation,
        },
        session,
    };
    sse_response(Body::from_stream(futures::stream::unfold(
        start, next_piece,
    )))
}

#[derive(Deserialize)]
struct SessionQuery {
    #[serde(rename = "sessionId")]
    session_id: String,
}

async fn post_message(
    State(fake): State<Arc<SseFake>>,
    Query(query): Query<SessionQuery>,
    body: Bytes,
) -> Response {
    let Some(session) = fake.session(&query.session_id) else {
        return (StatusCode::NOT_FOUND, "unknown session").into_response();
    };
    fake.requests.fetch_add(1, Ordering::Relaxed);
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    if value.get("method").and_then(Value::as_str) == Some("tools/call") {
        fake.tool_calls.fetch_add(1, Ordering::Relaxed);
        let tool = value
            .pointer("/params/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let request = value
            .pointer("/params/arguments")
            .and_then(Value::as_object)
            .and_then(|args| super::wire::request_of(tool, args));
        fake.faults().note_call(tool, request);
        let hits = fake
            .faults()
            .hits(RequestRef::call(tool, request), |k| {
                matches!(
                    k,
                    WireKind::HttpError { .. } | WireKind::Reset | WireKind::Garbage { .. }
                )
            })
            .await;
        // One answer can carry one fault: the first that hit.
        if let Some(fault) = hits.into_iter().next() {
            let id = value.get("id").map(Value::to_string).unwrap_or_default();
            match fault.kind {
                WireKind::HttpError {
                    status,
                    retry_after,
                } => {
                    fake.faults().note_applied(&fault, request);
                    return http_error(status, retry_after);
                }
                WireKind::Reset => {
                    fake.faults().note_applied(&fault, request);
                    lock(&session.marks).insert(id, Mark::Cut);
                }
                // Applied when the answer is sent (`SseSession::send`), if it is.
                _ => {
                    let pick = fake.faults().value_draw(&fault, request, &id);
                    let mark = Mark::Garbage(GarbageMark::new(&fault, request, pick));
                    lock(&session.marks).insert(id, mark);
                }
            }
        }
    }
    let message: ClientJsonRpcMessage = match serde_json::from_value(value) {
        Ok(m) => m,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    if session.inbox.send(message).is_err() || session.ended.is_cancelled() {
        return (StatusCode::NOT_FOUND, "unknown session").into_response();
    }
    (StatusCode::ACCEPTED, "Accepted").into_response()
}

async fn set_fault(State(fake): State<Arc<SseFake>>, body: Bytes) -> Response {
    apply_fault(fake.faults(), &body, &|| fake.forget_sessions())
}

async fn clear(State(fake): State<Arc<SseFake>>) -> StatusCode {
    fake.faults().clear();
    StatusCode::NO_CONTENT
}

async fn stats(State(fake): State<Arc<SseFake>>) -> Response {
    axum::Json(json!({
        "requests": fake.requests.load(Ordering::Relaxed),
        "tool_calls": fake.tool_calls.load(Ordering::Relaxed),
        "cancelled": fake.server.cancelled.load(Ordering::Relaxed),
        "streams": fake.streams.load(Ordering::Relaxed),
        "resumed": fake.resumed.load(Ordering::Relaxed),
        "sessions": lock(&fake.sessions).len(),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use futures::StreamExt as _;

    use super::*;
    use crate::fake::faults::Transport;
    use crate::upstream::sse_client::{Event, EventParser};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    async fn serve() -> std::io::Result<(Arc<SseFake>, String)> {
        let fake = SseFake::new(FakeServer::new("t", FaultState::new(Transport::Sse)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let app = Arc::clone(&fake).router();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((fake, base))
    }

    /// An open event stream, read event by event.
    struct Stream {
        body: futures::stream::BoxStream<'static, reqwest::Result<Bytes>>,
        parser: EventParser,
    }

    impl Stream {
        async fn open(base: &str, last_event_id: Option<&str>) -> reqwest::Result<Stream> {
            let mut request = reqwest::Client::new().get(format!("{base}/sse"));
            if let Some(id) = last_event_id {
                request = request.header("last-event-id", id);
            }
            let response = request.send().await?;
            Ok(Stream {
                body: response.bytes_stream().boxed(),
                parser: EventParser::new(1 << 20),
            })
        }

        /// The next event; `Ok(None)` if the stream ends (cleanly or broken), `Err` if it
        /// stays silent for 5 s.
        async fn read(&mut self) -> Result<Option<Event>, &'static str> {
            let read = async {
                loop {
                    if let Some(event) = self.parser.ready.pop_front() {
                        return Some(event);
                    }
                    let chunk = self.body.next().await?.ok()?;
                    self.parser.feed(&chunk).ok()?;
                }
            };
            tokio::time::timeout(Duration::from_secs(5), read)
                .await
                .map_err(|_| "the stream stayed silent for 5 s")
        }

        async fn next(&mut self) -> Option<Event> {
            self.read().await.ok().flatten()
        }

        async fn ends(&mut self) -> bool {
            matches!(self.read().await, Ok(None))
        }
    }

    async fn post(base: &str, endpoint: &str, message: Value) -> reqwest::Result<u16> {
        Ok(reqwest::Client::new()
            .post(format!("{base}{endpoint}"))
            .json(&message)
            .send()
            .await?
            .status()
            .as_u16())
    }

    fn initialize() -> Value {
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2024-11-05", "capabilities": {},
            "clientInfo": {"name": "test", "version": "0"}}})
    }

    #[tokio::test]
    async fn answers_come_on_the_stream_and_a_resumed_stream_keeps_the_session() -> TestResult {
        let (fake, base) = serve().await?;
        let mut stream = Stream::open(&base, None).await?;
        let endpoint = stream.next().await.ok_or("no endpoint event")?;
        assert_eq!(endpoint.event.as_deref(), Some("endpoint"));
        assert!(
            endpoint.data.starts_with("/messages?sessionId="),
            "{endpoint:?}"
        );
        assert_eq!(post(&base, &endpoint.data, initialize()).await?, 202);
        let answer = stream.next().await.ok_or("no answer")?;
        let message: Value = serde_json::from_str(&answer.data)?;
        assert_eq!(message["id"], 1, "{message}");
        assert!(message["result"]["serverInfo"].is_object(), "{message}");
        let last = answer.id.ok_or("the answer has no id")?;
        assert_eq!(
            post(&base, "/messages?sessionId=nope", initialize()).await?,
            404
        );

        // The stream drops; the session waits; a ping posted meanwhile is kept for it.
        drop(stream);
        post(
            &base,
            &endpoint.data,
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        )
        .await?;
        assert_eq!(
            post(
                &base,
                &endpoint.data,
                json!({"jsonrpc": "2.0", "id": 2, "method": "ping"})
            )
            .await?,
            202
        );
        let mut resumed = Stream::open(&base, Some(&last)).await?;
        let again = resumed.next().await.ok_or("no endpoint on resume")?;
        assert_eq!(again.data, endpoint.data, "the same session");
        let pong: Value = serde_json::from_str(&resumed.next().await.ok_or("no pong")?.data)?;
        assert_eq!(
            (pong["id"].clone(), pong["result"].clone()),
            (json!(2), json!({}))
        );

        // Forgotten: the stream ends, posts get 404, and resuming gives a new session.
        fake.forget_sessions();
        assert!(resumed.ends().await, "the stream ended");
        assert_eq!(
            post(
                &base,
                &endpoint.data,
                json!({"jsonrpc": "2.0", "id": 3, "method": "ping"})
            )
            .await?,
            404
        );
        let mut fresh = Stream::open(&base, Some(&last)).await?;
        let other = fresh.next().await.ok_or("no endpoint")?;
        assert_ne!(other.data, endpoint.data);
        Ok(())
    }

    #[tokio::test]
    async fn reset_cuts_the_answer_and_resuming_gets_it_whole() -> TestResult {
        let (fake, base) = serve().await?;
        let mut stream = Stream::open(&base, None).await?;
        let endpoint = stream.next().await.ok_or("no endpoint event")?.data;
        post(&base, &endpoint, initialize()).await?;
        let last = stream.next().await.and_then(|e| e.id).ok_or("no answer")?;
        post(
            &base,
            &endpoint,
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        )
        .await?;
        fake.faults().add_local(WireKind::Reset, 1.0, vec![], None);
        let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": "hi"}}});
        assert_eq!(post(&base, &endpoint, call).await?, 202);
        assert!(stream.ends().await, "the stream broke mid-event");
        let mut resumed = Stream::open(&base, Some(&last)).await?;
        assert_eq!(resumed.next().await.map(|e| e.data), Some(endpoint));
        let answer: Value = serde_json::from_str(&resumed.next().await.ok_or("no answer")?.data)?;
        assert_eq!(answer["result"]["content"][0]["text"], "hi", "{answer}");
        Ok(())
    }
}
