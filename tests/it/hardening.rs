//! The findings of the hardening issue, each tried from outside as a hostile client or a
//! misbehaving server would: every test here failed on the code before the fix.

use crate::common;

use std::time::{Duration, Instant};

use common::{
    FakeHttp, Proxy, eventually, marker, mcpo_bin, pids_matching, processes_with_env, signal,
    stdio_fake,
};
use serde_json::{Value, json};

/// The PID of the single fake child with this id, waiting (bounded) until there is one.
async fn only_child(marker: &str, needle: &str) -> u32 {
    eventually(
        &format!("one child matching {needle:?}"),
        Duration::from_secs(15),
        async || {
            let pids = pids_matching("MCPO_TEST_MARKER", marker, needle);
            (pids.len() == 1).then(|| pids[0])
        },
    )
    .await
}

/// `POST path` with a raw body; returns status, body bytes and the time it took.
async fn post_raw(proxy: &Proxy, path: &str, body: Vec<u8>) -> (u16, Vec<u8>, Duration) {
    let t = Instant::now();
    let r = proxy
        .client
        .post(proxy.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let bytes = r.bytes().await.unwrap().to_vec();
    (status, bytes, t.elapsed())
}

/// A body `{"numbers": ["x", "x", ...]}` of about `bytes` bytes.
fn numbers_of_x(bytes: usize) -> Vec<u8> {
    let n = bytes / 4;
    let mut body = Vec::with_capacity(bytes + 16);
    body.extend_from_slice(b"{\"numbers\": [");
    for i in 0..n {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(b"\"x\"");
    }
    body.extend_from_slice(b"]}");
    body
}

/// Finding 1: a 500 KB body of 100,000 bad items took the proxy to 1.44 GB and answered with
/// 10 MB of errors; a 16 MiB body took 8 GB and two minutes. Now the work and the answer are
/// bounded, and a burst of such bodies is shed, not queued.
#[tokio::test]
async fn finding_1_large_invalid_bodies_cost_little_and_answer_small() {
    let config = json!({"mcpServers": {"fake": stdio_fake("big")}});
    let proxy = Proxy::start(&config, &[]);
    proxy
        .wait_ok("/fake/openapi.json", Duration::from_secs(30))
        .await;

    let (status, body, _) = post_raw(&proxy, "/fake/stats", numbers_of_x(500_000)).await;
    assert_eq!(status, 422);
    assert!(body.len() < 4096, "a 422 of {} bytes", body.len());
    let detail: Value = serde_json::from_slice(&body).unwrap();
    let errors = detail["detail"].as_array().unwrap();
    assert!(errors.len() <= 21, "{} errors listed", errors.len());
    assert_eq!(errors[0]["type"], "float_type");
    assert_eq!(errors.last().unwrap()["type"], "too_many_errors");

    // A smaller body is listed error by error, capped, with the rest counted.
    let (status, body, _) = post_raw(&proxy, "/fake/stats", numbers_of_x(4_000)).await;
    assert_eq!(status, 422);
    let detail: Value = serde_json::from_slice(&body).unwrap();
    let errors = detail["detail"].as_array().unwrap();
    assert_eq!(errors.len(), 21, "{detail}");
    assert!(
        errors[20]["msg"]
            .as_str()
            .unwrap()
            .contains("more errors not listed"),
        "{detail}"
    );

    // 16 MiB of the same: refused for its number of values, before it is parsed.
    let big = numbers_of_x(16 * 1024 * 1024 - 64);
    let (status, body, _) = post_raw(&proxy, "/fake/stats", big.clone()).await;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    assert!(body.len() < 512);

    // Sixteen at once: each is refused (413) or shed (503 with Retry-After); none is worked on.
    let burst = (0..16).map(|_| post_raw(&proxy, "/fake/stats", big.clone()));
    for (status, body, _) in futures::future::join_all(burst).await {
        assert!(
            status == 413 || status == 503,
            "{status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    // And the proxy still answers normally.
    let (status, body) = proxy
        .post("/fake/stats", json!({"numbers": [1, 2, 3]}))
        .await;
    assert_eq!((status, body["count"].clone()), (200, json!(3)));
}

/// Finding 2: on SIGTERM the sessions closed while HTTP was still draining, so a call in
/// flight got 503 "the server is down". Calls in flight now finish first.
#[tokio::test]
async fn finding_2_shutdown_lets_calls_in_flight_finish() {
    let m = marker("drain");
    let config = json!({"mcpServers": {"fake": stdio_fake("drain")}});
    let mut proxy = Proxy::start_with_env(&config, &[], &[("MCPO_TEST_MARKER", &m)]);
    proxy
        .wait_ok("/fake/openapi.json", Duration::from_secs(30))
        .await;
    let call = {
        let client = proxy.client.clone();
        let url = proxy.url("/fake/slow");
        tokio::spawn(async move {
            let r = client
                .post(url)
                .json(&json!({"ms": 2000}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    eventually(
        "the call is in flight",
        Duration::from_secs(10),
        async || {
            let (_, diag) = proxy.get("/diagnostics").await;
            (diag["servers"]["fake"]["pool"]["members"][0]["in_flight"] == 1).then_some(())
        },
    )
    .await;
    signal(proxy.pid(), "TERM");
    let (status, body) = call.await.unwrap();
    assert_eq!(status, 200, "the call in flight was cut off: {body}");
    assert!(body.contains("slept 2000 ms"), "{body}");
    let exit = proxy.proc.child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    eventually("children gone", Duration::from_secs(5), async || {
        processes_with_env("MCPO_TEST_MARKER", &m)
            .is_empty()
            .then_some(())
    })
    .await;
}

/// Finding 2, the other side: a call that hangs cannot hold shutdown. With `--drain-timeout 1`
/// a call that would take a minute is cut off after about a second, the proxy exits cleanly
/// and its children are gone; and from SIGTERM on, no new connection is accepted.
#[tokio::test]
async fn finding_2_a_hung_call_cannot_hold_shutdown_past_the_drain_timeout() {
    let m = marker("drain-hung");
    let config = json!({"mcpServers": {"fake": stdio_fake("drain-hung")}});
    let mut proxy = Proxy::start_with_env(
        &config,
        &["--drain-timeout", "1"],
        &[("MCPO_TEST_MARKER", &m)],
    );
    proxy
        .wait_ok("/fake/openapi.json", Duration::from_secs(30))
        .await;
    let call = {
        let client = proxy.client.clone();
        let url = proxy.url("/fake/sleep");
        tokio::spawn(async move {
            match client.post(url).json(&json!({"ms": 60_000})).send().await {
                Ok(r) => r.status().as_u16(),
                Err(_) => 0,
            }
        })
    };
    eventually(
        "the call is in flight",
        Duration::from_secs(10),
        async || {
            let (_, diag) = proxy.get("/diagnostics").await;
            (diag["servers"]["fake"]["pool"]["members"][0]["in_flight"] == 1).then_some(())
        },
    )
    .await;
    let addr = proxy.base.trim_start_matches("http://").to_string();
    let t = Instant::now();
    signal(proxy.pid(), "TERM");
    // Draining: the hung call holds the proxy, but the listener is closed.
    let refused_while_draining = eventually(
        "a new connection refused",
        Duration::from_secs(5),
        async || {
            let refused = tokio::net::TcpStream::connect(&addr).await.is_err();
            refused.then(|| proxy.proc.child.try_wait().ok().flatten().is_none())
        },
    )
    .await;
    assert!(
        refused_while_draining,
        "the proxy had exited before a connection was refused"
    );
    let exit = eventually("the proxy exits", Duration::from_secs(10), async || {
        proxy.proc.child.try_wait().ok().flatten()
    })
    .await;
    eprintln!("exited {:?} after SIGTERM with a hung call", t.elapsed());
    assert!(exit.success(), "{exit:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    let status = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("the hung call got no end")
        .unwrap();
    assert_ne!(status, 200, "a minute-long call cannot have finished");
    eventually("children gone", Duration::from_secs(5), async || {
        processes_with_env("MCPO_TEST_MARKER", &m)
            .is_empty()
            .then_some(())
    })
    .await;
}

/// Finding 3: the refresh after `tools/list_changed` waited for `tools/list` with no deadline
/// inside the supervisor, so a server that announced a change and then hung froze it: no
/// ping, no restart, no stop. Now the hung session is found and replaced.
#[tokio::test]
async fn finding_3_list_changed_then_hang_does_not_freeze_the_supervisor() {
    let m = marker("freeze");
    let mut server = stdio_fake("freeze");
    server["timeout"] = json!(2);
    let config = json!({"mcpServers": {"fake": server}});
    let mut proxy = Proxy::start_with_env(&config, &[], &[("MCPO_TEST_MARKER", &m)]);
    proxy
        .wait_ok("/fake/openapi.json", Duration::from_secs(30))
        .await;
    let frozen = only_child(&m, "--id freeze").await;
    let (status, body) = proxy.post("/fake/announce_then_freeze", json!({})).await;
    assert_eq!(status, 200, "{body}");
    eventually(
        "the child stops itself",
        Duration::from_secs(5),
        async || {
            let stat = std::fs::read_to_string(format!("/proc/{frozen}/stat")).ok()?;
            let state = stat.rsplit(')').next()?.trim_start().chars().next()?;
            (state == 'T').then_some(())
        },
    )
    .await;
    // The child is stopped now; the refresh it asked for cannot be answered. A call times out,
    // the ping that follows fails, and the session is replaced: calls succeed again.
    let back = eventually("calls succeed again", Duration::from_secs(20), async || {
        let (status, _) = proxy.post("/fake/echo", json!({"message": "x"})).await;
        (status == 200).then_some(())
    });
    back.await;
    let replacement = only_child(&m, "--id freeze").await;
    assert_ne!(replacement, frozen);
    // And shutdown needs no abort: the proxy exits promptly and cleanly.
    let t = Instant::now();
    signal(proxy.pid(), "TERM");
    let exit = proxy.proc.child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
}

/// Finding 4: a stdio leader that exits by itself left its grandchildren running, through the
/// restart and through the proxy's own shutdown.
#[tokio::test]
async fn finding_4_grandchildren_of_a_dead_leader_are_ended() {
    let m = marker("orphans");
    let script = format!(
        "sleep 1000 & exec {} fake-server --transport stdio --id orphans",
        mcpo_bin()
    );
    let config = json!({"mcpServers": {"fake": {"command": "sh", "args": ["-c", script]}}});
    let mut proxy = Proxy::start_with_env(&config, &[], &[("MCPO_TEST_MARKER", &m)]);
    proxy
        .wait_ok("/fake/openapi.json", Duration::from_secs(30))
        .await;
    let leader = only_child(&m, "--id orphans").await;
    let sleeper = only_child(&m, "sleep 1000").await;
    signal(leader, "KILL");
    eventually(
        "the orphaned sleep is ended",
        Duration::from_secs(5),
        async || {
            (!pids_matching("MCPO_TEST_MARKER", &m, "sleep 1000").contains(&sleeper)).then_some(())
        },
    )
    .await;
    let (status, _) = proxy.post("/fake/echo", json!({"message": "x"})).await;
    assert_eq!(status, 200);
    signal(proxy.pid(), "TERM");
    assert!(proxy.proc.child.wait().unwrap().success());
    eventually("nothing left", Duration::from_secs(5), async || {
        processes_with_env("MCPO_TEST_MARKER", &m)
            .is_empty()
            .then_some(())
    })
    .await;
}

/// Findings 6 and 7: a server that dies right after every handshake was respawned at once,
/// again and again (50 spawns in 10 s), and each replaced session left a task behind. Now such
/// deaths back off, show in `/diagnostics`, count once each against the breaker (which opens),
/// and closed sessions are collected.
#[tokio::test]
async fn finding_6_and_7_crash_loops_back_off_and_leave_nothing_behind() {
    let config = json!({"mcpServers": {"loop": {"command": mcpo_bin(),
        "args": ["fake-server", "--transport", "stdio", "--id", "loop", "--die-after-ms", "100"]}}});
    let proxy = Proxy::start(&config, &[]);
    let started = Instant::now();
    // Backing off shows in diagnostics while it happens.
    let diag = eventually("backoff shows", Duration::from_secs(15), async || {
        let (_, diag) = proxy.get("/diagnostics").await;
        let member = &diag["servers"]["loop"]["pool"]["members"][0];
        (member["consecutive_failures"].as_u64()? >= 3 && member["next_attempt_in_ms"].is_u64())
            .then_some(diag)
    })
    .await;
    let member = &diag["servers"]["loop"]["pool"]["members"][0];
    assert!(
        member["last_error"]
            .as_str()
            .unwrap()
            .contains("after connecting, before answering any call"),
        "{diag}"
    );
    // The breaker opened on the loop (each early death counted once). No calls are sent
    // until then: a call answered by a short-lived session would prove that session healthy.
    eventually("the breaker opens", Duration::from_secs(15), async || {
        let (_, diag) = proxy.get("/diagnostics").await;
        (diag["servers"]["loop"]["breaker"] != "closed").then_some(())
    })
    .await;
    // The next attempt is announced with a wait that is not zero (the backoff is real), at
    // some point during the loop: with full jitter one draw may be 0, not all of them.
    eventually(
        "a non-zero wait shows",
        Duration::from_secs(10),
        async || {
            let (_, diag) = proxy.get("/diagnostics").await;
            let member = &diag["servers"]["loop"]["pool"]["members"][0];
            (member["next_attempt_in_ms"].as_u64()? > 0).then_some(())
        },
    )
    .await;
    // Let the loop run 10 s: without backoff a 100 ms life plus a quick respawn gives about
    // eight spawns a second (80); with it the waits double up to 5 s (about a dozen).
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(started.elapsed())).await;
    let (_, diag) = proxy.get("/diagnostics").await;
    let attempts = diag["servers"]["loop"]["connect_attempts"]
        .as_u64()
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    eprintln!("crash loop: {attempts} spawns in {secs:.1}s");
    assert!(attempts <= 25, "{attempts} spawns in {secs:.1}s");
    assert!(
        diag["servers"]["loop"]["breaker_trips"].as_u64().unwrap() >= 1,
        "{diag}"
    );
    let closing = diag["servers"]["loop"]["pool"]["members"][0]["closing_sessions"]
        .as_u64()
        .unwrap();
    assert!(closing <= 1, "{closing} closed sessions retained");
}

/// Finding 9: a URL with a token in its path appeared in 503 bodies, `/diagnostics` and logs;
/// PIDs and stderr tails were shown to anyone. Finding 10: the errors carried SDK type names
/// and hid the cause.
#[tokio::test]
async fn finding_9_and_10_errors_are_plain_and_keep_secrets() {
    let config = json!({"mcpServers": {
        "remote": {"type": "streamable-http", "url": "http://127.0.0.1:9/s/SECRET-TOKEN/mcp?key=SECRET-QUERY"},
        "local": stdio_fake("secrets"),
    }});
    let dir = common::tempdir::TempDir::new();
    let path = dir.path().join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let mut child = std::process::Command::new(mcpo_bin())
        .args([
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--api-key",
            "k",
            "--config",
        ])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = std::io::BufRead::lines(std::io::BufReader::new(stdout))
        .map_while(Result::ok)
        .find(|l| l.contains("mcpo serving on"))
        .unwrap();
    let base = line.split_whitespace().nth(3).unwrap().to_string();
    let client = reqwest::Client::new();
    let (status, body) = {
        let r = client
            .post(format!("{base}/remote/echo"))
            .bearer_auth("k")
            .json(&json!({"message": "x"}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("cannot connect to 127.0.0.1:9: connection refused"),
        "{body}"
    );
    let anonymous = client
        .get(format!("{base}/diagnostics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let with_key = client
        .get(format!("{base}/diagnostics"))
        .bearer_auth("k")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for text in [&body, &anonymous, &with_key] {
        assert!(!text.contains("SECRET"), "{text}");
        assert!(
            !text.contains("rmcp::") && !text.contains("Transport ["),
            "{text}"
        );
    }
    let anonymous: Value = serde_json::from_str(&anonymous).unwrap();
    let with_key: Value = serde_json::from_str(&with_key).unwrap();
    let member = |d: &Value| d["servers"]["local"]["pool"]["members"][0].clone();
    assert!(member(&anonymous).get("pid").is_none(), "{anonymous}");
    assert!(member(&with_key)["pid"].is_u64(), "{with_key}");
    // Nothing secret in the logs either.
    common::signal(child.id(), "TERM");
    let out = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(!logs.contains("SECRET"), "{logs}");
    assert!(!logs.contains("rmcp::"), "{logs}");
}

/// Finding 11: the fake's streamable-HTTP listener did not set TCP_NODELAY, and each answer
/// written as several SSE chunks met the client's delayed ACK: every call stalled 40 ms. A
/// stall of that size is deterministic, so the median of sequential calls shows it plainly.
#[tokio::test]
async fn finding_11_no_40ms_stall_per_call() {
    let fake = FakeHttp::start("nodelay");
    let config = json!({"mcpServers": {"fake": {"type": "streamable-http", "url": fake.url}}});
    let proxy = Proxy::start(&config, &[]);
    proxy
        .wait_ok("/fake/openapi.json", Duration::from_secs(30))
        .await;
    let mut times = Vec::new();
    for i in 0..25 {
        let t = Instant::now();
        let (status, _) = proxy
            .post("/fake/echo", json!({"message": i.to_string()}))
            .await;
        times.push(t.elapsed());
        assert_eq!(status, 200);
    }
    times.sort();
    let median = times[times.len() / 2];
    assert!(
        median < Duration::from_millis(30),
        "median call {median:?}: a Nagle/delayed-ACK stall is back ({times:?})"
    );
}
