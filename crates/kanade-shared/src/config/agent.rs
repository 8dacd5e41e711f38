//! `agent.toml`: `[agent]`, `[inventory]`, `[log]`.

use std::path::PathBuf;

use serde::Deserialize;

use super::{DefaultPaths, Environment, LogConfig, RawLog, log_config, nats_url, parse_toml};
use crate::HumanDuration;
use crate::ids::{GroupName, PcId};
use crate::problems::{Collector, Problems, index};

#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    pub id: PcId,
    pub nats_url: String,
    /// Groups from the file; unioned at run time with the `agent_groups` KV entry.
    pub groups: Vec<GroupName>,
    pub data_dir: PathBuf,
    pub heartbeat_interval: HumanDuration,
    pub max_concurrent_jobs: u32,
    pub inventory: InventoryConfig,
    /// Public keys whose command signatures this agent accepts. Empty: commands are not
    /// verified (development only; the agent says so loudly at start).
    pub trusted_keys: Vec<ed25519_dalek::VerifyingKey>,
    /// `[nats]`: credentials and TLS for the broker.
    pub broker: crate::nats::BrokerAuth,
    /// `[update]`: self-update.
    pub update: UpdateConfig,
    /// `[exec] user` (Unix): the account `run_as: user` jobs run as; `None` skips them (122).
    pub exec_user: Option<String>,
    /// `[notifications] socket`: where local users reach the agent for their notifications.
    pub notifications_socket: PathBuf,
    pub log: LogConfig,
}

/// Where `kanade-agent notifications` finds the running agent unless told otherwise: a Unix
/// socket every local user may connect to (the agent learns who from the kernel), or on Windows
/// a named pipe.
pub fn default_notifications_socket() -> PathBuf {
    if cfg!(windows) {
        PathBuf::from(r"\\.\pipe\kanade-agent-notifications")
    } else {
        PathBuf::from("/run/kanade-agent/notifications.sock")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateConfig {
    /// Follow `target_version` from `agent_config` (default true).
    pub enabled: bool,
    /// Random wait before downloading a new version, so a fleet does not download at once.
    pub jitter: HumanDuration,
    pub restart: RestartMode,
}

/// How the agent restarts into a new binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartMode {
    /// `exit` under systemd (it sets `INVOCATION_ID`), `exec` otherwise.
    Auto,
    /// Replace the process with the new binary (same pid, same arguments): foreground runs.
    Exec,
    /// Exit with [`RESTART_EXIT_CODE`] and let the service manager start the new binary.
    Exit,
}

/// The exit code that asks a service manager to start the agent again (systemd:
/// `RestartForceExitStatus=75`; Windows: a restart recovery action).
pub const RESTART_EXIT_CODE: u8 = 75;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryConfig {
    pub enabled: bool,
    pub interval: HumanDuration,
    /// Random delay added to each collection so a fleet does not report at the same second.
    pub jitter: HumanDuration,
}

#[derive(Debug, Default, Deserialize)]
struct RawAgentFile {
    agent: Option<RawAgent>,
    inventory: Option<RawInventory>,
    security: Option<RawSecurity>,
    nats: Option<super::RawBroker>,
    update: Option<RawUpdate>,
    exec: Option<RawExec>,
    notifications: Option<RawNotifications>,
    log: Option<RawLog>,
}

#[derive(Debug, Default, Deserialize)]
struct RawNotifications {
    socket: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawExec {
    user: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawUpdate {
    enabled: Option<bool>,
    jitter: Option<String>,
    restart: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawSecurity {
    trusted_keys: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
struct RawAgent {
    id: Option<String>,
    nats_url: Option<String>,
    groups: Option<Vec<String>>,
    data_dir: Option<String>,
    heartbeat_interval: Option<String>,
    max_concurrent_jobs: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
struct RawInventory {
    enabled: Option<bool>,
    interval: Option<String>,
    jitter: Option<String>,
}

pub(super) fn parse(text: &str, env: &Environment) -> Result<AgentConfig, Problems> {
    let (raw, unknown): (RawAgentFile, _) = parse_toml(text)?;
    let mut c = Collector(unknown);
    let defaults = DefaultPaths::for_env(env);
    let agent = raw.agent.unwrap_or_default();

    // The short host name is the default identity (a fully qualified name would carry dots, which
    // a subject token cannot); it must still be a valid id.
    let id_text = agent.id.unwrap_or_else(|| env.host.split('.').next().unwrap_or_default().to_owned());
    let id = c.check("agent.id", id_text.parse::<PcId>());
    let mut groups = Vec::new();
    for (i, g) in agent.groups.unwrap_or_default().iter().enumerate() {
        if let Some(g) = c.check(&index("agent.groups", i), g.parse::<GroupName>())
            && !groups.contains(&g)
        {
            groups.push(g);
        }
    }
    let nats_url = nats_url(agent.nats_url, "agent.nats_url", &mut c);
    let heartbeat_interval = duration(agent.heartbeat_interval, "30s", "agent.heartbeat_interval", &mut c);
    let max_concurrent_jobs = agent.max_concurrent_jobs.unwrap_or(4);
    if max_concurrent_jobs == 0 {
        c.push("agent.max_concurrent_jobs", "must be at least 1");
    }
    let inv = raw.inventory.unwrap_or_default();
    let inventory = InventoryConfig {
        enabled: inv.enabled.unwrap_or(true),
        interval: duration(inv.interval, "24h", "inventory.interval", &mut c),
        jitter: duration(inv.jitter, "10m", "inventory.jitter", &mut c),
    };
    let mut trusted_keys = Vec::new();
    for (i, k) in raw.security.unwrap_or_default().trusted_keys.unwrap_or_default().iter().enumerate() {
        if let Some(key) = c.check(&index("security.trusted_keys", i), crate::signing::decode_public(k)) {
            trusted_keys.push(key);
        }
    }
    let broker = super::broker_auth(raw.nats.unwrap_or_default(), env, &mut c);
    let up = raw.update.unwrap_or_default();
    let jitter = duration(up.jitter, "10m", "update.jitter", &mut c);
    let restart = match up.restart.as_deref() {
        None | Some("auto") => RestartMode::Auto,
        Some("exec") => RestartMode::Exec,
        Some("exit") => RestartMode::Exit,
        Some(other) => {
            c.push("update.restart", format!("{other:?} is not one of \"auto\", \"exec\", \"exit\""));
            RestartMode::Auto
        }
    };
    let update = UpdateConfig { enabled: up.enabled.unwrap_or(true), jitter, restart };
    let exec_user = raw.exec.unwrap_or_default().user;
    if let Some(user) = &exec_user
        && (user.is_empty() || user.contains(['/', ':', ' ']))
    {
        c.push("exec.user", format!("{user:?} is not an account name"));
    }
    let notifications_socket = match raw.notifications.unwrap_or_default().socket {
        Some(s) if s.trim().is_empty() => {
            c.push("notifications.socket", "must not be empty (leave it out for the default)");
            default_notifications_socket()
        }
        Some(s) => PathBuf::from(s),
        None => default_notifications_socket(),
    };
    let log = log_config(raw.log, defaults.log_dir.clone(), &mut c);
    let config = id.map(|id| AgentConfig {
        id,
        nats_url,
        groups,
        data_dir: agent.data_dir.map(PathBuf::from).unwrap_or(defaults.data_dir),
        heartbeat_interval,
        max_concurrent_jobs,
        inventory,
        trusted_keys,
        broker,
        update,
        exec_user,
        notifications_socket,
        log,
    });
    c.finish(config)
}

pub(super) fn duration(raw: Option<String>, default: &str, path: &str, c: &mut Collector) -> HumanDuration {
    let text = raw.unwrap_or_else(|| default.to_owned());
    c.check(path, text.parse::<HumanDuration>()).unwrap_or_default()
}
