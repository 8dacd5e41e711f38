//! `Command`: one published instruction to run a script, as the agent receives it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Timestamp, schema_v1};
use crate::ids::{ExecId, JobId, RequestId, Version};

/// A job with no `timeout` gets this one: long enough for installers, short enough that a hung
/// script does not hold a concurrency slot for a day.
pub const DEFAULT_TIMEOUT: crate::HumanDuration = crate::HumanDuration::from_secs(600);
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    #[serde(default = "schema_v1")]
    pub schema: u32,
    pub job_id: JobId,
    pub version: Version,
    pub exec_id: ExecId,
    pub request_id: RequestId,
    pub shell: Shell,
    /// Inline script body; exactly one of `script` and `script_object` is set.
    #[serde(default)]
    pub script: Option<String>,
    /// `<name>/<version>` key in the `scripts` object store.
    #[serde(default)]
    pub script_object: Option<String>,
    /// Hex sha256 of the script body; required with `script_object`.
    #[serde(default)]
    pub script_sha256: Option<String>,
    pub timeout_secs: u64,
    #[serde(default)]
    pub jitter_secs: u64,
    #[serde(default)]
    pub cwd: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub run_as: RunAs,
    /// Do not start after this instant.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub deadline_at: Option<Timestamp>,
    #[serde(default)]
    pub staleness: Staleness,
    #[serde(default)]
    pub retry: Option<Retry>,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: Timestamp,
    /// What stdout is: output to keep (the default) or events to send.
    #[serde(default, skip_serializing_if = "Emit::is_output")]
    pub emit: Emit,
    /// The job's fleet view as the backend read it when it issued this command (the version
    /// pin is `version` itself: the backend pins it right before issuing). An agent that gets
    /// the command live and soon after `issued_at` judges revoke and version pin from this
    /// instead of reading `script_status` and `script_current` itself. Absent: read them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_view: Option<IssuedView>,
}

/// See [`Command::issued_view`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedView {
    /// `script_status` said `REVOKED` at `issued_at`.
    pub revoked: bool,
}

impl Command {
    /// A command for an inline script with fresh ids, the default timeout and no jitter,
    /// deadline or retry; callers set the rest.
    pub fn inline(job_id: JobId, version: Version, shell: Shell, script: impl Into<String>) -> Self {
        Self {
            schema: super::SCHEMA,
            job_id,
            version,
            exec_id: ExecId::new(),
            request_id: RequestId::new(),
            shell,
            script: Some(script.into()),
            script_object: None,
            script_sha256: None,
            timeout_secs: DEFAULT_TIMEOUT.as_secs(),
            jitter_secs: 0,
            cwd: None,
            env: BTreeMap::new(),
            run_as: RunAs::System,
            deadline_at: None,
            staleness: Staleness::default(),
            emit: Emit::Output,
            retry: None,
            issued_at: Timestamp::now_utc(),
            issued_view: None,
        }
    }

    /// What makes two messages "the same run": every field except `request_id` and
    /// `issued_at`, which differ between the subjects one exec is published on. The agent's
    /// ledger refuses an exec_id that comes back with a different fingerprint.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let mut canonical = self.clone();
        canonical.request_id = RequestId::from_uuid(uuid::Uuid::nil());
        canonical.issued_at = Timestamp::UNIX_EPOCH;
        // Serializing a struct of known fields cannot fail except for placeholder enum values,
        // which hash as their debug form so a malformed command still gets a stable fingerprint.
        let bytes = serde_json::to_vec(&canonical).unwrap_or_else(|_| format!("{canonical:?}").into_bytes());
        // Lowercase hex, as ledgers store it, written in one go (not a String per byte).
        format!("{:x}", sha2::Sha256::digest(&bytes))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shell {
    Powershell,
    Pwsh,
    Cmd,
    Bash,
    Sh,
    /// A shell this build does not know; the agent refuses to run it.
    #[serde(other, skip_serializing)]
    Unknown,
}

impl Shell {
    pub const KNOWN: [&'static str; 5] = ["powershell", "pwsh", "cmd", "bash", "sh"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "powershell" => Self::Powershell,
            "pwsh" => Self::Pwsh,
            "cmd" => Self::Cmd,
            "bash" => Self::Bash,
            "sh" => Self::Sh,
            _ => return None,
        })
    }

    /// Its name as written in a manifest (`unknown` for one this build does not know).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Powershell => "powershell",
            Self::Pwsh => "pwsh",
            Self::Cmd => "cmd",
            Self::Bash => "bash",
            Self::Sh => "sh",
            Self::Unknown => "unknown",
        }
    }
}

/// `emit:` of a manifest: what a run's stdout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Emit {
    /// Kept as the result's output.
    #[default]
    Output,
    /// NDJSON observability events (SPEC §12): each line becomes an event, no output is kept.
    Events,
    /// A newer mode this agent does not know: its stdout is kept as output.
    #[serde(other, skip_serializing)]
    Unknown,
}

impl Emit {
    pub const KNOWN: [&str; 2] = ["output", "events"];

    pub fn is_output(&self) -> bool {
        *self == Self::Output
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "output" => Some(Self::Output),
            "events" => Some(Self::Events),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunAs {
    #[default]
    System,
    User,
    #[serde(other, skip_serializing)]
    Unknown,
}

impl RunAs {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "system" => Some(Self::System),
            "user" => Some(Self::User),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Staleness {
    #[serde(default)]
    pub mode: StalenessMode,
    /// With `strict`: the oldest the agent's view of `script_current`/`script_status` may be.
    #[serde(default)]
    pub max_cache_age_secs: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StalenessMode {
    #[default]
    Cached,
    Strict,
    Unchecked,
    #[serde(other, skip_serializing)]
    Unknown,
}

impl StalenessMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cached" => Some(Self::Cached),
            "strict" => Some(Self::Strict),
            "unchecked" => Some(Self::Unchecked),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    pub max: u32,
    #[serde(default)]
    pub backoff_secs: u64,
}
