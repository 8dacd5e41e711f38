//! `GET /api/checks` and `GET /api/checks/{name}`: compliance as the API reports it (SPEC §12).

use serde::{Deserialize, Serialize};

/// Per check: how many PCs are in each status (a status no run confirmed within
/// `[retention] check_stale` counts as `unknown`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CheckSummary {
    pub name: String,
    pub pass: i64,
    pub warn: i64,
    pub fail: i64,
    pub unknown: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Checks {
    pub checks: Vec<CheckSummary>,
}

/// One PC's status for a check; times are epoch milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CheckPc {
    pub pc_id: String,
    /// `pass`, `warn`, `fail` or `unknown` (also when `stale`).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Since when it has had this status.
    pub since: i64,
    /// The run that last confirmed it.
    pub updated: i64,
    pub exec_id: String,
    /// No run confirmed it within `check_stale`: shown as `unknown`.
    #[serde(default)]
    pub stale: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CheckDetail {
    pub name: String,
    pub pcs: Vec<CheckPc>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}
