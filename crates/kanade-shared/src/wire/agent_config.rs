//! Values of the `agent_groups` and `agent_config` buckets, and the merge rule
//! (pc beats group beats global).

use serde::{Deserialize, Serialize};

use crate::HumanDuration;
use crate::ids::{GroupName, Version};

/// `agent_groups` value: the groups operators assigned to one pc (unioned with agent.toml's).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AgentGroups {
    #[serde(default)]
    pub groups: Vec<GroupName>,
}

/// `agent_config` value at one scope; absent fields leave the decision to a wider scope.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AgentConfigPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory_interval: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<Version>,
    /// Quarantined versions recorded at or before this instant are forgotten (an operator
    /// cleared them). Unlike the other fields, the latest instant of any scope applies.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    pub clear_quarantine: Option<super::Timestamp>,
}

impl AgentConfigPatch {
    /// Merge patches given least specific first: later ones win field by field.
    pub fn merge<'a>(patches: impl IntoIterator<Item = &'a AgentConfigPatch>) -> AgentConfigPatch {
        patches.into_iter().fold(AgentConfigPatch::default(), |acc, p| AgentConfigPatch {
            heartbeat_interval: p.heartbeat_interval.or(acc.heartbeat_interval),
            inventory_interval: p.inventory_interval.or(acc.inventory_interval),
            target_version: p.target_version.clone().or(acc.target_version),
            clear_quarantine: acc.clear_quarantine.max(p.clear_quarantine),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pc_beats_group_beats_global() {
        let global: AgentConfigPatch = serde_json::from_str(
            r#"{"heartbeat_interval":"30s","inventory_interval":"24h","target_version":"1.0.0"}"#,
        )
        .unwrap();
        let group: AgentConfigPatch =
            serde_json::from_str(r#"{"heartbeat_interval":"10s","future_knob":1}"#).unwrap();
        let pc: AgentConfigPatch = serde_json::from_str(r#"{"target_version":"1.1.0"}"#).unwrap();
        let merged = AgentConfigPatch::merge([&global, &group, &pc]);
        assert_eq!(merged.heartbeat_interval.map(|d| d.as_secs()), Some(10));
        assert_eq!(merged.inventory_interval.map(|d| d.as_secs()), Some(86_400));
        assert_eq!(merged.target_version.unwrap().as_str(), "1.1.0");
        assert_eq!(merged.clear_quarantine, None);
    }

    #[test]
    fn the_latest_quarantine_clearing_applies() {
        let global: AgentConfigPatch =
            serde_json::from_str(r#"{"clear_quarantine":"2026-11-24T10:00:00Z"}"#).unwrap();
        let pc: AgentConfigPatch =
            serde_json::from_str(r#"{"clear_quarantine":"2026-11-20T10:00:00Z"}"#).unwrap();
        let merged = AgentConfigPatch::merge([&global, &AgentConfigPatch::default(), &pc]);
        assert_eq!(merged.clear_quarantine, global.clear_quarantine);
    }
}
