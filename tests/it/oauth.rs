//! OAuth 2.1 against a streamable-HTTP server: a small authorization server and a resource
//! server that demands its bearer tokens, both run by the test on 127.0.0.1, in front of the
//! fake MCP server. The test plays the person with the browser: it reads the authorization
//! URL from `/diagnostics`, opens it, and follows the redirect to the proxy's callback.

use crate::common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use base64::Engine as _;
use common::{FakeHttp, Proxy, closed_loop, eventually, tempdir::TempDir};
use serde_json::{Value, json};
use sha2::Digest as _;

const KEY: &str = "oauth-test-key";
/// Access tokens live this long: a few expire during the test's load.
const TOKEN_LIFETIME: Duration = Duration::from_secs(2);

/// What the authorization server has issued and seen.
#[derive(Default)]
struct Issued {
    clients: HashMap<String, Vec<String>>,
    /// code -> (client, PKCE challenge, redirect URI)
    codes: HashMap<String, (String, String, String)>,
    access: HashMap<String, Instant>,
    /// refresh token -> client
    refresh: HashMap<String, String>,
    /// Every secret handed out, to look for in the proxy's logs and answers.
    secrets: Vec<String>,
}

struct AuthState {
    base: String,
    upstream: String,
    http: reqwest::Client,
    issued: Mutex<Issued>,
    next: AtomicUsize,
    registrations: AtomicUsize,
    authorizations: AtomicUsize,
    code_grants: AtomicUsize,
    refresh_grants: AtomicUsize,
    refused_bearers: AtomicUsize,
}

impl AuthState {
    fn secret(&self, kind: &str) -> String {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let s = format!("{kind}{n}x{nanos:08x}");
        self.issued.lock().unwrap().secrets.push(s.clone());
        s
    }

    fn secrets(&self) -> Vec<String> {
        self.issued.lock().unwrap().secrets.clone()
    }
}

/// The authorization server and the resource server in front of the fake, on one port.
struct AuthServer {
    state: Arc<AuthState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AuthServer {
    async fn start(upstream: &str) -> AuthServer {
        let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = socket.local_addr().unwrap();
        let state = Arc::new(AuthState {
            base: format!("http://{addr}"),
            upstream: upstream.to_string(),
            http: reqwest::Client::new(),
            issued: Mutex::default(),
            next: AtomicUsize::new(1),
            registrations: AtomicUsize::new(0),
            authorizations: AtomicUsize::new(0),
            code_grants: AtomicUsize::new(0),
            refresh_grants: AtomicUsize::new(0),
            refused_bearers: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .route(
                "/.well-known/oauth-protected-resource",
                get(resource_metadata),
            )
            .route(
                "/.well-known/oauth-protected-resource/mcp",
                get(resource_metadata),
            )
            .route(
                "/.well-known/oauth-authorization-server",
                get(server_metadata),
            )
            .route("/register", post(register))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/mcp", any(resource))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(socket, app).await.unwrap();
        });
        AuthServer { state, task }
    }

    fn mcp_url(&self) -> String {
        format!("{}/mcp", self.state.base)
    }

    fn count(&self, which: &AtomicUsize) -> usize {
        which.load(Ordering::SeqCst)
    }

    /// Forgets every token and refresh token, as an authorization server does when a user
    /// revokes the grant.
    fn revoke_all(&self) {
        let mut issued = self.state.issued.lock().unwrap();
        issued.access.clear();
        issued.refresh.clear();
    }
}

async fn resource_metadata(State(s): State<Arc<AuthState>>) -> Response {
    axum::Json(json!({
        "resource": format!("{}/mcp", s.base),
        "authorization_servers": [s.base],
        "bearer_methods_supported": ["header"],
    }))
    .into_response()
}

async fn server_metadata(State(s): State<Arc<AuthState>>) -> Response {
    axum::Json(json!({
        "issuer": s.base,
        "authorization_endpoint": format!("{}/authorize", s.base),
        "token_endpoint": format!("{}/token", s.base),
        "registration_endpoint": format!("{}/register", s.base),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
    }))
    .into_response()
}

async fn register(State(s): State<Arc<AuthState>>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let redirect_uris: Vec<String> = request["redirect_uris"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if redirect_uris.is_empty() {
        return (StatusCode::BAD_REQUEST, "redirect_uris required").into_response();
    }
    s.registrations.fetch_add(1, Ordering::SeqCst);
    let client_id = format!("client-{}", s.next.fetch_add(1, Ordering::SeqCst));
    s.issued
        .lock()
        .unwrap()
        .clients
        .insert(client_id.clone(), redirect_uris.clone());
    let mut answer = request.clone();
    answer["client_id"] = json!(client_id);
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}

async fn authorize(
    State(s): State<Arc<AuthState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let (client, redirect, challenge) =
        (get("client_id"), get("redirect_uri"), get("code_challenge"));
    let known = s
        .issued
        .lock()
        .unwrap()
        .clients
        .get(&client)
        .is_some_and(|uris| uris.contains(&redirect));
    if !known
        || get("response_type") != "code"
        || get("code_challenge_method") != "S256"
        || challenge.is_empty()
        || get("state").is_empty()
    {
        return (StatusCode::BAD_REQUEST, "bad authorization request").into_response();
    }
    s.authorizations.fetch_add(1, Ordering::SeqCst);
    let code = s.secret("code");
    s.issued
        .lock()
        .unwrap()
        .codes
        .insert(code.clone(), (client, challenge, redirect.clone()));
    let mut location = reqwest::Url::parse(&redirect).unwrap();
    location
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &get("state"));
    (
        StatusCode::FOUND,
        [(header::LOCATION, location.to_string())],
    )
        .into_response()
}

fn token_error(error: &str) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({"error": error}))).into_response()
}

async fn token(State(s): State<Arc<AuthState>>, body: Bytes) -> Response {
    let form: HashMap<String, String> =
        reqwest::Url::parse(&format!("http://form/?{}", String::from_utf8_lossy(&body)))
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    let client = match get("grant_type").as_str() {
        "authorization_code" => {
            let Some((client, challenge, redirect)) =
                s.issued.lock().unwrap().codes.remove(&get("code"))
            else {
                return token_error("invalid_grant");
            };
            let verifier_hash = sha2::Sha256::digest(get("code_verifier").as_bytes());
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(verifier_hash);
            if computed != challenge
                || redirect != get("redirect_uri")
                || client != get("client_id")
            {
                return token_error("invalid_grant");
            }
            s.code_grants.fetch_add(1, Ordering::SeqCst);
            client
        }
        "refresh_token" => {
            // Refresh tokens rotate: the one used is spent.
            let Some(client) = s
                .issued
                .lock()
                .unwrap()
                .refresh
                .remove(&get("refresh_token"))
            else {
                return token_error("invalid_grant");
            };
            if client != get("client_id") {
                return token_error("invalid_grant");
            }
            s.refresh_grants.fetch_add(1, Ordering::SeqCst);
            client
        }
        _ => return token_error("unsupported_grant_type"),
    };
    let access = s.secret("at");
    let refresh = s.secret("rt");
    {
        let mut issued = s.issued.lock().unwrap();
        issued
            .access
            .insert(access.clone(), Instant::now() + TOKEN_LIFETIME);
        issued.refresh.insert(refresh.clone(), client);
    }
    axum::Json(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME.as_secs(),
        "refresh_token": refresh,
    }))
    .into_response()
}

/// The MCP endpoint: a valid, unexpired bearer token, or 401 with the challenge the MCP spec
/// asks for. Valid requests are passed to the fake, answers streamed back.
async fn resource(
    State(s): State<Arc<AuthState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let valid = bearer.as_ref().is_some_and(|t| {
        s.issued
            .lock()
            .unwrap()
            .access
            .get(t)
            .is_some_and(|expires| Instant::now() < *expires)
    });
    if !valid {
        s.refused_bearers.fetch_add(1, Ordering::SeqCst);
        let challenge = format!(
            "Bearer error=\"invalid_token\", resource_metadata=\"{}/.well-known/oauth-protected-resource\"",
            s.base
        );
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, challenge)],
        )
            .into_response();
    }
    let url = format!(
        "{}{}",
        s.upstream,
        uri.path_and_query().map_or("/mcp", |p| p.as_str())
    );
    let mut request = s.http.request(method, url).body(body);
    for (name, value) in &headers {
        if !matches!(
            name.as_str(),
            "host" | "authorization" | "content-length" | "connection"
        ) {
            request = request.header(name, value);
        }
    }
    let answer = match request.send().await {
        Ok(a) => a,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        if !matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            response = response.header(name, value);
        }
    }
    response
        .body(Body::from_stream(answer.bytes_stream()))
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(auth: &AuthServer, port: u16, storage: &str) -> Value {
    json!({"mcpServers": {"remote": {
        "type": "streamable-http",
        "url": auth.mcp_url(),
        "oauth": {
            "server_url": auth.mcp_url(),
            "client_metadata": {"client_name": "mcpo oauth test"},
            "callback_port": port,
            "use_loopback": true,
            "storage_type": storage,
        },
    }}})
}

fn keyed_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        format!("Bearer {KEY}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The authorization URL of `remote`, once the proxy shows it to a client with the key.
async fn authorize_url(proxy: &Proxy) -> String {
    eventually(
        "the authorization URL in /diagnostics",
        Duration::from_secs(60),
        async || {
            let (_, d) = proxy.get_with_key("/diagnostics", KEY).await;
            d["servers"]["remote"]["oauth"]["authorize_url"]
                .as_str()
                .filter(|u| u.starts_with("http"))
                .map(str::to_string)
        },
    )
    .await
}

/// Does what a browser does: opens the URL, and follows the redirect to the callback.
async fn approve(url: &str) {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = browser.get(url).send().await.unwrap();
    assert_eq!(r.status(), 302, "{:?}", r.text().await);
    let callback = r.headers()[header::LOCATION].to_str().unwrap().to_string();
    assert!(callback.starts_with("http://localhost:"), "{callback}");
    let page = browser.get(&callback).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("successful"));
}

async fn call_echo(client: &reqwest::Client, proxy: &Proxy) -> (u16, Value) {
    let r = client
        .post(proxy.url("/remote/echo"))
        .json(&json!({"message": "hi"}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn assert_no_secret(what: &str, text: &str, secrets: &[String]) {
    for s in secrets {
        assert!(!text.contains(s.as_str()), "{what} contains the secret {s}");
    }
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The whole life of an authorization: the flow, calls through two token expiries with no
/// failure, files kept private, a restart that reuses the stored token, and no secret in any
/// log line or answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn authorizes_refreshes_and_reuses_the_stored_token() {
    let fake = FakeHttp::start("oauth");
    let auth = AuthServer::start(fake.base()).await;
    let home = TempDir::new();
    let tokens = home.path().join("tokens");
    let tokens_env = tokens.display().to_string();
    let port = free_port();
    let config = config(&auth, port, "file");
    let env = [
        ("MCPO_OAUTH_DIR", tokens_env.as_str()),
        ("LOG_LEVEL", "DEBUG"),
    ];
    let (proxy, log) = Proxy::start_logged(&config, &["--api-key", KEY], &env);
    let client = keyed_client();

    let started = Instant::now();
    let url = authorize_url(&proxy).await;
    // Only a client with the key sees the URL.
    let (_, open) = proxy.get("/diagnostics").await;
    assert_eq!(
        open["servers"]["remote"]["oauth"]["state"],
        "needs_authorization"
    );
    assert!(!open.to_string().contains(&url));
    // Calls are answered at once, saying what to do.
    let t = Instant::now();
    let (status, body) = call_echo(&client, &proxy).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.to_string().contains("waiting for OAuth authorization"),
        "{body}"
    );
    assert!(t.elapsed() < Duration::from_secs(2));

    approve(&url).await;
    proxy
        .wait_ok("/remote/openapi.json", Duration::from_secs(30))
        .await;
    println!("authorized and connected in {:?}", started.elapsed());
    assert_eq!(auth.count(&auth.state.registrations), 1);
    assert_eq!(auth.count(&auth.state.code_grants), 1);

    // A steady closed loop across at least two expiries of the 2 s tokens.
    let refused_before = auth.count(&auth.state.refused_bearers);
    let shots = closed_loop(
        &client,
        &proxy.url("/remote/echo"),
        json!({"message": "hi"}),
        4,
        Duration::from_millis(6500),
    )
    .await;
    let failed: Vec<_> = shots.iter().filter(|s| s.status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} calls failed, first: {:?}",
        failed.len(),
        shots.len(),
        failed.first()
    );
    let refreshes = auth.count(&auth.state.refresh_grants);
    println!(
        "{} calls, {refreshes} refreshes, {} refused bearers",
        shots.len(),
        auth.count(&auth.state.refused_bearers)
    );
    assert!(refreshes >= 2, "only {refreshes} refresh grants");
    assert!(shots.len() > 20);
    // Tokens are refreshed before they expire: the server never had to refuse one (a proxy
    // that refreshed only after a 401 would be refused once per expiry).
    let refused = auth.count(&auth.state.refused_bearers) - refused_before;
    assert_eq!(refused, 0, "{refused} bearers refused during the loop");

    // Kept where mcpo keeps them, private.
    let token_file = tokens.join("2c18e486_tokens.json");
    let client_file = tokens.join("2c18e486_client.json");
    assert_eq!(mode(&tokens), 0o700);
    assert_eq!(mode(&token_file), 0o600);
    assert_eq!(mode(&client_file), 0o600);
    let stored: Value = serde_json::from_slice(&std::fs::read(&token_file).unwrap()).unwrap();
    assert_eq!(stored["token_type"], "Bearer");
    assert!(stored["refresh_token"].is_string());

    let (_, diagnostics) = proxy.get_with_key("/diagnostics", KEY).await;
    assert_eq!(
        diagnostics["servers"]["remote"]["oauth"]["state"],
        "authorized"
    );
    let secrets = auth.state.secrets();
    assert_no_secret("/diagnostics", &diagnostics.to_string(), &secrets);
    assert_no_secret("a call's answer", &shots[0].body, &secrets);
    // The log lives in the proxy's temporary directory: read it before the proxy goes.
    let text = std::fs::read_to_string(&log).unwrap();
    drop(proxy);
    assert!(text.contains("needs OAuth authorization"));
    assert_no_secret("the proxy's log", &text, &secrets);

    // A restart uses the stored token (refreshing it: it has expired by now), with no person.
    let (proxy, log) = Proxy::start_logged(&config, &["--api-key", KEY], &env);
    let restarted = Instant::now();
    proxy
        .wait_ok("/remote/openapi.json", Duration::from_secs(30))
        .await;
    println!("restarted and connected in {:?}", restarted.elapsed());
    let (status, body) = call_echo(&client, &proxy).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(auth.count(&auth.state.authorizations), 1);
    assert_eq!(auth.count(&auth.state.registrations), 1);
    let text = std::fs::read_to_string(&log).unwrap();
    drop(proxy);
    assert!(!text.contains("needs OAuth authorization"), "{text}");
    assert_no_secret("the restarted proxy's log", &text, &auth.state.secrets());
}

/// A grant the authorization server revoked sends the server back to a person: the refused
/// refresh makes the proxy ask again, and calls work once the person approves.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_grant_is_authorized_again_and_memory_storage_writes_no_file() {
    let fake = FakeHttp::start("oauth-revoke");
    let auth = AuthServer::start(fake.base()).await;
    let home = TempDir::new();
    let tokens = home.path().join("tokens");
    let tokens_env = tokens.display().to_string();
    let config = config(&auth, free_port(), "memory");
    let proxy = Proxy::start_with_env(
        &config,
        &["--api-key", KEY],
        &[("MCPO_OAUTH_DIR", tokens_env.as_str())],
    );
    let client = keyed_client();
    approve(&authorize_url(&proxy).await).await;
    proxy
        .wait_ok("/remote/openapi.json", Duration::from_secs(30))
        .await;
    assert_eq!(call_echo(&client, &proxy).await.0, 200);

    auth.revoke_all();
    // The next call meets the refused token; after it the proxy asks a person again.
    let (status, _) = call_echo(&client, &proxy).await;
    assert_ne!(status, 200);
    let url = authorize_url(&proxy).await;
    let (status, body) = call_echo(&client, &proxy).await;
    assert_eq!(status, 503, "{body}");
    approve(&url).await;
    eventually("calls work again", Duration::from_secs(30), async || {
        (call_echo(&client, &proxy).await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(auth.count(&auth.state.authorizations), 2);
    // The registered client is kept: only the grant was renewed.
    assert_eq!(auth.count(&auth.state.registrations), 1);
    assert!(
        !tokens.exists(),
        "memory storage wrote {}",
        tokens.display()
    );
}

/// Lost-session handling still works under the OAuth layer: the fake behind the resource
/// server restarts and forgets the session, and calls go on with the same grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_session_behind_oauth_is_replaced_without_a_new_authorization() {
    let fake = FakeHttp::start("oauth-restart");
    let fake_port = fake.port();
    let auth = AuthServer::start(fake.base()).await;
    let config = config(&auth, free_port(), "memory");
    let proxy = Proxy::start(&config, &["--api-key", KEY]);
    let client = keyed_client();
    approve(&authorize_url(&proxy).await).await;
    proxy
        .wait_ok("/remote/openapi.json", Duration::from_secs(30))
        .await;
    assert_eq!(call_echo(&client, &proxy).await.0, 200);

    drop(fake);
    let _fake = FakeHttp::start_on("oauth-restart", fake_port);
    // The restarted fake does not know our session (404): a new one is opened and the call
    // sent again, which is always safe. `echo` is idempotent besides: no call may fail.
    for i in 0..5 {
        let (status, body) = call_echo(&client, &proxy).await;
        assert_eq!(status, 200, "call {i} after the restart: {body}");
    }
    assert_eq!(auth.count(&auth.state.authorizations), 1);
    let (_, d) = proxy.get_with_key("/diagnostics", KEY).await;
    assert_eq!(d["servers"]["remote"]["oauth"]["state"], "authorized");
    assert!(
        d["servers"]["remote"]["restarts"].as_u64().unwrap_or(0) >= 1,
        "{d}"
    );
}
