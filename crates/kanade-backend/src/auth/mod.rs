//! Who is calling, and may they. Every `/api/*` route declares an `Access` in the route table;
//! `http::authz::authorize` (a layer on each route) resolves the bearer credential through
//! [`authenticate`] to a `Caller` — a session
//! JWT from `POST /api/auth/login` or an API token — re-reading the account or token row on
//! every request, so disabling a user or revoking a token takes effect at the next call.

pub mod jwt;
pub mod password;
pub mod role;
pub mod throttle;
pub mod totp;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use kanade_shared::files::{Existing, write_private};
use kanade_shared::secrets::Secret;

use crate::db::{Db, DbError, accounts, now_ms};
pub use role::{Access, Role};

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// A user name, or `token:<name>` for an API token.
    pub name: String,
    pub role: Role,
    pub via: Via,
    pub must_change_password: bool,
    /// An admin who must set up a second factor first (`[auth] require_mfa_for_admins`).
    pub must_set_up_mfa: bool,
    /// The peer address, for the audit log.
    pub source: Option<String>,
    /// Which client made the request (`X-Kanade-Source`), for the audit log.
    pub client: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Password,
    Token,
    /// `KANADE_AUTH_DISABLE=1`: everyone is an admin.
    AuthDisabled,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::Token => "token",
            Self::AuthDisabled => "auth_disabled",
        }
    }
}

#[derive(Clone)]
pub struct AuthConfig {
    pub disabled: bool,
    pub secret: Vec<u8>,
    pub session_ttl: Duration,
    /// See `[auth] trusted_proxies`.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// How often a long-lived response (`/api/stream`) checks its caller again, so an expired
    /// session, a disabled user or a changed password closes it.
    pub recheck: Duration,
    /// See `[auth] require_mfa_for_admins`.
    pub require_mfa_for_admins: bool,
}

#[derive(Clone)]
pub struct Auth {
    pub config: Arc<AuthConfig>,
    pub throttle: Arc<Mutex<throttle::Throttle>>,
    /// Password hashes checked at once: argon2 costs ~20 MiB and tens of milliseconds each, on
    /// the blocking pool, so a login flood queues here instead of starving everything else.
    hashing: Arc<tokio::sync::Semaphore>,
    /// Sign-in attempts refused by the throttle (for `/metrics`).
    pub throttled: Arc<std::sync::atomic::AtomicU64>,
}

const CONCURRENT_HASHES: usize = 2;
const RECHECK: Duration = Duration::from_secs(30);

impl Auth {
    pub fn new(config: AuthConfig) -> Self {
        Self {
            config: Arc::new(config),
            throttle: Arc::default(),
            hashing: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_HASHES)),
            throttled: Arc::default(),
        }
    }

    /// Development mode: no credentials, every caller is an admin.
    pub fn disabled() -> Self {
        Self::new(AuthConfig {
            disabled: true,
            secret: Vec::new(),
            session_ttl: Duration::from_secs(3600),
            trusted_proxies: Vec::new(),
            recheck: RECHECK,
            require_mfa_for_admins: false,
        })
    }

    /// Real authentication with the given signing secret.
    pub fn with_secret(secret: Vec<u8>, session_ttl: Duration) -> Self {
        Self::new(AuthConfig {
            disabled: false,
            secret,
            session_ttl,
            trusted_proxies: Vec::new(),
            recheck: RECHECK,
            require_mfa_for_admins: false,
        })
    }

    /// Check long-lived responses' callers this often.
    pub fn with_recheck(self, recheck: Duration) -> Self {
        let mut config = (*self.config).clone();
        config.recheck = recheck;
        Self { config: Arc::new(config), ..self }
    }

    /// Admins need a second factor before anything else (`[auth] require_mfa_for_admins`).
    pub fn requiring_mfa_for_admins(self, required: bool) -> Self {
        let mut config = (*self.config).clone();
        config.require_mfa_for_admins = required;
        Self { config: Arc::new(config), ..self }
    }

    /// Believe `X-Forwarded-For` from these addresses.
    pub fn with_trusted_proxies(self, proxies: Vec<std::net::IpAddr>) -> Self {
        let mut config = (*self.config).clone();
        config.trusted_proxies = proxies;
        Self { config: Arc::new(config), ..self }
    }

    /// Check a password against its stored hash off the async workers, at most
    /// [`CONCURRENT_HASHES`] at a time.
    pub async fn verify_password(&self, password: String, stored: String) -> bool {
        let Ok(_permit) = self.hashing.acquire().await else { return false };
        tokio::task::spawn_blocking(move || password::verify(&password, &stored)).await.unwrap_or(false)
    }

    /// The client address of a request, as throttling and the audit log know it.
    pub fn source(&self, parts: &Parts) -> Option<String> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let forwarded = parts.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
        client_address(peer, forwarded, &self.config.trusted_proxies).map(|ip| ip.to_string())
    }
}

/// Pure: the address a request came from. Only a trusted proxy's `X-Forwarded-For` is read, from
/// the right (the entries a proxy appended), skipping further trusted proxies; anything else in
/// the header could have been written by the client itself.
pub fn client_address(
    peer: Option<std::net::IpAddr>,
    forwarded_for: Option<&str>,
    trusted: &[std::net::IpAddr],
) -> Option<std::net::IpAddr> {
    let peer = peer?;
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let mut client = peer;
    for hop in forwarded_for.unwrap_or("").rsplit(',').map(str::trim) {
        match hop.parse::<std::net::IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => client = ip,
            Ok(ip) => return Some(ip),
            Err(_) => break,
        }
    }
    Some(client)
}

/// `bytes` random bytes from the OS, as hex.
pub fn random_hex(bytes: usize) -> Result<String, String> {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf).map_err(|e| format!("no randomness available: {e}"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

pub fn sha256_hex(text: &str) -> String {
    kanade_shared::files::sha256_hex(text.as_bytes())
}

/// The session signing secret: from config, else `jwt.secret` in the data dir, generated once
/// (mode 0600). Never a built-in default.
/// The session signing secret of backends sharing `db` (Postgres): kept in the database, so a
/// session signed by one is valid on all. `auth.jwt_secret`, when set, wins.
pub async fn shared_session_secret(configured: Option<&str>, db: &Db) -> anyhow::Result<Vec<u8>> {
    if let Some(s) = configured {
        return Ok(s.as_bytes().to_vec());
    }
    let fresh = random_hex(32).map_err(anyhow::Error::msg)?;
    Ok(db.shared_secret("jwt".into(), fresh).await?.into_bytes())
}

pub fn load_or_create_secret(configured: Option<&str>, data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    if let Some(s) = configured {
        return Ok(s.as_bytes().to_vec());
    }
    let path = data_dir.join("jwt.secret");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let trimmed = existing.trim();
        anyhow::ensure!(
            trimmed.len() >= 32,
            "{} is too short; delete it to have a new one generated",
            path.display()
        );
        return Ok(trimmed.as_bytes().to_vec());
    }
    let secret = random_hex(32).map_err(anyhow::Error::msg)?;
    write_private(&path, secret.as_bytes(), Existing::Keep)
        .with_context(|| format!("cannot write {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated the session signing secret");
    Ok(secret.into_bytes())
}

/// The key every published command is signed with: `command-signing.key` in the data dir,
/// generated once (mode 0600). Agents pin its public half (`GET /api/signing-key`).
pub fn load_or_create_signing_key(data_dir: &Path) -> anyhow::Result<ed25519_dalek::SigningKey> {
    use anyhow::Context;
    let path = data_dir.join("command-signing.key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return kanade_shared::signing::decode_secret(&text).map_err(|e| {
            anyhow::anyhow!("{}: {e}; restore it from a backup (agents pin its public key)", path.display())
        });
    }
    let key = kanade_shared::signing::generate().map_err(anyhow::Error::msg)?;
    write_private(&path, kanade_shared::signing::encode_secret(&key).as_bytes(), Existing::Keep)
        .with_context(|| format!("cannot write {}", path.display()))?;
    tracing::info!(
        path = %path.display(),
        public_key = %kanade_shared::signing::encode_public(&key.verifying_key()),
        "generated the command signing key; put the public key in every agent's security.trusted_keys"
    );
    Ok(key)
}

/// Create the first admin from the bootstrap password (registry value or environment variable
/// `KANADE_BOOTSTRAP_ADMIN_PASSWORD`) when no user exists yet. Returns whether one was created.
/// A later start with users present changes nothing.
pub async fn bootstrap_admin(db: &Db, password: Option<&Secret>) -> anyhow::Result<bool> {
    if db.user_count().await? > 0 {
        return Ok(false);
    }
    let Some(password) = password.filter(|p| !p.value.is_empty()) else {
        tracing::warn!(
            "no user exists yet: set KANADE_BOOTSTRAP_ADMIN_PASSWORD (environment, or on Windows a string value under HKLM\\SOFTWARE\\Kanade\\backend) and restart to create the first admin (user \"admin\")"
        );
        return Ok(false);
    };
    password::check_new("admin", &password.value)
        .map_err(|e| anyhow::anyhow!("the bootstrap admin password (from {}): {e}", password.source))?;
    let hash = password::hash(&password.value).map_err(anyhow::Error::msg)?;
    let now = now_ms();
    let created = db.create_user("admin".into(), hash, "admin".into(), false, now).await?;
    if created {
        tracing::info!(from = %password.source, "created the first admin, user \"admin\"");
    }
    Ok(created)
}

/// A new API token: (row to store, the secret to show once).
pub fn new_token(name: &str, role: Role, created_by: &str) -> Result<(accounts::Token, String), String> {
    let id = random_hex(6)?;
    let secret = random_hex(32)?;
    let shown = format!("kanade_{id}_{secret}");
    let row = accounts::Token {
        secret_sha256: sha256_hex(&secret),
        token: kanade_shared::api::accounts::ApiToken {
            id,
            name: name.to_owned(),
            role: role.as_str().to_owned(),
            created_by: created_by.to_owned(),
            created_ms: now_ms(),
            revoked_ms: None,
        },
    };
    Ok((row, shown))
}

/// The server-sent event routes, the only ones that take `?access_token=`.
fn event_stream(path: &str) -> bool {
    path == "/api/stream"
        || path.strip_prefix("/api/executions/").is_some_and(|rest| {
            let parts: Vec<&str> = rest.split('/').collect();
            matches!(parts.as_slice(), [_, "pcs", _, "tail"])
        })
}

/// Why a request's credential was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credential, or one that is not (or no longer) valid: what to do about it.
    #[error("{0}")]
    Unauthorized(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

pub fn unauthorized(message: impl Into<String>) -> AuthError {
    AuthError::Unauthorized(message.into())
}

/// Resolve the request's credentials to a caller.
pub async fn authenticate(auth: &Auth, db: &Db, parts: &Parts) -> Result<Caller, AuthError> {
    let source = auth.source(parts);
    let client = client_of(&parts.headers);
    if auth.config.disabled {
        return Ok(Caller {
            name: "dev".into(),
            role: Role::Admin,
            via: Via::AuthDisabled,
            must_change_password: false,
            must_set_up_mfa: false,
            source,
            client,
        });
    }
    let header = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let bearer = header.and_then(|h| h.strip_prefix("Bearer ")).map(str::trim);
    // A browser's EventSource cannot send headers: the event streams alone take the token as
    // `?access_token=` (they are read-only, and the token still goes through every check below).
    let from_query = event_stream(parts.uri.path())
        .then(|| parts.uri.query())
        .flatten()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("access_token=")));
    let bearer = bearer.or(from_query).ok_or_else(|| {
        unauthorized("missing \"Authorization: Bearer <token>\"; sign in with POST /api/auth/login (kanade login) or use an API token")
    })?;
    if let Some(rest) = bearer.strip_prefix("kanade_") {
        let (id, secret) = rest.split_once('_').ok_or_else(|| unauthorized("malformed API token"))?;
        let key = id.to_owned();
        let row = db.token(key).await?;
        let row = row
            .filter(|t| t.token.revoked_ms.is_none())
            .ok_or_else(|| unauthorized("API token unknown or revoked"))?;
        // Both sides are hashes of the same length; compare without an early exit.
        let given = sha256_hex(secret);
        let same = given.bytes().zip(row.secret_sha256.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
            && given.len() == row.secret_sha256.len();
        if !same {
            return Err(unauthorized("API token unknown or revoked"));
        }
        let role = row
            .token
            .role
            .parse()
            .map_err(|e: String| unauthorized(format!("API token has a bad role: {e}")))?;
        return Ok(Caller {
            name: format!("token:{}", row.token.name),
            role,
            via: Via::Token,
            must_change_password: false,
            must_set_up_mfa: false,
            source,
            client,
        });
    }
    let claims =
        jwt::decode(bearer, &auth.config.secret, now_ms() / 1000).map_err(|e| unauthorized(e.to_string()))?;
    let name = claims.sub.clone();
    let user = db.user(name).await?;
    let user = user.ok_or_else(|| unauthorized(format!("user {} no longer exists", claims.sub)))?;
    if user.account.disabled {
        return Err(unauthorized(format!("user {} is disabled", user.account.name)));
    }
    if user.account.password_changed_ms != claims.pwd {
        return Err(unauthorized("the password changed since this session began; sign in again"));
    }
    let role =
        user.account.role.parse().map_err(|e: String| unauthorized(format!("user has a bad role: {e}")))?;
    Ok(Caller {
        name: user.account.name,
        role,
        via: Via::Password,
        must_change_password: user.account.must_change_password,
        must_set_up_mfa: role == Role::Admin
            && auth.config.require_mfa_for_admins
            && user.account.mfa_enabled_ms.is_none(),
        source,
        client,
    })
}

/// Pure: which of our clients says it sent the request (`X-Kanade-Source: cli | dashboard`);
/// anything else, or nothing, is `api`. Never `scheduler` or `backend`: those are the backend's
/// own, and no caller may claim them.
pub fn client_of(headers: &axum::http::HeaderMap) -> &'static str {
    match headers.get("x-kanade-source").and_then(|v| v.to_str().ok()).map(str::trim) {
        Some("cli") => "cli",
        Some("dashboard") => "dashboard",
        _ => "api",
    }
}

/// Why `caller` may not use a route with `access`, if it may not.
pub fn refusal(caller: &Caller, access: Access) -> Option<String> {
    match access {
        Access::Public | Access::SignedIn => None,
        _ if caller.must_change_password => {
            Some("change your password first (POST /api/auth/password, or kanade login)".to_owned())
        }
        _ if caller.must_set_up_mfa => Some(
            "admins must set up a second factor first (auth.require_mfa_for_admins): `kanade mfa setup`, or Account in the dashboard".to_owned(),
        ),
        Access::Role(needed) if caller.role < needed => {
            Some(format!("this needs the {needed} role; {} is {}", caller.name, caller.role))
        }
        Access::Role(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_event_streams_take_a_token_in_the_query() {
        for (path, takes) in [
            ("/api/stream", true),
            ("/api/executions/01J0000000000000000000000/pcs/PC-1/tail", true),
            ("/api/executions/01J0000000000000000000000", false),
            ("/api/executions/x/pcs/PC-1/tail/more", false),
            ("/api/executions/x/kill", false),
            ("/api/agents/PC-1/logs", false),
        ] {
            assert_eq!(event_stream(path), takes, "{path}");
        }
    }

    fn caller(role: Role, must_change: bool) -> Caller {
        Caller {
            name: "u".into(),
            role,
            via: Via::Password,
            must_change_password: must_change,
            must_set_up_mfa: false,
            source: None,
            client: "api",
        }
    }

    #[test]
    fn only_our_own_clients_are_named_and_nobody_claims_the_backend_s() {
        let with = |v: &str| {
            let mut h = axum::http::HeaderMap::new();
            h.insert("x-kanade-source", v.parse().unwrap());
            client_of(&h)
        };
        assert_eq!((with("cli"), with("dashboard"), with(" cli ")), ("cli", "dashboard", "cli"));
        assert_eq!((with("scheduler"), with("backend"), with("curl")), ("api", "api", "api"));
        assert_eq!(client_of(&axum::http::HeaderMap::new()), "api");
    }

    #[test]
    fn the_client_address_comes_from_a_trusted_proxy_only() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let proxies = [ip("10.0.0.1"), ip("10.0.0.2")];
        let cases = [
            // (peer, X-Forwarded-For, expected)
            ("203.0.113.9", Some("1.2.3.4"), "203.0.113.9"), // not a proxy: the header is the client's word
            ("10.0.0.1", None, "10.0.0.1"),
            ("10.0.0.1", Some("198.51.100.7"), "198.51.100.7"),
            ("10.0.0.1", Some("6.6.6.6, 198.51.100.7"), "198.51.100.7"), // a forged first entry is ignored
            ("10.0.0.1", Some("198.51.100.7, 10.0.0.2"), "198.51.100.7"), // through two proxies
            ("10.0.0.1", Some("garbage"), "10.0.0.1"),
        ];
        for (peer, xff, want) in cases {
            assert_eq!(client_address(Some(ip(peer)), xff, &proxies), Some(ip(want)), "{peer} {xff:?}");
        }
    }

    #[test]
    fn role_rules() {
        assert_eq!(refusal(&caller(Role::Viewer, false), Access::Role(Role::Viewer)), None);
        assert_eq!(
            refusal(&caller(Role::Viewer, false), Access::Role(Role::Operator)),
            Some("this needs the operator role; u is viewer".into())
        );
        assert_eq!(refusal(&caller(Role::Admin, false), Access::Role(Role::Operator)), None);
        assert_eq!(refusal(&caller(Role::Admin, true), Access::SignedIn), None);
        assert!(
            refusal(&caller(Role::Admin, true), Access::Role(Role::Viewer))
                .unwrap()
                .starts_with("change your password")
        );
    }
}
