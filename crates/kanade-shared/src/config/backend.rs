//! `backend.toml`: `[server]`, `[nats]`, `[db]`, `[auth]`, `[log]`.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::agent::duration;
use super::{DefaultPaths, Environment, LogConfig, RawLog, log_config, nats_url, parse_toml};
use crate::HumanDuration;
use crate::problems::{Collector, Problems};

#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    pub nats_url: String,
    /// JetStream replicas for every stream, bucket and store (3 in a cluster).
    pub replicas: usize,
    pub db: DbConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbConfig {
    Sqlite(PathBuf),
    Postgres(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// When absent, a secret is generated once and kept in the data dir.
    pub jwt_secret: Option<String>,
    pub token_ttl: HumanDuration,
}

#[derive(Debug, Default, Deserialize)]
struct RawBackendFile {
    server: Option<RawServer>,
    nats: Option<RawNats>,
    db: Option<RawDb>,
    auth: Option<RawAuth>,
    log: Option<RawLog>,
}

#[derive(Debug, Default, Deserialize)]
struct RawServer {
    bind: Option<String>,
    data_dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawNats {
    url: Option<String>,
    replicas: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
struct RawDb {
    sqlite_path: Option<String>,
    url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawAuth {
    jwt_secret: Option<String>,
    token_ttl: Option<String>,
}

pub(super) fn parse(text: &str, env: &Environment) -> Result<BackendConfig, Problems> {
    let (raw, unknown): (RawBackendFile, _) = parse_toml(text)?;
    let mut c = Collector(unknown);
    let defaults = DefaultPaths::for_env(env);
    let server = raw.server.unwrap_or_default();
    let bind_text = server.bind.unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let bind = c.check(
        "server.bind",
        bind_text
            .parse::<SocketAddr>()
            .map_err(|_| format!("{bind_text:?} is not an address:port such as 127.0.0.1:8080")),
    );
    let data_dir = server.data_dir.map(PathBuf::from).unwrap_or_else(|| defaults.data_dir.clone());
    let nats = raw.nats.unwrap_or_default();
    let nats_url = nats_url(nats.url, "nats.url", &mut c);
    let replicas = nats.replicas.unwrap_or(1);
    if !matches!(replicas, 1 | 3 | 5) {
        c.push("nats.replicas", format!("{replicas} is not 1, 3 or 5"));
    }
    let db_raw = raw.db.unwrap_or_default();
    let db = match (db_raw.sqlite_path, db_raw.url) {
        (Some(_), Some(_)) => {
            c.push("db", "set either sqlite_path or url, not both");
            None
        }
        (None, Some(url)) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Some(DbConfig::Postgres(url))
        }
        (None, Some(url)) => {
            c.push("db.url", format!("{:?} is not a postgres:// URL", redact(&url)));
            None
        }
        (Some(path), None) => Some(DbConfig::Sqlite(path.into())),
        (None, None) => Some(DbConfig::Sqlite(defaults.join(env, &data_dir, "backend.db"))),
    };
    let auth_raw = raw.auth.unwrap_or_default();
    if auth_raw.jwt_secret.as_ref().is_some_and(|s| s.len() < 32) {
        c.push(
            "auth.jwt_secret",
            "is shorter than 32 characters; use a long random value or leave it out to have one generated",
        );
    }
    let auth = AuthConfig {
        jwt_secret: auth_raw.jwt_secret,
        token_ttl: duration(auth_raw.token_ttl, "12h", "auth.token_ttl", &mut c),
    };
    let log = log_config(raw.log, defaults.log_dir.clone(), &mut c);
    let config = match (bind, db) {
        (Some(bind), Some(db)) => Some(BackendConfig { bind, data_dir, nats_url, replicas, db, auth, log }),
        _ => None,
    };
    c.finish(config)
}

/// Never echo a database password back in an error message.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_owned(),
    }
}
