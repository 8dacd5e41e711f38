//! The dashboard's fleet overview: one read of counts, a results-per-hour series and the
//! latest failures.

pub use kanade_shared::api::fleet::{Failure, Overview};

use super::DbError;
use super::sql::{Sql, opt_row, vals};

const HOUR_MS: i64 = 3_600_000;

/// Everything from `since_ms` on; agents count as online with a heartbeat at or after
/// `alive_since_ms`.
pub async fn overview<S: Sql>(s: &mut S, since_ms: i64, alive_since_ms: i64) -> Result<Overview, DbError> {
    let counts = opt_row(
        s,
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN last_seen_ms >= ?1 THEN 1 ELSE 0 END), 0) FROM agents",
        vals![alive_since_ms],
    )
    .await?
    .ok_or_else(|| DbError::Decode("no agent counts".into()))?;
    let (agents_total, agents_online) = (counts.get(0)?, counts.get(1)?);
    let executions = s
        .rows(
            "SELECT status, COUNT(*) FROM executions WHERE created_ms >= ?1 GROUP BY status ORDER BY status",
            vals![since_ms],
        )
        .await?
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?)))
        .collect::<Result<_, DbError>>()?;
    let results_per_hour = s
        .rows(
            "SELECT (received_ms / ?2) * ?2 AS hour, status, COUNT(*) FROM execution_results
             WHERE received_ms >= ?1 GROUP BY hour, status ORDER BY hour, status",
            vals![since_ms, HOUR_MS],
        )
        .await?
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .collect::<Result<_, DbError>>()?;
    let recent_failures = s
        .rows(
            "SELECT result_id, exec_id, pc_id, job_id, status, exit_code, message, received_ms,
                    (SELECT e.title FROM executions e WHERE e.exec_id = execution_results.exec_id) FROM execution_results
             WHERE received_ms >= ?1 AND status IN ('failed', 'timed_out', 'killed', 'unknown')
             ORDER BY received_ms DESC LIMIT 10",
            vals![since_ms],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(Failure {
                result_id: r.get(0)?,
                exec_id: r.get(1)?,
                pc_id: r.get(2)?,
                job_id: r.get(3)?,
                status: r.get(4)?,
                exit_code: r.get(5)?,
                message: r.get(6)?,
                received_ms: r.get(7)?,
                title: r.get(8)?,
            })
        })
        .collect::<Result<_, DbError>>()?;
    Ok(Overview { agents_total, agents_online, executions, results_per_hour, recent_failures, since_ms })
}
