//! The proxy's HTTP server: the accept loop, what one connection may cost, and the drain.
//!
//! axum's own `serve` gives hyper no timer, so hyper's header-read deadline never applied:
//! 250 connections stopped halfway through their headers stayed open for as long as their
//! clients liked, and under a low file limit a normal client was refused. Here every
//! connection is served by hyper's HTTP/1 server with a timer, so:
//! - a client has `header_timeout` to send a request's head, and a keep-alive connection
//!   that sends nothing for as long is closed (hyper starts the same deadline whenever it
//!   waits for the next head);
//! - at most `max_connections` are served at once; past that a connection is answered `503`
//!   with `Retry-After` and closed (shedding that answers, so clients and balancers see why);
//!   while every shedding slot is busy, new connections wait in the backlog;
//! - running out of file descriptors stops accepting until a connection closes (back-pressure
//!   in the kernel's backlog), with one log line when it starts and one when it ends, not one
//!   per failed accept.
//!
//! Bodies have a deadline of their own (`http::body`), and TLS handshakes theirs (`net`).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::net::AcceptErrors;
use tower::ServiceExt as _;

/// What one connection may cost, and how many there may be.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Time to send a request's head, and the longest a keep-alive connection may sit idle.
    pub header_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections over the cap being answered 503 at once; past that they wait in the backlog.
    /// Each costs a file descriptor for at most [`SHED_WITHIN`].
    pub max_shedding: usize,
}

/// Connections being answered 503 at once at most, unless the open-file limit asks for fewer.
pub const SHED_AT_ONCE: usize = 64;
/// How long shedding one connection may take (write the answer, read what came).
const SHED_WITHIN: Duration = Duration::from_secs(1);
/// How long a shed connection waits, after its answer, for the client's side to close.
const SHED_LINGER: Duration = Duration::from_millis(100);

/// The answer to a connection over the cap.
const SHED_ANSWER: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 83\r\n\
\r\n\
{\"detail\":{\"message\":\"the proxy has too many open connections; try again shortly\"}}";

/// Where connections come from.
pub enum Listener {
    Plain(TcpListener),
    Tls(crate::net::TlsIncoming),
}

/// One accepted connection, plain or TLS.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Listener {
    /// The next connection. Errors of one connection are skipped; running out of file
    /// descriptors waits until `freed` says a connection closed (or a short while).
    async fn accept(&mut self, errors: &mut AcceptErrors, freed: &Notify) -> (Conn, SocketAddr) {
        loop {
            let accepted = match self {
                Listener::Plain(l) => l.accept().await.map(|(s, peer)| {
                    if let Err(e) = s.set_nodelay(true) {
                        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                    }
                    (Conn::Plain(s), peer)
                }),
                Listener::Tls(l) => {
                    let (s, peer) = l.accept().await;
                    Ok((Conn::Tls(Box::new(s)), peer))
                }
            };
            match accepted {
                Ok(conn) => return conn,
                Err(e) => errors.wait_after(e, freed).await,
            }
        }
    }
}

/// Serves `app` on `listener` within `limits` until `stop` is cancelled; then stops accepting
/// (the socket closes) and resolves once the connections are done: idle ones are closed at
/// once, busy ones after their answer.
pub async fn serve(
    mut listener: Listener,
    app: axum::Router,
    limits: ServerLimits,
    stop: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let shedding = Arc::new(Semaphore::new(limits.max_shedding));
    let freed = Arc::new(Notify::new());
    let mut errors = AcceptErrors::default();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    loop {
        let (conn, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept(&mut errors, &freed) => accepted,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Every shedding slot busy: wait for one (each is done within SHED_WITHIN), and
            // let the backlog hold the connections behind this one.
            let Ok(permit) = shedding.clone().acquire_owned().await else {
                break;
            };
            tokio::spawn(async move {
                let _ = tokio::time::timeout(SHED_WITHIN, shed(conn)).await;
                drop(permit);
            });
            continue;
        };
        let service =
            app.clone()
                .map_request(move |request: http::Request<hyper::body::Incoming>| {
                    let mut request = request.map(axum::body::Body::new);
                    request.extensions_mut().insert(ConnectInfo(peer));
                    request
                });
        let connection =
            builder.serve_connection(TokioIo::new(conn), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        let freed = freed.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(slot);
            freed.notify_one();
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Answers a connection over the cap with a 503 and closes it, quickly: a silent client is
/// answered at once, and a client that sent a request has it read (as far as it came) before
/// the close, so the close does not reset the connection before the answer is read.
async fn shed(mut conn: Conn) {
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(1), conn.read(&mut buf)).await;
    if conn.write_all(SHED_ANSWER).await.is_ok() {
        let _ = conn.shutdown().await;
        let drain = async { while matches!(conn.read(&mut buf).await, Ok(n) if n > 0) {} };
        let _ = tokio::time::timeout(SHED_LINGER, drain).await;
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shed_answer_says_its_length() {
        let text = std::str::from_utf8(SHED_ANSWER).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let parsed: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(parsed["detail"]["message"].is_string());
    }
}
