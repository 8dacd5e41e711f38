//! `ExecResult`: the outcome of one run of one exec on one PC.

use serde::{Deserialize, Serialize};

use super::{Timestamp, schema_v1};
use crate::ids::{ExecId, JobId, PcId, RequestId, ResultId, Version};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecResult {
    #[serde(default = "schema_v1")]
    pub schema: u32,
    pub result_id: ResultId,
    pub request_id: RequestId,
    pub exec_id: ExecId,
    pub job_id: JobId,
    pub version: Version,
    pub pc_id: PcId,
    pub exit_code: Option<i32>,
    pub status: ExecStatus,
    #[serde(default)]
    pub skip_reason: Option<SkipReason>,
    /// Human-readable detail for skips, refusals and `unknown` runs.
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub stdout: String,
    #[serde(default)]
    pub stderr: String,
    /// Set when stdout or stderr hit the agent's capture cap.
    #[serde(default)]
    pub truncated: bool,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub started_at: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: Timestamp,
    #[serde(default = "first_attempt")]
    pub attempt: u32,
}

fn first_attempt() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecStatus {
    Succeeded,
    Failed,
    TimedOut,
    Killed,
    Skipped,
    /// The agent restarted while the run was in flight, or a newer status this build cannot name.
    #[serde(other)]
    Unknown,
}

impl ExecStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Killed => "killed",
            Self::Skipped => "skipped",
            Self::Unknown => "unknown",
        }
    }

    /// Only a real success counts as one; a skip never does.
    pub fn is_success(self) -> bool {
        self == Self::Succeeded
    }
}

/// Why a command was not run. Each reason has a reserved exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    VersionPin,
    DeadlinePassed,
    Revoked,
    Stale,
    #[serde(other, skip_serializing)]
    Unknown,
}

impl SkipReason {
    pub fn exit_code(self) -> Option<i32> {
        match self {
            Self::VersionPin => Some(124),
            Self::DeadlinePassed => Some(125),
            Self::Revoked => Some(126),
            Self::Stale => Some(127),
            Self::Unknown => None,
        }
    }
}

/// Which output stream a capture belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}
