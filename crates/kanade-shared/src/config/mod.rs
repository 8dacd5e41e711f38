//! Configuration: discovery (`--config` → env var → OS config dir), template rendering, TOML
//! parsing that rejects every unknown key, and validation into typed agent/backend configs.
//!
//! The process environment is never read here; callers pass an [`Environment`] (built once in
//! `main` by [`Environment::from_process`]), so every rule is testable with a fake one.

mod agent;
mod backend;
mod discover;
mod environment;
mod paths;
mod postgres_url;
mod template;

use std::path::{Path, PathBuf};

pub use agent::{
    AgentConfig, InventoryConfig, RESTART_EXIT_CODE, RestartMode, UpdateConfig, default_notifications_socket,
};
pub use backend::{AuthConfig, BackendConfig, DbConfig, RetentionConfig, redact};
pub use discover::{Discovered, Role, Source, discover};
pub use environment::{Environment, OsKind};
pub use paths::DefaultPaths;
pub use postgres_url::{PgRoots, PgSslMode, PgTls, postgres_tls};
pub use template::render;

use crate::problems::{Collector, Problem, Problems, parse_collecting};

/// Logging, shared by both daemons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Directory of the daily-rotated log files.
    pub path: PathBuf,
    /// A `tracing` filter such as `info` or `kanade_agent=debug,info`.
    pub level: String,
    pub keep_days: u32,
    /// `text` (one line per event, for people) or `json` (one object per line, for a log
    /// collector).
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// What `check-config` adds after the log destination: nothing for text, `, json lines`.
pub fn log_format(log: &LogConfig) -> &'static str {
    match log.format {
        LogFormat::Text => "",
        LogFormat::Json => ", json lines",
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    NotFound(String),
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config {path}: template error: {message}")]
    Template { path: PathBuf, message: String },
    #[error("config {path} is invalid:\n{problems}")]
    Invalid { path: PathBuf, problems: Problems },
}

/// Find, read, render and validate the agent config.
pub fn load_agent(cli: Option<&Path>, env: &Environment) -> Result<(AgentConfig, Discovered), ConfigError> {
    let found = discover(Role::Agent, cli, env, |p| p.is_file())?;
    let config = read_and_parse(&found.path, env, agent::parse)?;
    Ok((config, found))
}

/// Find, read, render and validate the backend config.
pub fn load_backend(
    cli: Option<&Path>,
    env: &Environment,
) -> Result<(BackendConfig, Discovered), ConfigError> {
    let found = discover(Role::Backend, cli, env, |p| p.is_file())?;
    let config = read_and_parse(&found.path, env, backend::parse)?;
    Ok((config, found))
}

fn read_and_parse<T>(
    path: &Path,
    env: &Environment,
    parse: fn(&str, &Environment) -> Result<T, Problems>,
) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    let rendered =
        render(&text, env).map_err(|message| ConfigError::Template { path: path.to_owned(), message })?;
    parse(&rendered, env).map_err(|problems| ConfigError::Invalid { path: path.to_owned(), problems })
}

/// Parse rendered TOML into a raw struct, collecting every unknown key.
pub(crate) fn parse_toml<R: serde::de::DeserializeOwned>(text: &str) -> Result<(R, Vec<Problem>), Problems> {
    let de = toml::Deserializer::parse(text)
        .map_err(|e| Problems(vec![Problem::new("", e.to_string().trim_end())]))?;
    parse_collecting(de)
}

pub(crate) fn log_config(raw: Option<RawLog>, default_dir: PathBuf, c: &mut Collector) -> LogConfig {
    let raw = raw.unwrap_or_default();
    let format = match raw.format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            c.push("log.format", format!("{other:?} is not text or json"));
            LogFormat::Text
        }
    };
    // 0: stdout only (no file).
    let keep_days = raw.keep_days.unwrap_or(14);
    LogConfig {
        path: raw.path.map(PathBuf::from).unwrap_or(default_dir),
        level: raw.level.unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_owned()),
        keep_days,
        format,
    }
}

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct RawLog {
    pub path: Option<String>,
    pub level: Option<String>,
    pub keep_days: Option<u32>,
    pub format: Option<String>,
}

pub(crate) fn nats_url(raw: Option<String>, path: &str, c: &mut Collector) -> String {
    let url = raw.unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned());
    if let Err(e) = crate::nats::servers(&url) {
        c.push(path, e);
    }
    url
}

/// `[nats]` credentials and TLS, shared by the agent and backend configs.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct RawBroker {
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

/// How a daemon authenticates to the broker and where that came from, never the secret itself:
/// what `check-config` prints.
pub fn describe_broker_auth(
    auth: &crate::nats::BrokerAuth,
    machine: &crate::secrets::MachineSecrets,
) -> String {
    let mut out = match (&auth.user, &auth.token_source) {
        (Some(user), _) => format!("user {user} with a password (config)"),
        (None, Some(source)) => format!("token (from {source})"),
        (None, None) if auth.token.is_some() => "token".to_owned(),
        (None, None) => "none".to_owned(),
    };
    if auth.cert_file.is_some() {
        out.push_str(", client certificate");
    }
    if auth.ca_file.is_some() {
        out.push_str(", TLS with a pinned CA");
    }
    if let Some(why) = &machine.unreadable {
        out.push_str(&format!(" ({} not readable by this account: {why})", machine.key));
    }
    out
}

/// The fleet-wide broker token, used by agent, backend and CLI when their config names no
/// user of its own.
pub const NATS_TOKEN_VAR: &str = crate::secrets::NATS_TOKEN;

/// `[log] level` when a config leaves it out (agent and backend).
pub const DEFAULT_LOG_LEVEL: &str = "info";

pub(crate) fn broker_auth(
    mut raw: RawBroker,
    env: &Environment,
    c: &mut Collector,
) -> crate::nats::BrokerAuth {
    // A user (per-PC credentials) keeps its own; otherwise registry → environment → config.
    let token = if raw.user.is_none() {
        crate::secrets::resolve(
            &env.machine,
            NATS_TOKEN_VAR,
            env.var(NATS_TOKEN_VAR),
            "nats.token",
            raw.token.take(),
        )
    } else {
        raw.token.take().map(|value| crate::secrets::Secret {
            value,
            source: crate::secrets::SecretSource::Config("nats.token"),
        })
    };
    if raw.user.is_some() != raw.password.is_some() {
        c.push("nats.user", "user and password go together; set both or neither");
    }
    if token.is_some() && raw.user.is_some() {
        c.push("nats.token", "set either a token or user/password, not both");
    }
    if raw.cert_file.is_some() != raw.key_file.is_some() {
        c.push("nats.cert_file", "a client certificate needs its key_file (and the other way round)");
    }
    for (path, file) in
        [("nats.ca_file", &raw.ca_file), ("nats.cert_file", &raw.cert_file), ("nats.key_file", &raw.key_file)]
    {
        if let Some(f) = file
            && !std::path::Path::new(f).is_file()
        {
            c.push(path, format!("{f:?} is not a readable file"));
        }
    }
    let inbox_prefix = raw.user.as_ref().map(|u| format!("_INBOX_{u}"));
    crate::nats::BrokerAuth {
        user: raw.user,
        password: raw.password,
        token_source: token.as_ref().map(|t| t.source.clone()),
        token: token.map(|t| t.value),
        ca_file: raw.ca_file.map(Into::into),
        cert_file: raw.cert_file.map(Into::into),
        key_file: raw.key_file.map(Into::into),
        inbox_prefix,
    }
}

#[cfg(test)]
mod tests;
