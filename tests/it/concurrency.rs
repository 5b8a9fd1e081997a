//! Recovery under the load a shared proxy really gets: many calls in flight while children are
//! killed and sessions are lost. One event (a crash, a lost session) must cost at most the
//! calls it cut off, never black the server out (the circuit breaker stays closed).

use crate::common;

use std::time::{Duration, Instant};

use common::{
    FakeHttp, Proxy, Shot, closed_loop, eventually, marker, pids_matching, signal, stdio_fake,
};
use serde_json::{Value, json};

/// When, from the start of the load, each of the three events happens.
const EVENTS_AT: [Duration; 3] = [
    Duration::from_millis(1500),
    Duration::from_millis(3000),
    Duration::from_millis(4500),
];
const LOAD_FOR: Duration = Duration::from_secs(6);

/// What a run showed.
struct Run {
    shots: Vec<Shot>,
    diag: Value,
}

impl Run {
    fn failed(&self) -> Vec<&Shot> {
        self.shots.iter().filter(|s| s.status != 200).collect()
    }

    fn report(&self, what: &str) {
        let failed = self.failed();
        let mut latencies: Vec<Duration> = self.shots.iter().map(|s| s.elapsed).collect();
        latencies.sort();
        let p99 = latencies
            .get(latencies.len() * 99 / 100)
            .copied()
            .unwrap_or_default();
        // Calls sent in the 300 ms after each event: the ones that met a replacement.
        let mut during: Vec<Duration> = self
            .shots
            .iter()
            .filter(|s| {
                EVENTS_AT
                    .iter()
                    .any(|at| s.sent >= *at && s.sent < *at + Duration::from_millis(300))
            })
            .map(|s| s.elapsed)
            .collect();
        during.sort();
        let p99_during = during
            .get(during.len() * 99 / 100)
            .copied()
            .unwrap_or_default();
        eprintln!(
            "{what}: {} calls, {} failed, p99 {p99:?}, p99 of the {} calls sent within 300 ms of an event {p99_during:?}, breaker trips {}",
            self.shots.len(),
            failed.len(),
            during.len(),
            self.diag["breaker_trips"]
        );
    }
}

/// Kills the stdio child at each of [`EVENTS_AT`] while `workers` calls of `tool` are in
/// flight.
async fn stdio_kills(workers: usize, tool: &str, body: Value) -> Run {
    let m = marker(&format!("conc-{workers}-{tool}"));
    let id = format!("conc{workers}{tool}");
    let config = json!({"mcpServers": {"fake": stdio_fake(&id)}});
    let proxy = Proxy::start_with_env(&config, &[], &[("MCPO_TEST_MARKER", &m)]);
    proxy
        .wait_ok("/fake/openapi.json", Duration::from_secs(30))
        .await;
    let needle = format!("--id {id}");
    let killer = async {
        let start = Instant::now();
        let mut killed: Vec<u32> = Vec::new();
        for at in EVENTS_AT {
            tokio::time::sleep_until((start + at).into()).await;
            let pid = eventually("one live child", Duration::from_secs(10), async || {
                let pids = pids_matching("MCPO_TEST_MARKER", &m, &needle);
                (pids.len() == 1 && !killed.contains(&pids[0])).then(|| pids[0])
            })
            .await;
            signal(pid, "KILL");
            killed.push(pid);
        }
        killed
    };
    let url = proxy.url(&format!("/fake/{tool}"));
    let load = closed_loop(&proxy.client, &url, body, workers, LOAD_FOR);
    let (shots, killed) = tokio::join!(load, killer);
    assert_eq!(killed.len(), 3, "three children were killed");
    let (_, diag) = proxy.get("/diagnostics").await;
    Run {
        shots,
        diag: diag["servers"]["fake"].clone(),
    }
}

/// Makes the HTTP fake forget every session at each of [`EVENTS_AT`] while `workers` calls of
/// `tool` are in flight.
async fn http_session_losses(workers: usize, tool: &str, body: Value) -> Run {
    let fake = FakeHttp::start(&format!("conc{workers}{tool}"));
    let config = json!({"mcpServers": {"fake": {"type": "streamable-http", "url": fake.url}}});
    let proxy = Proxy::start(&config, &[]);
    proxy
        .wait_ok("/fake/openapi.json", Duration::from_secs(30))
        .await;
    let losses = async {
        let start = Instant::now();
        for at in EVENTS_AT {
            tokio::time::sleep_until((start + at).into()).await;
            fake.fault(json!({"kind": "session-loss"})).await;
        }
    };
    let url = proxy.url(&format!("/fake/{tool}"));
    let load = closed_loop(&proxy.client, &url, body, workers, LOAD_FOR);
    let (shots, ()) = tokio::join!(load, losses);
    let (_, diag) = proxy.get("/diagnostics").await;
    Run {
        shots,
        diag: diag["servers"]["fake"].clone(),
    }
}

fn assert_no_failures(run: &Run, what: &str) {
    run.report(what);
    let failed = run.failed();
    assert!(
        failed.is_empty(),
        "{what}: {} of {} calls failed, e.g. {:?}",
        failed.len(),
        run.shots.len(),
        &failed[..failed.len().min(3)]
    );
    assert_eq!(run.diag["breaker_trips"], 0, "{what}: the breaker opened");
}

#[tokio::test]
async fn stdio_child_killed_with_16_and_64_in_flight_fails_no_idempotent_call() {
    for workers in [16, 64] {
        let run = stdio_kills(workers, "echo", json!({"message": "x"})).await;
        assert_no_failures(&run, &format!("stdio, {workers} in flight, 3 kills"));
        assert!(run.diag["restarts"].as_u64().unwrap() >= 3, "{}", run.diag);
    }
}

#[tokio::test]
async fn http_sessions_lost_with_16_and_64_in_flight_fail_no_idempotent_call() {
    for workers in [16, 64] {
        let run = http_session_losses(workers, "echo", json!({"message": "x"})).await;
        assert_no_failures(
            &run,
            &format!("HTTP, {workers} in flight, 3 session losses"),
        );
    }
}

/// Lines in the fake's journal: how many times `incr` ran, across processes.
fn journal_lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// Sends `n` concurrent calls of `incr` that each work `ms` milliseconds, waits until all `n` are running
/// in the server (its journal says so), runs `event`, and returns each call's status and body
/// (at most `within` after the event; a call still unanswered then fails the test).
async fn cut_off_incr_calls(
    proxy: &Proxy,
    journal: &std::path::Path,
    n: usize,
    ms: u64,
    event: impl AsyncFnOnce(),
    within: Duration,
) -> Vec<(u16, String)> {
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let (client, url) = (proxy.client.clone(), proxy.url("/fake/incr"));
            tokio::spawn(async move {
                let r = client
                    .post(url)
                    .json(&json!({"ms": ms}))
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            })
        })
        .collect();
    eventually("every call running", Duration::from_secs(15), async || {
        (journal_lines(journal) >= n).then_some(())
    })
    .await;
    event().await;
    let answers = tokio::time::timeout(within, futures::future::join_all(calls)).await;
    // How often the tool ran says more than a status when the proxy sent calls again.
    let ran = journal_lines(journal);
    assert_eq!(ran, n, "{n} calls cut off, the tool ran {ran} times");
    let answers =
        answers.unwrap_or_else(|_| panic!("the cut-off calls were not answered within {within:?}"));
    answers.into_iter().map(|a| a.unwrap()).collect()
}

/// A non-idempotent call cut off by an event fails with a 502 that names the event, and is
/// never sent again: N calls in flight when the child is killed give exactly N 502s, and the
/// tool ran exactly N times. A lost HTTP session with N in flight runs each call once too.
/// Then the server serves again, with the breaker closed.
#[tokio::test]
async fn non_idempotent_calls_fail_only_when_cut_off_and_say_why() {
    let n = 8;
    let dir = common::tempdir::TempDir::new();

    // stdio: the child is killed mid-call.
    let journal = dir.path().join("stdio-journal");
    let m = marker("cut-incr");
    let mut server = stdio_fake("cutincr");
    server["args"]
        .as_array_mut()
        .unwrap()
        .extend([json!("--journal"), json!(journal.display().to_string())]);
    let config = json!({"mcpServers": {"fake": server}});
    let proxy = Proxy::start_with_env(&config, &[], &[("MCPO_TEST_MARKER", &m)]);
    proxy
        .wait_ok("/fake/openapi.json", Duration::from_secs(30))
        .await;
    let kill = async || {
        let pids = pids_matching("MCPO_TEST_MARKER", &m, "--id cutincr");
        assert_eq!(pids.len(), 1, "{pids:?}");
        signal(pids[0], "KILL");
    };
    let answers =
        cut_off_incr_calls(&proxy, &journal, n, 30_000, kill, Duration::from_secs(10)).await;
    for (status, body) in &answers {
        assert_eq!(*status, 502, "{body}");
        assert!(
            body.contains("killed by signal 9") && body.contains("not sent again"),
            "{body}"
        );
    }
    let (status, body) = proxy.post("/fake/incr", json!({})).await;
    assert_eq!(
        (status, body),
        (200, json!(1)),
        "a new child counts from one"
    );
    assert_eq!(journal_lines(&journal), n + 1);
    let (_, diag) = proxy.get("/diagnostics").await;
    assert_eq!(
        diag["servers"]["fake"]["breaker_trips"], 0,
        "the breaker opened"
    );

    // Streamable HTTP: the server forgets the session mid-call. The fake still answers the
    // calls it was running (its old session's streams stay open), so nothing is cut off: each
    // call is answered once, run once, and the next call finds a new session.
    let journal = dir.path().join("http-journal");
    let fake = FakeHttp::start_with("cutincr", &["--journal", &journal.display().to_string()]);
    let config = json!({"mcpServers": {"fake": {"type": "streamable-http", "url": fake.url}}});
    let proxy = Proxy::start(&config, &[]);
    proxy
        .wait_ok("/fake/openapi.json", Duration::from_secs(30))
        .await;
    let lose = async || fake.fault(json!({"kind": "session-loss"})).await;
    let answers =
        cut_off_incr_calls(&proxy, &journal, n, 3000, lose, Duration::from_secs(10)).await;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
    }
    let (status, body) = proxy.post("/fake/incr", json!({})).await;
    assert_eq!(
        (status, body),
        (200, json!(n + 1)),
        "the same process counts on"
    );
    let (_, diag) = proxy.get("/diagnostics").await;
    assert_eq!(
        diag["servers"]["fake"]["breaker_trips"], 0,
        "the breaker opened"
    );
}

/// With a pool, one member's death ejects that member only: the others keep serving.
#[tokio::test]
async fn a_dead_pool_member_is_ejected_and_the_others_serve() {
    let m = marker("eject");
    let mut server = stdio_fake("eject");
    server["pool"] = json!({"min": 3, "max": 3});
    let config = json!({"mcpServers": {"fake": server}});
    let proxy = Proxy::start_with_env(&config, &[], &[("MCPO_TEST_MARKER", &m)]);
    proxy
        .wait_ok("/fake/openapi.json", Duration::from_secs(30))
        .await;
    let children = eventually("three children", Duration::from_secs(15), async || {
        let pids = pids_matching("MCPO_TEST_MARKER", &m, "--id eject");
        (pids.len() == 3).then_some(pids)
    })
    .await;
    let killer = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        signal(children[0], "KILL");
    };
    let url = proxy.url("/fake/echo");
    let load = closed_loop(
        &proxy.client,
        &url,
        json!({"message": "x"}),
        16,
        Duration::from_secs(2),
    );
    let (shots, ()) = tokio::join!(load, killer);
    let run = Run {
        shots,
        diag: proxy.get("/diagnostics").await.1["servers"]["fake"].clone(),
    };
    assert_no_failures(&run, "pool of 3, one member killed");
    let (_, diag) = proxy.get("/diagnostics").await;
    let restarts: Vec<u64> = diag["servers"]["fake"]["pool"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["restarts"].as_u64().unwrap())
        .collect();
    assert_eq!(
        restarts.iter().sum::<u64>(),
        1,
        "only the killed member restarted: {restarts:?}"
    );
}
