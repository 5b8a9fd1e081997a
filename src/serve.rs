//! `mcpo serve`: start the upstream supervisors, serve HTTP, and shut everything down in order.
//!
//! Shutdown happens in order, with two tokens owned here. On SIGTERM or SIGINT the first one
//! stops the HTTP server from accepting; calls in flight keep their sessions and get up to the
//! drain timeout to finish. Only then does the second token stop the supervisors, which close
//! their sessions and terminate each child's whole process group, and only then does the
//! process exit. No child outlives the proxy, and no call in flight loses its session to the
//! shutdown that was supposed to let it finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::ServeConfig;
use crate::http::server::{Listener, ServerLimits};
use crate::http::{AppState, router};
use crate::recovery::RecoveryPolicy;
use crate::upstream::UpstreamSettings;
use crate::upstream::fleet::Fleet;

/// How long supervisors get to stop their children.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Errors that stop `serve` from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Http(#[source] std::io::Error),
}

/// A running proxy: its address and the handle that stops it.
pub struct RunningProxy {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<Result<(), ServeError>>,
}

impl RunningProxy {
    /// Stops the proxy and waits until every child is gone.
    pub async fn stop(self) -> Result<(), ServeError> {
        self.shutdown.cancel();
        self.server
            .await
            .unwrap_or_else(|e| Err(ServeError::Http(std::io::Error::other(e))))
    }

    /// Waits until the proxy stops by itself (after a signal).
    pub async fn wait(self) -> Result<(), ServeError> {
        self.server
            .await
            .unwrap_or_else(|e| Err(ServeError::Http(std::io::Error::other(e))))
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// What begins a shutdown, to hand to a signal handler while the proxy is awaited.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            state: self.state.clone(),
            shutdown: self.shutdown.clone(),
        }
    }
}

/// Begins a graceful shutdown of a [`RunningProxy`].
#[derive(Clone)]
pub struct ShutdownHandle {
    state: Arc<AppState>,
    shutdown: CancellationToken,
}

impl ShutdownHandle {
    /// Lame duck for `--shutdown-delay` (`/readyz` 503, still accepting and serving), then the
    /// drain. `skip` (a second signal, say) ends the lame duck early.
    pub fn begin(&self, skip: impl Future<Output = ()> + Send + 'static) {
        let (state, shutdown) = (self.state.clone(), self.shutdown.clone());
        let delay = state.config.shutdown_delay;
        state.lame_duck.cancel();
        if delay.is_zero() {
            shutdown.cancel();
            return;
        }
        tracing::info!(
            ?delay,
            "shutting down: not ready, serving until the delay ends"
        );
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = skip => {}
            }
            shutdown.cancel();
        });
    }
}

/// What a library user adds to a proxy: recovery strategies of their own (replacing the
/// standard one of a failure class) and metrics collectors (shown under `custom` in `/metrics`
/// and in the Prometheus output).
#[derive(Default, Clone)]
pub struct Extensions {
    pub strategies: Vec<(
        crate::recovery::FailureClass,
        Arc<dyn crate::recovery::RecoveryStrategy>,
    )>,
    pub collectors: Vec<Arc<dyn crate::metrics::MetricsCollector>>,
}

/// Starts the proxy with the standard behaviour.
pub async fn start(config: ServeConfig) -> Result<RunningProxy, ServeError> {
    start_with(config, Extensions::default()).await
}

/// Starts the upstreams, waits for their first connection attempt (bounded by the connect
/// timeout, so a slow server cannot hold the others hostage), binds and serves.
pub async fn start_with(
    config: ServeConfig,
    extensions: Extensions,
) -> Result<RunningProxy, ServeError> {
    let config = Arc::new(config);
    let shutdown = CancellationToken::new();
    let settings = UpstreamSettings {
        stdio_env: config.stdio_env.clone(),
        connect_timeout: config.connect_timeout,
        call_timeout: config.tool_timeout,
        max_call_timeout: config.max_tool_timeout,
        pool_min: config.pool_min,
        pool_max: config.pool_max,
        pool_idle: config.pool_idle,
        listing: config.listing,
        ..UpstreamSettings::default()
    };
    let policy = if config.recovery_enabled {
        RecoveryPolicy::standard(config.max_recovery_attempts)
    } else {
        RecoveryPolicy::disabled()
    };
    let mut policy = policy;
    if config.recovery_enabled {
        for (class, strategy) in &extensions.strategies {
            policy.register_shared(*class, strategy.clone());
        }
    }
    let registry = crate::metrics::Metrics::new(
        config.servers.iter().map(|s| s.name.as_str()),
        config.metrics_enabled,
        config.recovery_target,
    );
    for collector in &extensions.collectors {
        registry.register(collector.clone());
    }
    // Not a child of `shutdown`: sessions must outlive the HTTP drain.
    let upstream_stop = CancellationToken::new();
    let fleet = Fleet::start(
        &config.servers,
        settings,
        policy,
        registry.clone(),
        upstream_stop.clone(),
        config.drain_timeout,
    );
    let upstreams = fleet.view().upstreams.clone();
    let mut supervisors = JoinSet::new();
    let first_attempts =
        futures::future::join_all(upstreams.iter().map(|u| u.first_attempt_done()));
    let _ = tokio::time::timeout(config.connect_timeout, first_attempts).await;
    for u in &upstreams {
        let view = u.view();
        match &view.last_error {
            None => {
                tracing::info!(server = %u.name(), status = view.status.as_str(), "upstream ready")
            }
            Some(e) => {
                tracing::warn!(server = %u.name(), status = view.status.as_str(), error = %e,
                "upstream not ready at start-up; retrying in the background")
            }
        }
    }

    let addr = format!("{}:{}", config.host, config.port);
    let bound = match &config.tls {
        None => match tokio::net::TcpListener::bind(&addr).await {
            Ok(l) => l.local_addr().map(|local| (Listener::Plain(l), local)),
            Err(e) => Err(e),
        },
        Some(tls) => crate::net::bind_tls(&addr, tls.server_config.clone())
            .await
            .map(|(l, local)| (Listener::Tls(l), local)),
    };
    let (listener, local) = bound.map_err(|source| ServeError::Bind { addr, source })?;
    let limits = server_limits(&config);
    let monitor = crate::monitor::Monitor::new(config.monitor.clone());
    {
        let watched = fleet.clone();
        let children: crate::monitor::Children = Box::new(move || {
            watched
                .view()
                .upstreams
                .iter()
                .flat_map(|u| u.child_pids())
                .collect()
        });
        supervisors.spawn(
            monitor
                .clone()
                .run(registry.clone(), children, upstream_stop.clone()),
        );
    }
    if let Some(path) = config.config_path.clone() {
        supervisors.spawn(crate::reload::watch(
            path,
            fleet.clone(),
            config.servers.clone(),
            upstream_stop.clone(),
            config.hot_reload,
        ));
    } else {
        supervisors.spawn(ignore_hangups(upstream_stop.clone()));
    }
    let state = AppState::new(config.clone(), fleet.clone(), registry.clone(), monitor);
    let app = router(state.clone());
    let token = shutdown.clone();
    let drain = config.drain_timeout;
    let server = tokio::spawn(async move {
        let served = crate::http::server::serve(listener, app, limits, token.clone());
        // Requests in flight get a bounded time to finish; a hung one cannot hold shutdown.
        let result = tokio::select! {
            () = served => Ok(()),
            _ = async { token.cancelled().await; tokio::time::sleep(drain).await } => {
                tracing::warn!(drain = ?drain, "calls still in flight after the drain timeout; closing their sessions");
                Ok(())
            }
        };
        upstream_stop.cancel();
        let stopped = async { while supervisors.join_next().await.is_some() {} };
        if tokio::time::timeout(STOP_GRACE, stopped).await.is_err() {
            supervisors.abort_all();
            while supervisors.join_next().await.is_some() {}
        }
        if !fleet.stopped(STOP_GRACE).await {
            tracing::warn!("some upstreams did not stop in time; aborted them");
        }
        result
    });
    Ok(RunningProxy {
        addr: local,
        state,
        shutdown,
        server,
    })
}

/// The server's limits, with the connection cap lowered to what the open-file limit can hold
/// (raised to its hard limit first): each connection is a descriptor, and so is every pipe to
/// a stdio server and every upstream connection, for which a quarter is kept.
fn server_limits(config: &ServeConfig) -> ServerLimits {
    let mut limits = ServerLimits {
        header_timeout: config.header_timeout,
        max_connections: config.max_connections,
        max_shedding: crate::http::server::SHED_AT_ONCE,
    };
    if let Some(files) = crate::net::raise_fd_limit() {
        let files = usize::try_from(files).unwrap_or(usize::MAX);
        limits.max_shedding = limits.max_shedding.min(files / 8).max(1);
        let room = (files / 4 * 3).saturating_sub(limits.max_shedding).max(1);
        if room < limits.max_connections {
            tracing::warn!(
                open_file_limit = files,
                max_connections = room,
                "the open-file limit holds fewer connections than --max-connections; capped lower"
            );
            limits.max_connections = room;
        }
    }
    limits
}

/// Without a config file there is nothing to reload: a SIGHUP (a closed terminal, a
/// `systemctl reload`) is logged, not fatal.
async fn ignore_hangups(stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        return;
    };
    loop {
        tokio::select! {
            got = hangups.recv() => if got.is_none() { return },
            _ = stop.cancelled() => return,
        }
        tracing::info!(
            "SIGHUP: no config file to read again (servers came from the command line); ignored"
        );
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
                _ = int.recv() => tracing::info!("SIGINT received; shutting down"),
            }
        }
        _ => {
            tracing::error!("cannot install signal handlers; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
