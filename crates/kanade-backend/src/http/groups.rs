//! `/api/groups`: dynamic groups — a name and a rule over agent fields and facts
//! (`kanade_shared::rule`); their members are written into `agent_groups` by
//! `crate::dynamic_groups`, here right away and then every minute.

use super::Path;
use axum::extract::State;
use axum::http::StatusCode;
use kanade_shared::GroupName;
use kanade_shared::api::Items;
use kanade_shared::api::groups::CreateGroup;
use kanade_shared::api::groups::DynamicGroup;
use kanade_shared::api::groups::GroupDeleted;
use kanade_shared::api::groups::GroupDetail;
use kanade_shared::api::groups::GroupMembers;
use kanade_shared::api::groups::Member;
use kanade_shared::api::groups::SetRule;
use serde_json::{Value, json};

use super::{ApiError, AppState, Json};
use crate::auth::Caller;
use crate::db::now_ms;
use crate::dynamic_groups::{self, PassError};

fn pass_failed(e: PassError) -> ApiError {
    match e {
        PassError::Db(e) => e.into(),
        PassError::Broker(why) => super::broker(why),
    }
}

/// The rule parsed and every field it names readable, or 422 naming each problem.
async fn checked_rule(state: &AppState, rule: &str) -> Result<(), ApiError> {
    let parsed = kanade_shared::rule::parse(rule).map_err(|e| ApiError::invalid(vec![e.to_string()]))?;
    let problems = state.db.rule_problems(parsed.fields()).await?;
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems.into_iter().map(|p| format!("rule: {p}")).collect()));
    }
    Ok(())
}

async fn shown(state: &AppState, name: &str) -> Result<GroupDetail, ApiError> {
    let group = state.db.dynamic_group(name.to_owned()).await?.ok_or_else(|| {
        ApiError::not_found(format!("no dynamic group {name:?}; `kanade group list` shows them"))
    })?;
    let members = state
        .db
        .dynamic_members(name.to_owned())
        .await?
        .into_iter()
        .map(|(pc_id, since_ms)| Member { pc_id, since_ms })
        .collect();
    Ok(GroupDetail { group, members })
}

pub async fn list(State(state): State<AppState>) -> Result<Json<Items<DynamicGroup>>, ApiError> {
    Ok(Json(Items { items: state.db.dynamic_groups().await? }))
}

pub async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<GroupDetail>, ApiError> {
    Ok(Json(shown(&state, &name).await?))
}

/// `GET /api/groups/{name}/members`: the PCs in it, each with when it joined.
pub async fn members(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<GroupMembers>, ApiError> {
    let shown = shown(&state, &name).await?;
    Ok(Json(GroupMembers { group: name, members: shown.members }))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateGroup>,
) -> Result<(StatusCode, Json<GroupDetail>), ApiError> {
    let name: GroupName = body
        .name
        .parse()
        .map_err(|e: kanade_shared::IdError| ApiError::invalid(vec![format!("name: {e}")]))?;
    checked_rule(&state, &body.rule).await?;
    if !state
        .db
        .create_dynamic_group(name.to_string(), body.rule.clone(), caller.name.clone(), now_ms())
        .await?
    {
        return Err(ApiError::conflict(format!(
            "a dynamic group {name} exists; change its rule with PUT /api/groups/{name} (`kanade group set-rule`)"
        )));
    }
    super::audit_as(&state, &caller, "group.create", Some(name.to_string()), json!({ "rule": body.rule }))
        .await?;
    dynamic_groups::run_pass(&state.db, &state.buckets, false).await.map_err(pass_failed)?;
    Ok((StatusCode::CREATED, Json(shown(&state, name.as_str()).await?)))
}

pub async fn set_rule(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<SetRule>,
) -> Result<Json<GroupDetail>, ApiError> {
    checked_rule(&state, &body.rule).await?;
    if !state.db.set_dynamic_rule(name.clone(), body.rule.clone(), now_ms()).await? {
        return Err(ApiError::not_found(format!(
            "no dynamic group {name:?}; create it with POST /api/groups"
        )));
    }
    super::audit_as(&state, &caller, "group.update", Some(name.clone()), json!({ "rule": body.rule }))
        .await?;
    dynamic_groups::run_pass(&state.db, &state.buckets, false).await.map_err(pass_failed)?;
    Ok(Json(shown(&state, &name).await?))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<GroupDeleted>, ApiError> {
    let Some(former) = state.db.delete_dynamic_group(name.clone()).await? else {
        return Err(ApiError::not_found(format!("no dynamic group {name:?}")));
    };
    super::audit_as(&state, &caller, "group.delete", Some(name.clone()), Value::Null).await?;
    let left = former.len();
    dynamic_groups::write_groups(&state.db, &state.buckets, former).await.map_err(pass_failed)?;
    Ok(Json(GroupDeleted { deleted: name, members_removed: left }))
}
