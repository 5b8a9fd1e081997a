//! OAuth 2.1 for streamable-HTTP upstreams (a server's `"oauth"` key).
//!
//! rmcp does the protocol: metadata discovery (protected resource metadata, then
//! authorization server metadata), dynamic client registration, the authorization URL with
//! PKCE and state, the code exchange, and, in its `AuthClient`, the bearer token on every
//! request, refreshed before it expires and once more when the server answers 401.
//!
//! This module adds what a proxy needs around it. A server has one [`ServerAuth`], shared by
//! its pool members, so one person authorizes once and one refresh serves every session. A
//! member asks it for an authorized HTTP client before it connects; when no usable token is
//! stored, that runs the flow: the URL to open goes to stderr and `/diagnostics`, the redirect
//! comes back to a loopback listener (or is pasted on stdin), and the wait is bounded. The
//! member shows the wait as the server being down with a message that says why, so calls are
//! answered 503 at once instead of waiting for a person. Tokens and the registered client are
//! kept per server in memory or in mcpo's files ([`store`]).
//!
//! Nothing here logs or shows a token, a code or a client secret. rmcp's own auth module logs
//! the code at debug level, which is why `main` never lets it below info.

mod callback;
mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use rmcp::transport::auth::{
    AuthClient, AuthError, AuthorizationManager, AuthorizationMetadataSource, OAuthClientConfig,
};
use tokio::sync::watch;

use super::http_client::SessionAwareClient;
use crate::config::{OAuthConfig, OAuthStorage};
use callback::Redirect;
use store::{ClientInfo, TokenStore};

/// How long a person gets to open the URL and approve: as long as mcpo waits.
pub const AUTHORIZATION_WAIT: Duration = Duration::from_secs(300);

/// What calls are answered while a person is being waited for.
pub const WAITING_MESSAGE: &str =
    "waiting for OAuth authorization: open the URL shown in /diagnostics";

/// The HTTP client of an OAuth server's sessions: bearer token added and refreshed by rmcp,
/// lost sessions seen by ours underneath.
pub type OAuthHttpClient = AuthClient<SessionAwareClient>;

/// Where a server's authorization stands, for `/diagnostics`.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthState {
    /// No connect has needed it yet.
    Idle,
    /// Discovering the authorization server, registering, or checking a stored token.
    Preparing,
    /// Waiting for a person to open `authorize_url` and approve, until `until`.
    NeedsAuthorization {
        authorize_url: String,
        until: SystemTime,
    },
    /// A token is held; rmcp refreshes it as it expires.
    Authorized,
    /// The last attempt failed (safe to show anyone); the next connect tries again.
    Failed { error: String },
}

impl AuthState {
    pub fn as_str(&self) -> &'static str {
        match self {
            AuthState::Idle => "idle",
            AuthState::Preparing => "preparing",
            AuthState::NeedsAuthorization { .. } => "needs_authorization",
            AuthState::Authorized => "authorized",
            AuthState::Failed { .. } => "failed",
        }
    }
}

/// Why a server could not be authorized. Messages are safe to show anyone: no token, code or
/// secret, URLs reduced to their origin by the caller.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("{}", describe(.0))]
    Protocol(#[from] AuthError),
    #[error(
        "no OAuth authorization within {}s; a new authorization URL is issued at the next attempt",
        .0.as_secs()
    )]
    NotAuthorized(Duration),
    #[error("the OAuth authorization server refused: {0}")]
    Refused(String),
    #[error("cannot listen for the OAuth redirect on 127.0.0.1:{port}: {source}")]
    Listen {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("OAuth discovery and registration took longer than {}s", .0.as_secs())]
    Slow(Duration),
    #[error("OAuth token storage: {0}")]
    Store(#[from] store::StoreError),
    #[error("OAuth: the authorization URL has no state")]
    NoState,
    #[error("cannot set up an HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
}

/// An rmcp auth error in words: its own message (said to be about OAuth) and, when it
/// wraps one, the cause at the bottom ("connection refused"), which rmcp's message leaves out.
fn describe(error: &AuthError) -> String {
    let top = error.to_string();
    let top = if top.starts_with("OAuth") {
        top
    } else {
        format!("OAuth: {top}")
    };
    let root = super::classify::root_cause(error);
    if top.contains(&root) {
        top
    } else {
        format!("{top} ({root})")
    }
}

/// One server's authorization, shared by its pool members.
pub struct ServerAuth {
    server: String,
    config: OAuthConfig,
    store: TokenStore,
    /// The authorized client, once there is one. Held across the flow, so members that
    /// connect meanwhile wait for the one flow instead of starting their own.
    client: tokio::sync::Mutex<Option<OAuthHttpClient>>,
    /// Set when the server refused a token that rmcp could not replace by refreshing.
    rejected: AtomicBool,
    state: watch::Sender<AuthState>,
}

impl std::fmt::Debug for ServerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerAuth")
            .field("server", &self.server)
            .field("state", &self.state.borrow().as_str())
            .finish_non_exhaustive()
    }
}

impl ServerAuth {
    pub fn new(server: &str, config: OAuthConfig) -> Arc<Self> {
        Arc::new(ServerAuth {
            server: server.to_string(),
            store: TokenStore::new(server, &config.storage),
            config,
            client: tokio::sync::Mutex::new(None),
            rejected: AtomicBool::new(false),
            state: watch::channel(AuthState::Idle).0,
        })
    }

    pub fn state(&self) -> AuthState {
        self.state.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<AuthState> {
        self.state.subscribe()
    }

    pub fn storage_kind(&self) -> &'static str {
        match self.config.storage {
            OAuthStorage::File { .. } => "file",
            OAuthStorage::Memory => "memory",
        }
    }

    /// The file the server's tokens are kept in (`storage_type: file`).
    pub fn token_path(&self) -> Option<&std::path::Path> {
        self.store.token_path()
    }

    /// The redirect URI the authorization server sends the browser to.
    pub fn redirect_uri(&self) -> String {
        self.config.redirect_uri()
    }

    /// The server refused our token even after rmcp refreshed it (or could not): the next
    /// connect forgets the token and asks a person again.
    pub fn reject(&self) {
        if !self.rejected.swap(true, Ordering::SeqCst) {
            tracing::warn!(server = %self.server,
                "the server refused the OAuth token and it could not be refreshed; authorizing again");
        }
    }

    /// The authorized HTTP client, running the authorization flow first when no usable token
    /// is held. Discovery and registration must finish within `prepare_within`; a person gets
    /// [`AUTHORIZATION_WAIT`].
    pub async fn client(&self, prepare_within: Duration) -> Result<OAuthHttpClient, OAuthError> {
        let mut slot = self.client.lock().await;
        if self.rejected.swap(false, Ordering::SeqCst) {
            *slot = None;
            self.store.forget_tokens().await?;
        }
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        self.state.send_replace(AuthState::Preparing);
        match self.authorized_manager(prepare_within).await {
            Ok(manager) => {
                self.state.send_replace(AuthState::Authorized);
                let client = AuthClient::new(
                    SessionAwareClient::new().map_err(OAuthError::HttpClient)?,
                    manager,
                );
                *slot = Some(client.clone());
                Ok(client)
            }
            Err(e) => {
                self.state.send_replace(AuthState::Failed {
                    error: crate::redact::urls_in(&e.to_string()),
                });
                Err(e)
            }
        }
    }

    async fn authorized_manager(
        &self,
        prepare_within: Duration,
    ) -> Result<AuthorizationManager, OAuthError> {
        let mut manager = tokio::time::timeout(prepare_within, self.prepare())
            .await
            .map_err(|_| OAuthError::Slow(prepare_within))??;
        if !self.token_usable(&manager).await? {
            self.authorize(&mut manager).await?;
        }
        Ok(manager)
    }

    /// Discovers the authorization server, and configures the client: the stored one, or a
    /// newly registered one.
    async fn prepare(&self) -> Result<AuthorizationManager, OAuthError> {
        self.store.load().await?;
        let mut manager = AuthorizationManager::new(self.config.server_url.as_str()).await?;
        manager.set_credential_store(self.store.clone());
        let resolution = manager.resolve_metadata().await?;
        if resolution.source == AuthorizationMetadataSource::LegacyEndpointFallback {
            tracing::warn!(server = %self.server,
                "the server publishes no OAuth metadata; trying /authorize, /token and /register at its origin");
        }
        let issuer = resolution.metadata.issuer.clone();
        manager.set_metadata(resolution.metadata);
        // Tokens minted by another authorization server are worth nothing here.
        if let Some(stored) = self.store.credentials()
            && let (Some(had), Some(now)) = (stored.issuer.as_deref(), issuer.as_deref())
            && had != now
        {
            tracing::warn!(server = %self.server, "the OAuth authorization server changed; authorizing again");
            self.store.forget_tokens().await?;
        }
        let redirect_uri = self.config.redirect_uri();
        let client = match self.store.client() {
            // A client registered for another redirect cannot complete this flow.
            Some(c) if c.redirect_uris.is_empty() || c.redirect_uris.contains(&redirect_uri) => c,
            _ => self.register(&mut manager, &redirect_uri).await?,
        };
        let mut config = OAuthClientConfig::new(client.client_id.clone(), redirect_uri);
        if let Some(secret) = client.client_secret.clone() {
            config = config.with_client_secret(secret);
        }
        manager.configure_client(config)?;
        if self
            .store
            .credentials()
            .is_some_and(|c| c.client_id != client.client_id)
        {
            // rmcp would refuse to refresh them anyway: they were issued to another client.
            self.store.forget_tokens().await?;
        }
        Ok(manager)
    }

    /// Dynamic client registration (RFC 7591) through rmcp, kept like mcpo keeps it.
    async fn register(
        &self,
        manager: &mut AuthorizationManager,
        redirect_uri: &str,
    ) -> Result<ClientInfo, OAuthError> {
        let name = self.config.client_name(&self.server);
        let scopes = self.config.scopes();
        let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
        let registered = manager
            .register_client(&name, redirect_uri, &scopes)
            .await?;
        let mut rest = serde_json::Map::new();
        rest.insert("client_name".into(), name.into());
        rest.insert(
            "grant_types".into(),
            serde_json::json!(["authorization_code", "refresh_token"]),
        );
        rest.insert("response_types".into(), serde_json::json!(["code"]));
        rest.insert("token_endpoint_auth_method".into(), "none".into());
        if !scopes.is_empty() {
            rest.insert("scope".into(), scopes.join(" ").into());
        }
        let client = ClientInfo {
            client_id: registered.client_id,
            client_secret: registered.client_secret,
            redirect_uris: vec![redirect_uri.to_string()],
            rest,
        };
        self.store.save_client(client.clone()).await?;
        tracing::info!(server = %self.server, "registered with the OAuth authorization server");
        Ok(client)
    }

    /// Whether the stored token can be used, refreshing it if it has expired. A refresh the
    /// authorization server refuses means asking a person again; one that fails on the way
    /// (network, server down) is an error to retry, not a reason to bother anyone.
    async fn token_usable(&self, manager: &AuthorizationManager) -> Result<bool, OAuthError> {
        if !self.store.has_token() {
            return Ok(false);
        }
        match manager.get_access_token().await {
            Ok(_) => Ok(true),
            Err(AuthError::AuthorizationRequired | AuthError::TokenRefreshRejected(_)) => {
                tracing::info!(server = %self.server, "the stored OAuth token can no longer be refreshed");
                self.store.forget_tokens().await?;
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The authorization code flow: URL with PKCE, a person approves, the code comes back to
    /// us and is exchanged for tokens (which rmcp saves in the store).
    async fn authorize(&self, manager: &mut AuthorizationManager) -> Result<(), OAuthError> {
        let scopes = match self.config.scopes() {
            s if s.is_empty() => manager.select_scopes(None, &[]),
            s => s,
        };
        let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
        let url = manager.get_authorization_url(&scopes).await?;
        let state = reqwest::Url::parse(&url)
            .ok()
            .and_then(|u| {
                u.query_pairs()
                    .find(|(k, _)| k == "state")
                    .map(|(_, v)| v.into_owned())
            })
            .ok_or(OAuthError::NoState)?;
        let mut waiting = if self.config.use_loopback {
            let port = self.config.callback_port;
            callback::on_loopback(port, &state)
                .await
                .map_err(|source| OAuthError::Listen { port, source })?
        } else {
            callback::on_stdin(&state)
        };
        self.state.send_replace(AuthState::NeedsAuthorization {
            authorize_url: url.clone(),
            until: SystemTime::now() + AUTHORIZATION_WAIT,
        });
        // The one place the URL is printed: the person who started the proxy reads it here.
        // It carries the state and the PKCE challenge, which it must; no secret.
        if self.config.use_loopback {
            eprintln!(
                "mcpo: server '{}' needs OAuth authorization; open this URL: {url}",
                self.server
            );
        } else {
            eprintln!(
                "mcpo: server '{}' needs OAuth authorization; open this URL, then paste here the URL you are sent to: {url}",
                self.server
            );
        }
        let redirect = tokio::time::timeout(AUTHORIZATION_WAIT, waiting.redirect())
            .await
            .map_err(|_| OAuthError::NotAuthorized(AUTHORIZATION_WAIT))?
            .ok_or(OAuthError::NotAuthorized(AUTHORIZATION_WAIT))?;
        drop(waiting);
        match redirect {
            Redirect::Code {
                code,
                state,
                issuer,
            } => {
                manager
                    .exchange_code_for_token_with_issuer(&code, &state, issuer.as_deref())
                    .await?;
                tracing::info!(server = %self.server, "OAuth authorization complete");
                Ok(())
            }
            Redirect::Refused { error, description } => {
                Err(OAuthError::Refused(match description {
                    Some(d) => format!("{error}: {d}"),
                    None => error,
                }))
            }
        }
    }
}
