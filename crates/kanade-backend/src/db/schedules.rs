//! The scheduler's SQL: what a schedule's runs achieved, what is still in flight, and its state.

use std::collections::{BTreeMap, BTreeSet};

use kanade_shared::PcId;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

use super::DbError;

/// What this schedule's runs did so far, as the fire decision needs it.
#[derive(Debug, Default)]
pub struct History {
    /// Latest success per PC (epoch ms).
    pub last_success: BTreeMap<PcId, i64>,
    /// PCs targeted by an unfinished run that have not reported.
    pub in_flight: BTreeSet<PcId>,
}

pub fn history(c: &Connection, schedule_id: &str) -> Result<History, DbError> {
    let mut h = History::default();
    let mut stmt = c.prepare_cached(
        "SELECT r.pc_id, MAX(COALESCE(r.finished_ms, r.received_ms)) FROM execution_results r
         JOIN executions e ON e.exec_id = r.exec_id
         WHERE e.schedule_id = ?1 AND r.status = 'succeeded' GROUP BY r.pc_id",
    )?;
    for row in stmt.query_map([schedule_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (pc, at) = row?;
        if let Ok(pc) = pc.parse() {
            h.last_success.insert(pc, at);
        }
    }
    let mut stmt = c.prepare_cached(
        "SELECT DISTINCT t.pc_id FROM execution_targets t JOIN executions e ON e.exec_id = t.exec_id
         WHERE e.schedule_id = ?1 AND e.status IN ('pending', 'running')
           AND NOT EXISTS (SELECT 1 FROM execution_results r
                           WHERE r.exec_id = t.exec_id AND r.pc_id = t.pc_id AND r.status != 'running')",
    )?;
    for row in stmt.query_map([schedule_id], |r| r.get::<_, String>(0))? {
        if let Ok(pc) = row?.parse() {
            h.in_flight.insert(pc);
        }
    }
    Ok(h)
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct State {
    pub last_tick_ms: i64,
    pub last_fire_ms: Option<i64>,
    pub last_exec_id: Option<String>,
    pub last_outcome: String,
}

pub fn state(c: &Connection, schedule_id: &str) -> Result<Option<State>, DbError> {
    Ok(c.prepare_cached(
        "SELECT last_tick_ms, last_fire_ms, last_exec_id, last_outcome FROM schedule_state WHERE schedule_id = ?1",
    )?
    .query_row([schedule_id], |r| {
        Ok(State { last_tick_ms: r.get(0)?, last_fire_ms: r.get(1)?, last_exec_id: r.get(2)?, last_outcome: r.get(3)? })
    })
    .optional()?)
}

/// Record a handled tick; a fire keeps its time and exec until the next fire replaces them.
pub fn record_tick(
    tx: &Transaction<'_>,
    schedule_id: &str,
    tick_ms: i64,
    fired: Option<(i64, &str)>,
    outcome: &str,
) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO schedule_state (schedule_id, last_tick_ms, last_fire_ms, last_exec_id, last_outcome)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(schedule_id) DO UPDATE SET last_tick_ms = MAX(last_tick_ms, excluded.last_tick_ms),
             last_fire_ms = COALESCE(excluded.last_fire_ms, last_fire_ms),
             last_exec_id = COALESCE(excluded.last_exec_id, last_exec_id), last_outcome = excluded.last_outcome",
        params![schedule_id, tick_ms, fired.map(|f| f.0), fired.map(|f| f.1), outcome],
    )?;
    Ok(())
}

pub fn forget(tx: &Transaction<'_>, schedule_id: &str) -> Result<(), DbError> {
    tx.execute("DELETE FROM schedule_state WHERE schedule_id = ?1", [schedule_id])?;
    Ok(())
}

/// Results of this schedule's runs since `since_ms`, by status.
pub fn outcomes_since(
    c: &Connection,
    schedule_id: &str,
    since_ms: i64,
) -> Result<BTreeMap<String, i64>, DbError> {
    let mut stmt = c.prepare_cached(
        "SELECT r.status, COUNT(*) FROM execution_results r JOIN executions e ON e.exec_id = r.exec_id
         WHERE e.schedule_id = ?1 AND r.received_ms >= ?2 GROUP BY r.status",
    )?;
    let rows = stmt.query_map(params![schedule_id, since_ms], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
