//! Reading a request body without letting one client, or a burst of them, take the process's
//! memory.
//!
//! Four bounds apply, cheapest first:
//! - the time to read it (`--body-timeout`; 408 after it), so a client that declares a body
//!   and sends it slowly, or not at all, holds its connection and its share for that long only;
//! - the size of one body ([`BODY_LIMIT`]; a declared `Content-Length` over it is refused
//!   before a byte is read);
//! - the bytes of all bodies being read or parsed at once ([`BODY_BUDGET`]): a body takes its
//!   share of the budget as its bytes arrive (never for what it declares) and gives it back
//!   once its arguments are parsed; a body
//!   that finds the budget spent is answered 503 at once (load shedding) instead of queueing;
//! - the number of JSON values in one body ([`MAX_JSON_VALUES`]), counted by a byte scan before
//!   parsing: a parsed value costs tens of bytes of heap per element, so a 16 MiB array of
//!   one-character strings would otherwise become hundreds of megabytes.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use http::HeaderMap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Largest request body accepted (tool arguments can carry documents).
pub const BODY_LIMIT: usize = 16 * 1024 * 1024;
/// Bytes of bodies held at once, across all requests.
pub const BODY_BUDGET: usize = 32 * 1024 * 1024;
/// JSON values (scalars, arrays, objects) accepted in one body.
pub const MAX_JSON_VALUES: usize = 250_000;
/// The budget is counted in units of this many bytes.
const UNIT: usize = 1024;
/// The buffer a body starts with, however long it says it is; it grows as bytes arrive.
const INITIAL_CAPACITY: usize = 64 * 1024;

/// Why a body was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the request body holds more than {limit} JSON values")]
    TooManyValues { limit: usize },
    #[error("the proxy is reading too many large request bodies right now; try again shortly")]
    Busy,
    #[error("the request body could not be read: {0}")]
    Read(String),
    #[error("the request body did not arrive within {within:?}")]
    TimedOut { within: Duration },
}

/// The bytes of all bodies in flight, shared by every request.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    units: Arc<Semaphore>,
}

impl Default for BodyBudget {
    fn default() -> Self {
        BodyBudget::new(BODY_BUDGET)
    }
}

impl BodyBudget {
    pub fn new(bytes: usize) -> Self {
        BodyBudget {
            units: Arc::new(Semaphore::new(bytes.div_ceil(UNIT))),
        }
    }

    fn take(&self, units: usize) -> Result<Option<OwnedSemaphorePermit>, BodyError> {
        if units == 0 {
            return Ok(None);
        }
        let n = u32::try_from(units).map_err(|_| BodyError::Busy)?;
        self.units
            .clone()
            .try_acquire_many_owned(n)
            .map(Some)
            .map_err(|_| BodyError::Busy)
    }
}

/// A body read within the budget. Its share of the budget is held until it is dropped.
#[derive(Debug)]
pub struct BudgetedBody {
    pub bytes: Bytes,
    _share: Option<OwnedSemaphorePermit>,
}

/// Bodies at least this large hand their memory back to the OS when dropped.
const TRIM_AFTER: usize = 1024 * 1024;

impl Drop for BudgetedBody {
    fn drop(&mut self) {
        if self.bytes.len() >= TRIM_AFTER {
            // Release the buffer now and give the memory back (see `crate::heap`); this runs
            // only after large bodies.
            self.bytes = Bytes::new();
            crate::heap::trim();
        }
    }
}

/// Reads `body` within `within`, taking its share of `budget` as it arrives.
pub async fn read(
    headers: &HeaderMap,
    body: Body,
    budget: &BodyBudget,
    within: Duration,
) -> Result<BudgetedBody, BodyError> {
    tokio::time::timeout(within, read_all(headers, body, budget))
        .await
        .unwrap_or(Err(BodyError::TimedOut { within }))
}

async fn read_all(
    headers: &HeaderMap,
    body: Body,
    budget: &BodyBudget,
) -> Result<BudgetedBody, BodyError> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT) {
        return Err(BodyError::TooLarge { limit: BODY_LIMIT });
    }
    let mut stream = body.into_data_stream();
    // Shares are taken as bytes arrive, never for a declared length: a client that declares
    // 16 MiB and sends nothing must not hold the budget others need.
    let mut held_units = 0;
    let mut share: Option<OwnedSemaphorePermit> = None;
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(INITIAL_CAPACITY));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
        if buf.len() + chunk.len() > BODY_LIMIT {
            return Err(BodyError::TooLarge { limit: BODY_LIMIT });
        }
        buf.extend_from_slice(&chunk);
        let needed = buf.len().div_ceil(UNIT);
        if needed > held_units {
            match budget.take(needed - held_units) {
                Ok(Some(more)) => match share.as_mut() {
                    Some(held) => held.merge(more),
                    None => share = Some(more),
                },
                Ok(None) => {}
                Err(e) => {
                    drop(buf);
                    return Err(discard(stream, e).await);
                }
            }
            held_units = needed;
        }
    }
    Ok(BudgetedBody {
        bytes: buf.freeze(),
        _share: share,
    })
}

/// Reads and drops the rest of a body that is being refused, then gives the refusal back. An
/// HTTP/1 client still sending its body when the answer comes sees a broken pipe instead of
/// the answer; a shed request should get its 503 and retry. Dropping costs no memory, and the
/// total read is bounded by [`BODY_LIMIT`].
async fn discard(mut stream: axum::body::BodyDataStream, refusal: BodyError) -> BodyError {
    let mut read = 0usize;
    while let Some(Ok(chunk)) = stream.next().await {
        read += chunk.len();
        if read > BODY_LIMIT {
            break;
        }
    }
    refusal
}

/// About how many JSON values `body` holds, from a scan of its bytes: every value but the first
/// follows a `,`, a `[` or a `:`. Never an undercount, which is what a limit needs; exact for
/// arrays and scalars, one over per empty array and per object member after the first.
pub fn json_value_count(body: &[u8]) -> usize {
    let mut count = 1;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b',' | b'[' | b':' => count += 1,
            _ => {}
        }
    }
    count
}

/// Refuses a body with more values than [`MAX_JSON_VALUES`]; returns the count otherwise.
pub fn check_values(body: &[u8]) -> Result<usize, BodyError> {
    let values = json_value_count(body);
    if values > MAX_JSON_VALUES {
        return Err(BodyError::TooManyValues {
            limit: MAX_JSON_VALUES,
        });
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WITHIN: Duration = Duration::from_secs(30);

    /// A body that declares `declared` bytes and then sends nothing, ever.
    fn silent_body(declared: usize) -> (HeaderMap, Body) {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_LENGTH, declared.into());
        let body = Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
        (headers, body)
    }

    /// The heap trim after a large body (`crate::heap`): a body of 1 MiB or more asks for it
    /// when dropped, a smaller one never does (a trim per request would cost every call a
    /// walk of the allocator's arenas).
    #[test]
    fn a_body_of_a_mebibyte_or_more_gives_its_memory_back_when_dropped() {
        let dropped = |len: usize| {
            let body = BudgetedBody {
                bytes: Bytes::from(vec![b'x'; len]),
                _share: None,
            };
            let before = crate::heap::trims_on_this_thread();
            drop(body);
            crate::heap::trims_on_this_thread() - before
        };
        assert_eq!(dropped(1024 * 1024), 1, "a body of exactly 1 MiB");
        assert_eq!(dropped(3 * 1024 * 1024), 1, "a body over 1 MiB");
        assert_eq!(dropped(1024 * 1024 - 1), 0, "a byte under 1 MiB");
        assert_eq!(dropped(2048), 0, "a small body");
    }

    /// Finding 2 of the hostile-input issue: two connections declaring 16 MiB and sending
    /// nothing held the whole 32 MiB budget, and every other body was shed with 503.
    #[tokio::test]
    async fn declared_lengths_reserve_nothing_until_bytes_arrive() {
        let budget = BodyBudget::new(BODY_BUDGET);
        let mut silent = Vec::new();
        for _ in 0..2 {
            let (headers, body) = silent_body(BODY_LIMIT);
            let budget = budget.clone();
            silent.push(tokio::spawn(async move {
                read(&headers, body, &budget, WITHIN).await
            }));
        }
        tokio::task::yield_now().await;
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_LENGTH, 3000.into());
        let small = read(&headers, Body::from(vec![b'x'; 3000]), &budget, WITHIN).await;
        assert!(small.is_ok(), "{small:?}");
        for task in &silent {
            assert!(!task.is_finished());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_does_not_arrive_times_out() {
        let budget = BodyBudget::new(BODY_BUDGET);
        let (headers, body) = silent_body(100);
        let started = tokio::time::Instant::now();
        let read = read(&headers, body, &budget, Duration::from_secs(5)).await;
        assert!(matches!(read, Err(BodyError::TimedOut { .. })), "{read:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[test]
    fn value_count_is_close_and_never_under() {
        let cases: &[(&str, usize)] = &[
            ("{}", 1),
            (r#"{"a": 1}"#, 2),
            (r#"{"a": [1, 2, "x,y:[z"], "b": {"c": null}}"#, 7),
            (r#"["x", "x", "x"]"#, 4),
            (r#""a\"b,c""#, 1),
        ];
        for (text, expected) in cases {
            let counted = json_value_count(text.as_bytes());
            assert!(counted >= *expected, "{text}: {counted} < {expected}");
            assert!(
                counted <= expected + 1,
                "{text}: {counted} > {expected} + 1"
            );
        }
    }

    /// A body sent in chunks, with no declared length.
    fn chunked(chunks: Vec<Vec<u8>>) -> Body {
        Body::from_stream(futures::stream::iter(
            chunks.into_iter().map(Ok::<_, std::io::Error>),
        ))
    }

    /// docs/security.md: one body 16 MiB; all bodies being read at once 32 MiB.
    const DOCUMENTED_LIMIT: usize = 16 << 20;

    #[tokio::test]
    async fn a_body_of_exactly_the_limit_is_read_and_one_byte_more_is_not() {
        let budget = BodyBudget::default();
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_LENGTH, DOCUMENTED_LIMIT.into());
        let full = read(
            &headers,
            Body::from(vec![b'x'; DOCUMENTED_LIMIT]),
            &budget,
            WITHIN,
        );
        let full = full.await;
        assert_eq!(
            full.as_ref().map(|b| b.bytes.len()).ok(),
            Some(DOCUMENTED_LIMIT)
        );
        // Two such bodies at once fit in the shared budget; not one byte more.
        let second = read(
            &headers,
            Body::from(vec![b'x'; DOCUMENTED_LIMIT]),
            &budget,
            WITHIN,
        );
        let second = second.await;
        assert!(second.is_ok(), "{second:?}");
        let third = read(&HeaderMap::new(), Body::from(vec![b'x']), &budget, WITHIN).await;
        assert!(matches!(third, Err(BodyError::Busy)), "{third:?}");
        drop((full, second));
        // No declared length: the limit holds on the bytes that arrive.
        let over = chunked(vec![vec![b'x'; DOCUMENTED_LIMIT], vec![b'x']]);
        let over = read(&HeaderMap::new(), over, &budget, WITHIN).await;
        assert!(matches!(over, Err(BodyError::TooLarge { .. })), "{over:?}");
    }

    #[tokio::test]
    async fn a_chunked_body_takes_its_share_as_it_arrives_and_exactly_that() {
        // Four units: a body of four chunks of one unit fits exactly, and holds all four.
        let budget = BodyBudget::new(4 * UNIT);
        let body = chunked(vec![vec![b'x'; UNIT]; 4]);
        let first = read(&HeaderMap::new(), body, &budget, WITHIN).await;
        let first = first.map(|b| b.bytes.len());
        assert_eq!(first.as_ref().ok(), Some(&(4 * UNIT)), "{first:?}");
        // (The length was read, the body dropped: its share is back.)
        let none = HeaderMap::new();
        let held = read(&none, chunked(vec![vec![b'x'; UNIT]; 4]), &budget, WITHIN).await;
        assert!(held.is_ok(), "{held:?}");
        // While it is held, not one more byte fits.
        let one = read(&HeaderMap::new(), Body::from(vec![b'x']), &budget, WITHIN).await;
        assert!(matches!(one, Err(BodyError::Busy)), "{one:?}");
        drop(held);
        let one = read(&HeaderMap::new(), Body::from(vec![b'x']), &budget, WITHIN).await;
        assert!(one.is_ok(), "{one:?}");
    }

    #[tokio::test]
    async fn a_shed_body_is_read_to_its_end_but_never_past_the_limit() {
        let budget = BodyBudget::new(UNIT);
        // The rest of a refused body is drained, so the client sees the 503, not a broken pipe.
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = sent.clone();
        let chunks = (0..8).map(move |_| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 2 * UNIT]))
        });
        let read1 = read(
            &HeaderMap::new(),
            Body::from_stream(futures::stream::iter(chunks)),
            &budget,
            WITHIN,
        )
        .await;
        assert!(matches!(read1, Err(BodyError::Busy)), "{read1:?}");
        assert_eq!(sent.load(std::sync::atomic::Ordering::SeqCst), 8);
        // A client that keeps sending is cut once the limit has been read: of a body four times
        // the limit, the rest is not read.
        let chunk = 64 * UNIT + 1;
        let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = sent.clone();
        let long = (0..4 * BODY_LIMIT / chunk).map(move |_| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; chunk]))
        });
        let long = Body::from_stream(futures::stream::iter(long));
        let cut = read(&HeaderMap::new(), long, &budget, WITHIN).await;
        assert!(matches!(cut, Err(BodyError::Busy)), "{cut:?}");
        let read_chunks = sent.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            read_chunks <= BODY_LIMIT / chunk + 2,
            "{read_chunks} chunks read"
        );
    }

    #[tokio::test]
    async fn a_shed_body_whose_rest_is_exactly_the_limit_is_read_to_its_end() {
        use futures::StreamExt as _;
        let budget = BodyBudget::new(UNIT);
        let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = ended.clone();
        // Refused on its first chunk; then exactly the limit, then its end.
        let mut chunks = vec![Bytes::from(vec![b'x'; 2 * UNIT])];
        chunks.extend((0..16).map(|_| Bytes::from(vec![b'x'; BODY_LIMIT / 16])));
        let body = futures::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>)).chain(
            futures::stream::poll_fn(move |_| {
                seen.store(true, std::sync::atomic::Ordering::SeqCst);
                std::task::Poll::Ready(None)
            }),
        );
        let shed = read(&HeaderMap::new(), Body::from_stream(body), &budget, WITHIN).await;
        assert!(matches!(shed, Err(BodyError::Busy)), "{shed:?}");
        assert!(ended.load(std::sync::atomic::Ordering::SeqCst));
    }

    /// Exact for arrays and scalars (what a hostile body is made of); an object counts one
    /// extra per member after the first (the comma before a key).
    #[test]
    fn value_count_is_exact_for_arrays_and_over_by_the_object_commas() {
        let cases: &[(&str, usize)] = &[
            ("1", 1),
            (r#"["x", "x", "x"]"#, 4),
            (r#"[[1], [2, 3]]"#, 6),
            (r#""a\"b,c""#, 1),
            (r#"["a\\", "b,"]"#, 3),
            (r#"{"a": 1}"#, 2),
            // 7 values, and one comma between the two members.
            (r#"{"a": [1, 2, "x,y:[z"], "b": {"c": null}}"#, 8),
        ];
        for (text, expected) in cases {
            assert_eq!(json_value_count(text.as_bytes()), *expected, "{text}");
        }
    }

    #[test]
    fn the_value_limit_is_inclusive() {
        // An array of n numbers is n + 1 values.
        let array = |n: usize| format!("[{}0]", "0,".repeat(n - 1));
        let at = array(MAX_JSON_VALUES - 1);
        assert_eq!(check_values(at.as_bytes()).ok(), Some(MAX_JSON_VALUES));
        let over = array(MAX_JSON_VALUES);
        assert!(matches!(
            check_values(over.as_bytes()),
            Err(BodyError::TooManyValues { .. })
        ));
    }

    #[tokio::test]
    async fn the_budget_sheds_load_and_comes_back() {
        let budget = BodyBudget::new(4 * UNIT);
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_LENGTH, "3000".parse().unwrap());
        let first = read(&headers, Body::from(vec![b'x'; 3000]), &budget, WITHIN)
            .await
            .unwrap();
        assert!(matches!(
            read(&headers, Body::from(vec![b'x'; 3000]), &budget, WITHIN).await,
            Err(BodyError::Busy)
        ));
        drop(first);
        assert!(
            read(&headers, Body::from(vec![b'x'; 3000]), &budget, WITHIN)
                .await
                .is_ok()
        );
        headers.insert(
            http::header::CONTENT_LENGTH,
            (BODY_LIMIT + 1).to_string().parse().unwrap(),
        );
        assert!(matches!(
            read(&headers, Body::empty(), &budget, WITHIN).await,
            Err(BodyError::TooLarge { .. })
        ));
    }
}
