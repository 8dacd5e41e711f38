//! The validated schedule: when a job runs on its own. Built only by validation.

use serde::Serialize;

use super::cron::{CronExpr, parse_cron};
use super::job::{Manifest, validate_manifest};
use super::plan::{Plan, validate_plan_parts};
use super::raw::{RawOnFailure, RawSchedule};
use crate::HumanDuration;
use crate::ids::{JobId, ScheduleId};
use crate::problems::{Collector, join};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Schedule {
    pub id: ScheduleId,
    pub cron: CronExpr,
    pub enabled: bool,
    #[serde(flatten)]
    pub job: ScheduleJob,
    pub plan: Plan,
    pub mode: FireMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<HumanDuration>,
    pub auto_disable_when_done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<OnFailure>,
    pub timezone: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ScheduleJob {
    #[serde(rename = "job_id")]
    Id(JobId),
    /// Registered into the job catalog when the schedule is stored.
    #[serde(rename = "manifest")]
    Inline(Box<Manifest>),
}

impl ScheduleJob {
    pub fn job_id(&self) -> &JobId {
        match self {
            Self::Id(id) => id,
            Self::Inline(m) => &m.id,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FireMode {
    EveryTick,
    OncePerPc,
    OncePerTarget,
}

impl FireMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "every_tick" => Some(Self::EveryTick),
            "once_per_pc" => Some(Self::OncePerPc),
            "once_per_target" => Some(Self::OncePerTarget),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OnFailure {
    pub retry: RetrySpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RetrySpec {
    pub max: u32,
    pub backoff: HumanDuration,
}

/// Retries beyond this are a loop, not a retry policy.
const MAX_RETRIES: u64 = 10;

pub(crate) fn validate_schedule(raw: RawSchedule, c: &mut Collector) -> Option<Schedule> {
    let before = c.0.len();
    let id = required(&raw.id, "id", c).and_then(|v| {
        c.check("id", v.text().and_then(|t| t.parse::<ScheduleId>().map_err(|e| e.to_string())))
    });
    let cron =
        required(&raw.cron, "cron", c).and_then(|v| c.check("cron", v.text().and_then(|t| parse_cron(&t))));
    let job = match (raw.job_id, raw.manifest) {
        (Some(id), None) => c
            .check("job_id", id.text().and_then(|t| t.parse::<JobId>().map_err(|e| e.to_string())))
            .map(ScheduleJob::Id),
        (None, Some(m)) => validate_manifest(m, "manifest", c).and_then(|file| {
            if file.plan.is_some() {
                c.push("manifest", "has target or rollout; put them under plan");
                None
            } else {
                Some(ScheduleJob::Inline(Box::new(file.manifest)))
            }
        }),
        (Some(_), Some(_)) => {
            c.push("job_id", "set either job_id or an inline manifest, not both");
            None
        }
        (None, None) => {
            c.push("job_id", "is required (or give an inline manifest)");
            None
        }
    };
    let plan = match raw.plan {
        None => {
            c.push("plan", "is required: a schedule needs a target (plan: { target: { groups: [...] } })");
            None
        }
        Some(p) => {
            if p.override_freeze == Some(true) {
                c.push(
                    "plan.override_freeze",
                    "a schedule is skipped while the fleet is frozen; only a manual run can override a freeze",
                );
            }
            validate_plan_parts(p.target, p.jitter, p.rollout, p.start_within, "plan", c)
        }
    };
    let mode = match raw.mode.as_deref() {
        None => Some(FireMode::EveryTick),
        Some(m) => FireMode::parse(m).or_else(|| {
            c.push("mode", format!("{m:?} is not one of every_tick, once_per_pc, once_per_target"));
            None
        }),
    };
    let cooldown = raw.cooldown.and_then(|d| c.check("cooldown", d.duration()));
    let auto_disable = raw.auto_disable_when_done.unwrap_or(false);
    if mode == Some(FireMode::EveryTick) {
        if cooldown.is_some() {
            c.push("cooldown", "only applies to mode once_per_pc or once_per_target");
        }
        if auto_disable {
            c.push("auto_disable_when_done", "only applies to mode once_per_pc or once_per_target");
        }
    }
    let on_failure = raw.on_failure.and_then(|f| validate_on_failure(f, c));
    let timezone = raw.timezone.unwrap_or_else(|| "UTC".to_owned());
    if !plausible_timezone(&timezone) {
        c.push(
            "timezone",
            format!("{timezone:?} is not a time zone name (e.g. UTC, Europe/Paris, Asia/Tokyo)"),
        );
    }
    let schedule = Schedule {
        id: id?,
        cron: cron?,
        enabled: raw.enabled.unwrap_or(true),
        job: job?,
        plan: plan?,
        mode: mode?,
        cooldown,
        auto_disable_when_done: auto_disable,
        on_failure,
        timezone,
    };
    (c.0.len() == before).then_some(schedule)
}

fn required<'a, T>(value: &'a Option<T>, path: &str, c: &mut Collector) -> Option<&'a T> {
    if value.is_none() {
        c.push(path, "is required");
    }
    value.as_ref()
}

fn validate_on_failure(raw: RawOnFailure, c: &mut Collector) -> Option<OnFailure> {
    let at = "on_failure.retry";
    let Some(retry) = raw.retry else {
        c.push(at, "is required inside on_failure ({ max: 2, backoff: 5m })");
        return None;
    };
    let max = match retry.max {
        None => {
            c.push(join(at, "max"), "is required");
            None
        }
        Some(m) => match c.check(&join(at, "max"), m.whole()) {
            Some(n) if (1..=MAX_RETRIES).contains(&n) => Some(n as u32),
            Some(_) => {
                c.push(join(at, "max"), format!("{m} is outside 1..={MAX_RETRIES}"));
                None
            }
            None => None,
        },
    };
    let backoff = match retry.backoff {
        None => Some(HumanDuration::from_secs(0)),
        Some(b) => c.check(&join(at, "backoff"), b.duration()),
    };
    Some(OnFailure { retry: RetrySpec { max: max?, backoff: backoff? } })
}

/// IANA names (`Area/Location`), `UTC` and fixed offsets; the scheduler resolves the name
/// against its time zone database when it computes fire times.
fn plausible_timezone(tz: &str) -> bool {
    if matches!(tz, "UTC" | "Etc/UTC" | "GMT") {
        return true;
    }
    !tz.is_empty()
        && tz.len() <= 64
        && tz.split('/').all(|part| {
            part.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
                && part.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+'))
        })
        && (tz.contains('/')
            || tz.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'+' || b == b'-'))
}
