//! Cleanup's SQL: finding stalled executions and applying retention to every table.

use super::DbError;
use super::sql::{Sql, vals};

/// An unfinished execution that has seen no progress since `last_activity_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quiet {
    pub exec_id: kanade_shared::ExecId,
    pub last_activity_ms: i64,
    /// The earliest wave still waiting to be published, if any.
    pub next_wave_due_ms: Option<i64>,
    pub reported: i64,
    pub target_count: i64,
}

/// Unfinished executions with no progress since `before_ms`.
pub async fn quiet_executions<S: Sql>(s: &mut S, before_ms: i64) -> Result<Vec<Quiet>, DbError> {
    s.rows(
        "SELECT e.exec_id, e.updated_ms,
                (SELECT MIN(w.due_ms) FROM rollout_waves w WHERE w.exec_id = e.exec_id AND w.status = 'pending'),
                e.succeeded + e.failed + e.skipped + e.other, e.target_count
         FROM executions e WHERE e.status IN ('pending', 'running') AND e.updated_ms < ?1",
        vals![before_ms],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(Quiet {
            exec_id: r.get(0)?,
            last_activity_ms: r.get(1)?,
            next_wave_due_ms: r.get(2)?,
            reported: r.get(3)?,
            target_count: r.get(4)?,
        })
    })
    .collect()
}

/// Rows older than these instants (epoch ms) go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    pub results_ms: i64,
    pub executions_ms: i64,
    pub audit_ms: i64,
    pub agents_ms: i64,
    pub host_perf_ms: i64,
    pub obs_ms: i64,
    pub process_perf_ms: i64,
    pub rollup_5m_ms: i64,
    pub rollup_1h_ms: i64,
}

/// How many rows each table lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pruned {
    pub results: usize,
    pub executions: usize,
    pub audit: usize,
    pub agents: usize,
    pub inventory: usize,
    pub host_perf: usize,
    pub obs: usize,
    pub process_perf: usize,
    pub rollups: usize,
    pub notifications: usize,
}

pub async fn prune<S: Sql>(s: &mut S, cut: &Cutoffs) -> Result<Pruned, DbError> {
    // Deleting executions races the projectors' late-target inserts otherwise (Postgres).
    super::projection::one_writer(s).await?;
    let results =
        s.exec("DELETE FROM execution_results WHERE received_ms < ?1", vals![cut.results_ms]).await?;
    // Only finished executions age out; their targets and waves go with them.
    let finished_before = "SELECT exec_id FROM executions
         WHERE status NOT IN ('pending', 'running') AND COALESCE(finished_ms, updated_ms) < ?1";
    s.exec(
        &format!("DELETE FROM execution_targets WHERE exec_id IN ({finished_before})"),
        vals![cut.executions_ms],
    )
    .await?;
    s.exec(
        &format!("DELETE FROM rollout_waves WHERE exec_id IN ({finished_before})"),
        vals![cut.executions_ms],
    )
    .await?;
    let executions = s
        .exec(
            "DELETE FROM executions WHERE status NOT IN ('pending', 'running') AND COALESCE(finished_ms, updated_ms) < ?1",
            vals![cut.executions_ms],
        )
        .await?;
    let audit = s.exec("DELETE FROM audit_log WHERE at_ms < ?1", vals![cut.audit_ms]).await?;
    let inventory = s
        .exec(
            "DELETE FROM inventory WHERE pc_id IN (SELECT pc_id FROM agents WHERE last_seen_ms < ?1)
                OR (collected_ms < ?1 AND pc_id NOT IN (SELECT pc_id FROM agents))",
            vals![cut.agents_ms],
        )
        .await?;
    let agents = s.exec("DELETE FROM agents WHERE last_seen_ms < ?1", vals![cut.agents_ms]).await?;
    // A check nobody ran for as long as a silent agent is kept is forgotten with it, and so are
    // the facts of agents forgotten.
    s.exec("DELETE FROM check_status WHERE received_ms < ?1", vals![cut.agents_ms]).await?;
    let gone = "pc_id NOT IN (SELECT pc_id FROM agents)";
    for table in super::projection::facts::tables_stored(s).await? {
        s.exec(&format!("DELETE FROM {table} WHERE {gone}"), vals![]).await?;
    }
    s.exec(&format!("DELETE FROM facts_writes WHERE {gone}"), vals![]).await?;
    s.exec(&format!("DELETE FROM inventory_facts WHERE {gone}"), vals![]).await?;
    let host_perf = s.exec("DELETE FROM host_perf_samples WHERE at_ms < ?1", vals![cut.host_perf_ms]).await?;
    let obs = s.exec("DELETE FROM obs_events WHERE at_ms < ?1", vals![cut.obs_ms]).await?;
    let process_perf =
        s.exec("DELETE FROM process_perf_samples WHERE at_ms < ?1", vals![cut.process_perf_ms]).await?;
    let mut rollups = 0;
    for (res, cut) in [
        (super::projection::rollups::FIVE_MINUTES_MS, cut.rollup_5m_ms),
        (super::projection::rollups::HOUR_MS, cut.rollup_1h_ms),
    ] {
        rollups += s
            .exec("DELETE FROM host_perf_rollups WHERE res_ms = ?1 AND bucket_ms < ?2", vals![res, cut])
            .await?;
    }
    // Notifications stay on record as long as the audit trail that says who sent them.
    let expired = "SELECT id FROM notifications WHERE expires_ms < ?1";
    s.exec(
        &format!("DELETE FROM notification_acks WHERE notification_id IN ({expired})"),
        vals![cut.audit_ms],
    )
    .await?;
    let notifications =
        s.exec("DELETE FROM notifications WHERE expires_ms < ?1", vals![cut.audit_ms]).await?;
    let n = |v: u64| v as usize;
    Ok(Pruned {
        results: n(results),
        executions: n(executions),
        audit: n(audit),
        agents: n(agents),
        inventory: n(inventory),
        host_perf: n(host_perf),
        obs: n(obs),
        process_perf: n(process_perf),
        rollups: n(rollups),
        notifications: n(notifications),
    })
}

/// Every agent's last heartbeat, for presence tracking.
pub async fn last_seen<S: Sql>(s: &mut S) -> Result<Vec<(kanade_shared::PcId, i64)>, DbError> {
    s.rows("SELECT pc_id, last_seen_ms FROM agents", vals![])
        .await?
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?)))
        .collect()
}
