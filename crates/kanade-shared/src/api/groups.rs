//! Dynamic groups: PCs matching a rule.

use serde::{Deserialize, Serialize};

use crate::PcId;

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
