//! The validated plan: where and how fast a job runs. Built only by validation.

use std::collections::BTreeSet;

use serde::Serialize;

use super::raw::{RawRollout, RawTarget, RawWave};
use crate::HumanDuration;
use crate::ids::{GroupName, PcId};
use crate::problems::{Collector, Scalar, index, join};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Empty when the rollout's waves define who runs it.
    #[serde(skip_serializing_if = "Target::is_empty")]
    pub target: Target,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitter: Option<HumanDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// A PC that has not started the run this long after it was issued (plus the last wave's
    /// delay) skips it; unset: the backend's `[exec] start_within`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_within: Option<HumanDuration>,
    /// A manual run during a fleet freeze goes ahead (audited); a run's own say, never stored
    /// with a job or schedule.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub override_freeze: bool,
}

/// The longest `start_within` there is: EXEC keeps a command 7 days, so no PC can start one later.
pub const MAX_START_WITHIN: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Target {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pcs: Vec<PcId>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupName>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
}

impl Target {
    pub fn is_empty(&self) -> bool {
        !self.all && self.pcs.is_empty() && self.groups.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rollout {
    pub strategy: &'static str,
    pub waves: Vec<Wave>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_failure_ratio: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Wave {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupName>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pcs: Vec<PcId>,
    /// Counted from the start of the rollout, not from the previous wave.
    pub delay: HumanDuration,
}

/// Validate plan blocks found under `at` (the document root for a manifest, `plan` for a
/// schedule).
pub(crate) fn validate_plan_parts(
    target: Option<RawTarget>,
    jitter: Option<Scalar>,
    rollout: Option<RawRollout>,
    start_within: Option<Scalar>,
    at: &str,
    c: &mut Collector,
) -> Option<Plan> {
    let before = c.0.len();
    let start_path = join(at, "start_within");
    let start_within = start_within.and_then(|s| c.check(&start_path, s.duration()));
    if let Some(s) = start_within
        && (s.get().is_zero() || s.get() > MAX_START_WITHIN)
    {
        c.push(&start_path, format!("{s} is not between 1s and 7d (EXEC keeps a command 7 days)"));
    }
    let has_target = target.is_some();
    let target = target.map(|t| validate_target(t, &join(at, "target"), c)).unwrap_or_default();
    let jitter = jitter.and_then(|j| c.check(&join(at, "jitter"), j.duration()));
    let rollout = rollout.and_then(|r| validate_rollout(r, &join(at, "rollout"), c));
    if has_target && rollout.is_some() {
        c.push(join(at, "target"), "cannot be combined with rollout.waves: the waves name who runs it");
    } else if c.0.len() == before && target.is_empty() && rollout.is_none() {
        c.push(join(at, "target"), "a plan must name a target (pcs, groups or all: true) or rollout.waves");
    }
    (c.0.len() == before).then_some(Plan { target, jitter, rollout, start_within, override_freeze: false })
}

fn validate_target(raw: RawTarget, at: &str, c: &mut Collector) -> Target {
    let pcs = ids::<PcId>(raw.pcs.unwrap_or_default(), &join(at, "pcs"), c);
    let groups = ids::<GroupName>(raw.groups.unwrap_or_default(), &join(at, "groups"), c);
    let all = raw.all.unwrap_or(false);
    if all && (!pcs.is_empty() || !groups.is_empty()) {
        c.push(join(at, "all"), "true already means every PC; remove pcs and groups, or set all: false");
    }
    Target { pcs, groups, all }
}

fn ids<T: std::str::FromStr<Err = crate::IdError> + Ord + Clone>(
    raw: Vec<Scalar>,
    at: &str,
    c: &mut Collector,
) -> Vec<T> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, value) in raw.iter().enumerate() {
        let path = index(at, i);
        let Some(id) = c.check(&path, value.text().and_then(|t| t.parse::<T>().map_err(|e| e.to_string())))
        else {
            continue;
        };
        if seen.insert(id.clone()) {
            out.push(id);
        } else {
            c.push(path, format!("{value} is listed twice"));
        }
    }
    out
}

fn validate_rollout(raw: RawRollout, at: &str, c: &mut Collector) -> Option<Rollout> {
    let before = c.0.len();
    if let Some(s) = raw.strategy.as_deref().filter(|s| *s != "wave") {
        c.push(join(at, "strategy"), format!("{s:?} is not a strategy (the only one is wave)"));
    }
    let max_failure_ratio = raw.max_failure_ratio.and_then(|r| {
        let path = join(at, "max_failure_ratio");
        match c.check(&path, r.number()) {
            Some(x) if (0.0..=1.0).contains(&x) => Some(x),
            Some(_) => {
                c.push(path, format!("{r} is outside 0.0..=1.0"));
                None
            }
            None => None,
        }
    });
    let raw_waves = raw.waves.unwrap_or_default();
    if raw_waves.is_empty() {
        c.push(join(at, "waves"), "a rollout needs at least one wave");
    }
    let mut waves = Vec::new();
    let mut previous: Option<HumanDuration> = None;
    for (i, w) in raw_waves.into_iter().enumerate() {
        let path = index(&join(at, "waves"), i);
        if let Some(wave) = validate_wave(w, &path, c) {
            if let Some(prev) = previous.filter(|p| wave.delay < *p) {
                c.push(
                    join(&path, "delay"),
                    format!("{} is earlier than the wave before it ({prev}); delays count from the start of the rollout", wave.delay),
                );
            }
            previous = Some(wave.delay);
            waves.push(wave);
        }
    }
    (c.0.len() == before).then_some(Rollout { strategy: "wave", waves, max_failure_ratio })
}

fn validate_wave(raw: RawWave, at: &str, c: &mut Collector) -> Option<Wave> {
    let before = c.0.len();
    let group = raw.group.and_then(|g| {
        c.check(&join(at, "group"), g.text().and_then(|t| t.parse::<GroupName>().map_err(|e| e.to_string())))
    });
    let pcs = ids::<PcId>(raw.pcs.unwrap_or_default(), &join(at, "pcs"), c);
    if c.0.len() == before {
        match (&group, pcs.is_empty()) {
            (None, true) => c.push(at, "a wave needs a group or pcs"),
            (Some(_), false) => c.push(at, "a wave takes a group or pcs, not both"),
            _ => {}
        }
    }
    let delay = match raw.delay {
        None => Some(HumanDuration::from_secs(0)),
        Some(d) => c.check(&join(at, "delay"), d.duration()),
    };
    (c.0.len() == before).then_some(Wave { group, pcs, delay: delay? })
}
