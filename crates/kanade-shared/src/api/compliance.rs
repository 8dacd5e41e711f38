//! Compliance checks and facts tables (their listings are `wire` bodies): forgetting a
//! check, dropping a table, reading one check's PCs.

use serde::{Deserialize, Serialize};

/// `DELETE /api/checks/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CheckForgotten {
    pub name: String,
    /// How many PCs' rows went.
    pub forgotten: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CheckQuery {
    /// `pass`, `warn`, `fail` or `unknown` (stale statuses included).
    pub status: Option<String>,
    /// The last PC of the previous page.
    pub cursor: Option<String>,
    /// 1–5,000; 1,000 by default.
    pub limit: Option<i64>,
}

/// `DELETE /api/facts/{table}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TableDropped {
    pub dropped: String,
}
