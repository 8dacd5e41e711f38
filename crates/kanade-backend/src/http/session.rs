//! `/api/auth/*`: sign in, who am I, change my password. Every login, good or bad, is audited.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::auth::{Caller, Peer, Via, jwt, password};
use crate::db::{accounts, now_ms};
use crate::pipeline::audit;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    name: String,
    password: String,
}

pub async fn login(
    State(state): State<AppState>,
    Peer(peer): Peer,
    Json(body): Json<Login>,
) -> Result<Json<Value>, ApiError> {
    let source = peer.unwrap_or_else(|| "unknown".to_owned());
    let now = now_ms();
    let wait =
        state.auth.throttle.lock().unwrap_or_else(|p| p.into_inner()).blocked(&body.name, &source, now);
    if let Some(ms) = wait {
        audit(
            &state.js,
            &body.name,
            "auth.login_throttled",
            Some(body.name.clone()),
            Some(source),
            Value::Null,
        )
        .await?;
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            format!("too many failed sign-ins; try again in {} s", (ms + 999) / 1000),
        ));
    }
    let name = body.name.clone();
    let user = state.db.read(move |c| accounts::user(c, &name)).await?;
    // The same work and the same answer whether the user exists or not.
    let ok = match &user {
        Some(u) => password::verify(&body.password, &u.password_hash) && !u.disabled,
        None => {
            static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            let dummy = DUMMY.get_or_init(|| password::hash("no such user, same cost").unwrap_or_default());
            let _ = password::verify(&body.password, dummy);
            false
        }
    };
    let Some(user) = user.filter(|_| ok) else {
        state.auth.throttle.lock().unwrap_or_else(|p| p.into_inner()).failed(&body.name, &source, now);
        audit(&state.js, &body.name, "auth.login_failed", Some(body.name.clone()), Some(source), Value::Null)
            .await?;
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong user name or password, or the account is disabled",
        ));
    };
    state.auth.throttle.lock().unwrap_or_else(|p| p.into_inner()).succeeded(&user.name);
    let ttl = state.auth.config.session_ttl.as_secs() as i64;
    let claims = jwt::Claims {
        sub: user.name.clone(),
        iat: now / 1000,
        exp: now / 1000 + ttl,
        pwd: user.password_changed_ms,
    };
    let token = jwt::encode(&claims, &state.auth.config.secret);
    audit(&state.js, &user.name, "auth.login", Some(user.name.clone()), Some(source), Value::Null).await?;
    Ok(Json(json!({
        "token": token,
        "expires_ms": claims.exp * 1000,
        "user": { "name": user.name, "role": user.role, "must_change_password": user.must_change_password },
    })))
}

pub async fn me(State(state): State<AppState>, caller: Caller) -> Json<Value> {
    let mut v = json!({ "name": caller.name, "role": caller.role, "via": caller.via, "must_change_password": caller.must_change_password });
    if caller.via == Via::AuthDisabled || state.auth.config.disabled {
        v["auth_disabled"] = json!(true);
        v["warning"] =
            json!("authentication is disabled (KANADE_AUTH_DISABLE=1): anyone reaching this API is an admin");
    }
    Json(v)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    current: String,
    new: String,
}

pub async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<PasswordChange>,
) -> Result<Json<Value>, ApiError> {
    if caller.via != Via::Password {
        return Err(ApiError::bad_request(
            "only a signed-in user has a password to change (not an API token)",
        ));
    }
    let name = caller.name.clone();
    let user = state
        .db
        .read(move |c| accounts::user(c, &name))
        .await?
        .ok_or_else(|| ApiError::not_found("user gone"))?;
    if !password::verify(&body.current, &user.password_hash) {
        super::audit_as(&state, &caller, "auth.password_failed", Some(caller.name.clone()), Value::Null)
            .await?;
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "current: the current password is wrong",
        ));
    }
    let hash = super::accounts::new_password_hash(&caller.name, &body.new)?;
    let (name, now) = (caller.name.clone(), now_ms());
    state.db.write(move |tx| accounts::set_password(tx, &name, &hash, false, now)).await?;
    super::audit_as(&state, &caller, "auth.password_changed", Some(caller.name.clone()), Value::Null).await?;
    Ok(Json(
        json!({ "changed": true, "note": "sessions from before the change are no longer valid; sign in again" }),
    ))
}
