//! Listening sockets of this binary (the proxy's and the fake server's), set up alike, and the
//! proxy's HTTPS listener.
//!
//! Every accepted connection gets `TCP_NODELAY`. Answers are written in several small pieces
//! (rmcp writes each SSE event on its own), and without it Nagle's algorithm holds the last
//! piece until the peer's delayed ACK, about 40 ms later: every call would stall that long.
//!
//! The HTTPS listener hands axum connections whose TLS handshake is already done, so axum's
//! own server (graceful shutdown, connect info) serves HTTP and HTTPS alike. Handshakes run
//! in their own tasks, each under a deadline: axum accepts one connection at a time, and a
//! client that opens a connection and then says nothing must not hold up the others.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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

/// Handshakes under way at once at most; beyond that, new connections wait in the kernel's
/// backlog until one finishes or times out, so a flood of silent clients costs bounded memory.
const MAX_HANDSHAKES: usize = 1024;

/// The HTTPS listener as axum sees it. The tap does nothing: wrapping in `TapIo` is what
/// gives axum's `ConnectInfo<SocketAddr>` (used by `/diagnostics`), which axum implements for
/// tapped listeners and the orphan rule does not let us implement for ours.
pub type TlsListener = TapIo<TlsIncoming, fn(&mut TlsStream<TcpStream>)>;

/// Connections whose handshake is done, from the acceptor task.
pub struct TlsIncoming {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    /// Dropping the listener (axum does when it stops accepting) ends the acceptor task, which
    /// closes the socket and abandons the handshakes under way.
    acceptor: tokio::task::AbortHandle,
}

impl Drop for TlsIncoming {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsIncoming {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            None => {
                // Only if the acceptor task is gone, which it never is while we exist.
                tracing::error!("the HTTPS acceptor stopped; no new connections are accepted");
                std::future::pending().await
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

fn already_set(_: &mut TlsStream<TcpStream>) {}

/// Binds `addr` for HTTPS with `config` and returns the listener and the address it got.
pub async fn bind_tls(
    addr: &str,
    config: Arc<rustls::ServerConfig>,
) -> std::io::Result<(TlsListener, SocketAddr)> {
    let tcp = TcpListener::bind(addr).await?;
    let local = tcp.local_addr()?;
    let (tx, ready) = mpsc::channel(64);
    let acceptor = tokio::spawn(accept_tls(tcp, TlsAcceptor::from(config), tx)).abort_handle();
    let incoming = TlsIncoming {
        ready,
        local,
        acceptor,
    };
    Ok((
        incoming.tap_io(already_set as fn(&mut TlsStream<TcpStream>)),
        local,
    ))
}

/// Accepts TCP connections and runs each handshake in a task of its own; the handshakes are
/// owned here, so they end with this task.
async fn accept_tls(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            () = ready.closed() => return,
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
            accepted = tcp.accept(), if handshakes.len() < MAX_HANDSHAKES => {
                let (mut stream, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        accept_error(e).await;
                        continue;
                    }
                };
                // Before the handshake, so that its flights are not held back either.
                no_delay(&mut stream);
                let (acceptor, ready) = (acceptor.clone(), ready.clone());
                handshakes.spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = ready.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
}

/// What axum does for its own listener: errors of one connection are nobody's business; others
/// (out of file descriptors) are logged and retried after a pause instead of spinning.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept a connection; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
