//! Replicas behind a balancer, restarted the way Kubernetes rolls a Deployment: three proxies
//! behind nginx on 127.0.0.1, open-loop load through nginx, and each replica in turn taken out
//! of the balancer, sent SIGTERM, drained, replaced by a new one that joins once `/readyz`
//! answers. No call may fail. Then a replica is SIGKILLed in place: the calls that fail are at
//! most the calls that were in flight when it died.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Proxy, eventually, stdio_fake, tempdir::TempDir};
use serde_json::json;

/// nginx as a child of the test, with a config the test rewrites and reloads.
struct Balancer {
    child: Child,
    dir: PathBuf,
    port: u16,
    generation: u32,
}

impl Balancer {
    fn start(dir: &Path, replicas: &[u16]) -> Balancer {
        let port = free_port();
        write_config(dir, port, 1, replicas);
        // Its own process group: the master and every worker it forks, whatever the
        // generation, are ended together.
        let child = std::os::unix::process::CommandExt::process_group(
            Command::new(nginx())
                .args(["-p", &dir.display().to_string(), "-c", "nginx.conf"])
                .stdout(Stdio::null()),
            0,
        )
        .spawn()
        .expect("start nginx");
        Balancer {
            child,
            dir: dir.to_path_buf(),
            port,
            generation: 1,
        }
    }

    fn write(&mut self, replicas: &[u16]) {
        self.generation += 1;
        write_config(&self.dir, self.port, self.generation, replicas);
    }

    /// Applies `replicas` and returns once new requests go by the new config. Requests that an
    /// older worker already passed on may still be running on a removed replica, as when
    /// Kubernetes sends SIGTERM while the endpoints update spreads: the drain must finish them.
    async fn set(&mut self, client: &reqwest::Client, replicas: &[u16]) {
        self.write(replicas);
        common::signal(self.child.id(), "HUP");
        let (url, want) = (
            format!("http://127.0.0.1:{}/__generation", self.port),
            self.generation.to_string(),
        );
        let master = self.child.id();
        eventually("nginx reloaded", Duration::from_secs(20), async || {
            let now = client.get(&url).send().await.ok()?.text().await.ok()?;
            (now == want && !common::children(master).is_empty()).then_some(())
        })
        .await;
    }
}

/// The config: `replicas` as the upstream, and `/__generation` answering which config the
/// workers run (so the test can await a reload instead of sleeping through it).
fn write_config(dir: &Path, port: u16, generation: u32, replicas: &[u16]) {
    let servers: String = replicas
        .iter()
        .map(|p| format!("    server 127.0.0.1:{p} max_fails=1 fail_timeout=30s;\n"))
        .collect();
    let conf = format!(
        "daemon off;\nworker_processes 1;\nerror_log {dir}/error.log warn;\npid {dir}/nginx.pid;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n\
         fastcgi_temp_path {dir}/fcgi;\n  uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n\
         upstream mcpo {{\n{servers}  }}\n\
         server {{\n    listen 127.0.0.1:{port};\n\
         location = /__generation {{ return 200 \"{generation}\"; }}\n\
         location / {{ proxy_pass http://mcpo; proxy_next_upstream error timeout; }}\n  }}\n}}\n",
        dir = dir.display(),
        port = port,
        generation = generation,
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
}

impl Drop for Balancer {
    // The whole process group, TERM first: nginx's master stops its workers itself on TERM;
    // killed outright, it would leave them running (holding whatever descriptors they
    // inherited).
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let _ = self.child.wait();
        // A worker of an older generation still finishing its requests goes too.
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    }
}

fn nginx() -> &'static str {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("nginx (apt-get install nginx-light; .ci/run installs it)")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn replica() -> Proxy {
    Proxy::start(
        &json!({"mcpServers": {"calc": stdio_fake("calc")}}),
        &["--drain-timeout", "10"],
    )
}

fn port_of(p: &Proxy) -> u16 {
    p.base.rsplit(':').next().unwrap().parse().unwrap()
}

async fn ready(client: &reqwest::Client, p: &Proxy) {
    eventually("replica ready", Duration::from_secs(30), async || {
        let r = client.get(p.url("/readyz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
}

#[derive(Default)]
struct Load {
    sent: AtomicUsize,
    in_flight: AtomicUsize,
    failed: std::sync::Mutex<Vec<String>>,
    latencies: std::sync::Mutex<Vec<Duration>>,
}

/// Open loop at `rate`/s until `stop`: `sleep` calls whose unique duration the answer must name.
fn drive(
    url: String,
    rate: u32,
    stop: Arc<AtomicBool>,
) -> (Arc<Load>, tokio::task::JoinHandle<()>) {
    let load = Arc::new(Load::default());
    let l = load.clone();
    let task = tokio::spawn(async move {
        // A connection per call: a keep-alive connection to an nginx worker of an older config
        // can be closed by nginx under a request being sent (nginx's race, not the proxy's).
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        let mut i: u64 = 0;
        while !stop.load(Ordering::SeqCst) {
            let at = start + Duration::from_secs_f64(i as f64 / rate as f64);
            tokio::time::sleep_until(at.into()).await;
            let ms = 20 + i % 37;
            let (client, url, l) = (client.clone(), url.clone(), l.clone());
            l.sent.fetch_add(1, Ordering::SeqCst);
            l.in_flight.fetch_add(1, Ordering::SeqCst);
            tasks.spawn(async move {
                let t = Instant::now();
                let outcome = match client.post(&url).json(&json!({"ms": ms})).send().await {
                    Ok(r) => {
                        let status = r.status();
                        let body = r.text().await.unwrap_or_default();
                        if status.is_success() && body.contains(&format!("slept {ms} ms")) {
                            Ok(())
                        } else {
                            Err(format!("{status}: {body}"))
                        }
                    }
                    Err(e) => Err(e.to_string()),
                };
                l.in_flight.fetch_sub(1, Ordering::SeqCst);
                match outcome {
                    Ok(()) => l.latencies.lock().unwrap().push(t.elapsed()),
                    Err(e) => l.failed.lock().unwrap().push(e),
                }
            });
            i += 1;
        }
        while tasks.join_next().await.is_some() {}
    });
    (load, task)
}

fn p99(load: &Load) -> Duration {
    let mut l = load.latencies.lock().unwrap().clone();
    l.sort();
    l.get(l.len() * 99 / 100).copied().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_rolling_restarts_under_load_lose_no_call_and_a_sigkill_loses_only_what_was_in_flight()
 {
    let dir = TempDir::new();
    let client = reqwest::Client::new();
    let mut replicas: Vec<Proxy> = (0..3).map(|_| replica()).collect();
    for r in &replicas {
        ready(&client, r).await;
    }
    let ports: Vec<u16> = replicas.iter().map(port_of).collect();
    let mut lb = Balancer::start(dir.path(), &ports);
    let gen_url = format!("http://127.0.0.1:{}/__generation", lb.port);
    eventually("nginx up", Duration::from_secs(20), async || {
        client.get(&gen_url).send().await.ok().map(|_| ())
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let url = format!("http://127.0.0.1:{}/calc/sleep", lb.port);
    let (load, task) = drive(url, 100, stop.clone());
    let rollout_start = Instant::now();
    // Three rounds at least, and more (up to ten) until the load has been big enough to judge:
    // a fast machine rolls three rounds in under 3 s.
    let mut round = 0;
    while round < 3 || (load.sent.load(Ordering::SeqCst) <= 300 && round < 10) {
        round += 1;
        for slot in 0..replicas.len() {
            // Readiness goes false: the balancer stops sending to it...
            let others: Vec<u16> = replicas
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != slot)
                .map(|(_, r)| port_of(r))
                .collect();
            lb.set(&client, &others).await;
            // ...then SIGTERM: it drains what it still has and exits by itself.
            let mut old = std::mem::replace(&mut replicas[slot], replica());
            common::signal(old.pid(), "TERM");
            let status = old.proc.child.wait().unwrap();
            assert!(status.success(), "a drained replica exits 0: {status:?}");
            ready(&client, &replicas[slot]).await;
            let all: Vec<u16> = replicas.iter().map(port_of).collect();
            lb.set(&client, &all).await;
        }
    }
    let rollout = rollout_start.elapsed();
    let during_rollout = load.sent.load(Ordering::SeqCst);
    let failed_rollout = load.failed.lock().unwrap().clone();
    let rollout_p99 = p99(&load);

    // A replica SIGKILLed in place, while the balancer still sends to it.
    let in_flight_at_kill = load.in_flight.load(Ordering::SeqCst);
    common::signal(replicas[0].pid(), "KILL");
    let killed_at = load.sent.load(Ordering::SeqCst);
    eventually(
        "load goes on after the kill",
        Duration::from_secs(30),
        async || (load.sent.load(Ordering::SeqCst) > killed_at + 300).then_some(()),
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    task.await.unwrap();
    let failed_total = load.failed.lock().unwrap().clone();
    let workers = common::children(lb.child.id());
    assert!(!workers.is_empty(), "nginx has no workers?");
    drop(lb);
    for pid in workers {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "nginx worker {pid} outlived the test's balancer"
        );
    }
    let failed_kill = failed_total.len() - failed_rollout.len();
    eprintln!(
        "rolling restart: {round} rounds of 3 replacements in {rollout:?}, {during_rollout} calls, {} failed, p99 {rollout_p99:?}; \
         SIGKILL: {failed_kill} failed with {in_flight_at_kill} in flight over all replicas",
        failed_rollout.len()
    );
    assert!(
        during_rollout > 300,
        "too little load to judge: {during_rollout}"
    );
    assert!(
        failed_rollout.is_empty(),
        "{} calls failed during the rollouts: {:?}",
        failed_rollout.len(),
        &failed_rollout[..failed_rollout.len().min(5)]
    );
    assert!(
        failed_kill <= in_flight_at_kill,
        "{failed_kill} calls failed after a SIGKILL with only {in_flight_at_kill} in flight: {:?}",
        &failed_total[failed_rollout.len()..]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_a_shutdown_delay_reports_not_ready_while_it_still_serves_then_drains() {
    let mut proxy = Proxy::start(
        &json!({"mcpServers": {"calc": stdio_fake("calc")}}),
        &["--shutdown-delay", "3"],
    );
    let client = reqwest::Client::new();
    ready(&client, &proxy).await;
    // A call that is still running when the lame duck ends must be drained, not cut.
    let slow = {
        let (client, url) = (client.clone(), proxy.url("/calc/sleep"));
        tokio::spawn(async move {
            let r = client.post(url).json(&json!({"ms": 4000})).send().await?;
            let status = r.status();
            Ok::<_, reqwest::Error>((status, r.text().await?))
        })
    };
    common::signal(proxy.pid(), "TERM");
    let not_ready = eventually(
        "/readyz says shutting down",
        Duration::from_secs(10),
        async || {
            let r = client.get(proxy.url("/readyz")).send().await.ok()?;
            (r.status() == 503).then_some(r.text().await.ok()?)
        },
    )
    .await;
    assert!(not_ready.contains("shutting down"), "{not_ready}");
    // Still accepting new connections and serving, each answer asking the client to go.
    let fresh = reqwest::Client::new();
    let r = fresh
        .post(proxy.url("/calc/echo"))
        .json(&json!({"message": "during the lame duck"}))
        .send()
        .await
        .expect("the listener still accepts during the lame duck");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers().get("connection").map(|v| v.to_str().unwrap()),
        Some("close")
    );
    assert_eq!(r.text().await.unwrap(), "\"during the lame duck\"");
    let (status, body) = slow.await.unwrap().expect("the call in flight is answered");
    assert_eq!(status.as_u16(), 200, "{body}");
    assert!(body.contains("slept 4000 ms"), "{body}");
    let exit = proxy.proc.child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");

    let bad = Command::new(common::mcpo_bin())
        .args(["--shutdown-delay=-1", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--shutdown-delay"));
}
