//! The `mcpo` binary: parse the command line, set up logging, run the command, and turn errors
//! into one clear line and an exit status (2 for bad configuration, 1 for runtime failures).

use std::process::ExitCode;

use clap::Parser;
use mcpo::cli::{Cli, Command};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // One rustls backend for the whole process. Only aws-lc-rs is compiled in today, but should
    // a dependency ever enable ring as well, rustls would refuse to pick one by itself and
    // every HTTPS client (reqwest's, for remote upstreams) would panic on first use.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mcpo: error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run(cli.into_command()))
}

async fn run(command: Command) -> ExitCode {
    match command {
        Command::Serve(args) => {
            init_logging(args.log_level());
            let config = match mcpo::config::from_cli(&args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("mcpo: error: {e}");
                    return ExitCode::from(2);
                }
            };
            match serve(config).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("mcpo: error: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Chaos(args) => {
            init_logging(&args.log_level);
            chaos(args).await
        }
        Command::Version => {
            println!("{}", mcpo::cli::version_line());
            ExitCode::SUCCESS
        }
        Command::ConfigReference { write: None } => {
            print!("{}", mcpo::reference::flags_markdown());
            ExitCode::SUCCESS
        }
        Command::ConfigReference { write: Some(path) } => {
            match mcpo::reference::splice_into(&path) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("mcpo config-reference: error: {}: {e}", path.display());
                    ExitCode::from(1)
                }
            }
        }
        Command::Healthcheck(args) => healthcheck(&args).await,
        Command::FakeServer(args) => {
            // stdout is the MCP channel for stdio: logs go to stderr only.
            init_logging("WARNING");
            match mcpo::fake::run(&args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e @ mcpo::fake::FakeError::Transport(_)) => {
                    eprintln!("mcpo fake-server: error: {e}");
                    ExitCode::from(2)
                }
                Err(e) => {
                    eprintln!("mcpo fake-server: error: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

async fn chaos(args: mcpo::cli::ChaosArgs) -> ExitCode {
    use mcpo::chaos::run::{ChaosOptions, RunError, run};
    if args.example {
        print!("{}", mcpo::chaos::EXAMPLE);
        return ExitCode::SUCCESS;
    }
    // clap requires the file unless --example is given.
    let Some(file) = args.file else {
        eprintln!("mcpo chaos: error: give a scenario file (or --example)");
        return ExitCode::from(2);
    };
    if args.check {
        return match mcpo::chaos::scenario::parse_scenario_file(&file) {
            Ok(s) => {
                println!(
                    "{}: valid ({} servers, {} fault events, {})",
                    file.display(),
                    s.servers.len(),
                    s.faults.len(),
                    mcpo::chaos::verdict::format_duration(s.duration)
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mcpo chaos: error: {e}");
                ExitCode::from(2)
            }
        };
    }
    let opts = ChaosOptions {
        file,
        target: args.target,
        report: args.report,
        junit: args.junit,
        html: args.html,
        seed: args.seed,
        via: if args.via == "mcp" {
            mcpo::chaos::caller::Via::Mcp
        } else {
            mcpo::chaos::caller::Via::Http
        },
        mcp_route: mcpo::chaos::caller::McpRoute {
            path: args.mcp_path,
            name: args.mcp_tool_name,
        },
        quiet: false,
    };
    let interrupt = tokio_util::sync::CancellationToken::new();
    let on_signal = interrupt.clone();
    tokio::spawn(async move {
        mcpo::serve::shutdown_signal().await;
        eprintln!("mcpo chaos: interrupted; clearing faults and stopping every process of the run");
        on_signal.cancel();
    });
    match run(&opts, interrupt).await {
        Ok(outcome) if outcome.partial => ExitCode::from(130),
        // An invalid run measured nothing about the proxy: never a pass, and not a missed
        // SLO either.
        Ok(outcome) if !outcome.verdict.valid() => {
            for why in &outcome.verdict.invalid {
                eprintln!("mcpo chaos: invalid run: {why}");
            }
            ExitCode::from(3)
        }
        Ok(outcome) if outcome.verdict.passed() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e @ (RunError::Scenario(_) | RunError::Invalid(_))) => {
            eprintln!("mcpo chaos: error: {e}");
            ExitCode::from(2)
        }
        Err(e @ RunError::NotReady(_)) => {
            eprintln!("mcpo chaos: {e}");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("mcpo chaos: error: {e}");
            ExitCode::from(1)
        }
    }
}

/// `mcpo healthcheck URL`: one GET with a deadline; the answer's status decides the exit code.
async fn healthcheck(args: &mcpo::cli::HealthcheckArgs) -> ExitCode {
    let timeout = match std::time::Duration::try_from_secs_f64(args.timeout) {
        Ok(t) if !t.is_zero() => t,
        _ => {
            eprintln!(
                "mcpo healthcheck: error: --timeout must be a positive number of seconds, got {}",
                args.timeout
            );
            return ExitCode::from(2);
        }
    };
    let client = match reqwest::Client::builder().timeout(timeout).build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mcpo healthcheck: error: {e}");
            return ExitCode::from(1);
        }
    };
    match client.get(&args.url).send().await {
        Ok(resp) if resp.status().is_success() => {
            println!("{}: {}", args.url, resp.status());
            ExitCode::SUCCESS
        }
        Ok(resp) => {
            eprintln!("mcpo healthcheck: {}: {}", args.url, resp.status());
            ExitCode::from(1)
        }
        Err(e) => {
            // reqwest's own line says only "error sending request": the cause is in the chain.
            let mut why = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                why.push_str(": ");
                why.push_str(&s.to_string());
                source = s.source();
            }
            eprintln!(
                "mcpo healthcheck: {}: {}",
                mcpo::redact::origin(&args.url),
                mcpo::redact::urls_in(&why)
            );
            ExitCode::from(1)
        }
    }
}

async fn serve(config: mcpo::config::ServeConfig) -> anyhow::Result<()> {
    let shown_host = match config.host.as_str() {
        "0.0.0.0" | "::" => "127.0.0.1".to_string(),
        h => h.to_string(),
    };
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let proxy = mcpo::serve::start(config).await?;
    // Tests and scripts read this line to learn the port (`--port 0` picks a free one).
    println!(
        "mcpo serving on {scheme}://{}:{} (docs: {scheme}://{}:{}/docs; {})",
        proxy.addr.ip(),
        proxy.addr.port(),
        shown_host,
        proxy.addr.port(),
        mcpo::cli::version_line(),
    );
    let stop = proxy.shutdown_handle();
    tokio::spawn(async move {
        mcpo::serve::shutdown_signal().await;
        // A second signal ends the lame duck at once.
        stop.begin(mcpo::serve::shutdown_signal());
    });
    proxy.wait().await?;
    Ok(())
}

/// mcpo's log levels, mapped onto tracing's; `RUST_LOG` wins when set.
fn init_logging(level: &str) {
    let level = match level.to_ascii_uppercase().as_str() {
        "DEBUG" => "debug",
        "WARNING" | "WARN" => "warn",
        "ERROR" | "CRITICAL" => "error",
        "TRACE" => "trace",
        _ => "info",
    };
    // rmcp's own lines repeat, less clearly, what our errors already say (with Rust type names
    // and full URLs): they are shown only when debugging.
    let rmcp = if matches!(level, "debug" | "trace") {
        level
    } else {
        "off"
    };
    // rmcp's OAuth module logs the authorization code at debug level: never below info,
    // whatever RUST_LOG says.
    let auth = if rmcp == "off" { "off" } else { "info" };
    let filter = match EnvFilter::try_from_default_env() {
        Ok(filter) => match "rmcp::transport::auth=info".parse() {
            Ok(directive) => filter.add_directive(directive),
            Err(_) => filter,
        },
        Err(_) => EnvFilter::new(format!("{level},rmcp={rmcp},rmcp::transport::auth={auth}")),
    };
    // Colours only on a terminal: log files and journald get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(|| mcpo::redact::Redacting(std::io::stderr()))
        .try_init();
}
