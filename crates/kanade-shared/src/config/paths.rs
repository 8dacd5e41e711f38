//! Default install locations per OS.

use std::path::PathBuf;

use super::{Environment, OsKind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultPaths {
    pub config_dir: PathBuf,
    pub data_dir: PathBuf,
    pub log_dir: PathBuf,
}

impl DefaultPaths {
    pub fn for_env(env: &Environment) -> Self {
        match env.os {
            OsKind::Windows => {
                // Built as text: these must be Windows paths even when computed in a Linux test.
                let root = env.var("ProgramData").unwrap_or(r"C:\ProgramData").trim_end_matches('\\');
                Self {
                    config_dir: format!(r"{root}\Kanade\config").into(),
                    data_dir: format!(r"{root}\Kanade\data").into(),
                    log_dir: format!(r"{root}\Kanade\logs").into(),
                }
            }
            OsKind::Linux | OsKind::Macos => Self {
                config_dir: "/etc/kanade".into(),
                data_dir: "/var/lib/kanade".into(),
                log_dir: "/var/log/kanade".into(),
            },
        }
    }

    /// `dir` + `file` with the target OS's separator.
    pub fn join(&self, env: &Environment, dir: &std::path::Path, file: &str) -> PathBuf {
        let sep = if env.os == OsKind::Windows { '\\' } else { '/' };
        format!("{}{sep}{file}", dir.display()).into()
    }
}
