//! `/api/freeze`: close the fleet for changes for a while. The scheduler skips its ticks and the
//! rollout dispatcher holds later waves by themselves; manual runs come through [`guard`].

use axum::extract::State;
use axum::http::StatusCode;
use kanade_shared::wire::Timestamp;
use kanade_shared::wire::freeze::{FreezeStatus, SetFreeze};
use serde_json::json;

use super::{ApiError, AppState, Json};
use crate::auth::Caller;

pub async fn show(State(state): State<AppState>) -> Result<Json<FreezeStatus>, ApiError> {
    let freeze = state.db.freeze().await?;
    let frozen = freeze.as_ref().is_some_and(|f| f.covers(Timestamp::now_utc()));
    Ok(Json(FreezeStatus { freeze, frozen }))
}

/// `PUT /api/freeze`: set (or replace) the window; audited.
pub async fn set(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<SetFreeze>,
) -> Result<Json<FreezeStatus>, ApiError> {
    let now = Timestamp::now_utc();
    let freeze = body.validate(now, &caller.name).map_err(ApiError::invalid)?;
    let detail = serde_json::to_value(&freeze).unwrap_or_default();
    super::audit_as(&state, &caller, "freeze.set", None, detail).await?;
    state.db.set_freeze(freeze.clone()).await?;
    Ok(Json(FreezeStatus { frozen: freeze.covers(now), freeze: Some(freeze) }))
}

/// `DELETE /api/freeze`: lift it; audited. Lifting no freeze is fine (nothing changes).
pub async fn lift(State(state): State<AppState>, caller: Caller) -> Result<StatusCode, ApiError> {
    if let Some(f) = state.db.freeze().await? {
        super::audit_as(&state, &caller, "freeze.lift", None, serde_json::to_value(&f).unwrap_or_default())
            .await?;
        state.db.clear_freeze().await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A manual run while the fleet is frozen: refused (409 `frozen`) unless the caller overrides,
/// which is audited with what was run.
pub(super) async fn guard(
    state: &AppState,
    caller: &Caller,
    override_freeze: bool,
    what: &str,
) -> Result<(), ApiError> {
    let Some(freeze) = state.db.freeze().await?.filter(|f| f.covers(Timestamp::now_utc())) else {
        return Ok(());
    };
    if !override_freeze {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "frozen",
            format!(
                "{}; to run anyway put \"override_freeze\": true in the plan or pass ?override_freeze=true (kanade: --override-freeze), which is audited",
                freeze.describe()
            ),
        ));
    }
    let detail = json!({ "run": what, "freeze": freeze });
    super::audit_as(state, caller, "freeze.override", Some(what.to_owned()), detail).await?;
    Ok(())
}
