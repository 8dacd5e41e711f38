//! Where a daemon's config comes from: `--config`, then `KANADE_<ROLE>_CONFIG`, then the OS
//! config dir. An explicit path that does not exist is an error, never a silent fall-through.

use std::path::{Path, PathBuf};

use super::{ConfigError, DefaultPaths, Environment};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Agent,
    Backend,
}

impl Role {
    pub fn env_var(self) -> &'static str {
        match self {
            Self::Agent => "KANADE_AGENT_CONFIG",
            Self::Backend => "KANADE_BACKEND_CONFIG",
        }
    }

    /// The registry key's last part: `HKLM\SOFTWARE\Kanade\agent`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Backend => "backend",
        }
    }

    pub fn file_name(self) -> &'static str {
        match self {
            Self::Agent => "agent.toml",
            Self::Backend => "backend.toml",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    EnvVar,
    DefaultDir,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    pub path: PathBuf,
    pub source: Source,
}

pub fn discover(
    role: Role,
    cli: Option<&Path>,
    env: &Environment,
    exists: impl Fn(&Path) -> bool,
) -> Result<Discovered, ConfigError> {
    let var = role.env_var();
    if let Some(path) = cli {
        return if exists(path) {
            Ok(Discovered { path: path.to_owned(), source: Source::Flag })
        } else {
            Err(ConfigError::NotFound(format!(
                "config file {} (from --config) does not exist",
                path.display()
            )))
        };
    }
    if let Some(value) = env.var(var).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(value);
        return if exists(&path) {
            Ok(Discovered { path, source: Source::EnvVar })
        } else {
            Err(ConfigError::NotFound(format!("config file {} (from {var}) does not exist", path.display())))
        };
    }
    let defaults = DefaultPaths::for_env(env);
    let path = defaults.join(env, &defaults.config_dir, role.file_name());
    if exists(&path) {
        return Ok(Discovered { path, source: Source::DefaultDir });
    }
    Err(ConfigError::NotFound(format!(
        "no {} config found; looked at:\n  1. --config <path>: not given\n  2. {var}: not set\n  3. {}: does not exist\ncreate one (see the sample {} in the kanade repository) or pass --config",
        role.file_name(),
        path.display(),
        role.file_name(),
    )))
}
