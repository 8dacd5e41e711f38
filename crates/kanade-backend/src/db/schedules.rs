//! The scheduler's SQL: what a schedule's runs achieved, what is still in flight, and its state.

use std::collections::{BTreeMap, BTreeSet};

use kanade_shared::PcId;
pub use kanade_shared::api::schedules::ScheduleState as State;

use super::DbError;
use super::sql::{Sql, opt_row, vals};

/// What this schedule's runs did so far, as the fire decision needs it.
#[derive(Debug, Default)]
pub struct History {
    /// Latest success per PC (epoch ms).
    pub last_success: BTreeMap<PcId, i64>,
    /// PCs targeted by an unfinished run that have not reported.
    pub in_flight: BTreeSet<PcId>,
}

pub async fn history<S: Sql>(s: &mut S, schedule_id: &str) -> Result<History, DbError> {
    let mut h = History::default();
    let rows = s
        .rows(
            "SELECT r.pc_id, MAX(COALESCE(r.finished_ms, r.received_ms)) FROM execution_results r
             JOIN executions e ON e.exec_id = r.exec_id
             WHERE e.schedule_id = ?1 AND r.status = 'succeeded' GROUP BY r.pc_id",
            vals![schedule_id],
        )
        .await?;
    for r in rows {
        if let Ok(pc) = r.get::<String>(0)?.parse() {
            h.last_success.insert(pc, r.get(1)?);
        }
    }
    let rows = s
        .rows(
            "SELECT DISTINCT t.pc_id FROM execution_targets t JOIN executions e ON e.exec_id = t.exec_id
             WHERE e.schedule_id = ?1 AND e.status IN ('pending', 'running')
               AND NOT EXISTS (SELECT 1 FROM execution_results r
                               WHERE r.exec_id = t.exec_id AND r.pc_id = t.pc_id AND r.status != 'running')",
            vals![schedule_id],
        )
        .await?;
    for r in rows {
        if let Ok(pc) = r.get::<String>(0)?.parse() {
            h.in_flight.insert(pc);
        }
    }
    Ok(h)
}

pub async fn state<S: Sql>(s: &mut S, schedule_id: &str) -> Result<Option<State>, DbError> {
    let Some(r) = opt_row(
        s,
        "SELECT last_tick_ms, last_fire_ms, last_exec_id, last_outcome FROM schedule_state WHERE schedule_id = ?1",
        vals![schedule_id],
    )
    .await?
    else {
        return Ok(None);
    };
    Ok(Some(State {
        last_tick_ms: r.get(0)?,
        last_fire_ms: r.get(1)?,
        last_exec_id: r.get(2)?,
        last_outcome: r.get(3)?,
    }))
}

/// Record a handled tick; a fire keeps its time and exec until the next fire replaces them.
pub async fn record_tick<S: Sql>(
    s: &mut S,
    schedule_id: &str,
    tick_ms: i64,
    fired: Option<(i64, &str)>,
    outcome: &str,
) -> Result<(), DbError> {
    s.exec(
        "INSERT INTO schedule_state (schedule_id, last_tick_ms, last_fire_ms, last_exec_id, last_outcome)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(schedule_id) DO UPDATE SET
             last_tick_ms = CASE WHEN excluded.last_tick_ms > schedule_state.last_tick_ms
                 THEN excluded.last_tick_ms ELSE schedule_state.last_tick_ms END,
             last_fire_ms = COALESCE(excluded.last_fire_ms, schedule_state.last_fire_ms),
             last_exec_id = COALESCE(excluded.last_exec_id, schedule_state.last_exec_id),
             last_outcome = excluded.last_outcome",
        vals![schedule_id, tick_ms, fired.map(|f| f.0), fired.map(|f| f.1), outcome],
    )
    .await?;
    Ok(())
}

pub async fn forget<S: Sql>(s: &mut S, schedule_id: &str) -> Result<(), DbError> {
    s.exec("DELETE FROM schedule_state WHERE schedule_id = ?1", vals![schedule_id]).await?;
    Ok(())
}

/// Results of this schedule's runs since `since_ms`, by status.
pub async fn outcomes_since<S: Sql>(
    s: &mut S,
    schedule_id: &str,
    since_ms: i64,
) -> Result<BTreeMap<String, i64>, DbError> {
    s.rows(
        "SELECT r.status, COUNT(*) FROM execution_results r JOIN executions e ON e.exec_id = r.exec_id
         WHERE e.schedule_id = ?1 AND r.received_ms >= ?2 GROUP BY r.status",
        vals![schedule_id, since_ms],
    )
    .await?
    .iter()
    .map(|r| Ok((r.get(0)?, r.get(1)?)))
    .collect()
}

/// Every schedule's state, by schedule id.
pub async fn all_states<S: Sql>(s: &mut S) -> Result<Vec<(String, State)>, DbError> {
    s.rows(
        "SELECT schedule_id, last_tick_ms, last_fire_ms, last_exec_id, last_outcome FROM schedule_state ORDER BY schedule_id",
        vals![],
    )
    .await?
    .iter()
    .map(|r| {
        let state =
            State { last_tick_ms: r.get(1)?, last_fire_ms: r.get(2)?, last_exec_id: r.get(3)?, last_outcome: r.get(4)? };
        Ok((r.get(0)?, state))
    })
    .collect()
}

/// Copy a schedule's state as it is; false when that schedule already has one.
pub async fn put_state<S: Sql>(s: &mut S, schedule_id: &str, st: &State) -> Result<bool, DbError> {
    let n = s
        .exec(
            "INSERT INTO schedule_state (schedule_id, last_tick_ms, last_fire_ms, last_exec_id, last_outcome)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(schedule_id) DO NOTHING",
            vals![
                schedule_id,
                st.last_tick_ms,
                st.last_fire_ms,
                st.last_exec_id.clone(),
                st.last_outcome.as_str()
            ],
        )
        .await?;
    Ok(n == 1)
}
