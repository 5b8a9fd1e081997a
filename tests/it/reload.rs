//! `--hot-reload`: the config file changes under a running proxy and the servers follow it,
//! without touching the ones that did not change and without dropping calls in flight.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Proxy, eventually, marker, pids_matching, stdio_fake};
use serde_json::{Value, json};

/// Writes `config` the way many editors save: to a new file, renamed over the old one.
fn save_by_rename(path: &Path, config: &Value) {
    let tmp = path.with_extension("json.swp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(config).unwrap()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The child PID of the server whose fake has this id.
async fn pid_of(m: &str, id: &str) -> u32 {
    let needle = format!("--id {id}");
    eventually(
        &format!("one child {id}"),
        Duration::from_secs(15),
        async || {
            let pids = pids_matching("MCPO_TEST_MARKER", m, &needle);
            (pids.len() == 1).then(|| pids[0])
        },
    )
    .await
}

/// A `slow` call of `ms` to `server`, sent now and answered in its own task.
fn slow_call(proxy: &Proxy, server: &str, ms: u64) -> tokio::task::JoinHandle<(u16, String)> {
    let (client, url) = (proxy.client.clone(), proxy.url(&format!("/{server}/slow")));
    tokio::spawn(async move {
        let r = client
            .post(url)
            .json(&json!({"ms": ms}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    })
}

#[tokio::test]
async fn servers_follow_the_file_and_the_unchanged_one_is_not_touched() {
    let m = marker("reload");
    let v1 = json!({"mcpServers": {
        "keep": stdio_fake("rl-keep"),
        "change": stdio_fake("rl-change-a"),
        "remove": stdio_fake("rl-remove"),
    }});
    let (proxy, log) = Proxy::start_logged(
        &v1,
        &["--hot-reload"],
        &[("MCPO_TEST_MARKER", &m), ("LOG_LEVEL", "INFO")],
    );
    let path = proxy.config_path.clone().unwrap();
    for s in ["keep", "change", "remove"] {
        proxy
            .wait_ok(&format!("/{s}/openapi.json"), Duration::from_secs(30))
            .await;
    }
    let keep_pid = pid_of(&m, "rl-keep").await;
    // A long call to each server, in flight across the reload: the kept one's must be left
    // alone, the removed and the replaced ones' must be let finish (drained), not cut.
    let long_calls: Vec<_> = ["keep", "change", "remove"]
        .into_iter()
        .map(|s| (s, slow_call(&proxy, s, 4000)))
        .collect();
    eventually(
        "the long calls are in flight",
        Duration::from_secs(10),
        async || {
            let (_, diag) = proxy.get("/diagnostics").await;
            ["keep", "change", "remove"]
                .iter()
                .all(|s| diag["servers"][s]["pool"]["members"][0]["in_flight"] == 1)
                .then_some(())
        },
    )
    .await;

    // Add one, change one, remove one.
    let changed_at = Instant::now();
    save_by_rename(
        &path,
        &json!({"mcpServers": {
            "keep": stdio_fake("rl-keep"),
            "change": stdio_fake("rl-change-b"),
            "added": stdio_fake("rl-added"),
        }}),
    );
    eventually("the routes follow", Duration::from_secs(2), async || {
        let added = proxy.get("/added/openapi.json").await.0 == 200;
        let removed = proxy.post("/remove/echo", json!({"message": "x"})).await.0 == 404;
        let (_, who) = proxy.post("/change/whoami", json!({})).await;
        let changed = who["id"] == "rl-change-b";
        (added && removed && changed).then_some(())
    })
    .await;
    eprintln!("routes followed in {:?}", changed_at.elapsed());
    assert_eq!(
        pid_of(&m, "rl-keep").await,
        keep_pid,
        "the unchanged server was touched"
    );
    // The removed and the replaced children are stopped (their calls were done).
    eventually("old children gone", Duration::from_secs(10), async || {
        (pids_matching("MCPO_TEST_MARKER", &m, "--id rl-remove").is_empty()
            && pids_matching("MCPO_TEST_MARKER", &m, "--id rl-change-a").is_empty())
        .then_some(())
    })
    .await;

    // A broken file: one error line, and the running set stays as it is.
    std::fs::write(&path, "{\"mcpServers\": {").unwrap();
    let line = eventually("the error is logged", Duration::from_secs(5), async || {
        let text = std::fs::read_to_string(&log).ok()?;
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("hot reload:") && l.contains("ERROR"))
            .collect();
        (lines.len() == 1).then(|| lines[0].to_string())
    })
    .await;
    assert!(
        line.contains("config.json") && line.contains("invalid JSON"),
        "{line}"
    );
    assert_eq!(proxy.get("/added/openapi.json").await.0, 200);
    let (status, _) = proxy.post("/keep/echo", json!({"message": "still"})).await;
    assert_eq!(status, 200);
    assert_eq!(pid_of(&m, "rl-keep").await, keep_pid);

    // The long calls finished normally, on every server.
    for (server, call) in long_calls {
        let (status, body) = call.await.unwrap();
        assert_eq!(status, 200, "{server}: {body}");
        assert!(body.contains("slept 4000 ms"), "{server}: {body}");
    }
    // Still exactly one error line (the broken file was not re-reported, nothing else failed).
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("hot reload:") && l.contains("ERROR"))
            .count(),
        1,
        "{text}"
    );
}

/// Lays out `dir` as Kubernetes mounts a ConfigMap: the data in a timestamped directory,
/// `..data` a symlink to it, and `config.json` a symlink through `..data`. Each call makes a
/// new data directory and swaps `..data` atomically (a new link renamed over the old one),
/// then removes the old directory, as the kubelet does.
fn configmap_publish(dir: &Path, generation: u32, config: &Value) {
    use std::os::unix::fs::symlink;
    let data = format!("..2026_12_02_{generation:02}");
    std::fs::create_dir(dir.join(&data)).unwrap();
    std::fs::write(
        dir.join(&data).join("config.json"),
        serde_json::to_vec_pretty(config).unwrap(),
    )
    .unwrap();
    let old = std::fs::read_link(dir.join("..data")).ok();
    symlink(&data, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    if !dir.join("config.json").exists() {
        symlink("..data/config.json", dir.join("config.json")).unwrap();
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old)).unwrap();
    }
}

#[tokio::test]
async fn a_configmap_swap_is_followed() {
    let m = marker("reload-cm");
    let dir = common::tempdir::TempDir::new();
    configmap_publish(
        dir.path(),
        1,
        &json!({"mcpServers": {"first": stdio_fake("cm-first")}}),
    );
    let config = dir.path().join("config.json");
    let config = config.to_str().unwrap();
    let proxy = Proxy::start_args(
        &["--config", config, "--hot-reload"],
        &[("MCPO_TEST_MARKER", &m)],
    );
    proxy
        .wait_ok("/first/openapi.json", Duration::from_secs(30))
        .await;

    // Twice: the first swap proves the watch follows `..data`, the second that it still does
    // after the directory it first resolved to is gone.
    for (generation, name) in [(2, "second"), (3, "third")] {
        configmap_publish(
            dir.path(),
            generation,
            &json!({"mcpServers": {"first": stdio_fake("cm-first"), name: stdio_fake(name)}}),
        );
        eventually(
            &format!("{name} appears"),
            Duration::from_secs(15),
            async || (proxy.get(&format!("/{name}/openapi.json")).await.0 == 200).then_some(()),
        )
        .await;
    }
    assert_eq!(proxy.get("/second/openapi.json").await.0, 404);
    let (status, body) = proxy.post("/first/echo", json!({"message": "kept"})).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_changed_server_lets_its_calls_run_to_their_deadline_not_the_drain_timeout() {
    let m = marker("reload-deadline");
    let v1 = json!({"mcpServers": {"change": stdio_fake("rd-a")}});
    let proxy = Proxy::start_with_env(
        &v1,
        &["--hot-reload", "--drain-timeout", "1"],
        &[("MCPO_TEST_MARKER", &m)],
    );
    let path = proxy.config_path.clone().unwrap();
    proxy
        .wait_ok("/change/openapi.json", Duration::from_secs(30))
        .await;
    let call = slow_call(&proxy, "change", 4000);
    eventually(
        "the call is in flight",
        Duration::from_secs(10),
        async || {
            let (_, diag) = proxy.get("/diagnostics").await;
            (diag["servers"]["change"]["pool"]["members"][0]["in_flight"] == 1).then_some(())
        },
    )
    .await;
    save_by_rename(
        &path,
        &json!({"mcpServers": {"change": stdio_fake("rd-b")}}),
    );
    eventually(
        "the server is replaced",
        Duration::from_secs(10),
        async || {
            let (_, who) = proxy.post("/change/whoami", json!({})).await;
            (who["id"] == "rd-b").then_some(())
        },
    )
    .await;
    // The drain timeout (1 s) is for shutdown; a call on a replaced server has its own
    // deadline (60 s) and must be let finish.
    let (status, body) = call.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("slept 4000 ms"), "{body}");
    eventually(
        "the old child is gone",
        Duration::from_secs(10),
        async || {
            pids_matching("MCPO_TEST_MARKER", &m, "--id rd-a")
                .is_empty()
                .then_some(())
        },
    )
    .await;
}

/// SIGHUP reads the config file again, with or without `--hot-reload` (the daemon
/// convention; unhandled, SIGHUP killed the proxy), and an invalid file changes nothing.
#[tokio::test]
async fn sighup_reads_the_config_again_and_never_kills_the_proxy() {
    let v1 = json!({"mcpServers": {"first": stdio_fake("hup-first")}});
    let proxy = Proxy::start(&v1, &[]);
    let path = proxy.config_path.clone().unwrap();
    proxy
        .wait_ok("/first/openapi.json", Duration::from_secs(30))
        .await;
    let hangup = || {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &proxy.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    // Invalid: the running server stays, and the proxy lives.
    std::fs::write(&path, "{ not json").unwrap();
    hangup();
    let v2 = json!({"mcpServers": {
        "first": stdio_fake("hup-first"),
        "second": stdio_fake("hup-second"),
    }});
    save_by_rename(&path, &v2);
    hangup();
    proxy
        .wait_ok("/second/openapi.json", Duration::from_secs(30))
        .await;
    let (status, _) = proxy.get("/first/openapi.json").await;
    assert_eq!(status, 200);

    // Servers from the command line: nothing to read again, and the proxy lives on.
    let cli = Proxy::start_args(
        &[
            "--",
            common::mcpo_bin(),
            "fake-server",
            "--transport",
            "stdio",
        ],
        &[],
    );
    cli.wait_ok("/openapi.json", Duration::from_secs(30)).await;
    let status = std::process::Command::new("kill")
        .args(["-HUP", &cli.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (status, body) = cli.post("/echo", json!({"message": "after HUP"})).await;
    assert_eq!((status, body), (200, json!("after HUP")));
}
