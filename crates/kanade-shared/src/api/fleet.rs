//! Agents, their results, the audit log, the overview and the software search.

use serde::{Deserialize, Serialize};

use crate::wire::Heartbeat;
use crate::{AuditId, ExecId, GroupName, JobId, PcId, ResultId};

/// One agent as the backend last heard from it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Agent {
    pub pc_id: PcId,
    pub hostname: String,
    pub os_family: String,
    pub os_name: String,
    pub os_version: String,
    pub arch: String,
    pub agent_version: String,
    pub groups: Vec<String>,
    pub running_jobs: i64,
    pub last_seen_ms: i64,
    /// Heard from within the offline window (absent from a backend older than this field:
    /// read as offline).
    #[serde(default)]
    pub online: bool,
    /// Versions this agent refuses to install again.
    pub quarantined: Vec<crate::boot::Quarantine>,
    pub update_status: Option<String>,
    /// The agent's clock minus the backend's at its last heartbeat (ms); shown, never used to
    /// judge liveness.
    pub clock_skew_ms: Option<i64>,
}

/// `GET /api/agents`: one page and how many match in all.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AgentPage {
    pub items: Vec<Agent>,
    pub total: i64,
    /// Only in the default order (by pc id, ascending).
    pub next_cursor: Option<PcId>,
}

/// `GET /api/agents/{pc}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AgentDetail {
    pub agent: Agent,
    /// Groups assigned here (besides the agent's own agent.toml groups).
    pub assigned_groups: Vec<String>,
    /// Dynamic groups whose rule it matches.
    pub dynamic_groups: Vec<String>,
    /// The latest inventory (hardware, software), as the agent sent it.
    pub inventory: Option<serde_json::Value>,
    /// Its 20 newest results.
    pub recent_results: Vec<RunResult>,
}

/// `POST /api/agents/{pc}/ping`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Pong {
    pub heartbeat: Heartbeat,
    pub round_trip_ms: u64,
}

/// `PUT /api/agents/{pc}/groups`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SetGroups {
    pub groups: Vec<String>,
}

/// What `PUT /api/agents/{pc}/groups` left.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct GroupsSet {
    pub pc_id: PcId,
    /// The operator-assigned groups now.
    pub groups: Vec<GroupName>,
    pub dynamic_groups: Vec<GroupName>,
    /// Whether the PC has ever sent a heartbeat.
    pub known: bool,
    /// What the agent reported last (these groups plus its agent.toml's own).
    pub reported_groups: Option<Vec<String>>,
}

/// One run of one execution on one PC (or a refused command's answer).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RunResult {
    pub result_id: ResultId,
    pub exec_id: ExecId,
    pub pc_id: PcId,
    pub job_id: JobId,
    pub version: String,
    pub status: String,
    pub exit_code: Option<i64>,
    pub skip_reason: Option<String>,
    pub message: Option<String>,
    pub stdout: String,
    pub stderr: String,
    pub truncated: bool,
    pub attempt: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    /// The execution's title (what an ad-hoc run ran).
    pub title: Option<String>,
    /// Why the job's facts were not updated from this result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts_error: Option<String>,
}

/// One audit event.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AuditEntry {
    pub id: AuditId,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub source: Option<String>,
    /// `cli`, `dashboard`, `api`, `scheduler` or `backend`; absent on events from before it was
    /// recorded.
    pub client: Option<String>,
    /// What the action changed; its shape depends on the action.
    pub detail: serde_json::Value,
}

/// `GET /api/overview`: the last 24 hours.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Overview {
    pub agents_total: i64,
    pub agents_online: i64,
    /// Executions created in the window, by status: `[status, count]`.
    pub executions: Vec<(String, i64)>,
    /// Results received per hour in the window: `[hour start ms, status, count]`.
    pub results_per_hour: Vec<(i64, String, i64)>,
    pub recent_failures: Vec<Failure>,
    /// Where the window starts (epoch ms).
    pub since_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Failure {
    pub result_id: ResultId,
    pub exec_id: ExecId,
    pub pc_id: PcId,
    pub job_id: JobId,
    pub status: String,
    pub exit_code: Option<i64>,
    pub message: Option<String>,
    pub received_ms: i64,
    /// The execution's title (what an ad-hoc run ran).
    pub title: Option<String>,
}

/// One installed program on one PC, from its latest inventory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SoftwareHit {
    pub pc_id: PcId,
    pub name: String,
    pub version: String,
    pub publisher: String,
}

/// `GET /api/software`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SoftwareHits {
    pub items: Vec<SoftwareHit>,
    /// How many different PCs the hits are on.
    pub pcs: usize,
}

/// `GET /api/agents`: filtered, sorted, paged in SQL.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AgentsQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub group: Option<String>,
    /// Substring of the pc id or host name.
    pub q: Option<String>,
    /// `online` or `offline`.
    pub status: Option<String>,
    /// `pc_id` (default), `hostname`, `agent_version`, `last_seen`.
    pub sort: Option<String>,
    #[serde(default)]
    pub desc: bool,
    pub offset: Option<i64>,
}

/// `GET /api/results`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ResultQuery {
    pub pc: Option<String>,
    pub job: Option<String>,
    pub exec: Option<String>,
    pub status: Option<String>,
    /// Epoch milliseconds.
    pub since: Option<i64>,
    pub cursor: Option<String>,
    pub limit: Option<i64>,
}

/// `GET /api/audit`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AuditQuery {
    pub actor: Option<String>,
    /// `cli`, `dashboard`, `api`, `scheduler` or `backend`.
    pub client: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub cursor: Option<String>,
    pub limit: Option<i64>,
}

/// `GET /api/software`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SoftwareQuery {
    pub name: Option<String>,
    pub version: Option<String>,
    pub limit: Option<i64>,
}

/// `GET /api/agents/{pc}/logs`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// The last this many lines (200 by default, at most 10,000).
    pub lines: Option<u32>,
    /// Only lines written at or after this instant (RFC 3339).
    pub since: Option<String>,
    /// Follow on from an earlier reply's `cursor`: its `file` and `offset`.
    pub file: Option<String>,
    pub offset: Option<u64>,
}

/// `GET /api/agents/{pc}/processes`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ProcessQuery {
    /// Epoch milliseconds; with neither bound, the last hour.
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// The newest this many samples (1–2,000; 720 by default: an hour at 5 s). A sample holds up
    /// to 200 processes, so this bounds the answer.
    pub limit: Option<i64>,
}

/// `GET /api/agents/{pc}/perf`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HostPerfQuery {
    /// Epoch milliseconds; with neither bound, the last hour.
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// `raw`, `5m` or `1h`; chosen from the range when absent.
    pub resolution: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    pub pc: Option<String>,
    /// A kind (`agent.started`) or a dotted prefix (`agent`, `job`).
    pub kind: Option<String>,
    /// Epoch milliseconds, on the event's time.
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub cursor: Option<String>,
    pub limit: Option<i64>,
}
