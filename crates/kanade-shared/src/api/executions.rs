//! Executions (launch, list, show, kill), the job catalog and one-off scripts.

use serde::{Deserialize, Serialize};

use crate::{ExecId, JobId, PcId, ResultId, Version};

/// One execution: a job run on a target, with its counters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Execution {
    pub exec_id: ExecId,
    pub job_id: JobId,
    pub version: String,
    pub status: String,
    pub target_count: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub skipped: i64,
    pub other: i64,
    pub message: Option<String>,
    pub created_ms: i64,
    pub finished_ms: Option<i64>,
    /// What ran, where the job id does not say (ad-hoc runs).
    pub title: Option<String>,
}

/// Every status an execution can have, in its life's order.
pub const EXECUTION_STATUSES: [&str; 7] =
    ["pending", "running", "completed", "failed", "expired", "aborted", "killed"];

impl Execution {
    /// Whether it is over: nothing more runs for it, nothing is left to kill or wait for.
    pub fn ended(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "failed" | "expired" | "aborted" | "killed")
    }
}

/// One PC of an execution: its run, or `pending` while nothing is heard.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PcRun {
    pub pc_id: PcId,
    /// The rollout wave it belongs to; `None` for a PC that answered without being targeted.
    pub wave: Option<i64>,
    /// `pending` when nothing has been heard from this pc yet.
    pub status: String,
    pub result_id: Option<ResultId>,
    pub exit_code: Option<i64>,
    /// Why a `skipped` run was not run (`revoked`, `killed`, `no_user`, …).
    pub skip_reason: Option<String>,
    pub message: Option<String>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    pub truncated: bool,
    pub attempt: Option<i64>,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    /// When the backend last heard from this PC's agent; `None`: never.
    pub last_seen_ms: Option<i64>,
    /// Whether it is heard from now.
    pub online: Option<bool>,
}

impl PcRun {
    /// A targeted PC nothing has been heard from for this execution.
    pub fn pending(pc_id: PcId, wave: i64, last_seen_ms: Option<i64>) -> Self {
        Self {
            pc_id,
            wave: Some(wave),
            status: "pending".into(),
            result_id: None,
            exit_code: None,
            skip_reason: None,
            message: None,
            stdout: None,
            stderr: None,
            truncated: false,
            attempt: None,
            started_ms: None,
            finished_ms: None,
            last_seen_ms,
            online: None,
        }
    }
}

/// One rollout wave.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Wave {
    pub wave: i64,
    /// `pending`, `published` or `cancelled`.
    pub status: String,
    pub due_ms: i64,
    pub published_ms: Option<i64>,
}

/// `GET /api/executions/{exec_id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ExecutionDetail {
    pub execution: Execution,
    /// Empty when asked with `pcs=false`.
    pub pcs: Vec<PcRun>,
    pub waves: Vec<Wave>,
}

/// What a deploy, exec or one-off run started.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Launched {
    pub exec_id: ExecId,
    pub job_id: JobId,
    pub version: String,
    pub target_count: usize,
    pub waves: usize,
    /// Set when the commands were not confirmed and the dispatcher publishes them instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `POST /api/executions/{exec_id}/kill`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct KillSent {
    pub exec_id: ExecId,
    /// `sent`.
    pub kill: String,
    /// `killed`.
    pub status: String,
}

/// `POST /api/run`: a one-off script on named PCs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RunScript {
    pub pcs: Vec<String>,
    /// Default: `powershell` on a Windows backend, else `sh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    pub script: String,
    /// Seconds (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

/// One job of the catalog.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct JobSummary {
    pub id: JobId,
    pub version: Version,
    pub description: Option<String>,
    pub shell: String,
    /// Whether it is stored with a target (so `exec` needs none).
    pub has_plan: bool,
}

/// `POST /api/jobs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct JobStored {
    pub id: JobId,
    pub version: Version,
    pub has_plan: bool,
}

/// `POST /api/jobs/validate`: answered only when valid (else 422 with every problem).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct JobValid {
    pub valid: bool,
    pub id: JobId,
    pub version: Version,
}

/// `GET /api/jobs/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct JobDetail {
    /// The job document (see the manifest reference).
    pub manifest: serde_json::Value,
    /// Its stored target and rollout, if any.
    pub plan: Option<serde_json::Value>,
    /// The document as uploaded (or rebuilt from the stored one).
    pub yaml: String,
    pub revoked: bool,
}

/// `POST /api/jobs/{id}/revoke|unrevoke`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct JobStatus {
    pub id: JobId,
    /// `REVOKED` or `ACTIVE`.
    pub status: String,
}

/// `POST /api/jobs/{id}/kill`: the executions a kill was sent to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct JobKilled {
    pub id: JobId,
    pub killed: Vec<ExecId>,
}

/// `?allow_unknown=true`: accept explicit PCs that have never sent a heartbeat.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LaunchQuery {
    pub allow_unknown: Option<bool>,
    /// Run even while the fleet is frozen (audited).
    pub override_freeze: Option<bool>,
}

impl LaunchQuery {
    pub fn overrides_freeze(&self) -> bool {
        self.override_freeze.unwrap_or(false)
    }

    pub fn allows_unknown(&self) -> bool {
        self.allow_unknown.unwrap_or(false)
    }
}

/// `GET /api/executions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ExecutionsQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub job: Option<String>,
    pub status: Option<String>,
    /// Epoch milliseconds.
    pub since: Option<i64>,
}

/// `GET /api/executions/{exec_id}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ExecutionQuery {
    /// `false`: the status, counters and waves without the per-pc rows.
    pub pcs: Option<bool>,
    /// `false`: per-pc rows without their stdout, and stderr cut to its first line (what
    /// `kanade exec --wait` shows), so following a large run stays light.
    pub output: Option<bool>,
}

/// A stored script (`POST` answers it too, without `modified`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Script {
    /// `<name>/<version>`.
    pub key: String,
    pub name: String,
    pub version: String,
    pub sha256: Option<String>,
    pub bytes: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
}
