//! Listening sockets of this binary (the proxy's and the fake server's), set up alike, and the
//! proxy's HTTPS listener.
//!
//! Every accepted connection gets `TCP_NODELAY`. Answers are written in several small pieces
//! (rmcp writes each SSE event on its own), and without it Nagle's algorithm holds the last
//! piece until the peer's delayed ACK, about 40 ms later: every call would stall that long.
//!
//! The HTTPS listener hands the proxy's server (`http::server`) connections whose TLS
//! handshake is already done, so HTTP and HTTPS are served alike. Handshakes run in their own
//! tasks, each under a deadline, and a client that opens a connection and then says nothing
//! must not hold up the others.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::collections::VecDeque;

use axum::serve::{ListenerExt as _, TapIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A listener whose accepted connections have `TCP_NODELAY` set.
pub type Listener = TapIo<TcpListener, fn(&mut TcpStream)>;

fn no_delay(stream: &mut TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY on an accepted connection");
    }
}

/// Binds `addr` and returns the listener and the address it got (port 0 picks a free one).
pub async fn bind(addr: &str) -> std::io::Result<(Listener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener.tap_io(no_delay as fn(&mut TcpStream)), local))
}

/// How long a client gets to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes under way at once at most (a flood of silent clients costs bounded memory);
/// beyond that a new connection takes the oldest one's place.
const MAX_HANDSHAKES: usize = 1024;

/// Connections whose handshake is done, from the acceptor task.
pub struct TlsIncoming {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    /// Dropping the listener (the server does when it stops accepting) ends the acceptor
    /// task, which closes the socket and abandons the handshakes under way.
    acceptor: tokio::task::AbortHandle,
}

impl Drop for TlsIncoming {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl TlsIncoming {
    /// The next connection whose handshake is done.
    pub async fn accept(&mut self) -> (TlsStream<TcpStream>, SocketAddr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            None => {
                // Only if the acceptor task is gone, which it never is while we exist.
                tracing::error!("the HTTPS acceptor stopped; no new connections are accepted");
                std::future::pending().await
            }
        }
    }
}

/// Binds `addr` for HTTPS with `config` and returns the listener and the address it got.
pub async fn bind_tls(
    addr: &str,
    config: Arc<rustls::ServerConfig>,
) -> std::io::Result<(TlsIncoming, SocketAddr)> {
    let tcp = TcpListener::bind(addr).await?;
    let local = tcp.local_addr()?;
    let (tx, ready) = mpsc::channel(64);
    let acceptor = tokio::spawn(accept_tls(tcp, TlsAcceptor::from(config), tx)).abort_handle();
    Ok((TlsIncoming { ready, acceptor }, local))
}

/// Accepts TCP connections and runs each handshake in a task of its own; the handshakes are
/// owned here, so they end with this task. When [`MAX_HANDSHAKES`] are under way, a new
/// connection takes the place of the oldest: silent clients that fill every slot cannot keep
/// a real one waiting, since a real handshake takes milliseconds and a flood would have to
/// open thousands of connections in that time to push it out.
async fn accept_tls(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let mut handshakes = JoinSet::new();
    let mut oldest: VecDeque<tokio::task::AbortHandle> = VecDeque::new();
    let mut errors = AcceptErrors::default();
    // Nothing tells this task when a served connection closes; out of descriptors it retries.
    let never = tokio::sync::Notify::new();
    loop {
        tokio::select! {
            () = ready.closed() => return,
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {
                oldest.retain(|h| !h.is_finished());
            }
            accepted = tcp.accept() => {
                let (mut stream, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        errors.wait_after(e, &never).await;
                        continue;
                    }
                };
                if handshakes.len() >= MAX_HANDSHAKES {
                    oldest.retain(|h| !h.is_finished());
                    if let Some(evicted) = oldest.pop_front() {
                        evicted.abort();
                        tracing::debug!("TLS handshakes at their maximum; the oldest gave way");
                    }
                }
                // Before the handshake, so that its flights are not held back either.
                no_delay(&mut stream);
                let (acceptor, ready) = (acceptor.clone(), ready.clone());
                let handle = handshakes.spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = ready.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
                oldest.push_back(handle);
            }
        }
    }
}

/// Accept errors, told at most once per [`FD_WARN_EVERY`] rather than once per failed accept.
#[derive(Default)]
pub struct AcceptErrors {
    fd_warned_at: Option<std::time::Instant>,
    /// Accepts put off for lack of descriptors since the last warning.
    deferred: u64,
}

/// How long to wait, out of file descriptors, before trying to accept again if no connection
/// closes first.
const FD_RETRY: Duration = Duration::from_millis(250);
/// Lack of descriptors is warned about at most this often.
const FD_WARN_EVERY: Duration = Duration::from_secs(10);

impl AcceptErrors {
    /// Waits as the error asks: not at all for a connection that went away before it was
    /// accepted; until a connection closes (`freed`) or [`FD_RETRY`] when out of file
    /// descriptors, so the backlog holds the rest (back-pressure); a second for anything else.
    pub async fn wait_after(&mut self, e: std::io::Error, freed: &tokio::sync::Notify) {
        use std::io::ErrorKind;
        if matches!(
            e.kind(),
            ErrorKind::ConnectionRefused
                | ErrorKind::ConnectionAborted
                | ErrorKind::ConnectionReset
        ) {
            return;
        }
        if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
            self.deferred += 1;
            if self
                .fd_warned_at
                .is_none_or(|at| at.elapsed() >= FD_WARN_EVERY)
            {
                tracing::warn!(error = %e, deferred = self.deferred,
                    "out of file descriptors: new connections wait in the backlog until one closes; raise the open-file limit or lower --max-connections");
                self.fd_warned_at = Some(std::time::Instant::now());
                self.deferred = 0;
            }
            tokio::select! {
                () = freed.notified() => {}
                () = tokio::time::sleep(FD_RETRY) => {}
            }
            return;
        }
        tracing::error!(error = %e, "cannot accept a connection; retrying in 1 s");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Raises this process's soft limit on open files to its hard limit (servers that hold many
/// connections and children need more than the usual default of 1,024); returns the soft
/// limit in force afterwards.
pub fn raise_fd_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    Some(limit.rlim_cur)
}
