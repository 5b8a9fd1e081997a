//! Running the proxy as a library with a recovery strategy and a metrics collector of your own.
//!
//!     cargo run --example custom_recovery                 # serves demo/config.json on :8000
//!     cargo run --example custom_recovery -- other.json 9000
//!
//! The strategy sends a call that timed out once more (the standard one gives up and checks
//! the session), and the collector counts how often it did; both show up as they would for the
//! built-in ones: the collector in `/metrics` under `custom.retried_timeouts` and in the
//! Prometheus output as `mcpo_custom_retried_timeouts_total`.
//!
//! The demo config starts `mcpo fake-server`; `mcpo` in a config means "this very binary", so
//! this example also answers `fake-server` itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser as _;
use mcpo::metrics::{CustomMetric, MetricsCollector};
use mcpo::recovery::{Decision, FailureClass, FailureContext, RecoveryStrategy, SessionAction};

/// Retries a timed-out call once, counting it.
struct RetryTimeoutOnce {
    retried: Arc<AtomicU64>,
}

impl RecoveryStrategy for RetryTimeoutOnce {
    fn decide(&self, ctx: &FailureContext<'_>) -> Decision {
        if ctx.idempotent && ctx.attempt == 1 && ctx.time_left > Duration::from_millis(100) {
            self.retried.fetch_add(1, Ordering::Relaxed);
            Decision::retry(SessionAction::Check, Duration::ZERO, true)
        } else {
            Decision::fail_and(SessionAction::Check)
        }
    }
}

/// Shows the count.
struct RetriedTimeouts {
    retried: Arc<AtomicU64>,
}

impl MetricsCollector for RetriedTimeouts {
    fn name(&self) -> &str {
        "retried_timeouts"
    }

    fn collect(&self) -> Vec<CustomMetric> {
        vec![CustomMetric {
            name: "calls".into(),
            help: "Timed-out calls sent once more by the example's strategy".into(),
            counter: true,
            labels: vec![],
            value: self.retried.load(Ordering::Relaxed) as f64,
        }]
    }
}

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("fake-server") {
        // `mcpo fake-server ...` from the config, answered by this binary.
        let fake = mcpo::cli::Cli::parse_from(
            std::iter::once("mcpo".to_string()).chain(args[1..].iter().cloned()),
        );
        if let mcpo::cli::Command::FakeServer(fake) = fake.into_command() {
            return match runtime.block_on(mcpo::fake::run(&fake)) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(_) => std::process::ExitCode::from(1),
            };
        }
    }
    let config_path = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "demo/config.json".into());
    let port = args.get(2).cloned().unwrap_or_else(|| "8000".into());
    let cli = mcpo::cli::Cli::parse_from([
        "mcpo",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--config",
        &config_path,
    ]);
    let mcpo::cli::Command::Serve(serve) = cli.into_command() else {
        return std::process::ExitCode::from(2);
    };
    let config = match mcpo::config::from_cli(&serve) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let retried = Arc::new(AtomicU64::new(0));
    let extensions = mcpo::serve::Extensions {
        strategies: vec![(
            FailureClass::Timeout,
            Arc::new(RetryTimeoutOnce {
                retried: retried.clone(),
            }),
        )],
        collectors: vec![Arc::new(RetriedTimeouts { retried })],
    };
    runtime.block_on(async {
        let proxy = match mcpo::serve::start_with(config, extensions).await {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e}");
                return std::process::ExitCode::from(1);
            }
        };
        println!(
            "mcpo serving on http://{} (metrics: /metrics, status page: /status)",
            proxy.addr
        );
        let token = proxy.shutdown_token();
        tokio::spawn(async move {
            mcpo::serve::shutdown_signal().await;
            token.cancel();
        });
        match proxy.wait().await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::from(1)
            }
        }
    })
}
