//! Receiving the authorization server's redirect: a loopback listener on
//! `127.0.0.1:{callback_port}` (path `/callback`), or, with `use_loopback: false`, the
//! redirect URL pasted on the proxy's standard input, as mcpo asks for it.
//!
//! Every server defaults to port 3030, and several may be waiting for a person at once, so a
//! port has one listener shared by the flows waiting on it, each found by its `state`. The
//! listener lives as long as a flow waits on it and frees the port when the last one is done.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Html;
use axum::routing::get;
use tokio::sync::{broadcast, oneshot};
use tokio_util::sync::CancellationToken;

/// What the authorization server sent the browser back with.
#[derive(Debug)]
pub enum Redirect {
    /// Approved: the code to exchange, the state it answers, and the issuer (RFC 9207).
    Code {
        code: String,
        state: String,
        issuer: Option<String>,
    },
    /// Refused or failed (RFC 6749 4.1.2.1); `error` is the error code.
    Refused {
        error: String,
        description: Option<String>,
    },
}

/// How long a port that another listener is still releasing is tried again.
const BIND_RETRY: Duration = Duration::from_millis(100);
const BIND_ATTEMPTS: u32 = 30;

type Flows = Arc<Mutex<HashMap<String, oneshot::Sender<Redirect>>>>;

/// The listener of one port, shared by the flows waiting on it.
struct Listener {
    flows: Flows,
    stop: CancellationToken,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Listeners by port. Weak: a listener ends when its last flow stops waiting.
static LISTENERS: LazyLock<Mutex<HashMap<u16, Weak<Listener>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// A flow waiting for its redirect; dropping it stops the wait (and, for the last flow on a
/// port, the listener).
pub struct Waiting {
    rx: oneshot::Receiver<Redirect>,
    state: String,
    listener: Option<Arc<Listener>>,
}

impl Waiting {
    /// Resolves with the redirect, or with `None` if its source went away.
    pub async fn redirect(&mut self) -> Option<Redirect> {
        (&mut self.rx).await.ok()
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(listener) = &self.listener {
            listener
                .flows
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&self.state);
        }
    }
}

/// Starts waiting for the redirect that carries `state` on the loopback listener of `port`,
/// starting the listener if no flow is waiting on that port yet.
pub async fn on_loopback(port: u16, state: &str) -> std::io::Result<Waiting> {
    let listener = shared_listener(port).await?;
    let (tx, rx) = oneshot::channel();
    listener
        .flows
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(state.to_string(), tx);
    Ok(Waiting {
        rx,
        state: state.to_string(),
        listener: Some(listener),
    })
}

async fn shared_listener(port: u16) -> std::io::Result<Arc<Listener>> {
    let mut attempt = 0;
    loop {
        let existing = LISTENERS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&port)
            .and_then(Weak::upgrade);
        if let Some(listener) = existing {
            return Ok(listener);
        }
        match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            Ok(socket) => {
                let listener = Arc::new(Listener {
                    flows: Arc::default(),
                    stop: CancellationToken::new(),
                });
                serve(socket, listener.flows.clone(), listener.stop.clone());
                LISTENERS
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(port, Arc::downgrade(&listener));
                tracing::debug!(port, "listening for OAuth redirects");
                return Ok(listener);
            }
            // The listener of a flow that just ended may still be letting go of the port, or a
            // flow of another server may be binding it this instant.
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempt < BIND_ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(BIND_RETRY).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Serves `/callback` until `stop`. The task ends with the listener's last flow.
fn serve(socket: tokio::net::TcpListener, flows: Flows, stop: CancellationToken) {
    let app = axum::Router::new()
        .route("/callback", get(callback))
        .with_state(flows);
    tokio::spawn(async move {
        let served = axum::serve(socket, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "the OAuth redirect listener failed");
        }
    });
}

async fn callback(
    State(flows): State<Flows>,
    Query(query): Query<HashMap<String, String>>,
) -> (StatusCode, Html<String>) {
    let Some(state) = query.get("state") else {
        return page(
            StatusCode::BAD_REQUEST,
            false,
            "This is not an authorization redirect (it has no state).",
        );
    };
    let sender = flows
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(state);
    let Some(sender) = sender else {
        return page(
            StatusCode::BAD_REQUEST,
            false,
            "This authorization is unknown or already finished. Open the newest authorization \
             URL shown by the proxy (on its standard error, or in /diagnostics).",
        );
    };
    let redirect = match (query.get("code"), query.get("error")) {
        (Some(code), None) => Redirect::Code {
            code: code.clone(),
            state: state.clone(),
            issuer: query.get("iss").cloned(),
        },
        (_, Some(error)) => Redirect::Refused {
            error: error.clone(),
            description: query.get("error_description").cloned(),
        },
        (None, None) => Redirect::Refused {
            error: "invalid_request".into(),
            description: Some("the redirect carries neither a code nor an error".into()),
        },
    };
    let refused = match &redirect {
        Redirect::Refused { error, description } => Some(format!(
            "The authorization server refused: {}.",
            description.as_deref().unwrap_or(error)
        )),
        Redirect::Code { .. } => None,
    };
    let _ = sender.send(redirect);
    match refused {
        Some(message) => page(StatusCode::BAD_REQUEST, false, &message),
        None => page(
            StatusCode::OK,
            true,
            "The proxy received the authorization and is connecting to the server. You can close this tab.",
        ),
    }
}

/// The small page the browser shows. Text from the query is escaped: the authorization
/// server's error description reaches this page from a URL anyone can craft.
fn page(status: StatusCode, ok: bool, message: &str) -> (StatusCode, Html<String>) {
    let title = if ok {
        "Authorization successful"
    } else {
        "Authorization failed"
    };
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title} - mcpo</title></head>\
         <body style=\"font-family:sans-serif;max-width:40em;margin:4em auto\"><h2>{title}</h2><p>{}</p></body></html>",
        crate::html::escape(message)
    );
    (status, Html(body))
}

/// Lines typed on the proxy's standard input, read by one thread for every flow that waits on
/// it. A thread, not tokio's stdin: a blocking read that never ends would hold up the
/// runtime's shutdown, and a thread left blocked ends with the process.
fn stdin_lines() -> broadcast::Sender<String> {
    static LINES: OnceLock<broadcast::Sender<String>> = OnceLock::new();
    LINES
        .get_or_init(|| {
            let (tx, _) = broadcast::channel(16);
            let lines = tx.clone();
            let spawned = std::thread::Builder::new()
                .name("mcpo-oauth-stdin".into())
                .spawn(move || {
                    for line in std::io::stdin().lines() {
                        let Ok(line) = line else { break };
                        let _ = lines.send(line);
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot read standard input for OAuth redirects");
            }
            tx
        })
        .clone()
}

/// Starts waiting for the redirect URL that carries `state` to be pasted on standard input.
/// Lines that are another flow's redirect are left to it.
pub fn on_stdin(state: &str) -> Waiting {
    let mut lines = stdin_lines().subscribe();
    let (tx, rx) = oneshot::channel();
    let wanted = state.to_string();
    tokio::spawn(async move {
        let mut tx = Some(tx);
        loop {
            let line = tokio::select! {
                line = lines.recv() => line,
                // The flow stopped waiting (timed out, or the proxy is stopping).
                _ = async { if let Some(t) = tx.as_mut() { t.closed().await } } => return,
            };
            let line = match line {
                Ok(line) => line,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let Some(redirect) = parse_pasted(line.trim()) else {
                continue;
            };
            let matches = match &redirect {
                Redirect::Code { state, .. } => *state == wanted,
                Redirect::Refused { .. } => true,
            };
            if matches && let Some(tx) = tx.take() {
                let _ = tx.send(redirect);
                return;
            }
        }
    });
    Waiting {
        rx,
        state: state.to_string(),
        listener: None,
    }
}

/// A pasted redirect URL: `...?code=..&state=..` or `...?error=..`.
fn parse_pasted(line: &str) -> Option<Redirect> {
    let url = reqwest::Url::parse(line).ok()?;
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    match (query.get("code"), query.get("state"), query.get("error")) {
        (Some(code), Some(state), None) => Some(Redirect::Code {
            code: code.clone(),
            state: state.clone(),
            issuer: query.get("iss").cloned(),
        }),
        (_, _, Some(error)) => Some(Redirect::Refused {
            error: error.clone(),
            description: query.get("error_description").cloned(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasted_redirects() {
        assert!(matches!(
            parse_pasted("http://localhost:3030/callback?code=abc&state=s1"),
            Some(Redirect::Code { code, state, issuer: None }) if code == "abc" && state == "s1"
        ));
        assert!(matches!(
            parse_pasted("http://localhost:3030/callback?error=access_denied"),
            Some(Redirect::Refused { error, .. }) if error == "access_denied"
        ));
        assert!(parse_pasted("not a url").is_none());
        assert!(parse_pasted("http://localhost:3030/callback?state=s1").is_none());
    }

    #[test]
    fn pages_escape_what_they_repeat() {
        let (_, Html(body)) = page(StatusCode::BAD_REQUEST, false, "<script>x</script>");
        assert!(!body.contains("<script>") && body.contains("&lt;script&gt;"));
    }

    #[tokio::test]
    async fn flows_on_one_port_share_a_listener_and_get_their_own_redirect() {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let mut a = on_loopback(port, "state-a").await.unwrap();
        let mut b = on_loopback(port, "state-b").await.unwrap();
        let get = |q: &str| reqwest::get(format!("http://127.0.0.1:{port}/callback?{q}"));
        let r = get("code=cb&state=state-b").await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(matches!(b.redirect().await, Some(Redirect::Code { code, .. }) if code == "cb"));
        let r = get("code=x&state=unknown").await.unwrap();
        assert_eq!(r.status(), 400);
        let r = get("error=access_denied&error_description=%3Cb%3Eno&state=state-a")
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert!(!r.text().await.unwrap().contains("<b>"));
        assert!(matches!(a.redirect().await, Some(Redirect::Refused { .. })));
        drop((a, b));
        // The last flow gone, the port is free again.
        let mut freed = false;
        for _ in 0..50 {
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                freed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(freed, "the listener kept port {port}");
    }
}
