//! `Heartbeat`: the agent's periodic "alive" message, also the reply to a ping.

use serde::{Deserialize, Serialize};

use super::{Timestamp, schema_v1};
use crate::ids::{GroupName, PcId, Version};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Heartbeat {
    #[serde(default = "schema_v1")]
    pub schema: u32,
    pub pc_id: PcId,
    pub hostname: String,
    pub os: OsInfo,
    pub arch: String,
    pub agent_version: Version,
    #[serde(default)]
    pub groups: Vec<GroupName>,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub at: Timestamp,
    #[serde(default)]
    pub uptime_secs: u64,
    #[serde(default)]
    pub agent_rss_bytes: u64,
    #[serde(default)]
    pub agent_cpu_pct: f32,
    #[serde(default)]
    pub running_jobs: u32,
    /// Versions this agent refuses to install again (they failed to start).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quarantined: Vec<crate::boot::Quarantine>,
    /// Why the version the fleet asks for is not running yet, while that lasts (a missing
    /// release, a refused download, a wait for jitter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct OsInfo {
    /// `windows`, `linux`, `macos`, ...
    pub family: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: String,
}
