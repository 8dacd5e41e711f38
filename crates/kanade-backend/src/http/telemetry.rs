//! Endpoint telemetry (SPEC §12): host and process performance of one agent, and the
//! observability-events timeline.

use super::Json;
use super::Path;
use super::Query;
use axum::extract::State;
use kanade_shared::PcId;
use kanade_shared::api::fleet::EventsQuery;
use kanade_shared::api::fleet::HostPerfQuery;
use kanade_shared::api::fleet::ProcessQuery;
use kanade_shared::wire::{self, ObsEvents};

use super::pc_id;
use super::{ApiError, AppState};
use crate::db::queries::ObsFilter;

/// Samples at most per answer (a week of one agent at 60 s is 10,080).
const PERF_LIMIT: i64 = 20_000;

const PROCESS_LIMIT: i64 = 720;
const PROCESS_LIMIT_MAX: i64 = 2000;

/// The pure range rule: `until` defaults to now, `since` to an hour before `until`.
/// Both bounds lie between 1970 and the end of year 9999 (bucket arithmetic stays in range).
pub fn perf_range(q_since: Option<i64>, q_until: Option<i64>, now_ms: i64) -> Result<(i64, i64), String> {
    const LAST_MS: i64 = 253_402_300_799_999;
    for (name, v) in [("since", q_since), ("until", q_until)] {
        if let Some(v) = v.filter(|v| !(0..=LAST_MS).contains(v)) {
            return Err(format!("{name}: {v} is not epoch milliseconds between 0 and {LAST_MS}"));
        }
    }
    let until = q_until.unwrap_or(now_ms);
    let since = q_since.unwrap_or(until.saturating_sub(3_600_000).max(0));
    if since > until {
        return Err(format!("since ({since}) is after until ({until}); both are epoch milliseconds"));
    }
    Ok((since, until))
}

const DAY_MS: i64 = 24 * 3_600_000;

/// Which resolution answers a range: raw for a day or less, 5-minute buckets up to 31 days,
/// hourly beyond; never one whose retention (raw and 5 min: 30 days) no longer covers `since`.
/// `asked` overrides. Returns the name and the bucket size (`None`: raw).
pub fn resolution(
    since_ms: i64,
    until_ms: i64,
    now_ms: i64,
    asked: Option<&str>,
) -> Result<(&'static str, Option<i64>), String> {
    use crate::db::projection::rollups::{FIVE_MINUTES_MS, HOUR_MS};
    match asked {
        Some("raw") => return Ok(("raw", None)),
        Some("5m") => return Ok(("5m", Some(FIVE_MINUTES_MS))),
        Some("1h") => return Ok(("1h", Some(HOUR_MS))),
        Some(other) => return Err(format!("resolution: {other:?} is not one of raw, 5m, 1h")),
        None => {}
    }
    let kept = since_ms >= now_ms - 30 * DAY_MS;
    let span = until_ms - since_ms;
    Ok(if kept && span <= DAY_MS {
        ("raw", None)
    } else if kept && span <= 31 * DAY_MS {
        ("5m", Some(FIVE_MINUTES_MS))
    } else {
        ("1h", Some(HOUR_MS))
    })
}

pub async fn agent_perf(
    State(state): State<AppState>,
    Path(pc): Path<String>,
    Query(q): Query<HostPerfQuery>,
) -> Result<Json<wire::PerfSamples>, ApiError> {
    let pc = pc_id(&pc)?;
    let now = crate::db::now_ms();
    let (since_ms, until_ms) = perf_range(q.since, q.until, now).map_err(|e| ApiError::invalid(vec![e]))?;
    let (mut name, mut rollup) = resolution(since_ms, until_ms, now, q.resolution.as_deref())
        .map_err(|e| ApiError::invalid(vec![e]))?;
    // A day at a short interval holds more samples than an answer: 5-minute averages show all of it.
    if rollup.is_none()
        && q.resolution.is_none()
        && state.db.host_perf_count(pc.clone(), since_ms, until_ms).await? > PERF_LIMIT
    {
        (name, rollup) = ("5m", Some(crate::db::projection::rollups::FIVE_MINUTES_MS));
    }
    let samples = state.db.host_perf(pc.clone(), since_ms, until_ms, PERF_LIMIT, rollup).await?;
    if samples.is_empty() {
        known(&state, &pc).await?;
    }
    let truncated = samples.len() as i64 == PERF_LIMIT;
    Ok(Json(wire::PerfSamples {
        pc_id: pc.to_string(),
        since_ms,
        until_ms,
        resolution: name.into(),
        samples,
        truncated,
    }))
}

pub async fn agent_processes(
    State(state): State<AppState>,
    Path(pc): Path<String>,
    Query(q): Query<ProcessQuery>,
) -> Result<Json<wire::ProcessSamples>, ApiError> {
    let pc = pc_id(&pc)?;
    let (since_ms, until_ms) =
        perf_range(q.since, q.until, crate::db::now_ms()).map_err(|e| ApiError::invalid(vec![e]))?;
    let limit = match q.limit {
        None => PROCESS_LIMIT,
        Some(n) if (1..=PROCESS_LIMIT_MAX).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::invalid(vec![format!("limit: {n} is outside 1..={PROCESS_LIMIT_MAX}")]));
        }
    };
    let samples = state.db.process_perf(pc.clone(), since_ms, until_ms, limit).await?;
    if samples.is_empty() {
        known(&state, &pc).await?;
    }
    let truncated = samples.len() as i64 == limit;
    Ok(Json(wire::ProcessSamples { pc_id: pc.to_string(), since_ms, until_ms, samples, truncated }))
}

/// No samples: a typo in the PC's name says so instead of looking like a quiet agent.
async fn known(state: &AppState, pc: &PcId) -> Result<(), ApiError> {
    match state.db.agent_presence(pc.clone()).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found(format!(
            "agent {pc} has never sent a heartbeat (check the id: kanade agents list)"
        ))),
    }
}

/// A page's last row as the next page's cursor: `<at_ms>~<pc_id>~<event_id>` (PC ids never
/// hold `~`; the event id is last, so it may).
pub fn cursor_of(at_ms: i64, pc: &str, event_id: &str) -> String {
    format!("{at_ms}~{pc}~{event_id}")
}

pub fn parse_cursor(cursor: &str) -> Result<(i64, String, String), String> {
    let bad = || format!("cursor {cursor:?}: pass back the next_cursor of the previous page");
    let mut parts = cursor.splitn(3, '~');
    let at = parts.next().and_then(|a| a.parse().ok()).ok_or_else(bad)?;
    let pc = parts.next().filter(|p| !p.is_empty()).ok_or_else(bad)?;
    let id = parts.next().filter(|i| !i.is_empty()).ok_or_else(bad)?;
    Ok((at, pc.to_owned(), id.to_owned()))
}

pub async fn events(
    State(state): State<AppState>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<ObsEvents>, ApiError> {
    let mut problems = Vec::new();
    let limit = super::check_limit(q.limit)?;
    if let Some(pc) = &q.pc
        && let Err(e) = pc.parse::<PcId>()
    {
        problems.push(format!("pc: {e}"));
    }
    let before = match q.cursor.as_deref().map(parse_cursor).transpose() {
        Ok(b) => b,
        Err(e) => {
            problems.push(e);
            None
        }
    };
    if let (Some(since), Some(until)) = (q.since, q.until)
        && since > until
    {
        problems.push(format!("since ({since}) is after until ({until}); both are epoch milliseconds"));
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems));
    }
    let kind = q.kind.map(|k| k.trim().to_owned()).filter(|k| !k.is_empty());
    if let Some(k) = &kind
        && let Err(e) = kanade_shared::wire::obs::check_kind(k)
    {
        return Err(ApiError::invalid(vec![e]));
    }
    let filter = ObsFilter { pc: q.pc, kind, since_ms: q.since, until_ms: q.until, before, limit };
    let events = state.db.obs_events(filter).await?;
    let next_cursor = (events.len() as i64 == limit)
        .then(|| events.last().map(|e| cursor_of(e.at, &e.pc_id, &e.event_id)))
        .flatten();
    Ok(Json(ObsEvents { events, next_cursor }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_perf_range_defaults_to_the_last_hour() {
        let now = 10_000_000;
        assert_eq!(perf_range(None, None, now), Ok((now - 3_600_000, now)));
        assert_eq!(perf_range(Some(5), None, now), Ok((5, now)));
        assert_eq!(perf_range(None, Some(7_200_000), now), Ok((3_600_000, 7_200_000)));
        assert!(perf_range(Some(9), Some(8), now).unwrap_err().contains("since (9) is after until (8)"));
        // Found by fuzzing the API: i64::MIN overflowed the bucket arithmetic (a 500).
        assert!(
            perf_range(None, Some(i64::MIN), now)
                .unwrap_err()
                .starts_with("until: -9223372036854775808 is not")
        );
        assert!(perf_range(Some(-1), None, now).unwrap_err().starts_with("since: -1"));
        assert_eq!(perf_range(None, Some(1_000), now), Ok((0, 1_000)));
    }

    #[test]
    fn the_resolution_follows_the_range_and_what_is_kept() {
        let now = 400 * DAY_MS;
        let h = 3_600_000;
        let cases = [
            (now - h, now, None, Ok("raw")),
            (now - DAY_MS, now, None, Ok("raw")),
            (now - 7 * DAY_MS, now, None, Ok("5m")),
            (now - 40 * DAY_MS, now - 39 * DAY_MS, None, Ok("1h")), // a day, but raw is gone
            (now - 90 * DAY_MS, now, None, Ok("1h")),
            (now - 7 * DAY_MS, now, Some("raw"), Ok("raw")),
            (now - h, now, Some("1h"), Ok("1h")),
            (now - h, now, Some("daily"), Err("resolution: \"daily\" is not one of raw, 5m, 1h")),
        ];
        for (since, until, asked, want) in cases {
            let got = resolution(since, until, now, asked).map(|(name, _)| name);
            assert_eq!(got, want.map_err(String::from), "{since} {until} {asked:?}");
        }
    }

    #[test]
    fn cursors_round_trip_and_bad_ones_are_named() {
        let c = cursor_of(1_700_000_000_000, "PC-1", "job.finished.a~b");
        assert_eq!(parse_cursor(&c), Ok((1_700_000_000_000, "PC-1".into(), "job.finished.a~b".into())));
        for bad in ["", "x~PC~id", "5~~id", "5~PC", "5~PC~"] {
            assert!(parse_cursor(bad).unwrap_err().contains("next_cursor"), "{bad}");
        }
    }
}
