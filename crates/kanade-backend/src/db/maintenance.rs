//! Cleanup's SQL: finding stalled executions and applying retention to every table.

use rusqlite::{Connection, Transaction, params};

use super::DbError;

/// An unfinished execution that has seen no progress since `last_activity_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quiet {
    pub exec_id: String,
    pub last_activity_ms: i64,
    /// The earliest wave still waiting to be published, if any.
    pub next_wave_due_ms: Option<i64>,
    pub reported: i64,
    pub target_count: i64,
}

/// Unfinished executions with no progress since `before_ms`.
pub fn quiet_executions(c: &Connection, before_ms: i64) -> Result<Vec<Quiet>, DbError> {
    let mut stmt = c.prepare_cached(
        "SELECT e.exec_id, e.updated_ms,
                (SELECT MIN(w.due_ms) FROM rollout_waves w WHERE w.exec_id = e.exec_id AND w.status = 'pending'),
                e.succeeded + e.failed + e.skipped + e.other, e.target_count
         FROM executions e WHERE e.status IN ('pending', 'running') AND e.updated_ms < ?1",
    )?;
    let rows = stmt.query_map([before_ms], |r| {
        Ok(Quiet {
            exec_id: r.get(0)?,
            last_activity_ms: r.get(1)?,
            next_wave_due_ms: r.get(2)?,
            reported: r.get(3)?,
            target_count: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Rows older than these instants (epoch ms) go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    pub results_ms: i64,
    pub executions_ms: i64,
    pub audit_ms: i64,
    pub agents_ms: i64,
}

/// How many rows each table lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pruned {
    pub results: usize,
    pub executions: usize,
    pub audit: usize,
    pub agents: usize,
    pub inventory: usize,
}

pub fn prune(tx: &Transaction<'_>, cut: &Cutoffs) -> Result<Pruned, DbError> {
    let results = tx.execute("DELETE FROM execution_results WHERE received_ms < ?1", [cut.results_ms])?;
    // Only finished executions age out; their targets and waves go with them.
    let finished_before = "SELECT exec_id FROM executions
         WHERE status NOT IN ('pending', 'running') AND COALESCE(finished_ms, updated_ms) < ?1";
    tx.execute(
        &format!("DELETE FROM execution_targets WHERE exec_id IN ({finished_before})"),
        [cut.executions_ms],
    )?;
    tx.execute(
        &format!("DELETE FROM rollout_waves WHERE exec_id IN ({finished_before})"),
        [cut.executions_ms],
    )?;
    let executions = tx.execute(
        "DELETE FROM executions WHERE status NOT IN ('pending', 'running') AND COALESCE(finished_ms, updated_ms) < ?1",
        [cut.executions_ms],
    )?;
    let audit = tx.execute("DELETE FROM audit_log WHERE at_ms < ?1", [cut.audit_ms])?;
    let inventory = tx.execute(
        "DELETE FROM inventory WHERE pc_id IN (SELECT pc_id FROM agents WHERE last_seen_ms < ?1)
            OR (collected_ms < ?1 AND pc_id NOT IN (SELECT pc_id FROM agents))",
        params![cut.agents_ms],
    )?;
    let agents = tx.execute("DELETE FROM agents WHERE last_seen_ms < ?1", [cut.agents_ms])?;
    Ok(Pruned { results, executions, audit, agents, inventory })
}

/// Every agent's last heartbeat, for presence tracking.
pub fn last_seen(c: &Connection) -> Result<Vec<(String, i64)>, DbError> {
    let mut stmt = c.prepare_cached("SELECT pc_id, last_seen_ms FROM agents")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
