//! Admin-only account management: users and API tokens. All changes are audited.

use super::Json;
use super::Path;
use axum::extract::State;
use axum::http::StatusCode;
use kanade_shared::api::Items;
use kanade_shared::api::accounts::{
    ApiToken, NewToken, NewUser, TokenCreated, User, UserChange, UserCreated,
};
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::auth::{self, Caller, Role, password};
use crate::db::now_ms;

fn role(text: &str) -> Result<Role, ApiError> {
    text.parse().map_err(|e: String| ApiError::invalid(vec![format!("role: {e}")]))
}

fn user_name(name: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(vec![format!("name: {name:?} must be 1-64 of A-Z a-z 0-9 _ - . @")]))
    }
}

/// A new password for `name`: 422 when it breaks the rule, else its hash.
pub fn new_password_hash(name: &str, new: &str) -> Result<String, ApiError> {
    password::check_new(name, new).map_err(|e| ApiError::invalid(vec![e]))?;
    password::hash(new).map_err(ApiError::bad_request)
}

pub async fn list_users(State(state): State<AppState>) -> Result<Json<Items<User>>, ApiError> {
    let items = state.db.users().await?.into_iter().map(|u| u.account).collect();
    Ok(Json(Items { items }))
}

pub async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<NewUser>,
) -> Result<(StatusCode, Json<UserCreated>), ApiError> {
    user_name(&body.name)?;
    let r = role(&body.role)?;
    let hash = new_password_hash(&body.name, &body.password)?;
    let (name, now) = (body.name.clone(), now_ms());
    // An admin-set password is temporary: the user picks their own at first sign-in.
    let created = state.db.create_user(name, hash, r.as_str().to_owned(), true, now).await?;
    if !created {
        return Err(ApiError::conflict(format!("user {} already exists", body.name)));
    }
    super::audit_as(&state, &caller, "user.create", Some(body.name.clone()), json!({ "role": r })).await?;
    let created = UserCreated { name: body.name, role: r.as_str().to_owned(), must_change_password: true };
    Ok((StatusCode::CREATED, Json(created)))
}

pub async fn update_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<UserChange>,
) -> Result<Json<User>, ApiError> {
    let new_role = body.role.as_deref().map(role).transpose()?;
    let key = name.clone();
    let user = state
        .db
        .user(key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {name} does not exist")))?;
    let loses_admin = user.account.role == "admin"
        && !user.account.disabled
        && (new_role.is_some_and(|r| r != Role::Admin) || body.disabled == Some(true));
    if loses_admin && state.db.active_admins().await? <= 1 {
        return Err(ApiError::conflict(format!("{name} is the last active admin; make another admin first")));
    }
    let hash = body.password.as_deref().map(|p| new_password_hash(&name, p)).transpose()?;
    let (key, now, disabled) = (name.clone(), now_ms(), body.disabled);
    state.db.update_user(key, new_role.map(|r| r.as_str().to_owned()), disabled, hash, now).await?;
    let detail =
        json!({ "role": new_role, "disabled": body.disabled, "password_reset": body.password.is_some() });
    super::audit_as(&state, &caller, "user.update", Some(name.clone()), detail).await?;
    let key = name.clone();
    let user = state.db.user(key).await?.ok_or_else(|| {
        ApiError::not_found(format!("user {name} was deleted meanwhile; the change did not stick"))
    })?;
    Ok(Json(user.account))
}

pub async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let key = name.clone();
    let user = state
        .db
        .user(key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {name} does not exist")))?;
    if user.account.role == "admin" && !user.account.disabled && state.db.active_admins().await? <= 1 {
        return Err(ApiError::conflict(format!("{name} is the last active admin; make another admin first")));
    }
    let key = name.clone();
    state.db.delete_user(key).await?;
    super::audit_as(&state, &caller, "user.delete", Some(name), Value::Null).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_tokens(State(state): State<AppState>) -> Result<Json<Items<ApiToken>>, ApiError> {
    let items = state.db.tokens().await?.into_iter().map(|t| t.token).collect();
    Ok(Json(Items { items }))
}

pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<NewToken>,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    user_name(&body.name)?;
    let r = role(&body.role)?;
    let (row, secret) = auth::new_token(&body.name, r, &caller.name).map_err(ApiError::bad_request)?;
    let stored = row.clone();
    if !state.db.create_token(stored).await? {
        return Err(ApiError::conflict(format!("a token named {} already exists", body.name)));
    }
    super::audit_as(
        &state,
        &caller,
        "token.create",
        Some(row.token.id.clone()),
        json!({ "name": row.token.name, "role": r }),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            id: row.token.id,
            name: row.token.name,
            role: r.as_str().to_owned(),
            token: secret,
            note: "shown once: store it now".into(),
        }),
    ))
}

pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (key, now) = (id.clone(), now_ms());
    if !state.db.revoke_token(key, now).await? {
        return Err(ApiError::not_found(format!("token {id} does not exist or is already revoked")));
    }
    super::audit_as(&state, &caller, "token.revoke", Some(id), Value::Null).await?;
    Ok(StatusCode::NO_CONTENT)
}
