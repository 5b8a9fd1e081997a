//! The result cache shared by replicas, in Redis (`--cache-redis-url`).
//!
//! Behind a load balancer, each replica's in-process cache (`crate::cache`) fills on its own:
//! a result cached through one replica is a miss on the others. With a Redis URL, the
//! in-process cache stays in front and Redis sits behind it: a local miss asks Redis before
//! the upstream, and a result the upstream gives is written to Redis too, with the same TTL.
//! The rules are the in-process cache's: only tools a server opted in, never errors, keys of
//! the server, the tool, the canonical arguments and the forwarded headers (so one user's
//! answer is never another's), hashed with SHA-256.
//!
//! Redis is an optimisation, never a dependency: every operation has a short deadline, a
//! Redis that is down or slow is a miss (and is not asked again for a few seconds), and the
//! proxy starts whether or not it is there. What is not shared: the cache epoch (a replica's
//! tool-list change or restart clears only its own entries; shared ones live out their TTL).

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands as _;
use serde_json::Value;
use sha2::Digest as _;
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;

/// One Redis operation (a read, or a write) at most.
const OP_TIMEOUT: Duration = Duration::from_millis(200);
/// Connecting at most; then Redis counts as down until [`RETRY_AFTER`].
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a Redis that could not be reached is left alone.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Writes in flight at once at most; past that a result is simply not shared.
const WRITES_AT_ONCE: usize = 64;
/// Keys are namespaced and versioned, so another application's keys, or a later format, do
/// not collide with these.
const KEY_PREFIX: &str = "mcpo:result:v1:";

/// Why a Redis URL was refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "--cache-redis-url: not a Redis URL ({reason}); the URL itself is not shown: it may hold a password"
)]
pub struct BadRedisUrl {
    reason: String,
}

/// A Redis URL, kept out of `Debug` output (it may hold a password).
#[derive(Clone, PartialEq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// Checks that `url` is a Redis URL the client can use.
    pub fn parse(url: &str) -> Result<Self, BadRedisUrl> {
        redis::Client::open(url).map_err(|e| BadRedisUrl {
            reason: format!("{:?}", e.kind()),
        })?;
        Ok(RedisUrl(url.to_string()))
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisUrl(<hidden>)")
    }
}

enum Link {
    Down { retry_at: Instant },
    Up(redis::aio::ConnectionManager),
}

/// The Redis side of the result cache.
pub struct SharedCache {
    client: redis::Client,
    link: Mutex<Link>,
    writes: Arc<Semaphore>,
}

impl std::fmt::Debug for SharedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCache").finish_non_exhaustive()
    }
}

impl SharedCache {
    pub fn new(url: &RedisUrl) -> Result<Self, BadRedisUrl> {
        let client = redis::Client::open(url.0.as_str()).map_err(|e| BadRedisUrl {
            reason: format!("{:?}", e.kind()),
        })?;
        Ok(SharedCache {
            client,
            link: Mutex::new(Link::Down {
                retry_at: Instant::now(),
            }),
            writes: Arc::new(Semaphore::new(WRITES_AT_ONCE)),
        })
    }

    /// The key of a cached call in Redis: the parts that identify it, hashed.
    pub fn key(server: &str, tool: &str, arguments: &str) -> String {
        let mut hash = sha2::Sha256::new();
        for part in [server, tool, arguments] {
            // Lengths first, so that no two splits of one text give the same key.
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part.as_bytes());
        }
        let digest = hash.finalize();
        let mut key = String::with_capacity(KEY_PREFIX.len() + 64);
        key.push_str(KEY_PREFIX);
        for byte in digest {
            key.push_str(&format!("{byte:02x}"));
        }
        key
    }

    /// A connection, if Redis is reachable (or was, and may be again).
    async fn connection(&self) -> Option<redis::aio::ConnectionManager> {
        let mut link = self.link.lock().await;
        match &*link {
            Link::Up(conn) => return Some(conn.clone()),
            Link::Down { retry_at } if Instant::now() < *retry_at => return None,
            Link::Down { .. } => {}
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(OP_TIMEOUT))
            .set_number_of_retries(1);
        let connected = tokio::time::timeout(
            CONNECT_TIMEOUT,
            self.client.get_connection_manager_with_config(config),
        )
        .await;
        match connected {
            Ok(Ok(conn)) => {
                tracing::info!("the shared result cache (Redis) is reachable");
                *link = Link::Up(conn.clone());
                Some(conn)
            }
            Ok(Err(e)) => {
                tracing::warn!(error = ?e.kind(), retry_in = ?RETRY_AFTER,
                    "the shared result cache (Redis) cannot be reached; results are cached per replica meanwhile");
                *link = Link::Down {
                    retry_at: Instant::now() + RETRY_AFTER,
                };
                None
            }
            Err(_) => {
                tracing::warn!(retry_in = ?RETRY_AFTER,
                    "the shared result cache (Redis) did not answer in time; results are cached per replica meanwhile");
                *link = Link::Down {
                    retry_at: Instant::now() + RETRY_AFTER,
                };
                None
            }
        }
    }

    /// The result kept under `key` and how much longer it lives, if Redis has it (and
    /// answers in time).
    pub async fn get(&self, key: &str, max_bytes: usize) -> Option<(Value, Duration)> {
        let mut conn = self.connection().await?;
        let read = async {
            let (text, ttl_ms): (Option<Vec<u8>>, i64) = redis::pipe()
                .get(key)
                .pttl(key)
                .query_async(&mut conn)
                .await?;
            Ok::<_, redis::RedisError>((text, ttl_ms))
        };
        match tokio::time::timeout(OP_TIMEOUT, read).await {
            Ok(Ok((Some(text), ttl_ms))) if ttl_ms > 0 && text.len() <= max_bytes => {
                let value = serde_json::from_slice(&text).ok()?;
                Some((value, Duration::from_millis(ttl_ms.unsigned_abs())))
            }
            Ok(Ok(_)) => None,
            Ok(Err(e)) => {
                tracing::debug!(error = ?e.kind(), "shared result cache: read failed; a miss");
                None
            }
            Err(_) => {
                tracing::debug!("shared result cache: read timed out; a miss");
                None
            }
        }
    }

    /// Keeps `result` under `key` for `ttl`, in the background (the caller's answer does not
    /// wait for Redis). Skipped when too many writes are already under way.
    pub fn put(self: &Arc<Self>, key: String, result: &Value, ttl: Duration) {
        let Ok(permit) = self.writes.clone().try_acquire_owned() else {
            return;
        };
        let Ok(text) = serde_json::to_vec(result) else {
            return;
        };
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let this = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let Some(mut conn) = this.connection().await else {
                return;
            };
            let write = conn.pset_ex::<_, _, ()>(&key, text, ttl_ms);
            match tokio::time::timeout(OP_TIMEOUT, write).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(error = ?e.kind(), "shared result cache: write failed")
                }
                Err(_) => tracing::debug!("shared result cache: write timed out"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_for_every_part_and_split() {
        let a = SharedCache::key("s", "t", "{\"a\":1}");
        assert!(a.starts_with(KEY_PREFIX) && a.len() == KEY_PREFIX.len() + 64);
        assert_eq!(a, SharedCache::key("s", "t", "{\"a\":1}"));
        assert_ne!(a, SharedCache::key("s", "t", "{\"a\":2}"));
        assert_ne!(a, SharedCache::key("s", "u", "{\"a\":1}"));
        assert_ne!(a, SharedCache::key("r", "t", "{\"a\":1}"));
        // The same text, split differently.
        assert_ne!(
            SharedCache::key("ab", "c", ""),
            SharedCache::key("a", "bc", "")
        );
    }

    #[test]
    fn urls_are_checked_and_never_shown() {
        let url = RedisUrl::parse("redis://:s3cret@127.0.0.1:6379/0").unwrap();
        assert!(!format!("{url:?}").contains("s3cret"));
        let e = RedisUrl::parse("http://:s3cret@host/").unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }
}
