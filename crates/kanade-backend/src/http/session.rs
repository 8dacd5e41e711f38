//! `/api/auth/*`: sign in, who am I, change my password. Every login, good or bad, is audited.

use super::Json;
use axum::extract::State;
use axum::http::StatusCode;
use kanade_shared::api::accounts::{Login, Me, PasswordChange, PasswordChanged, Session, SessionUser};
use serde_json::{Value, json};

use super::authz::Peer;
use super::{ApiError, AppState};
use crate::auth::{Caller, Via, jwt, password, throttle};
use crate::db::now_ms;
use crate::pipeline::audit;

pub async fn login(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: axum::http::HeaderMap,
    Json(body): Json<Login>,
) -> Result<Json<Session>, ApiError> {
    let source = peer.unwrap_or_else(|| "unknown".to_owned());
    let client = crate::auth::client_of(&headers);
    // Whatever was submitted as a name, logs and the audit trail get at most 64 characters.
    let shown = throttle::loggable_name(&body.name);
    let now = now_ms();
    // Counted under the cut name too: a name longer than any account can be is only a guess,
    // and must not make the throttle's memory grow with its length.
    let attempt = state.auth.throttle.lock().unwrap_or_else(|p| p.into_inner()).attempt(&shown, &source, now);
    let ticket = match attempt {
        Ok(ticket) => ticket,
        Err(refused) => {
            state.auth.throttled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // One audit event per address per window, not one per attempt: unauthenticated
            // callers must not be able to grow (or, by pushing old events out, erase) the trail.
            if let Some(unreported) = refused.report {
                let detail = json!({ "unreported_in_previous_window": unreported });
                audit(
                    &state.js,
                    &shown,
                    "auth.login_throttled",
                    Some(shown.clone()),
                    Some(source),
                    client,
                    detail,
                )
                .await?;
            }
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "throttled",
                format!("too many failed sign-ins; try again in {} s", (refused.wait_ms + 999) / 1000),
            ));
        }
    };
    let name = body.name.clone();
    let user = state.db.user(name).await?;
    // The same work and the same answer whether the user exists or not.
    let ok = match &user {
        Some(u) => {
            state.auth.verify_password(body.password.clone(), u.password_hash.clone()).await
                && !u.account.disabled
        }
        None => {
            static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            let dummy = DUMMY.get_or_init(|| password::hash("no such user, same cost").unwrap_or_default());
            let _ = state.auth.verify_password(body.password.clone(), dummy.clone()).await;
            false
        }
    };
    let Some(user) = user.filter(|_| ok) else {
        // The attempt was counted as a failure when the throttle let it through.
        audit(&state.js, &shown, "auth.login_failed", Some(shown.clone()), Some(source), client, Value::Null)
            .await?;
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            // Not `unauthorized`: the caller has no token to renew, only a password to retype.
            "bad_credentials",
            "wrong user name or password, or the account is disabled",
        ));
    };
    // The second factor, when the account has one. A sign-in without the code stays counted as
    // a failure: otherwise the right password alone could reset the throttle between guesses.
    let mut factor = Value::Null;
    if user.account.mfa_enabled_ms.is_some() {
        let Some(code) = body.code.as_deref().map(str::trim).filter(|c| !c.is_empty()) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "mfa_required",
                "this account has a second factor: send the 6-digit code from its authenticator app (or a recovery code) as `code`",
            ));
        };
        match super::mfa::check(&state, &user.account.name, code).await? {
            Some(used) => factor = used,
            None => {
                let detail = json!({ "second_factor": "wrong" });
                audit(
                    &state.js,
                    &user.account.name,
                    "auth.login_failed",
                    Some(user.account.name.clone()),
                    Some(source),
                    client,
                    detail,
                )
                .await?;
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "mfa_invalid",
                    "the code is wrong, too old or already used; enter the next one your authenticator app shows (or a recovery code)",
                ));
            }
        }
    }
    state.auth.throttle.lock().unwrap_or_else(|p| p.into_inner()).succeeded(&ticket);
    let ttl = state.auth.config.session_ttl.as_secs() as i64;
    let claims = jwt::Claims {
        sub: user.account.name.clone(),
        iat: now / 1000,
        exp: now / 1000 + ttl,
        pwd: user.account.password_changed_ms,
    };
    let token = jwt::encode(&claims, &state.auth.config.secret);
    audit(
        &state.js,
        &user.account.name,
        "auth.login",
        Some(user.account.name.clone()),
        Some(source),
        client,
        factor,
    )
    .await?;
    let must_set_up_mfa = user.account.role == "admin"
        && state.auth.config.require_mfa_for_admins
        && user.account.mfa_enabled_ms.is_none();
    Ok(Json(Session {
        token,
        expires_ms: claims.exp * 1000,
        user: SessionUser {
            mfa: user.account.mfa_enabled_ms.is_some(),
            must_change_password: user.account.must_change_password,
            name: user.account.name,
            role: user.account.role,
            must_set_up_mfa,
        },
    }))
}

pub async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<Me>, ApiError> {
    let mfa = match caller.via {
        Via::Password => Some(
            state.db.user(caller.name.clone()).await?.is_some_and(|u| u.account.mfa_enabled_ms.is_some()),
        ),
        _ => None,
    };
    let disabled = caller.via == Via::AuthDisabled || state.auth.config.disabled;
    Ok(Json(Me {
        via: caller.via.as_str().to_owned(),
        name: caller.name,
        role: caller.role.as_str().to_owned(),
        must_change_password: caller.must_change_password,
        must_set_up_mfa: caller.must_set_up_mfa,
        mfa,
        auth_disabled: disabled.then_some(true),
        warning: disabled.then(|| {
            "authentication is disabled (KANADE_AUTH_DISABLE=1): anyone reaching this API is an admin"
                .to_owned()
        }),
    }))
}

pub async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<PasswordChange>,
) -> Result<Json<PasswordChanged>, ApiError> {
    if caller.via != Via::Password {
        return Err(ApiError::bad_request(
            "only a signed-in user has a password to change (not an API token)",
        ));
    }
    let name = caller.name.clone();
    let user = state.db.user(name).await?.ok_or_else(|| ApiError::not_found("user gone"))?;
    if !state.auth.verify_password(body.current.clone(), user.password_hash.clone()).await {
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
    state.db.set_password(name, hash, false, now).await?;
    super::audit_as(&state, &caller, "auth.password_changed", Some(caller.name.clone()), Value::Null).await?;
    Ok(Json(PasswordChanged {
        changed: true,
        note: "sessions from before the change are no longer valid; sign in again".into(),
    }))
}
