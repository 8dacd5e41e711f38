//! Where `kanade login` keeps session tokens: one per backend URL in a per-user file, readable
//! only by its owner. `--token` and `KANADE_AUTH_TOKEN` take precedence over it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Credentials {
    /// backend URL → session
    #[serde(default)]
    pub sessions: BTreeMap<String, Session>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub user: String,
    pub token: String,
    pub expires_ms: i64,
}

/// `KANADE_CONFIG_DIR`, else the OS's per-user config dir + `kanade`.
pub fn dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("KANADE_CONFIG_DIR") {
        return Ok(PathBuf::from(d));
    }
    let base = if cfg!(windows) {
        std::env::var_os("APPDATA").map(PathBuf::from)
    } else {
        std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
    };
    base.map(|b| b.join("kanade"))
        .context("cannot find a per-user config directory (set KANADE_CONFIG_DIR or HOME)")
}

pub fn path() -> anyhow::Result<PathBuf> {
    Ok(dir()?.join("credentials.json"))
}

pub fn load() -> Credentials {
    path()
        .ok()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub fn save(c: &Credentials) -> anyhow::Result<PathBuf> {
    let path = path()?;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let text = serde_json::to_vec_pretty(c)?;
    // Never world-readable, not even for a moment.
    kanade_shared::files::write_private(&path, &text, kanade_shared::files::Existing::Replace)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The stored session for `backend_url`, if any.
pub fn token_for(backend_url: &str) -> Option<String> {
    load().sessions.get(backend_url.trim_end_matches('/')).map(|s| s.token.clone())
}
