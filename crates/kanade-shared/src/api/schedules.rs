//! Schedules as the API shows them: the stored document with its next fires and outcomes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ScheduleId;

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
    #[cfg_attr(feature = "schema", schemars(with = "crate::manifest::raw::RawSchedule"))]
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

/// `GET /api/schedules/{id}/preview`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PreviewQuery {
    pub n: Option<usize>,
}
