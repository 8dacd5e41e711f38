//! Compliance (SPEC §12): checks and each PC's status, as the RESULTS projector keeps them.

use super::Json;
use super::Path;
use super::Query;
use axum::extract::State;
use kanade_shared::PcId;
use kanade_shared::api::compliance::CheckQuery;
use kanade_shared::wire::{CheckDetail, Checks};

use super::{ApiError, AppState};
use crate::db::projection::checks::STATUSES;

pub async fn checks(State(state): State<AppState>) -> Result<Json<Checks>, ApiError> {
    let stale_before = crate::db::now_ms() - state.check_stale_ms;
    Ok(Json(Checks { checks: state.db.check_summary(stale_before).await? }))
}

const LIMIT: i64 = 1000;
const LIMIT_MAX: i64 = 5000;

pub async fn check(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<CheckQuery>,
) -> Result<Json<CheckDetail>, ApiError> {
    let mut problems = Vec::new();
    if let Err(e) = kanade_shared::manifest::outputs::check_check_name(&name) {
        problems.push(format!("name: {e}"));
    }
    if let Some(s) = &q.status
        && !STATUSES.contains(&s.as_str())
    {
        problems.push(format!("status: {s:?} is not one of {}", STATUSES.join(", ")));
    }
    if let Some(c) = &q.cursor
        && let Err(e) = c.parse::<PcId>()
    {
        problems.push(format!("cursor: {e} (pass back the next_cursor of the previous page)"));
    }
    let limit = match q.limit {
        None => LIMIT,
        Some(n) if (1..=LIMIT_MAX).contains(&n) => n,
        Some(n) => {
            problems.push(format!("limit: {n} is outside 1..={LIMIT_MAX}"));
            LIMIT
        }
    };
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems));
    }
    let stale_before = crate::db::now_ms() - state.check_stale_ms;
    let first_page = q.cursor.is_none() && q.status.is_none();
    let pcs = state.db.check_pcs(name.clone(), q.status, stale_before, q.cursor, limit).await?;
    if pcs.is_empty() && first_page {
        return Err(ApiError::not_found(format!(
            "no PC has reported check {name:?} (kanade checks lists the checks there are)"
        )));
    }
    let next_cursor = (pcs.len() as i64 == limit).then(|| pcs.last().map(|p| p.pc_id.clone())).flatten();
    Ok(Json(CheckDetail { name, pcs, next_cursor }))
}

/// `DELETE /api/checks/{name}` (admins, audited): every PC's status for a check renamed or
/// retired goes; its next result, if any, sets one again.
pub async fn forget(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    Path(name): Path<String>,
) -> Result<Json<kanade_shared::api::compliance::CheckForgotten>, ApiError> {
    kanade_shared::manifest::outputs::check_check_name(&name)
        .map_err(|e| ApiError::invalid(vec![format!("name: {e}")]))?;
    let stale_before = crate::db::now_ms() - state.check_stale_ms;
    if state.db.check_pcs(name.clone(), None, stale_before, None, 1).await?.is_empty() {
        return Err(ApiError::not_found(format!(
            "no PC has reported check {name:?} (kanade checks lists the checks there are)"
        )));
    }
    super::audit_as(&state, &caller, "check.forget", Some(name.clone()), serde_json::Value::Null).await?;
    let forgotten = state.db.forget_check(name.clone()).await?;
    Ok(Json(kanade_shared::api::compliance::CheckForgotten { name, forgotten }))
}
