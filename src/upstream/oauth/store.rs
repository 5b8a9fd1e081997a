//! Where a server's OAuth tokens and registered client are kept: in memory, and for
//! `storage_type: file` also in mcpo's files, so that a stored token survives a restart.
//!
//! mcpo names the files after the first 8 hex digits of the MD5 of the server's name:
//! `{hash}_tokens.json` (its `OAuthToken`: `access_token`, `token_type`, `expires_in`, `scope`,
//! `refresh_token`) and `{hash}_client.json` (the registered client, RFC 7591). We write the
//! same fields, plus `client_id`, `token_received_at`, `granted_scopes` and `issuer` in the
//! token file (mcpo ignores fields it does not know), so either proxy can read what the other
//! wrote. Files are 0600 in a 0700 directory, written whole to a temporary file and renamed.
//!
//! Reads are served from memory: rmcp loads the credentials before every request to check
//! their expiry, and that must not be a file read.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use md5::{Digest, Md5};
use rmcp::transport::auth::{AuthError, CredentialStore, OAuthTokenResponse, StoredCredentials};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::OAuthStorage;

/// Fields we add to mcpo's token file: what rmcp needs to know when the token was issued,
/// to whom, and by which authorization server.
const OUR_TOKEN_FIELDS: &[&str] = &["client_id", "token_received_at", "granted_scopes", "issuer"];

/// The registered client (RFC 7591 registration response), as mcpo keeps it.
#[derive(Clone, Serialize, Deserialize)]
pub struct ClientInfo {
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// The other registration fields, kept as they were.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl std::fmt::Debug for ClientInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientInfo")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

/// Why the token files could not be read or written. Never holds file contents.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug)]
struct Files {
    dir: PathBuf,
    tokens: PathBuf,
    client: PathBuf,
}

#[derive(Default)]
struct Held {
    loaded: bool,
    credentials: Option<StoredCredentials>,
    client: Option<ClientInfo>,
}

/// One server's tokens and client. Cheap to clone: clones share the same store.
#[derive(Clone)]
pub struct TokenStore {
    server: Arc<str>,
    files: Option<Arc<Files>>,
    held: Arc<Mutex<Held>>,
}

impl TokenStore {
    pub fn new(server: &str, storage: &OAuthStorage) -> Self {
        let files = match storage {
            OAuthStorage::Memory => None,
            OAuthStorage::File { dir } => {
                let stem = file_stem(server);
                Some(Arc::new(Files {
                    dir: dir.clone(),
                    tokens: dir.join(format!("{stem}_tokens.json")),
                    client: dir.join(format!("{stem}_client.json")),
                }))
            }
        };
        TokenStore {
            server: server.into(),
            files,
            held: Arc::new(Mutex::new(Held::default())),
        }
    }

    /// The path of the token file, if tokens are kept in files.
    pub fn token_path(&self) -> Option<&Path> {
        self.files.as_deref().map(|f| f.tokens.as_path())
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the files once; later calls do nothing. A file that is there but unreadable as
    /// JSON is ignored with a warning (the flow then runs again), as mcpo does.
    pub async fn load(&self) -> Result<(), StoreError> {
        if self.held().loaded {
            return Ok(());
        }
        let (credentials, client) = match self.files.clone() {
            None => (None, None),
            Some(files) => {
                let server = self.server.clone();
                tokio::task::spawn_blocking(move || read_files(&server, &files))
                    .await
                    .map_err(|e| StoreError::Read {
                        path: "the token files".into(),
                        source: std::io::Error::other(e),
                    })??
            }
        };
        let mut held = self.held();
        if !held.loaded {
            held.loaded = true;
            held.credentials = credentials;
            held.client = client;
        }
        Ok(())
    }

    pub fn client(&self) -> Option<ClientInfo> {
        self.held().client.clone()
    }

    pub fn credentials(&self) -> Option<StoredCredentials> {
        self.held().credentials.clone()
    }

    /// Whether an access token is held (valid or not).
    pub fn has_token(&self) -> bool {
        self.held()
            .credentials
            .as_ref()
            .is_some_and(|c| c.token_response.is_some())
    }

    pub async fn save_client(&self, client: ClientInfo) -> Result<(), StoreError> {
        self.held().client = Some(client.clone());
        if let Some(files) = self.files.clone() {
            let bytes = serde_json::to_vec_pretty(&client).unwrap_or_default();
            write_private(files, FileKind::Client, bytes).await?;
        }
        Ok(())
    }

    /// Forgets the tokens (not the client): the next connect authorizes again.
    pub async fn forget_tokens(&self) -> Result<(), StoreError> {
        self.held().credentials = None;
        if let Some(files) = self.files.clone() {
            tokio::task::spawn_blocking(move || match std::fs::remove_file(&files.tokens) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(StoreError::Write {
                    path: files.tokens.display().to_string(),
                    source,
                }),
            })
            .await
            .map_err(|e| StoreError::Write {
                path: "the token file".into(),
                source: std::io::Error::other(e),
            })??;
        }
        Ok(())
    }

    async fn save_credentials(&self, credentials: StoredCredentials) -> Result<(), StoreError> {
        let bytes = self.files.as_ref().map(|_| token_file_bytes(&credentials));
        self.held().credentials = Some(credentials);
        if let (Some(files), Some(bytes)) = (self.files.clone(), bytes) {
            write_private(files, FileKind::Tokens, bytes).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl CredentialStore for TokenStore {
    async fn load(&self) -> Result<Option<StoredCredentials>, AuthError> {
        Ok(self.credentials())
    }

    async fn save(&self, credentials: StoredCredentials) -> Result<(), AuthError> {
        self.save_credentials(credentials)
            .await
            .map_err(|e| AuthError::CredentialStoreError(e.to_string()))
    }

    async fn clear(&self) -> Result<(), AuthError> {
        self.forget_tokens()
            .await
            .map_err(|e| AuthError::CredentialStoreError(e.to_string()))
    }
}

/// mcpo's file name stem: the first 8 hex digits of the MD5 of the server name.
fn file_stem(server: &str) -> String {
    let digest = Md5::digest(server.as_bytes());
    digest.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// The token file: mcpo's `OAuthToken` fields, and ours beside them.
fn token_file_bytes(credentials: &StoredCredentials) -> Vec<u8> {
    let mut object = match credentials
        .token_response
        .as_ref()
        .and_then(|t| serde_json::to_value(t).ok())
    {
        Some(Value::Object(o)) => o,
        _ => Map::new(),
    };
    // mcpo's model only accepts "Bearer"; rmcp reads it case-insensitively.
    if object.contains_key("token_type") {
        object.insert("token_type".into(), Value::String("Bearer".into()));
    }
    object.insert("client_id".into(), credentials.client_id.clone().into());
    object.insert(
        "token_received_at".into(),
        credentials
            .token_received_at
            .map_or(Value::Null, Value::from),
    );
    object.insert(
        "granted_scopes".into(),
        Value::from(credentials.granted_scopes.clone()),
    );
    object.insert(
        "issuer".into(),
        credentials.issuer.clone().map_or(Value::Null, Value::from),
    );
    serde_json::to_vec_pretty(&Value::Object(object)).unwrap_or_default()
}

/// Reads a token file written by us or by mcpo. mcpo's has no client id (it is in the client
/// file) and no time of issue (so its expiry is unknown until the server refuses it).
fn parse_token_file(text: &str, client: Option<&ClientInfo>) -> Option<StoredCredentials> {
    let Ok(Value::Object(mut object)) = serde_json::from_str::<Value>(text) else {
        return None;
    };
    let ours: Map<String, Value> = OUR_TOKEN_FIELDS
        .iter()
        .filter_map(|k| object.remove(*k).map(|v| (k.to_string(), v)))
        .collect();
    if let Some(Value::String(t)) = object.get_mut("token_type") {
        *t = t.to_ascii_lowercase();
    }
    // `expires_in: null` is how mcpo writes "unknown"; oauth2 wants the field absent.
    object.retain(|_, v| !v.is_null());
    let token: OAuthTokenResponse = serde_json::from_value(Value::Object(object)).ok()?;
    let client_id = ours
        .get("client_id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| client.map(|c| c.client_id.clone()))?;
    let granted_scopes = ours
        .get("granted_scopes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let received_at = ours.get("token_received_at").and_then(Value::as_u64);
    let issuer = ours
        .get("issuer")
        .and_then(Value::as_str)
        .map(str::to_string);
    Some(
        StoredCredentials::new(client_id, Some(token), granted_scopes, received_at)
            .with_issuer(issuer),
    )
}

type Loaded = (Option<StoredCredentials>, Option<ClientInfo>);

fn read_files(server: &str, files: &Files) -> Result<Loaded, StoreError> {
    let read = |path: &Path| -> Result<Option<String>, StoreError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Read {
                path: path.display().to_string(),
                source,
            }),
        }
    };
    let client = match read(&files.client)? {
        None => None,
        Some(text) => match serde_json::from_str::<ClientInfo>(&text) {
            Ok(c) => Some(c),
            Err(_) => {
                tracing::warn!(server, file = %files.client.display(),
                    "the stored OAuth client is not readable; registering again");
                None
            }
        },
    };
    let credentials = match read(&files.tokens)? {
        None => None,
        Some(text) => {
            let parsed = parse_token_file(&text, client.as_ref());
            if parsed.is_none() {
                tracing::warn!(server, file = %files.tokens.display(),
                    "the stored OAuth token is not readable; authorizing again");
            }
            parsed
        }
    };
    Ok((credentials, client))
}

#[derive(Clone, Copy)]
enum FileKind {
    Tokens,
    Client,
}

/// Writes `bytes` to the file of `kind`, readable by the owner only, in a directory only the
/// owner can enter. The temporary file is created 0600 before anything is written to it, so
/// the secret is never readable by others, not even for a moment.
async fn write_private(
    files: Arc<Files>,
    kind: FileKind,
    bytes: Vec<u8>,
) -> Result<(), StoreError> {
    let path = match kind {
        FileKind::Tokens => files.tokens.clone(),
        FileKind::Client => files.client.clone(),
    };
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
        let fail = |source| StoreError::Write {
            path: path.display().to_string(),
            source,
        };
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&files.dir)
            .map_err(fail)?;
        // `mode` applies only to a directory created here: one that was there (made by mcpo,
        // or by hand) may be open to others, and tokens must not be.
        let dir_mode = std::fs::metadata(&files.dir).map_err(fail)?.permissions().mode();
        if dir_mode & 0o077 != 0 {
            std::fs::set_permissions(&files.dir, std::fs::Permissions::from_mode(0o700))
                .map_err(fail)?;
            tracing::info!(dir = %files.dir.display(), "the token directory was open to others; now 0700");
        }
        // A stale temporary file (or a link someone put there, to have a token written
        // wherever it points) is removed, and the new one is created afresh, never through a
        // link.
        let tmp = path.with_extension("json.tmp");
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail(e)),
            _ => {}
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(fail)?;
        file.write_all(&bytes).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        std::fs::rename(&tmp, &path).map_err(fail)
    })
    .await
    .map_err(|e| StoreError::Write {
        path: shown,
        source: std::io::Error::other(e),
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_follow_mcpo() {
        // hashlib.md5(b"remote").hexdigest()[:8]
        assert_eq!(file_stem("remote"), "2c18e486");
        assert_eq!(file_stem(""), "d41d8cd9");
    }

    #[test]
    fn reads_a_token_file_written_by_mcpo() {
        let text = r#"{"access_token": "A", "token_type": "Bearer", "expires_in": null, "scope": null, "refresh_token": "R"}"#;
        let client = ClientInfo {
            client_id: "c1".into(),
            client_secret: None,
            redirect_uris: vec![],
            rest: Map::new(),
        };
        let creds = parse_token_file(text, Some(&client)).unwrap();
        assert_eq!(creds.client_id, "c1");
        assert_eq!(creds.token_received_at, None);
        assert!(creds.token_response.is_some());
        // Without a client there is nobody to refresh the token for.
        assert!(parse_token_file(text, None).is_none());
    }

    #[test]
    fn token_files_round_trip() {
        let text = r#"{"access_token": "A", "token_type": "bearer", "expires_in": 60, "refresh_token": "R"}"#;
        let client = ClientInfo {
            client_id: "c1".into(),
            client_secret: None,
            redirect_uris: vec![],
            rest: Map::new(),
        };
        let creds = parse_token_file(text, Some(&client))
            .unwrap()
            .with_issuer(Some("http://as".into()));
        let bytes = token_file_bytes(&creds);
        let written: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(written["token_type"], "Bearer");
        assert_eq!(written["refresh_token"], "R");
        assert_eq!(written["client_id"], "c1");
        let back = parse_token_file(std::str::from_utf8(&bytes).unwrap(), None).unwrap();
        assert_eq!(back.issuer.as_deref(), Some("http://as"));
        assert_eq!(back.client_id, "c1");
    }

    #[test]
    fn debug_hides_the_client_secret() {
        let client = ClientInfo {
            client_id: "c1".into(),
            client_secret: Some("SECRET".into()),
            redirect_uris: vec![],
            rest: Map::new(),
        };
        assert!(!format!("{client:?}").contains("SECRET"));
    }

    /// The hostile-input issue, finding 12: a token directory that was there kept 0755, and the
    /// temporary token file was opened through whatever link stood at its path.
    #[tokio::test]
    async fn tokens_are_written_private_and_never_through_a_link() {
        use std::os::unix::fs::PermissionsExt as _;
        let base = std::env::temp_dir().join(format!("mcpo-store-{}", std::process::id()));
        let dir = base.join("tokens");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let victim = base.join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        let files = Arc::new(Files {
            dir: dir.clone(),
            tokens: dir.join("t_tokens.json"),
            client: dir.join("t_client_info.json"),
        });
        std::os::unix::fs::symlink(&victim, dir.join("t_tokens.json.tmp")).unwrap();
        write_private(files.clone(), FileKind::Tokens, b"{}".to_vec())
            .await
            .unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&files.tokens), 0o600);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
        assert_eq!(std::fs::read_to_string(&files.tokens).unwrap(), "{}");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
