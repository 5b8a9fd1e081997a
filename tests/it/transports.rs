//! The same call against `@modelcontextprotocol/server-everything` over every transport, in
//! config mode and in single-server mode (SSE is in `tests/sse.rs`), and through the
//! improved-mcpo guide's `--server-type/--command/--args` spelling.

use crate::common;

use std::time::Duration;

use common::{Proc, Proxy, everything_stdio, listening_port};
use serde_json::json;

async fn echo_works(proxy: &Proxy, prefix: &str) {
    proxy
        .wait_ok(&format!("{prefix}/openapi.json"), Duration::from_secs(60))
        .await;
    let (status, body) = proxy
        .post(&format!("{prefix}/echo"), json!({"message": "x"}))
        .await;
    assert_eq!((status, body), (200, json!("Echo: x")), "{prefix}");
}

#[tokio::test]
async fn stdio_and_streamable_http_in_both_modes_and_the_guide_spelling() {
    let (node, args) = everything_stdio();
    // stdio, config mode and single-server mode.
    let config = json!({"mcpServers": {"everything": {"command": node, "args": args}}});
    echo_works(&Proxy::start(&config, &[]), "/everything").await;
    let mut words: Vec<&str> = vec!["--"];
    words.push(&node);
    words.extend(args.iter().map(String::as_str));
    echo_works(&Proxy::start_args(&words, &[]), "").await;
    // The guide's spelling of the same.
    let joined = args.join(" ");
    echo_works(
        &Proxy::start_args(
            &[
                "--server-type",
                "stdio",
                "--command",
                &node,
                "--args",
                &joined,
            ],
            &[],
        ),
        "",
    )
    .await;
    // Streamable HTTP: the server on a port the OS picks (read from /proc).
    let mut child = std::process::Command::new(&node)
        .arg(&args[0])
        .arg("streamableHttp")
        .env("PORT", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    assert!(lines.any(|l| l.map(|l| l.contains("listening")).unwrap_or(false)));
    std::thread::spawn(move || for _ in lines {});
    let server = Proc { child };
    let url = format!(
        "http://127.0.0.1:{}/mcp",
        listening_port(server.child.id()).unwrap()
    );
    let config = json!({"mcpServers": {"everything": {"type": "streamable-http", "url": url}}});
    echo_works(&Proxy::start(&config, &[]), "/everything").await;
    echo_works(
        &Proxy::start_args(&["--type", "streamable-http", "--", &url], &[]),
        "",
    )
    .await;
}
