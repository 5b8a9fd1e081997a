//! The result cache shared by replicas through Redis (`--cache-redis-url`), against a real
//! `redis-server` (Debian's; `.ci/run` installs it) on a Unix socket of the test's own.

use crate::common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Proc, Proxy, eventually, tempdir::TempDir};
use serde_json::{Value, json};

/// A `redis-server` of the test's own, on a Unix socket, with nothing kept on disk.
struct Redis {
    _proc: Proc,
    socket: std::path::PathBuf,
    _dir: TempDir,
}

impl Redis {
    async fn start() -> Redis {
        let dir = TempDir::new();
        let socket = dir.path().join("redis.sock");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(&socket)
            .args(["--unixsocketperm", "700"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server; .ci/run installs it)");
        let redis = Redis {
            _proc: Proc { child },
            socket,
            _dir: dir,
        };
        eventually(
            "redis-server answering",
            Duration::from_secs(15),
            async || (redis.cli(&["PING"]) == "PONG").then_some(()),
        )
        .await;
        redis
    }

    fn url(&self) -> String {
        format!("redis+unix://{}", self.socket.display())
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// `POST /x/whoami` through `proxy`: the answer (which fake process answered) and the cache
/// header.
async fn whoami(proxy: &Proxy) -> (Value, String) {
    let r = proxy
        .client
        .post(proxy.url("/x/whoami"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let cache = r
        .headers()
        .get("x-mcpo-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (r.json().await.unwrap(), cache)
}

fn config() -> Value {
    let mut fake = common::stdio_fake("shared");
    fake["cache"] = json!({"tools": ["whoami"], "ttl": 60});
    json!({"mcpServers": {"x": fake}})
}

/// The scale-out issue, acceptance 3: with Redis, a result cached through one replica is a hit
/// through another (its own upstream is never called: the answer names the first replica's
/// fake process); without Redis each replica calls its own; and a Redis that goes away is a
/// miss, never an error.
#[tokio::test]
async fn replicas_share_cached_results_through_redis() {
    let redis = Redis::start().await;
    let url = redis.url();
    let env = [("MCPO_CACHE_REDIS_URL", url.as_str())];
    let a = Proxy::start_with_env(&config(), &[], &env);
    let b = Proxy::start_with_env(&config(), &[], &env);
    for p in [&a, &b] {
        p.wait_ok("/x/openapi.json", Duration::from_secs(30)).await;
    }
    let (first, cache) = whoami(&a).await;
    assert_eq!(cache, "miss");
    // The write to Redis happens beside the answer: wait for it to land.
    eventually("the result in Redis", Duration::from_secs(10), async || {
        (redis.cli(&["DBSIZE"]) == "1").then_some(())
    })
    .await;
    let (second, cache) = whoami(&b).await;
    assert_eq!(cache, "hit");
    assert_eq!(
        second, first,
        "b answered from its own fake, not the shared cache"
    );
    let ttl: i64 = redis
        .cli(&["--scan", "--pattern", "mcpo:result:v1:*"])
        .lines()
        .next()
        .map(|key| redis.cli(&["PTTL", key]).parse().unwrap())
        .unwrap();
    assert!(ttl > 50_000 && ttl <= 60_000, "{ttl}");

    // Without Redis, each replica calls its own server.
    let c = Proxy::start(&config(), &[]);
    let d = Proxy::start(&config(), &[]);
    for p in [&c, &d] {
        p.wait_ok("/x/openapi.json", Duration::from_secs(30)).await;
    }
    let (from_c, cache_c) = whoami(&c).await;
    let (from_d, cache_d) = whoami(&d).await;
    assert_eq!((cache_c.as_str(), cache_d.as_str()), ("miss", "miss"));
    assert_ne!(from_c, from_d);

    // Redis gone: a miss, answered by the replica's own server, without a hang.
    drop(redis);
    let e = Proxy::start_with_env(&config(), &[], &env);
    e.wait_ok("/x/openapi.json", Duration::from_secs(30)).await;
    let t = std::time::Instant::now();
    let (_, cache) = whoami(&e).await;
    assert_eq!(cache, "miss");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}
