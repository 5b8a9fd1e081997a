//! Stopping the proxy leaves nothing behind: every stdio server, and everything those servers
//! started (npx-style launchers start grandchildren), is gone once the proxy has exited.

use crate::common;

use std::time::{Duration, Instant};

use common::{Proxy, everything_stdio, mcpo_bin, processes_with_env, time_server};
use serde_json::json;

async fn stop_with(signal: &str) {
    let marker = format!("{signal}-{}", std::process::id());
    let (ev_cmd, ev_args) = everything_stdio();
    let (time_cmd, time_args) = time_server();
    // `sh -c` puts a grandchild under the proxy's child, like npx and uvx do. The `sleep` under
    // "detached" reads no stdin and is not the proxy's child: neither the closed pipe nor
    // PR_SET_PDEATHSIG ends it, only the proxy stopping the server's process group does.
    let config = json!({"mcpServers": {
        "everything": {"command": ev_cmd, "args": ev_args},
        "time": {"command": time_cmd, "args": time_args},
        "wrapped": {"command": "sh", "args": ["-c", format!("{} fake-server --transport stdio; exit 0", mcpo_bin())]},
        "detached": {"command": "sh", "args": ["-c", format!("sleep 1000 </dev/null & exec {} fake-server --transport stdio", mcpo_bin())]},
    }});
    let mut proxy = Proxy::start_with_env(&config, &[], &[("MCPO_TEST_MARKER", &marker)]);
    for server in ["everything", "time", "wrapped", "detached"] {
        proxy
            .wait_ok(&format!("/{server}/openapi.json"), Duration::from_secs(60))
            .await;
    }
    let (status, _) = proxy.post("/wrapped/echo", json!({"message": "x"})).await;
    assert_eq!(status, 200);
    let children = processes_with_env("MCPO_TEST_MARKER", &marker);
    // The proxy itself, four servers, the wrapped server's grandchild and the sleep.
    assert!(
        children.len() >= 7,
        "expected the proxy and its servers, found {children:?}"
    );

    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &proxy.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = proxy.proc.child.wait().unwrap();
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");

    // Orphans are re-parented and reaped asynchronously by init; give them a bounded moment.
    let start = Instant::now();
    loop {
        let left = processes_with_env("MCPO_TEST_MARKER", &marker);
        if left.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "left behind after {signal}: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn sigterm_leaves_no_child_behind() {
    stop_with("TERM").await;
}

#[tokio::test]
async fn sigint_leaves_no_child_behind() {
    stop_with("INT").await;
}
