//! Values of the `agent_groups` and `agent_config` buckets, and the merge rule
//! (pc beats group beats global).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::HumanDuration;
use crate::ids::{GroupName, PcId, Version};

/// `agent_groups` value: the groups one pc joins (unioned with agent.toml's). Agents read
/// `groups` only; the backend keeps there what operators assigned plus the dynamic groups whose
/// rule the pc matches, and records which is which so neither overwrites the other.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AgentGroups {
    #[serde(default)]
    pub groups: Vec<GroupName>,
    /// Assigned by operators; absent in values written before dynamic groups (then `groups`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned: Option<Vec<GroupName>>,
    /// Dynamic groups the pc matched at the last evaluation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dynamic: Vec<GroupName>,
}

impl AgentGroups {
    /// Operator-assigned and dynamic groups together; `groups` is their union, assigned first.
    pub fn compose(assigned: Vec<GroupName>, dynamic: Vec<GroupName>) -> Self {
        let mut groups = assigned.clone();
        for g in &dynamic {
            if !groups.contains(g) {
                groups.push(g.clone());
            }
        }
        AgentGroups { groups, assigned: Some(assigned), dynamic }
    }

    /// What operators assigned.
    pub fn assigned(&self) -> &[GroupName] {
        self.assigned.as_deref().unwrap_or(&self.groups)
    }
}

/// `agent_config` value at one scope; absent fields leave the decision to a wider scope.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AgentConfigPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory_interval: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<Version>,
    /// How often the agent samples host performance (`0s` = never); 60 s when no scope says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_perf_interval: Option<HumanDuration>,
    /// Investigation mode: also sample the busiest processes, until `process_perf_expires_at`
    /// (without one it stays off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_perf_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub process_perf_expires_at: Option<super::Timestamp>,
    /// How many processes by CPU and by memory; 20 when no scope says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_perf_top_n: Option<u32>,
    /// Quarantined versions recorded at or before this instant are forgotten (an operator
    /// cleared them). Unlike the other fields, the latest instant of any scope applies.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub clear_quarantine: Option<super::Timestamp>,
}

impl AgentConfigPatch {
    /// Merge patches given least specific first: later ones win field by field.
    pub fn merge<'a>(patches: impl IntoIterator<Item = &'a AgentConfigPatch>) -> AgentConfigPatch {
        patches.into_iter().fold(AgentConfigPatch::default(), |acc, p| AgentConfigPatch {
            heartbeat_interval: p.heartbeat_interval.or(acc.heartbeat_interval),
            inventory_interval: p.inventory_interval.or(acc.inventory_interval),
            target_version: p.target_version.clone().or(acc.target_version),
            host_perf_interval: p.host_perf_interval.or(acc.host_perf_interval),
            process_perf_enabled: p.process_perf_enabled.or(acc.process_perf_enabled),
            process_perf_expires_at: p.process_perf_expires_at.or(acc.process_perf_expires_at),
            process_perf_top_n: p.process_perf_top_n.or(acc.process_perf_top_n),
            clear_quarantine: acc.clear_quarantine.max(p.clear_quarantine),
        })
    }
}

/// The fields an `agent_config` scope may set, as operators name them.
pub const FIELDS: &[&str] = &[
    "heartbeat_interval",
    "inventory_interval",
    "host_perf_interval",
    "process_perf_enabled",
    "process_perf_expires_at",
    "process_perf_top_n",
    "target_version",
    "clear_quarantine",
];

/// How a field written as text (`kanade agent config set KEY=VALUE`) becomes JSON: booleans
/// and counts for the fields that hold them, a string for the rest (durations, versions,
/// instants). Text that is not what the field holds stays a string, so the API names it.
pub fn typed_value(field: &str, text: &str) -> Value {
    match field {
        "process_perf_enabled" => text.parse::<bool>().map_or_else(|_| Value::from(text), Value::from),
        "process_perf_top_n" => text.parse::<u64>().map_or_else(|_| Value::from(text), Value::from),
        _ => Value::from(text),
    }
}

/// Investigation mode can be set at most this far ahead: it costs every PC it covers, so a
/// longer one is renewed on purpose, not forgotten.
pub const PROCESS_PERF_AHEAD: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);
/// The most processes per list (by CPU, by memory) one sample may carry.
pub const MAX_TOP_N: u32 = 100;
pub const DEFAULT_TOP_N: u32 = 20;

/// One scope of `agent_config`, as the API and CLI write it: `global`, `group:<g>`, `pc:<pc>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigScope {
    Global,
    Group(GroupName),
    Pc(PcId),
}

impl ConfigScope {
    /// The bucket key: `global`, `groups.<g>`, `pcs.<pc>`.
    pub fn key(&self) -> String {
        match self {
            Self::Global => "global".into(),
            Self::Group(g) => format!("groups.{g}"),
            Self::Pc(p) => format!("pcs.{p}"),
        }
    }

    /// The scope of a bucket key; `None` for a key kanade does not write.
    pub fn from_key(key: &str) -> Option<Self> {
        match key.split_once('.') {
            None if key == "global" => Some(Self::Global),
            Some(("groups", g)) => g.parse().ok().map(Self::Group),
            Some(("pcs", p)) => p.parse().ok().map(Self::Pc),
            _ => None,
        }
    }
}

impl std::fmt::Display for ConfigScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Global => f.write_str("global"),
            Self::Group(g) => write!(f, "group:{g}"),
            Self::Pc(p) => write!(f, "pc:{p}"),
        }
    }
}

impl std::str::FromStr for ConfigScope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |what: &str, e: crate::IdError| format!("scope {s:?}: {what}: {e}");
        match s.split_once(':') {
            None if s == "global" => Ok(Self::Global),
            Some(("group", g)) => g.parse().map(Self::Group).map_err(|e| bad("group", e)),
            Some(("pc", p)) => p.parse().map(Self::Pc).map_err(|e| bad("pc", e)),
            _ => Err(format!("scope {s:?}: write global, group:<name> or pc:<id>")),
        }
    }
}

/// A `clear_quarantine` may be this far ahead of the backend's clock (skew), no further: one in
/// the future would clear every quarantine as it happens, and a crash-looping release would be
/// installed again and again.
pub const CLEAR_QUARANTINE_AHEAD: std::time::Duration = std::time::Duration::from_secs(300);

/// The limits a parsed field must keep, so one edit cannot make a fleet beat or collect
/// without pause.
fn in_bounds(p: &AgentConfigPatch, now: super::Timestamp) -> Result<(), String> {
    let secs = |d: Option<HumanDuration>| d.map(|d| d.get());
    let second = std::time::Duration::from_secs(1);
    if secs(p.heartbeat_interval).is_some_and(|d| d < second) {
        return Err("at least 1s".into());
    }
    if secs(p.inventory_interval).is_some_and(|d| d < std::time::Duration::from_secs(60)) {
        return Err("at least 1m".into());
    }
    if secs(p.host_perf_interval).is_some_and(|d| !d.is_zero() && d < second) {
        return Err("0s (off) or at least 1s".into());
    }
    if p.process_perf_top_n.is_some_and(|n| !(1..=MAX_TOP_N).contains(&n)) {
        return Err(format!("1 to {MAX_TOP_N}"));
    }
    if p.process_perf_expires_at.is_some_and(|at| at > now + PROCESS_PERF_AHEAD) {
        return Err("at most 7 days ahead; renew an investigation that must last longer".into());
    }
    if p.process_perf_expires_at.is_some_and(|at| at <= now) {
        return Err("already past; to end an investigation set process_perf_enabled=false".into());
    }
    if p.clear_quarantine.is_some_and(|at| at > now + CLEAR_QUARANTINE_AHEAD) {
        return Err("in the future; clearing applies to quarantines recorded before it, so use now".into());
    }
    Ok(())
}

/// Apply an operator's edit to a scope's stored fields: each field of `edit` is set, or removed
/// when `null`. Every unknown field and bad value is reported, named; nothing is applied then.
/// Fields already stored that this version does not know are kept as they are.
pub fn apply_edit(
    stored: &Map<String, Value>,
    edit: &Map<String, Value>,
    now: super::Timestamp,
) -> Result<Map<String, Value>, Vec<String>> {
    let mut problems = Vec::new();
    let mut out = stored.clone();
    for (field, value) in edit {
        if !FIELDS.contains(&field.as_str()) {
            problems.push(format!("{field}: unknown field (known: {})", FIELDS.join(", ")));
            continue;
        }
        if value.is_null() {
            out.remove(field);
            continue;
        }
        let one = Value::Object(Map::from_iter([(field.clone(), value.clone())]));
        match serde_json::from_value::<AgentConfigPatch>(one)
            .map_err(|e| e.to_string())
            .and_then(|p| in_bounds(&p, now))
        {
            Ok(()) => {
                out.insert(field.clone(), value.clone());
            }
            Err(e) => problems.push(format!("{field}: {value} is not valid: {e}")),
        }
    }
    let on = out.get("process_perf_enabled") == Some(&Value::Bool(true));
    // An expiry that was given but refused is already named.
    if on && !out.contains_key("process_perf_expires_at") && !edit.contains_key("process_perf_expires_at") {
        problems.push(
            "process_perf_enabled: needs process_perf_expires_at in the same scope (investigation mode always ends)"
                .into(),
        );
    }
    if problems.is_empty() { Ok(out) } else { Err(problems) }
}

impl AgentConfigPatch {
    /// Whether investigation mode is on at `now`, and with how many processes per list.
    pub fn investigating(&self, now: super::Timestamp) -> Option<usize> {
        let on = self.process_perf_enabled == Some(true)
            && self.process_perf_expires_at.is_some_and(|until| now < until);
        on.then(|| self.process_perf_top_n.unwrap_or(DEFAULT_TOP_N).clamp(1, MAX_TOP_N) as usize)
    }
}

/// `GET /api/agent/config`: every scope that sets something.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AgentConfigScopes {
    pub scopes: Vec<ScopeConfig>,
}

/// One scope and the fields it sets (`PATCH /api/agent/config/{scope}` answers one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ScopeConfig {
    /// As operators write it: `global`, `group:<g>`, `pc:<pc>`.
    pub scope: String,
    pub config: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_map_to_keys() {
        for (text, key) in [("global", "global"), ("group:lab", "groups.lab"), ("pc:PC-1", "pcs.PC-1")] {
            let scope: ConfigScope = text.parse().unwrap();
            assert_eq!((scope.key(), scope.to_string()), (key.to_owned(), text.to_owned()));
            assert_eq!(ConfigScope::from_key(key), Some(scope));
        }
        for (bad, says) in [
            ("everyone", "write global, group:<name> or pc:<id>"),
            ("pc:my pc", "scope \"pc:my pc\": pc:"),
            ("group:a.b", "scope \"group:a.b\": group:"),
        ] {
            let err = bad.parse::<ConfigScope>().unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert_eq!(ConfigScope::from_key("pcs"), None);
    }

    fn object(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn edits_set_remove_and_name_every_problem() {
        let stored = object(r#"{"heartbeat_interval":"30s","future_knob":1}"#);
        let now: crate::wire::Timestamp = time::macros::datetime!(2026-12-02 12:00 UTC);
        // (edit, result or the problems)
        let cases: [(&str, Result<&str, Vec<&str>>); 9] = [
            (
                r#"{"inventory_interval":"1h","heartbeat_interval":null}"#,
                Ok(r#"{"future_knob":1,"inventory_interval":"1h"}"#),
            ),
            (
                r#"{"target_version":"2.0.0"}"#,
                Ok(r#"{"heartbeat_interval":"30s","future_knob":1,"target_version":"2.0.0"}"#),
            ),
            (
                r#"{"heartbeat":"2s","inventory_interval":"soon","heartbeat_interval":"5s"}"#,
                Err(vec![
                    "heartbeat: unknown field (known: heartbeat_interval",
                    "inventory_interval: \"soon\" is not valid",
                ]),
            ),
            (
                r#"{"clear_quarantine":"yesterday"}"#,
                Err(vec!["clear_quarantine: \"yesterday\" is not valid"]),
            ),
            (
                r#"{"clear_quarantine":"2026-12-02T12:04:00Z"}"#,
                Ok(
                    r#"{"heartbeat_interval":"30s","future_knob":1,"clear_quarantine":"2026-12-02T12:04:00Z"}"#,
                ),
            ),
            (
                r#"{"clear_quarantine":"2026-12-03T12:00:00Z"}"#,
                Err(vec!["clear_quarantine: \"2026-12-03T12:00:00Z\" is not valid: in the future"]),
            ),
            (
                r#"{"heartbeat_interval":"1ms"}"#,
                Err(vec!["heartbeat_interval: \"1ms\" is not valid: at least 1s"]),
            ),
            (
                r#"{"inventory_interval":"0s","host_perf_interval":"500ms"}"#,
                Err(vec![
                    "host_perf_interval: \"500ms\" is not valid: 0s (off) or at least 1s",
                    "inventory_interval: \"0s\" is not valid: at least 1m",
                ]),
            ),
            (
                r#"{"host_perf_interval":"0s"}"#,
                Ok(r#"{"heartbeat_interval":"30s","future_knob":1,"host_perf_interval":"0s"}"#),
            ),
        ];
        for (edit, want) in cases {
            match (apply_edit(&stored, &object(edit), now), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, object(want), "{edit}"),
                (Err(got), Err(want)) => {
                    assert_eq!(got.len(), want.len(), "{edit}: {got:?}");
                    for (g, w) in got.iter().zip(want) {
                        assert!(g.starts_with(w), "{edit}: {g:?} does not start with {w:?}");
                    }
                }
                (got, want) => panic!("{edit}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn investigation_mode_needs_an_expiry_and_ends_there() {
        let now: crate::wire::Timestamp = time::macros::datetime!(2026-12-02 12:00 UTC);
        let stored = Map::new();
        let on = object(r#"{"process_perf_enabled":true,"process_perf_expires_at":"2026-12-02T14:00:00Z"}"#);
        let out = apply_edit(&stored, &on, now).unwrap();
        let patch: AgentConfigPatch = serde_json::from_value(Value::Object(out)).unwrap();
        assert_eq!(patch.investigating(now), Some(DEFAULT_TOP_N as usize));
        assert_eq!(patch.investigating(now + time::Duration::hours(2)), None, "ends at the expiry");
        for (edit, says) in [
            (r#"{"process_perf_enabled":true}"#, "needs process_perf_expires_at"),
            (r#"{"process_perf_top_n":0}"#, "1 to 100"),
            (r#"{"process_perf_top_n":101}"#, "1 to 100"),
            (r#"{"process_perf_expires_at":"2026-12-10T12:00:00Z"}"#, "at most 7 days ahead"),
            (r#"{"process_perf_expires_at":"2026-12-02T11:00:00Z"}"#, "already past"),
        ] {
            let err = apply_edit(&stored, &object(edit), now).unwrap_err();
            assert!(err.iter().any(|e| e.contains(says)), "{edit}: {err:?}");
        }
        // A refused expiry is named once, not again as a missing one.
        let err = apply_edit(
            &stored,
            &object(r#"{"process_perf_enabled":true,"process_perf_expires_at":"2027-01-01T00:00:00Z"}"#),
            now,
        )
        .unwrap_err();
        assert_eq!(err.len(), 1, "{err:?}");
        assert_eq!(typed_value("process_perf_enabled", "true"), Value::Bool(true));
        assert_eq!(typed_value("process_perf_top_n", "10"), Value::from(10));
        assert_eq!(typed_value("process_perf_top_n", "ten"), Value::from("ten"));
        assert_eq!(typed_value("target_version", "2"), Value::from("2"));
        let off: AgentConfigPatch = serde_json::from_str(r#"{"process_perf_enabled":true}"#).unwrap();
        assert_eq!(off.investigating(now), None, "no expiry, no investigation");
    }

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

#[cfg(test)]
mod groups_tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<GroupName> {
        list.iter().map(|g| g.parse().unwrap()).collect()
    }

    #[test]
    fn assigned_and_dynamic_groups_stay_apart_in_one_value() {
        let v = AgentGroups::compose(names(&["lab", "kiosk"]), names(&["low-disk", "lab"]));
        assert_eq!(v.groups, names(&["lab", "kiosk", "low-disk"]));
        assert_eq!(v.assigned(), names(&["lab", "kiosk"]));
        // A value written before dynamic groups: all of it was assigned.
        let old: AgentGroups = serde_json::from_str(r#"{"groups":["lab"]}"#).unwrap();
        assert_eq!(old.assigned(), names(&["lab"]));
        assert_eq!(
            serde_json::to_string(&AgentGroups::compose(names(&["lab"]), vec![])).unwrap(),
            r#"{"groups":["lab"],"assigned":["lab"]}"#
        );
    }
}
