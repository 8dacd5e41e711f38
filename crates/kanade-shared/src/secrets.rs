//! Secrets a daemon may take from outside its config file, and where each one came from (what
//! `check-config` prints instead of the value). The order is the one Windows admins expect:
//! the machine's registry key `HKLM\SOFTWARE\Kanade\<role>` first (readable by SYSTEM and
//! Administrators when the admin locks it down), then the process environment, then the
//! config file. Registry values carry the environment variables' names.

use std::collections::BTreeMap;
use std::fmt;

/// The fleet-wide broker token (agent, backend and CLI).
pub const NATS_TOKEN: &str = "KANADE_NATS_TOKEN";
/// The first admin's password, used while no account exists.
pub const BOOTSTRAP_ADMIN_PASSWORD: &str = "KANADE_BOOTSTRAP_ADMIN_PASSWORD";
/// The key that signs dashboard and CLI sessions.
pub const JWT_SECRET: &str = "KANADE_JWT_SECRET";

/// Every name looked up in the registry.
pub const NAMES: [&str; 3] = [NATS_TOKEN, BOOTSTRAP_ADMIN_PASSWORD, JWT_SECRET];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `HKLM\SOFTWARE\Kanade\<role>\<name>`.
    Registry(String),
    Env(&'static str),
    /// A config key such as `nats.token`.
    Config(&'static str),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Registry(value) => write!(f, "registry {value}"),
            Self::Env(var) => write!(f, "environment {var}"),
            Self::Config(key) => write!(f, "config {key}"),
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    pub value: String,
    pub source: SecretSource,
}

impl Secret {
    /// A secret taken from the environment variable `name`.
    pub fn env(name: &'static str, value: impl Into<String>) -> Self {
        Self { value: value.into(), source: SecretSource::Env(name) }
    }
}

/// Never prints the value, so a secret in a logged or debug-printed config stays secret.
impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(from {})", self.source)
    }
}

/// What the machine's registry key holds for one role: read once at start (Windows only).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MachineSecrets {
    /// `HKLM\SOFTWARE\Kanade\<role>`; empty when not read (other OSes, tests).
    pub key: String,
    /// Non-empty string values among [`NAMES`].
    pub values: BTreeMap<String, String>,
    /// Why the key could not be read (it exists but this account may not read it).
    pub unreadable: Option<String>,
}

/// Names the values held, never the values.
impl fmt::Debug for MachineSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MachineSecrets")
            .field("key", &self.key)
            .field("values", &self.values.keys().collect::<Vec<_>>())
            .field("unreadable", &self.unreadable)
            .finish()
    }
}

impl MachineSecrets {
    /// Read `HKLM\SOFTWARE\Kanade\<role>`. A missing key or value is no secret; a key this
    /// account may not open is recorded, not fatal, so a user's `check-config` still works
    /// where only the service account can read the secrets.
    #[cfg(windows)]
    pub fn read(role: &str) -> Self {
        use winreg::RegKey;
        use winreg::enums::{HKEY_LOCAL_MACHINE, KEY_READ};

        let key = format!(r"HKLM\SOFTWARE\Kanade\{role}");
        let mut out = Self { key: key.clone(), ..Self::default() };
        let hklm = RegKey::predef(HKEY_LOCAL_MACHINE);
        let opened = match hklm.open_subkey_with_flags(format!(r"SOFTWARE\Kanade\{role}"), KEY_READ) {
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
            Err(e) => {
                out.unreadable = Some(e.to_string());
                return out;
            }
        };
        for name in NAMES {
            match opened.get_value::<String, _>(name) {
                Ok(v) if !v.is_empty() => {
                    out.values.insert(name.to_owned(), v);
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => out.unreadable = Some(format!("{name}: {e} (store it as a REG_SZ string)")),
            }
        }
        out
    }

    #[cfg(not(windows))]
    pub fn read(_role: &str) -> Self {
        Self::default()
    }

    pub fn get(&self, name: &'static str) -> Option<Secret> {
        let value = self.values.get(name)?;
        Some(Secret { value: value.clone(), source: SecretSource::Registry(format!(r"{}\{name}", self.key)) })
    }
}

/// Registry, then environment (`env_value`, the variable `name`), then the config file.
pub fn resolve(
    machine: &MachineSecrets,
    name: &'static str,
    env_value: Option<&str>,
    config_key: &'static str,
    config_value: Option<String>,
) -> Option<Secret> {
    machine
        .get(name)
        .or_else(|| env_value.filter(|v| !v.is_empty()).map(|v| Secret::env(name, v)))
        .or_else(|| config_value.map(|value| Secret { value, source: SecretSource::Config(config_key) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(values: &[(&str, &str)]) -> MachineSecrets {
        MachineSecrets {
            key: r"HKLM\SOFTWARE\Kanade\backend".into(),
            values: values.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            unreadable: None,
        }
    }

    #[test]
    fn registry_then_environment_then_config() {
        let reg = machine(&[(JWT_SECRET, "from-registry")]);
        let none = MachineSecrets::default();
        // (registry, env, config) → (value, source)
        let cases = [
            (
                &reg,
                Some("from-env"),
                Some("from-config"),
                Some(("from-registry", "registry HKLM\\SOFTWARE\\Kanade\\backend\\KANADE_JWT_SECRET")),
            ),
            (
                &none,
                Some("from-env"),
                Some("from-config"),
                Some(("from-env", "environment KANADE_JWT_SECRET")),
            ),
            (&none, Some(""), Some("from-config"), Some(("from-config", "config auth.jwt_secret"))),
            (&none, None, None, None),
        ];
        for (m, env, config, want) in cases {
            let got = resolve(m, JWT_SECRET, env, "auth.jwt_secret", config.map(str::to_owned));
            assert_eq!(
                got.as_ref().map(|s| (s.value.as_str(), s.source.to_string())),
                want.map(|(v, s)| (v, s.to_owned())),
                "{env:?} {config:?}"
            );
        }
    }

    #[test]
    fn debug_output_never_shows_the_value() {
        let s = resolve(&MachineSecrets::default(), NATS_TOKEN, Some("hunter2"), "nats.token", None).unwrap();
        assert_eq!(format!("{s:?}"), "Secret(from environment KANADE_NATS_TOKEN)");
    }
}
