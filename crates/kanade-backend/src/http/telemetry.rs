//! Endpoint telemetry (SPEC §12): the observability-events timeline.

use axum::Json;
use axum::extract::{Query, State};
use kanade_shared::PcId;
use kanade_shared::wire::ObsEvents;
use serde::Deserialize;

use super::{ApiError, AppState};
use crate::db::queries::ObsFilter;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    pc: Option<String>,
    /// A kind (`agent.started`) or a dotted prefix (`agent`, `job`).
    kind: Option<String>,
    /// Epoch milliseconds, on the event's time.
    since: Option<i64>,
    until: Option<i64>,
    cursor: Option<String>,
    limit: Option<i64>,
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
    fn cursors_round_trip_and_bad_ones_are_named() {
        let c = cursor_of(1_700_000_000_000, "PC-1", "job.finished.a~b");
        assert_eq!(parse_cursor(&c), Ok((1_700_000_000_000, "PC-1".into(), "job.finished.a~b".into())));
        for bad in ["", "x~PC~id", "5~~id", "5~PC", "5~PC~"] {
            assert!(parse_cursor(bad).unwrap_err().contains("next_cursor"), "{bad}");
        }
    }
}
