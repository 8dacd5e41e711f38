//! `obs_events`: agents' observability events and the ones the backend derives. Every insert is
//! keyed by (pc_id, event_id) and does nothing on a conflict, so redelivery, a replay after a
//! wipe, or two backends deriving the same event store it once.

use kanade_shared::PcId;
use kanade_shared::wire::StartedEvent;
use kanade_shared::wire::obs::{self, ObsEvent};
use serde_json::{Value as Json, json};

use super::super::sql::{BulkInsert, ColType, Sql, Value, vals};
use super::super::{DbError, ts_ms};

/// Many rows per statement: one statement per row is a round trip each on Postgres.
const INSERT: BulkInsert<'static> = BulkInsert {
    table: "obs_events",
    columns: &[
        ("pc_id", ColType::Text),
        ("event_id", ColType::Text),
        ("kind", ColType::Text),
        ("at_ms", ColType::Int),
        ("received_ms", ColType::Int),
        ("exec_id", ColType::Text),
        ("data_json", ColType::Text),
    ],
    key: 2,
    tail: "ON CONFLICT(pc_id, event_id) DO NOTHING",
};

/// An agent's clock may run this far ahead of ours; an event dated later is stored at the limit,
/// so a wrong clock cannot pin events to the top of the timeline or past retention.
pub const AHEAD_MS: i64 = 5 * 60 * 1000;

/// One row as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ObsRow {
    pub pc_id: String,
    pub event_id: String,
    pub kind: String,
    pub at_ms: i64,
    pub exec_id: Option<String>,
    pub data: String,
}

impl ObsRow {
    fn derived(
        pc: &PcId,
        event_id: String,
        kind: &str,
        at_ms: i64,
        exec: Option<String>,
        data: Json,
    ) -> Self {
        Self {
            pc_id: pc.to_string(),
            event_id,
            kind: kind.to_owned(),
            at_ms,
            exec_id: exec,
            data: data.to_string(),
        }
    }

    /// Times from an agent's clock (a run's start and end, an event's own) are clamped like an
    /// agent's events: never later than a few minutes past receipt.
    fn values(&self, received_ms: i64) -> Vec<Value> {
        vals![
            self.pc_id.as_str(),
            self.event_id.as_str(),
            self.kind.as_str(),
            self.at_ms.min(received_ms + AHEAD_MS),
            received_ms,
            self.exec_id.clone(),
            self.data.as_str()
        ]
    }
}

/// The kanade kinds an agent may send; every other `agent.`, `job.`, `check.` or `kanade.`
/// kind is the backend's to record (an agent claiming `agent.online` would forge liveness).
pub const AGENT_KINDS: [&str; 4] =
    [obs::AGENT_STARTED, obs::AGENT_STOPPING, obs::AGENT_UPDATED, obs::AGENT_ROLLED_BACK];

/// Pure: an agent's event as a row, or why it is refused. Agents are not trusted with what they
/// write in a body: the kind and id are checked (reserved kinds and the backend's own id forms
/// refused, so no agent can take a derived event's place), the data bounded, the time clamped.
pub fn agent_row(e: &ObsEvent, received_ms: i64) -> Result<ObsRow, String> {
    obs::check_kind(&e.kind)?;
    let reserved = obs::RESERVED_PREFIXES.iter().any(|p| e.kind.starts_with(p));
    if reserved && !AGENT_KINDS.contains(&e.kind.as_str()) {
        return Err(format!("kind {:?} is recorded by the backend, not sent by agents", e.kind));
    }
    if obs::RESERVED_PREFIXES.iter().any(|p| e.event_id.starts_with(p)) {
        return Err(format!("event_id {:?} has the form of an event the backend records", e.event_id));
    }
    let id_ok = !e.event_id.is_empty()
        && e.event_id.len() <= obs::MAX_EVENT_ID
        && e.event_id.chars().all(|c| c.is_ascii_graphic());
    if !id_ok {
        return Err(format!("event_id {:?}: 1-{} printable ASCII characters", e.event_id, obs::MAX_EVENT_ID));
    }
    let mut data = serde_json::to_string(&e.data).unwrap_or_else(|_| "{}".into());
    if data.len() > obs::MAX_DATA_BYTES {
        data = json!({ "dropped": format!("data of {} bytes; at most {}", data.len(), obs::MAX_DATA_BYTES) })
            .to_string();
    }
    Ok(ObsRow {
        pc_id: e.pc_id.to_string(),
        event_id: e.event_id.clone(),
        kind: e.kind.clone(),
        at_ms: ts_ms(e.at).min(received_ms + AHEAD_MS),
        exec_id: e.exec_id.map(|x| x.to_string()),
        data,
    })
}

pub async fn insert<S: Sql>(s: &mut S, rows: &[ObsRow], received_ms: i64) -> Result<(), DbError> {
    if rows.is_empty() {
        return Ok(());
    }
    let rows: Vec<Vec<Value>> = rows.iter().map(|r| r.values(received_ms)).collect();
    s.insert_rows(&INSERT, &rows).await.map(drop)
}

/// Agents' events from OBS; refused ones are logged and skipped.
pub async fn apply_agent_events<S: Sql>(
    s: &mut S,
    events: &[ObsEvent],
    received_ms: i64,
) -> Result<(), DbError> {
    let rows = events
        .iter()
        .filter_map(|e| match agent_row(e, received_ms) {
            Ok(row) => Some(row),
            Err(why) => {
                tracing::warn!(pc_id = %e.pc_id, kind = e.kind, "observability event refused: {why}");
                None
            }
        })
        .collect::<Vec<_>>();
    insert(s, &rows, received_ms).await
}

/// `job.started` of each retry (attempt 2 on): a run's first start is read from its
/// `execution_results` row with the rest of its timeline (`queries::obs_events`).
pub fn retry_started_rows(events: &[StartedEvent]) -> Vec<ObsRow> {
    events
        .iter()
        .filter(|e| e.attempt > 1)
        .map(|e| {
            ObsRow::derived(
                &e.pc_id,
                format!("job.started.{}.{}", e.exec_id, e.attempt),
                obs::JOB_STARTED,
                ts_ms(e.started_at),
                Some(e.exec_id.to_string()),
                json!({ "job_id": e.job_id, "attempt": e.attempt }),
            )
        })
        .collect()
}

/// Before a heartbeat received at `received_ms` is stored: when the PC was silent longer than
/// the alive window, `agent.online`, and the `agent.offline` of the gap if the presence worker
/// did not record it (same id, so never twice). A PC without an agents row is new, or the
/// projection was wiped: it is online news only if its last presence event is not already
/// an `agent.online`.
pub async fn heartbeat_transitions<S: Sql>(
    s: &mut S,
    pcs: &[&PcId],
    received_ms: i64,
    alive_window_ms: i64,
) -> Result<(), DbError> {
    let silent_since = received_ms - alive_window_ms;
    s.exec_many(
        "INSERT INTO obs_events (pc_id, event_id, kind, at_ms, received_ms, exec_id, data_json)
         SELECT pc_id, 'agent.offline.' || CAST(last_seen_ms AS TEXT), 'agent.offline', last_seen_ms + CAST(?3 AS BIGINT),
                CAST(?2 AS BIGINT), NULL, '{\"last_seen_ms\":' || CAST(last_seen_ms AS TEXT) || '}'
         FROM agents WHERE pc_id = ?1 AND last_seen_ms < CAST(?4 AS BIGINT)
         ON CONFLICT(pc_id, event_id) DO NOTHING",
        pcs.iter().map(|pc| vals![pc.as_str(), received_ms, alive_window_ms, silent_since]).collect(),
    )
    .await?;
    s.exec_many(
        "INSERT INTO obs_events (pc_id, event_id, kind, at_ms, received_ms, exec_id, data_json)
         SELECT CAST(?1 AS TEXT), CAST(?2 AS TEXT), 'agent.online', CAST(?3 AS BIGINT), CAST(?3 AS BIGINT), NULL, '{}'
         WHERE NOT EXISTS (SELECT 1 FROM agents WHERE pc_id = ?1 AND last_seen_ms >= CAST(?4 AS BIGINT))
           AND (EXISTS (SELECT 1 FROM agents WHERE pc_id = ?1)
                OR NOT EXISTS (SELECT 1 FROM obs_events WHERE pc_id = ?1 AND kind = 'agent.online'
                    AND at_ms > COALESCE((SELECT MAX(at_ms) FROM obs_events WHERE pc_id = ?1 AND kind = 'agent.offline'), 0)))
         ON CONFLICT(pc_id, event_id) DO NOTHING",
        pcs.iter()
            .map(|pc| vals![pc.as_str(), format!("agent.online.{received_ms}"), received_ms, silent_since])
            .collect(),
    )
    .await
    .map(drop)
}

/// `agent.offline` for PCs silent past the alive window, keyed by their last beat, so every
/// backend that notices records the same event once; only while that beat is still the PC's
/// last (a beat that arrived since the look means it is not offline).
pub async fn record_offline<S: Sql>(
    s: &mut S,
    silent: &[(PcId, i64)],
    alive_window_ms: i64,
    received_ms: i64,
) -> Result<(), DbError> {
    s.exec_many(
        "INSERT INTO obs_events (pc_id, event_id, kind, at_ms, received_ms, exec_id, data_json)
         SELECT pc_id, 'agent.offline.' || CAST(last_seen_ms AS TEXT), 'agent.offline', last_seen_ms + CAST(?2 AS BIGINT),
                CAST(?3 AS BIGINT), NULL, '{\"last_seen_ms\":' || CAST(last_seen_ms AS TEXT) || '}'
         FROM agents WHERE pc_id = ?1 AND last_seen_ms = CAST(?4 AS BIGINT)
         ON CONFLICT(pc_id, event_id) DO NOTHING",
        silent.iter().map(|(pc, seen)| vals![pc.as_str(), alive_window_ms, received_ms, *seen]).collect(),
    )
    .await
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kanade_shared::wire::Timestamp;

    fn event(kind: &str, id: &str, at_ms: i64) -> ObsEvent {
        ObsEvent {
            schema: 1,
            event_id: id.into(),
            pc_id: "PC-1".parse().unwrap(),
            kind: kind.into(),
            at: Timestamp::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000).unwrap(),
            exec_id: None,
            data: serde_json::Map::new(),
        }
    }

    #[test]
    fn agent_events_are_checked_bounded_and_clamped() {
        let now = 1_800_000_000_000;
        let ok = agent_row(&event("agent.started", "a-1", now - 5), now).unwrap();
        assert_eq!((ok.at_ms, ok.data.as_str()), (now - 5, "{}"));
        assert_eq!(agent_row(&event("x", "a", now + AHEAD_MS * 10), now).unwrap().at_ms, now + AHEAD_MS);
        assert!(agent_row(&event("Bad Kind", "a", now), now).unwrap_err().contains("kind"));
        assert!(agent_row(&event("k", "has space", now), now).unwrap_err().contains("event_id"));
        assert!(agent_row(&event("k", "", now), now).unwrap_err().contains("event_id"));
        // The backend's kinds and id forms are not an agent's to send.
        for (kind, id) in [("agent.online", "x"), ("job.finished", "x"), ("check.changed", "x")] {
            assert!(
                agent_row(&event(kind, id, now), now).unwrap_err().contains("recorded by the backend"),
                "{kind}"
            );
        }
        assert!(agent_row(&event("agent.started", "x", now), now).is_ok());
        for id in ["agent.offline.5", "job.finished.x"] {
            assert!(
                agent_row(&event("disk.low", id, now), now).unwrap_err().contains("the form of an event"),
                "{id}"
            );
        }
        let mut big = event("k", "b", now);
        big.data.insert("x".into(), Json::from("y".repeat(obs::MAX_DATA_BYTES)));
        assert!(agent_row(&big, now).unwrap().data.contains("\"dropped\""));
    }
}
