//! The result cache: tool results that a server's config says may be reused, kept for a TTL.
//!
//! Only tools a server opted in are cached (`"cache": {"tools": [...]}`, or `"readOnly": true`
//! for every tool that declares `readOnlyHint`). The key is the server, its cache epoch (which
//! changes when its tool list changes or it is restarted from the API, so that nothing from
//! before is served after), the tool and the canonical JSON of the arguments (key order does not
//! matter). Concurrent misses for one key make one upstream call (moka's entry API coalesces
//! them). Errors, tool errors included, are never cached. With `--cache-redis-url`, replicas
//! share results through Redis behind this cache (`crate::shared_cache`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use serde_json::Value;

use crate::failure::Failure;

/// Keys (canonical arguments) longer than this are not cached.
pub const MAX_KEY_BYTES: usize = 64 * 1024;
/// Results larger than this (serialized) are passed on, not kept.
pub const MAX_RESULT_BYTES: usize = 1024 * 1024;

/// What a cached call is looked up by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub server: Arc<str>,
    pub epoch: u64,
    pub tool: Arc<str>,
    pub arguments: String,
}

impl CacheKey {
    /// The key of a call of `tool` on `server` (at the server's cache `epoch`) with
    /// `arguments` and the client headers forwarded to it (`meta`), or `None` when the key
    /// would be longer than [`MAX_KEY_BYTES`].
    ///
    /// Forwarded headers are part of the key, so one client's answer is never served to
    /// another. A huge key is not cached: the cache counts entries, and a client must not be
    /// able to fill it with megabytes each.
    pub fn for_call(
        server: &str,
        epoch: u64,
        tool: &str,
        arguments: &serde_json::Map<String, Value>,
        meta: Option<&serde_json::Map<String, Value>>,
    ) -> Option<CacheKey> {
        let mut key = canonical_json(&Value::Object(arguments.clone()));
        key.push('|');
        if let Some(meta) = meta {
            key.push_str(&canonical_json(&Value::Object(meta.clone())));
        }
        (key.len() <= MAX_KEY_BYTES).then(|| CacheKey {
            server: server.into(),
            epoch,
            tool: tool.into(),
            arguments: key,
        })
    }
}

#[derive(Debug, Clone)]
struct Cached {
    result: Arc<Value>,
    ttl: Duration,
    /// About the bytes the entry holds: its serialized result and its key.
    bytes: usize,
    /// Whether it came from the shared cache (another replica's call), not an upstream call.
    shared: bool,
}

/// What an entry costs besides its key and result (moka's bookkeeping, the `Arc`s).
const ENTRY_OVERHEAD: usize = 256;

/// Why a call's result was not put in the cache.
#[derive(Debug, Clone)]
pub enum NotCached {
    /// The call failed.
    Failure(Failure),
    /// The tool answered with `isError: true`: passed on, not kept.
    ToolError(Value),
    /// The result is larger than [`MAX_RESULT_BYTES`]: passed on, not kept.
    TooLarge(Value),
}

struct PerEntryTtl;

impl Expiry<CacheKey, Cached> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Cached,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// The cache, shared by every server.
#[derive(Clone)]
pub struct ResultCache {
    cache: moka::future::Cache<CacheKey, Cached>,
    /// The replicas' shared cache behind this one, if configured.
    shared: Option<Arc<crate::shared_cache::SharedCache>>,
}

impl std::fmt::Debug for ResultCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultCache")
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

impl ResultCache {
    /// A cache of at most `max_entries` entries and about `max_bytes` bytes. moka weighs by
    /// one measure only, so each entry weighs its bytes but never less than an even share of
    /// `max_bytes` per entry: both bounds then hold (400 results of 1 MB once took the proxy
    /// from 22 MB to 470 MB under an entry count alone).
    pub fn new(max_entries: u64, max_bytes: u64) -> Self {
        let share = (max_bytes / max_entries.max(1)).max(1);
        let weigh = move |_: &CacheKey, value: &Cached| -> u32 {
            let bytes = u64::try_from(value.bytes).unwrap_or(u64::MAX);
            u32::try_from(bytes.max(share)).unwrap_or(u32::MAX)
        };
        ResultCache {
            cache: moka::future::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(weigh)
                .expire_after(PerEntryTtl)
                .build(),
            shared: None,
        }
    }

    /// Puts the replicas' shared cache behind this one: a miss here asks it before the
    /// upstream, and what the upstream answers is kept there too.
    pub fn with_shared(mut self, shared: crate::shared_cache::SharedCache) -> Self {
        self.shared = Some(Arc::new(shared));
        self
    }

    /// The cached result for `key`, or the result of `call` (then kept for `ttl` unless it is
    /// an error). The flag says whether the answer came from the cache (including answers
    /// computed by a concurrent miss for the same key that this caller waited for).
    pub async fn get_or_call<F>(
        &self,
        key: CacheKey,
        ttl: Duration,
        call: F,
    ) -> (Result<Arc<Value>, NotCached>, bool)
    where
        F: Future<Output = Result<Value, Failure>>,
    {
        let key_len = key.arguments.len() + key.server.len() + key.tool.len();
        let shared = self.shared.as_ref().map(|shared| {
            let shared_key =
                crate::shared_cache::SharedCache::key(&key.server, &key.tool, &key.arguments);
            (shared, shared_key)
        });
        let entry = self
            .cache
            .entry(key)
            .or_try_insert_with(async {
                if let Some((shared, shared_key)) = &shared
                    && let Some((result, left)) = shared.get(shared_key, MAX_RESULT_BYTES).await
                {
                    return Ok(Cached {
                        bytes: entry_bytes(serialized_len(&result), key_len),
                        result: Arc::new(result),
                        ttl: left.min(ttl),
                        shared: true,
                    });
                }
                match call.await {
                    Ok(result) if result.get("isError").and_then(Value::as_bool) == Some(true) => {
                        Err(NotCached::ToolError(result))
                    }
                    Ok(result) => match serialized_len(&result) {
                        len if len > MAX_RESULT_BYTES => Err(NotCached::TooLarge(result)),
                        len => {
                            if let Some((shared, shared_key)) = shared {
                                shared.put(shared_key, &result, ttl);
                            }
                            Ok(Cached {
                                result: Arc::new(result),
                                ttl,
                                bytes: entry_bytes(len, key_len),
                                shared: false,
                            })
                        }
                    },
                    Err(failure) => Err(NotCached::Failure(failure)),
                }
            })
            .await;
        match entry {
            Ok(entry) => {
                // Waited for another caller's miss, or found in the shared cache: a hit.
                let hit = !entry.is_fresh() || entry.value().shared;
                (Ok(entry.into_value().result), hit)
            }
            Err(not_cached) => (Err((*not_cached).clone()), false),
        }
    }

    /// Entries held now (approximate, as moka counts).
    pub fn entries(&self) -> u64 {
        self.cache.entry_count()
    }

    /// About the bytes held now (as moka weighs them, each entry at least its share).
    pub fn weighted_bytes(&self) -> u64 {
        self.cache.weighted_size()
    }

    /// Applies pending evictions now (moka applies them lazily), for tests and reports.
    pub async fn settle(&self) {
        self.cache.run_pending_tasks().await;
    }
}

/// What an entry weighs: its serialized result, its key and moka's bookkeeping. One formula
/// for entries from an upstream call and from the shared cache alike.
fn entry_bytes(result_len: usize, key_len: usize) -> usize {
    result_len + key_len + ENTRY_OVERHEAD
}

/// The serialized size of `value`, counted without keeping the text.
fn serialized_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0 += data.len();
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// The canonical JSON text of `value`: object keys sorted at every level, no whitespace, so
/// that `{"a":1,"b":2}` and `{"b":2,"a":1}` are one key.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(k) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn key_order_does_not_matter() {
        let a = json!({"b": [1, {"y": 2, "x": 1}], "a": "s"});
        let b = json!({"a": "s", "b": [1, {"x": 1, "y": 2}]});
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(canonical_json(&a), r#"{"a":"s","b":[1,{"x":1,"y":2}]}"#);
        assert_ne!(
            canonical_json(&json!([1, 2])),
            canonical_json(&json!([2, 1]))
        );
    }

    /// Two clients whose forwarded headers differ never share an answer; the same call with
    /// the same headers, whatever the order of their keys, does; the server, the epoch and the
    /// tool are each part of the key.
    #[test]
    fn forwarded_headers_server_epoch_and_tool_are_all_in_the_key() {
        let args = json!({"q": 1}).as_object().cloned().unwrap();
        let alice = json!({"headers": {"x-user": "alice", "x-team": "a"}})
            .as_object()
            .cloned()
            .unwrap();
        let alice_again = json!({"headers": {"x-team": "a", "x-user": "alice"}})
            .as_object()
            .cloned()
            .unwrap();
        let bob = json!({"headers": {"x-user": "bob", "x-team": "a"}})
            .as_object()
            .cloned()
            .unwrap();
        let of = |server, epoch, tool, meta| CacheKey::for_call(server, epoch, tool, &args, meta);
        let a = of("s", 0, "t", Some(&alice)).unwrap();
        assert_eq!(a, of("s", 0, "t", Some(&alice_again)).unwrap());
        assert_ne!(
            a,
            of("s", 0, "t", Some(&bob)).unwrap(),
            "one user's answer to another"
        );
        assert_ne!(
            a,
            of("s", 0, "t", None).unwrap(),
            "headers dropped from the key"
        );
        assert_ne!(a, of("s2", 0, "t", Some(&alice)).unwrap());
        assert_ne!(a, of("s", 1, "t", Some(&alice)).unwrap());
        assert_ne!(a, of("s", 0, "t2", Some(&alice)).unwrap());
        assert_eq!(
            a.arguments,
            r#"{"q":1}|{"headers":{"x-team":"a","x-user":"alice"}}"#
        );
    }

    /// The documented cap (docs/usage.md, "The result cache"): a key of up to 64 KiB is cached,
    /// one byte more is not.
    #[test]
    fn a_key_of_64_kib_is_cached_and_one_byte_more_is_not() {
        // `{"a":"…"}|` is 9 bytes around the text.
        let args = |text_len: usize| {
            json!({"a": "x".repeat(text_len)})
                .as_object()
                .cloned()
                .unwrap()
        };
        let at_cap = CacheKey::for_call("s", 0, "t", &args(64 * 1024 - 9), None);
        assert_eq!(at_cap.map(|k| k.arguments.len()), Some(64 * 1024));
        assert!(CacheKey::for_call("s", 0, "t", &args(64 * 1024 - 8), None).is_none());
    }

    fn key(args: &str) -> CacheKey {
        CacheKey {
            server: "s".into(),
            epoch: 0,
            tool: "t".into(),
            arguments: args.into(),
        }
    }

    #[tokio::test]
    async fn concurrent_misses_make_one_call_and_errors_are_not_kept() {
        let cache = ResultCache::new(100, 64 * 1024 * 1024);
        let calls = AtomicU32::new(0);
        let call = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, Failure>(json!({"content": []}))
        };
        let results = futures::future::join_all(
            (0..50).map(|_| cache.get_or_call(key("{}"), Duration::from_secs(60), call())),
        )
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(results.iter().filter(|(_, hit)| !hit).count(), 1);
        // A tool error and a failure are passed on and not kept.
        for _ in 0..2 {
            let (r, hit) = cache
                .get_or_call(key("err"), Duration::from_secs(60), async {
                    Ok(json!({"isError": true}))
                })
                .await;
            assert!(matches!(r, Err(NotCached::ToolError(_))) && !hit);
            let (r, _) = cache
                .get_or_call(key("fail"), Duration::from_secs(60), async {
                    Err(Failure::SessionExpired)
                })
                .await;
            assert!(matches!(r, Err(NotCached::Failure(_))));
        }
        // A result over the size limit is passed on and not kept.
        let big = json!({"content": [{"type": "text", "text": "x".repeat(MAX_RESULT_BYTES)}]});
        for _ in 0..2 {
            let big = big.clone();
            let (r, hit) = cache
                .get_or_call(key("big"), Duration::from_secs(60), async move { Ok(big) })
                .await;
            assert!(matches!(r, Err(NotCached::TooLarge(_))) && !hit);
        }
    }

    /// Calls `cache` for `key` with a result made by `result`, counting the upstream calls.
    async fn fetch(
        cache: &ResultCache,
        key: CacheKey,
        ttl: Duration,
        calls: &AtomicU32,
        result: Value,
    ) -> bool {
        let (r, hit) = cache
            .get_or_call(key, ttl, async {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(result)
            })
            .await;
        assert!(r.is_ok(), "{r:?}");
        hit
    }

    #[tokio::test]
    async fn a_result_is_served_for_its_ttl_and_not_after() {
        let cache = ResultCache::new(100, 64 * 1024 * 1024);
        let calls = AtomicU32::new(0);
        let ttl = Duration::from_millis(200);
        let result = json!({"content": []});
        assert!(!fetch(&cache, key("{}"), ttl, &calls, result.clone()).await);
        assert!(fetch(&cache, key("{}"), ttl, &calls, result.clone()).await);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!fetch(&cache, key("{}"), ttl, &calls, result).await);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_result_of_exactly_the_size_limit_is_kept() {
        let cache = ResultCache::new(100, 64 * 1024 * 1024);
        let calls = AtomicU32::new(0);
        // `{"t":"` and `"}` around the text.
        let result = json!({"t": "x".repeat(MAX_RESULT_BYTES - 8)});
        assert_eq!(serialized_len(&result), MAX_RESULT_BYTES);
        let ttl = Duration::from_secs(60);
        assert!(!fetch(&cache, key("{}"), ttl, &calls, result.clone()).await);
        assert!(fetch(&cache, key("{}"), ttl, &calls, result).await);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_entry_weighs_its_result_and_its_key() {
        // A share per entry far below the entry's own bytes.
        let cache = ResultCache::new(1_000_000, 1 << 30);
        let calls = AtomicU32::new(0);
        let key = CacheKey {
            server: "s".repeat(200).into(),
            epoch: 0,
            tool: "t".repeat(200).into(),
            arguments: "a".repeat(1000),
        };
        let result = json!({"content": [{"type": "text", "text": "x".repeat(100_000)}]});
        let own = serde_json::to_string(&result).map_or(0, |t| t.len()) + 1400;
        fetch(&cache, key, Duration::from_secs(60), &calls, result).await;
        cache.settle().await;
        let weight = usize::try_from(cache.weighted_bytes()).unwrap_or(usize::MAX);
        // At least its result and key, plus no more than a little bookkeeping.
        assert!((own..own + 1024).contains(&weight), "{weight} for {own}");
        assert!(format!("{cache:?}").contains("entries: 1"), "{cache:?}");
    }

    /// The hostile-input issue, finding 10: the cache was bounded by entries only, so 1,000
    /// results of 1 MB would have held about a gigabyte.
    #[tokio::test]
    async fn the_cache_is_bounded_in_bytes_and_in_entries() {
        let mb = 1024 * 1024;
        let cache = ResultCache::new(1_000, 4 * mb);
        let result =
            json!({"content": [{"type": "text", "text": "x".repeat(MAX_RESULT_BYTES - 100)}]});
        for i in 0..20 {
            let result = result.clone();
            let (r, _) = cache
                .get_or_call(key(&i.to_string()), Duration::from_secs(60), async move {
                    Ok(result)
                })
                .await;
            assert!(r.is_ok());
        }
        cache.settle().await;
        assert!(
            cache.weighted_bytes() <= 4 * mb,
            "{}",
            cache.weighted_bytes()
        );
        assert!(cache.entries() <= 4, "{}", cache.entries());
        assert!(cache.entries() >= 2, "{}", cache.entries());
        // Small results: the entry count bounds them.
        let cache = ResultCache::new(3, 4 * mb);
        for i in 0..20 {
            let (r, _) = cache
                .get_or_call(key(&i.to_string()), Duration::from_secs(60), async {
                    Ok(json!({"content": []}))
                })
                .await;
            assert!(r.is_ok());
        }
        cache.settle().await;
        assert!(cache.entries() <= 3, "{}", cache.entries());
    }
}
