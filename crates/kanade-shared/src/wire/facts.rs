//! `GET /api/facts` and `GET /api/facts/{table}`: the operator-named tables jobs fill (SPEC §12).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FactTables {
    pub tables: Vec<FactTable>,
}

/// One table: which job made it, its key (with `pc_id`) and columns, how many rows it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FactTable {
    pub name: String,
    pub job_id: String,
    pub key: Vec<String>,
    pub columns: BTreeMap<String, ColumnType>,
    pub rows: i64,
}

/// A page of one table's rows (`pc_id` first, then the columns; booleans as true/false,
/// timestamps as epoch milliseconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FactRows {
    pub table: String,
    pub key: Vec<String>,
    pub columns: BTreeMap<String, ColumnType>,
    pub rows: Vec<Map<String, Value>>,
    /// Pass as `offset` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<i64>,
}

/// One job's latest output on a PC, kept whole (`GET /api/agents/{pc}/facts`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FactDocument {
    pub job_id: String,
    /// When the run that wrote it finished (epoch ms).
    pub finished_at: i64,
    pub result_id: String,
    pub body: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FactDocuments {
    pub pc_id: String,
    pub documents: Vec<FactDocument>,
}

/// A facts column's type, as a job declares it (`facts.explode[].columns`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    Text,
    Integer,
    Real,
    Bool,
    /// Stored as epoch milliseconds; RFC 3339 text or epoch milliseconds in the JSON.
    Timestamp,
}

impl ColumnType {
    pub const KNOWN: [&str; 5] = ["text", "integer", "real", "bool", "timestamp"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "text" => Some(Self::Text),
            "integer" => Some(Self::Integer),
            "real" => Some(Self::Real),
            "bool" => Some(Self::Bool),
            "timestamp" => Some(Self::Timestamp),
            _ => None,
        }
    }
}
