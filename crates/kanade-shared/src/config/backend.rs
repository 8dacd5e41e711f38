//! `backend.toml`: `[server]`, `[nats]`, `[db]`, `[auth]`, `[retention]`, `[log]`.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::agent::duration;
use super::{DefaultPaths, Environment, LogConfig, RawLog, log_config, nats_url, parse_toml};
use crate::HumanDuration;
use crate::problems::{Collector, Problems};
use crate::secrets::{self, Secret, SecretSource};

#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    pub nats_url: String,
    /// Credentials and TLS for the broker (`[nats]`).
    pub broker: crate::nats::BrokerAuth,
    /// JetStream replicas for every stream, bucket and store (3 in a cluster).
    pub replicas: usize,
    pub db: DbConfig,
    pub auth: AuthConfig,
    pub retention: RetentionConfig,
    pub exec: ExecConfig,
    pub log: LogConfig,
    pub enroll: EnrollConfig,
}

/// Enrolment (`[nats] auth_callout_seed`, `system_user`, `system_password`; `[enroll]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnrollConfig {
    /// The account seed (`SA…`) whose public key the broker's `auth_callout.issuer` names: with
    /// it this backend admits enrolled agents to the broker.
    pub callout_seed: Option<String>,
    /// The broker's system-account user, to disconnect an agent whose credentials are revoked.
    pub system_user: Option<String>,
    pub system_password: Option<String>,
    /// The broker URL(s) written into enrolled agents' config (default: `nats.url`).
    pub agent_nats_url: Option<String>,
    /// This backend's URL as PCs reach it, for install scripts (default: the URL the request
    /// came in on).
    pub public_url: Option<String>,
}

/// `[exec]`: defaults for the commands the backend publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecConfig {
    /// A command not started this long after issue is skipped (a plan's `start_within` wins).
    pub start_within: HumanDuration,
}

/// How long the projection keeps what it holds. Streams have their own limits; rows outlive
/// them here so history stays queryable after the broker dropped the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    /// A pending or running execution with no progress for this long becomes `expired`.
    pub stall_after: HumanDuration,
    pub results: HumanDuration,
    /// Finished executions (with their targets and waves).
    pub executions: HumanDuration,
    pub audit: HumanDuration,
    /// Agents not seen for this long are forgotten, with their inventory.
    pub agents: HumanDuration,
    /// A check status no run confirmed for this long shows as `unknown` (SPEC §12).
    pub check_stale: HumanDuration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbConfig {
    Sqlite(PathBuf),
    Postgres(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Registry, `KANADE_JWT_SECRET`, then `auth.jwt_secret`. When absent, a secret is
    /// generated once and kept in the data dir (or, on a shared database, in the database).
    pub jwt_secret: Option<Secret>,
    /// Registry or `KANADE_BOOTSTRAP_ADMIN_PASSWORD`: the first admin's password, used only
    /// while no account exists. Never from the config file, which outlives its use.
    pub bootstrap_admin_password: Option<Secret>,
    pub token_ttl: HumanDuration,
    /// Reverse proxies whose `X-Forwarded-For` is believed: a request from one of these is
    /// attributed (throttling, audit) to the last address in that header that is not a proxy.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Admins signing in with a password must have a second factor (TOTP) set up before they
    /// can do anything else. API tokens are unaffected.
    pub require_mfa_for_admins: bool,
}

#[derive(Debug, Default, Deserialize)]
struct RawBackendFile {
    server: Option<RawServer>,
    nats: Option<RawNats>,
    db: Option<RawDb>,
    auth: Option<RawAuth>,
    retention: Option<RawRetention>,
    exec: Option<RawExec>,
    log: Option<RawLog>,
    enroll: Option<RawEnroll>,
}

#[derive(Debug, Default, Deserialize)]
struct RawEnroll {
    nats_url: Option<String>,
    public_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawExec {
    start_within: Option<String>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        Self {
            stall_after: HumanDuration::from_secs(DAY),
            results: HumanDuration::from_secs(90 * DAY),
            executions: HumanDuration::from_secs(180 * DAY),
            audit: HumanDuration::from_secs(365 * DAY),
            agents: HumanDuration::from_secs(90 * DAY),
            check_stale: HumanDuration::from_secs(30 * DAY),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct RawRetention {
    stall_after: Option<String>,
    results: Option<String>,
    executions: Option<String>,
    audit: Option<String>,
    agents: Option<String>,
    check_stale: Option<String>,
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
    // The broker credentials, spelled out: `#[serde(flatten)]` would hide unknown keys.
    user: Option<String>,
    password: Option<String>,
    token: Option<String>,
    ca_file: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
    auth_callout_seed: Option<String>,
    system_user: Option<String>,
    system_password: Option<String>,
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
    trusted_proxies: Option<Vec<String>>,
    require_mfa_for_admins: Option<bool>,
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
    let raw_enroll = raw.enroll.unwrap_or_default();
    let enroll = EnrollConfig {
        callout_seed: nats.auth_callout_seed.filter(|seed| {
            let ok = seed.len() == 58 && seed.starts_with("SA");
            if !ok {
                c.push(
                    "nats.auth_callout_seed",
                    "is not an account seed (58 characters starting SA); copy it from the credentials/backend.toml that kanade-backend nats-config wrote",
                );
            }
            ok
        }),
        system_password: nats.system_password,
        system_user: nats.system_user,
        agent_nats_url: raw_enroll.nats_url.map(|u| super::nats_url(Some(u), "enroll.nats_url", &mut c)),
        public_url: raw_enroll.public_url.filter(|u| {
            let ok = u.starts_with("http://") || u.starts_with("https://");
            if !ok {
                c.push("enroll.public_url", format!("{u:?} is not an http:// or https:// URL"));
            }
            ok
        }),
    };
    if enroll.system_user.is_some() != enroll.system_password.is_some() {
        c.push("nats.system_user", "set system_user and system_password together");
    }
    let raw_broker = super::RawBroker {
        user: nats.user,
        password: nats.password,
        token: nats.token,
        ca_file: nats.ca_file,
        cert_file: nats.cert_file,
        key_file: nats.key_file,
    };
    let broker = super::broker_auth(raw_broker, env, &mut c);
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
            match super::postgres_tls(&url) {
                Ok(_) => Some(DbConfig::Postgres(url)),
                Err(e) => {
                    c.push("db.url", e);
                    None
                }
            }
        }
        (None, Some(url)) => {
            c.push("db.url", format!("{:?} is not a postgres:// URL", redact(&url)));
            None
        }
        (Some(path), None) => Some(DbConfig::Sqlite(path.into())),
        (None, None) => Some(DbConfig::Sqlite(defaults.join(env, &data_dir, "backend.db"))),
    };
    let mut auth_raw = raw.auth.unwrap_or_default();
    let jwt_secret = secrets::resolve(
        &env.machine,
        secrets::JWT_SECRET,
        env.var(secrets::JWT_SECRET),
        "auth.jwt_secret",
        auth_raw.jwt_secret.take(),
    );
    if let Some(s) = jwt_secret.as_ref().filter(|s| s.value.len() < 32) {
        let at = match &s.source {
            SecretSource::Config(key) => (*key).to_owned(),
            other => format!("auth.jwt_secret (from {other})"),
        };
        c.push(
            &at,
            "is shorter than 32 characters; use a long random value or leave it out to have one generated",
        );
    }
    let bootstrap_admin_password = secrets::resolve(
        &env.machine,
        secrets::BOOTSTRAP_ADMIN_PASSWORD,
        env.var(secrets::BOOTSTRAP_ADMIN_PASSWORD),
        "",
        None,
    );
    let trusted_proxies = auth_raw
        .trusted_proxies
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(|(i, ip)| {
            c.check(
                &format!("auth.trusted_proxies[{i}]"),
                ip.parse::<std::net::IpAddr>()
                    .map_err(|_| format!("{ip:?} is not an IP address such as 127.0.0.1 or ::1")),
            )
        })
        .collect();
    let auth = AuthConfig {
        jwt_secret,
        bootstrap_admin_password,
        token_ttl: duration(auth_raw.token_ttl, "12h", "auth.token_ttl", &mut c),
        trusted_proxies,
        require_mfa_for_admins: auth_raw.require_mfa_for_admins.unwrap_or(false),
    };
    let r = raw.retention.unwrap_or_default();
    let retention = RetentionConfig {
        stall_after: retention(r.stall_after, "24h", "retention.stall_after", &mut c),
        results: retention(r.results, "90d", "retention.results", &mut c),
        executions: retention(r.executions, "180d", "retention.executions", &mut c),
        audit: retention(r.audit, "365d", "retention.audit", &mut c),
        agents: retention(r.agents, "90d", "retention.agents", &mut c),
        check_stale: retention(r.check_stale, "30d", "retention.check_stale", &mut c),
    };
    let start_within = duration(raw.exec.unwrap_or_default().start_within, "7d", "exec.start_within", &mut c);
    if start_within.get().is_zero() || start_within.get() > crate::manifest::MAX_START_WITHIN {
        c.push(
            "exec.start_within",
            format!("{start_within} is not between 1s and 7d (EXEC keeps a command 7 days)"),
        );
    }
    let exec = ExecConfig { start_within };
    let log = log_config(raw.log, defaults.log_dir.clone(), &mut c);
    let config = match (bind, db) {
        (Some(bind), Some(db)) => Some(BackendConfig {
            bind,
            data_dir,
            nats_url,
            broker,
            replicas,
            db,
            auth,
            retention,
            exec,
            log,
            enroll,
        }),
        _ => None,
    };
    c.finish(config)
}

fn retention(raw: Option<String>, default: &str, path: &str, c: &mut Collector) -> HumanDuration {
    let text = raw.unwrap_or_else(|| default.to_owned());
    let Some(value) = c.check(path, text.parse::<HumanDuration>()) else {
        return HumanDuration::default();
    };
    if value.get() < std::time::Duration::from_secs(3600) {
        c.push(path, format!("{value} is shorter than 1h; history would vanish while it is still in use"));
    }
    value
}

/// Never echo a database password back in an error message.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_owned(),
    }
}
