//! The slice of the outside world configuration depends on, captured once so tests can fake it.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OsKind {
    Windows,
    Linux,
    Macos,
}

impl OsKind {
    pub fn current() -> Self {
        if cfg!(windows) {
            Self::Windows
        } else if cfg!(target_os = "macos") {
            Self::Macos
        } else {
            Self::Linux
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Windows => "windows",
            Self::Linux => "linux",
            Self::Macos => "macos",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub os: OsKind,
    pub arch: String,
    pub host: String,
    pub vars: BTreeMap<String, String>,
    /// The role's registry secrets (Windows), read by [`Environment::with_machine_secrets`].
    pub machine: crate::secrets::MachineSecrets,
}

impl Environment {
    /// The real environment of this process.
    pub fn from_process() -> Self {
        Self {
            os: OsKind::current(),
            arch: std::env::consts::ARCH.to_owned(),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
            machine: crate::secrets::MachineSecrets::default(),
        }
    }

    /// Add what `HKLM\SOFTWARE\Kanade\<role>` holds (nothing on other OSes).
    pub fn with_machine_secrets(mut self, role: super::Role) -> Self {
        self.machine = crate::secrets::MachineSecrets::read(role.name());
        self
    }

    /// An empty Linux environment for tests; add what a test needs.
    pub fn fake(os: OsKind, host: &str) -> Self {
        Self {
            os,
            arch: "x86_64".to_owned(),
            host: host.to_owned(),
            vars: BTreeMap::new(),
            machine: crate::secrets::MachineSecrets::default(),
        }
    }

    pub fn with_var(mut self, key: &str, value: &str) -> Self {
        self.vars.insert(key.to_owned(), value.to_owned());
        self
    }

    /// A variable, looked up case-insensitively on Windows as the OS does.
    pub fn var(&self, key: &str) -> Option<&str> {
        match self.os {
            OsKind::Windows => {
                self.vars.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str())
            }
            _ => self.vars.get(key).map(String::as_str),
        }
    }
}
