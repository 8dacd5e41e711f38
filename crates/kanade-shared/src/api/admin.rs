//! Running the fleet: agent releases, schedules, dynamic groups, stored scripts, the service's
//! own state, and the small answers of forgetting a check or dropping a facts table.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{PcId, ScheduleId};

/// `POST /api/agent/releases`: one stored release.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ReleasePublished {
    pub version: String,
    pub target: String,
    pub size: usize,
    /// The object store's digest (`SHA-256=…`).
    pub digest: Option<String>,
    /// Whether the backend signed it (agents then verify it before installing).
    pub signed: bool,
}

/// One release in `GET /api/agent/releases`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Release {
    pub version: String,
    pub target: String,
    pub size: usize,
    pub digest: Option<String>,
    /// When it was stored.
    pub published: Option<String>,
}

/// `POST /api/agent/rollout`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    pub version: String,
    /// One group, or one pc, or neither for the whole fleet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pc: Option<String>,
}

/// Which agents a setting is for: one group, one pc, or neither for the whole fleet.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Scope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pc: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RolloutSet {
    /// `global`, `groups.<name>` or `pcs.<id>`.
    pub scope: String,
    pub target_version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct QuarantineCleared {
    pub scope: String,
    /// Quarantines from before this instant (RFC 3339) are lifted.
    pub clear_quarantine: String,
}

/// `GET /api/agent/current`: what the fleet is asked to run and what it runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FleetVersions {
    /// Scope key → the version asked for there.
    pub target_versions: BTreeMap<String, String>,
    /// Version → how many agents run it.
    pub running: BTreeMap<String, u64>,
    /// Version → the PCs that refuse it.
    pub quarantined: BTreeMap<String, Vec<String>>,
    /// Agents whose update is waiting, and why.
    pub update_status: Vec<UpdateWaiting>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UpdateWaiting {
    pub pc_id: PcId,
    pub status: String,
}

/// A schedule's bookkeeping, once it has ticked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ScheduleState {
    pub last_tick_ms: i64,
    pub last_fire_ms: Option<i64>,
    pub last_exec_id: Option<String>,
    pub last_outcome: String,
}

/// A schedule as stored (its document's fields) with when it fires next and how it went.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ScheduleView {
    /// The schedule document's fields (see the schedule reference): `id`, `cron`, `timezone`,
    /// `enabled`, the job and its plan.
    #[serde(flatten)]
    pub schedule: serde_json::Map<String, serde_json::Value>,
    /// The next fires (epoch ms); empty while disabled.
    pub next_fires_ms: Vec<i64>,
    pub state: Option<ScheduleState>,
    /// Outcome → how many in the last 24 hours.
    pub last_24h: BTreeMap<String, i64>,
    /// Set by enable and disable: whether it was not already so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<bool>,
}

/// `GET /api/schedules/{id}/preview`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SchedulePreview {
    pub id: ScheduleId,
    pub cron: String,
    pub timezone: String,
    pub enabled: bool,
    pub fires_ms: Vec<i64>,
    /// The same instants in the schedule's time zone.
    pub fires: Vec<String>,
}

/// A dynamic group: PCs matching a rule.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DynamicGroup {
    pub name: String,
    pub rule: String,
    pub created_by: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// The last pass that wrote its members; `None` before the first.
    pub evaluated_ms: Option<i64>,
    pub members: i64,
}

/// `POST /api/groups`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    pub name: String,
    pub rule: String,
}

/// `PUT /api/groups/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SetRule {
    pub rule: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Member {
    pub pc_id: PcId,
    /// Since when it matches.
    pub since_ms: i64,
}

/// `GET /api/groups/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct GroupDetail {
    pub group: DynamicGroup,
    pub members: Vec<Member>,
}

/// `GET /api/groups/{name}/members`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct GroupMembers {
    pub group: String,
    pub members: Vec<Member>,
}

/// `DELETE /api/groups/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct GroupDeleted {
    pub deleted: String,
    /// PCs that were in it (their agent groups were rewritten without it).
    pub members_removed: usize,
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

/// `GET /health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Health {
    /// `ok`.
    pub status: String,
    pub version: String,
    /// `connected`, `disconnected` or `connecting`.
    pub nats: String,
}

/// `GET /livez` and `GET /readyz` when they pass.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Probe {
    /// `ok` (live) or `ready`.
    pub status: String,
}

/// One stream, KV bucket or object store of the backbone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ResourceStatus {
    /// `stream`, `kv` or `object_store`.
    pub kind: String,
    pub name: String,
    pub stream: String,
    /// False when the resource does not exist yet (run `kanade jetstream setup`).
    pub present: bool,
    pub messages: u64,
    pub bytes: u64,
    /// -1 = unlimited.
    pub max_bytes: i64,
    pub max_age: String,
    pub max_messages_per_subject: i64,
    pub consumers: usize,
}

/// `GET /api/signing-key`: the command key's public half.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SigningKey {
    pub public_key: String,
    /// The agent.toml lines that trust it.
    pub config: String,
}

/// `DELETE /api/checks/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CheckForgotten {
    pub name: String,
    /// How many PCs' rows went.
    pub forgotten: u64,
}

/// `DELETE /api/facts/{table}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TableDropped {
    pub dropped: String,
}
