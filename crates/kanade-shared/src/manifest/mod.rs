//! Jobs (manifests), plans and schedules: the human-written YAML schema and its validation.
//!
//! Parsing goes raw document → validate → domain type. Validation returns **every** problem with
//! its field path and bad value; unknown keys are problems too. The same parsers read the JSON
//! kept in the `jobs` and `schedules` KV buckets, so a stored value is always re-validated.

mod cron;
mod job;
pub mod outputs;
mod plan;

pub mod raw;
mod schedule;

pub use crate::problems::{Problem, Problems};
pub use cron::{CronExpr, CronSpec, parse_cron};
pub use job::{DEFAULT_TIMEOUT, Execute, JobFile, Manifest, ScriptSource, StalenessSpec};
pub use plan::{MAX_START_WITHIN, Plan, Rollout, Target, Wave};
pub use schedule::{FireMode, OnFailure, RetrySpec, Schedule, ScheduleJob};

use crate::problems::{Collector, parse_collecting};
use raw::{RawManifest, RawPlan, RawSchedule};

/// A job manifest, with its plan when it carries plan blocks (`kanade deploy`).
pub fn job_from_yaml(text: &str) -> Result<JobFile, Problems> {
    finish(from_yaml::<RawManifest>(text)?, |raw, c| job::validate_manifest(raw, "", c))
}

pub fn job_from_json(bytes: &[u8]) -> Result<JobFile, Problems> {
    finish(from_json::<RawManifest>(bytes)?, |raw, c| job::validate_manifest(raw, "", c))
}

/// A plan on its own: the body of `POST /api/exec/{job_id}`.
pub fn plan_from_yaml(text: &str) -> Result<Plan, Problems> {
    finish(from_yaml::<RawPlan>(text)?, run_plan)
}

pub fn plan_from_json(bytes: &[u8]) -> Result<Plan, Problems> {
    finish(from_json::<RawPlan>(bytes)?, run_plan)
}

/// A plan for one run (`POST /api/exec`'s body), which may override a fleet freeze.
fn run_plan(raw: RawPlan, c: &mut Collector) -> Option<Plan> {
    let plan = plan::validate_plan_parts(raw.target, raw.jitter, raw.rollout, raw.start_within, "", c)?;
    Some(Plan { override_freeze: raw.override_freeze.unwrap_or(false), ..plan })
}

pub fn schedule_from_yaml(text: &str) -> Result<Schedule, Problems> {
    finish(from_yaml::<RawSchedule>(text)?, schedule::validate_schedule)
}

pub fn schedule_from_json(bytes: &[u8]) -> Result<Schedule, Problems> {
    finish(from_json::<RawSchedule>(bytes)?, schedule::validate_schedule)
}

/// Unknown keys come first (in document order), then what validation found.
fn finish<R, T>(
    (raw, unknown): (R, Vec<Problem>),
    validate: impl FnOnce(R, &mut Collector) -> Option<T>,
) -> Result<T, Problems> {
    let mut c = Collector(unknown);
    let value = validate(raw, &mut c);
    c.finish(value)
}

fn from_yaml<R: serde::de::DeserializeOwned>(text: &str) -> Result<(R, Vec<Problem>), Problems> {
    if text.trim().is_empty() || text.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Err(Problems(vec![Problem::new("", "the document is empty")]));
    }
    refuse_aliases(text)?;
    parse_collecting(serde_yaml_ng::Deserializer::from_str(text))
}

/// Manifests and schedules may not use YAML aliases (`*name`). A parser expands every alias
/// into a copy of its anchor, so a few kilobytes of nested aliases ask for gigabytes; refusing
/// them keeps what a document costs to read proportional to its size. Checked on the parser's
/// events, which never expand anything, before the document is deserialized.
pub fn refuse_aliases(text: &str) -> Result<(), Problems> {
    use yaml_rust2::parser::{Event, Parser};
    let mut parser = Parser::new_from_str(text);
    loop {
        match parser.next_token() {
            Ok((Event::Alias(_), at)) => {
                return Err(Problems(vec![Problem::new(
                    "",
                    format!(
                        "line {} column {}: YAML aliases (*name) are not accepted; write the value out",
                        at.line(),
                        at.col() + 1
                    ),
                )]));
            }
            Ok((Event::StreamEnd, _)) => return Ok(()),
            Ok(_) => {}
            // Malformed YAML: the deserializer reports it with its own words.
            Err(_) => return Ok(()),
        }
    }
}

fn from_json<R: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<(R, Vec<Problem>), Problems> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = parse_collecting(&mut de)?;
    de.end().map_err(|e| Problems(vec![Problem::new("", e.to_string())]))?;
    Ok(parsed)
}

#[cfg(test)]
mod tests;
