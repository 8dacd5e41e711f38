//! The fleet freeze's one row.

use kanade_shared::wire::freeze::Freeze;

use super::sql::{Sql, opt_row, vals};
use super::{DbError, ts_ms};

pub async fn get<S: Sql>(s: &mut S) -> Result<Option<Freeze>, DbError> {
    let Some(row) = opt_row(
        s,
        "SELECT from_ms, until_ms, reason, set_by, set_ms FROM fleet_freeze WHERE id = 1",
        vals![],
    )
    .await?
    else {
        return Ok(None);
    };
    Ok(Some(Freeze {
        from: super::ms_ts(row.get(0)?),
        until: super::ms_ts(row.get(1)?),
        reason: row.get(2)?,
        set_by: row.get(3)?,
        set_at: super::ms_ts(row.get(4)?),
    }))
}

/// Replace the window (there is at most one).
pub async fn set<S: Sql>(s: &mut S, f: &Freeze) -> Result<(), DbError> {
    s.exec(
        "INSERT INTO fleet_freeze (id, from_ms, until_ms, reason, set_by, set_ms) VALUES (1, ?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(id) DO UPDATE SET from_ms = ?1, until_ms = ?2, reason = ?3, set_by = ?4, set_ms = ?5",
        vals![ts_ms(f.from), ts_ms(f.until), f.reason.as_str(), f.set_by.as_str(), ts_ms(f.set_at)],
    )
    .await?;
    Ok(())
}

/// Lift it; returns whether there was one.
pub async fn clear<S: Sql>(s: &mut S) -> Result<bool, DbError> {
    Ok(s.exec("DELETE FROM fleet_freeze WHERE id = 1", vals![]).await? > 0)
}
