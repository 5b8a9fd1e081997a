//! Listening sockets of this binary (the proxy's and the fake server's), set up alike.
//!
//! Every accepted connection gets `TCP_NODELAY`. Answers are written in several small pieces
//! (rmcp writes each SSE event on its own), and without it Nagle's algorithm holds the last
//! piece until the peer's delayed ACK, about 40 ms later: every call would stall that long.

use std::net::SocketAddr;

use axum::serve::{ListenerExt as _, TapIo};
use tokio::net::{TcpListener, TcpStream};

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
