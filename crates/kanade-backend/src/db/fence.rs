//! Fencing for writes made under a lease: a term's writes check, in their own transaction,
//! that no newer term of the same lease has written since. A backend that froze past its lease
//! (a paused VM, a stopped process) and wakes up mid-batch then writes nothing, even before it
//! notices it lost the lease. Terms are the broker's lease revisions, which only grow.

use super::DbError;
use super::sql::{Sql, Value, opt_row};

/// One lease term: the lease's key and the revision its holder took it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub lease: String,
    pub revision: i64,
}

/// Record `fence` as the newest term of its lease unless a newer one is recorded; whether it is
/// the newest now (several projectors of one term claim it, each gets `true`).
pub async fn claim<S: Sql>(s: &mut S, fence: &Fence) -> Result<bool, DbError> {
    s.exec(
        "INSERT INTO lease_fences (lease, revision) VALUES (?1, ?2) \
         ON CONFLICT (lease) DO UPDATE SET revision = excluded.revision \
         WHERE lease_fences.revision < excluded.revision",
        vec![Value::from(fence.lease.as_str()), Value::Int(fence.revision)],
    )
    .await?;
    Ok(newest(s, &fence.lease).await? == fence.revision)
}

/// Record `fence` as the newest term even though a higher revision is recorded: the lease's
/// bucket was recreated (or the broker replaced), so revisions started over, and the holder of
/// a live term is the rightful writer.
pub async fn take_over<S: Sql>(s: &mut S, fence: &Fence) -> Result<(), DbError> {
    s.exec(
        "UPDATE lease_fences SET revision = ?2 WHERE lease = ?1",
        vec![Value::from(fence.lease.as_str()), Value::Int(fence.revision)],
    )
    .await?;
    Ok(())
}

/// Fail with [`DbError::Fenced`] when a newer term than `fence` wrote. On Postgres the row stays
/// share-locked to the end of the transaction, so a newer term's claim waits for it to end.
pub async fn check<S: Sql>(s: &mut S, fence: Option<&Fence>) -> Result<(), DbError> {
    let Some(fence) = fence else { return Ok(()) };
    let newest = newest(s, &fence.lease).await?;
    if newest == fence.revision {
        Ok(())
    } else {
        Err(DbError::Fenced { lease: fence.lease.clone(), mine: fence.revision, newest })
    }
}

/// The newest revision recorded for `lease` (0 when none); on Postgres the row stays
/// share-locked to the end of the transaction.
pub async fn newest<S: Sql>(s: &mut S, lease: &str) -> Result<i64, DbError> {
    let sql = format!("SELECT revision FROM lease_fences WHERE lease = ?1{}", s.dialect().for_share());
    match opt_row(s, &sql, vec![Value::from(lease)]).await? {
        Some(row) => row.get(0),
        None => Ok(0),
    }
}
