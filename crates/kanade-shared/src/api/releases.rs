//! Agent releases and self-update: publishing, rollouts by scope, quarantines.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::PcId;

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

/// `POST /api/agent/releases?version=…`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PublishQuery {
    pub version: String,
    /// Detected from the binary when absent.
    pub target: Option<String>,
}
