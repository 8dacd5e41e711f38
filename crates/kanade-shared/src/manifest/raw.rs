//! Raw, as-written shapes of human-written YAML (or JSON). Everything is optional and scalars are
//! loose so validation can report every problem; unknown keys are collected by the parse step.
//! Their JSON Schema is what the API documents for a job, plan or schedule body (the rules
//! themselves are validation's: the manifest reference and the 422 name each problem).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::problems::Scalar;

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(expecting = "a job manifest (a mapping with id, version, execute, ...)")]
pub struct RawManifest {
    pub id: Option<Scalar>,
    pub version: Option<Scalar>,
    pub description: Option<String>,
    pub execute: Option<RawExecute>,
    pub staleness: Option<RawStaleness>,
    pub target: Option<RawTarget>,
    pub jitter: Option<Scalar>,
    pub rollout: Option<RawRollout>,
    pub start_within: Option<Scalar>,
    pub emit: Option<String>,
    pub check: Option<RawCheck>,
    pub facts: Option<RawFacts>,
    pub override_freeze: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(expecting = "a check (a mapping with name, status_field, detail_field)")]
pub struct RawCheck {
    pub name: Option<String>,
    pub status_field: Option<String>,
    pub detail_field: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(expecting = "facts (a mapping with explode: a list of tables)")]
pub struct RawFacts {
    pub explode: Option<Vec<RawExplode>>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(expecting = "a facts table (a mapping with table, path, key, columns)")]
pub struct RawExplode {
    pub table: Option<String>,
    pub path: Option<String>,
    pub key: Option<Vec<Scalar>>,
    pub columns: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(expecting = "an execute block (a mapping with shell, script, timeout, ...)")]
pub struct RawExecute {
    pub shell: Option<String>,
    pub script: Option<String>,
    pub script_file: Option<String>,
    pub script_object: Option<String>,
    pub script_sha256: Option<String>,
    pub timeout: Option<Scalar>,
    pub jitter: Option<Scalar>,
    pub cwd: Option<String>,
    pub run_as: Option<String>,
    pub env: Option<BTreeMap<String, Scalar>>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(expecting = "a staleness block ({ mode: cached | strict | unchecked })")]
pub struct RawStaleness {
    pub mode: Option<String>,
    pub max_cache_age: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(expecting = "a plan (a mapping with target, jitter, rollout, start_within)")]
pub struct RawPlan {
    pub target: Option<RawTarget>,
    pub jitter: Option<Scalar>,
    pub rollout: Option<RawRollout>,
    pub start_within: Option<Scalar>,
    pub override_freeze: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(expecting = "a target ({ pcs: [...], groups: [...], all: true|false })")]
pub struct RawTarget {
    pub pcs: Option<Vec<Scalar>>,
    pub groups: Option<Vec<Scalar>>,
    pub all: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(expecting = "a rollout block ({ strategy: wave, waves: [...], max_failure_ratio })")]
pub struct RawRollout {
    pub strategy: Option<String>,
    pub waves: Option<Vec<RawWave>>,
    pub max_failure_ratio: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(expecting = "a wave ({ group: g, delay: 30m } or { pcs: [...], delay: 0s })")]
pub struct RawWave {
    pub group: Option<Scalar>,
    pub pcs: Option<Vec<Scalar>>,
    pub delay: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(expecting = "a schedule (a mapping with id, cron, job_id or manifest, plan, mode, ...)")]
pub struct RawSchedule {
    pub id: Option<Scalar>,
    pub cron: Option<Scalar>,
    pub enabled: Option<bool>,
    pub job_id: Option<Scalar>,
    pub manifest: Option<RawManifest>,
    pub plan: Option<RawPlan>,
    pub mode: Option<String>,
    pub cooldown: Option<Scalar>,
    pub auto_disable_when_done: Option<bool>,
    pub on_failure: Option<RawOnFailure>,
    pub timezone: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(expecting = "an on_failure block ({ retry: { max: 2, backoff: 5m } })")]
pub struct RawOnFailure {
    pub retry: Option<RawRetry>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(expecting = "a retry block ({ max: 2, backoff: 5m })")]
pub struct RawRetry {
    pub max: Option<Scalar>,
    pub backoff: Option<Scalar>,
}
