//! `/api/auth/mfa/*`: a password account's second factor (TOTP) — set up, confirm with a first
//! code (which returns the recovery codes, once), turn off with the password — and an admin's
//! reset for a user who lost their phone. Checked at sign-in by [`check`]; API tokens never
//! need it.

use super::Path;
use axum::extract::State;
use axum::http::StatusCode;
use kanade_shared::api::accounts::{ConfirmPassword, MfaCode, MfaDisabled, MfaEnabled, MfaReset, MfaSetup};
use serde_json::{Value, json};

use super::{ApiError, AppState, Json};
use crate::auth::{Caller, Via, sha256_hex, totp};
use crate::db::now_ms;

fn password_only(caller: &Caller) -> Result<(), ApiError> {
    if caller.via != Via::Password {
        return Err(ApiError::bad_request(
            "a second factor belongs to a signed-in user's password account (not an API token)",
        ));
    }
    Ok(())
}

/// Whether `code` is a second factor of `name` now: a fresh code (its time step then used up)
/// or an unused recovery code (then struck). What was used, for the audit trail; `None`: wrong.
pub async fn check(state: &AppState, name: &str, code: &str) -> Result<Option<Value>, ApiError> {
    let Some(m) = state.db.mfa(name.to_owned()).await?.filter(|m| m.enabled_ms.is_some()) else {
        return Ok(None);
    };
    if totp::is_recovery(code) {
        let hash = sha256_hex(&totp::normalise_recovery(code));
        let used = state.db.use_recovery_code(name.to_owned(), hash, now_ms()).await?;
        let left = m.recovery_sha256.len().saturating_sub(1);
        return Ok(used.then(|| json!({ "second_factor": "recovery_code", "recovery_codes_left": left })));
    }
    let Some(step) = totp::matching_step(&m.secret, code, (now_ms() / 1000) as u64) else { return Ok(None) };
    let fresh = state.db.use_mfa_step(name.to_owned(), step as i64).await?;
    Ok(fresh.then(|| json!({ "second_factor": "code" })))
}

/// The caller's password again: a session alone (a borrowed laptop, a stolen token) must not
/// change how the account signs in. A wrong one is audited.
async fn confirm_password(state: &AppState, caller: &Caller, password: &str) -> Result<(), ApiError> {
    let user = state.db.user(caller.name.clone()).await?.ok_or_else(|| ApiError::not_found("user gone"))?;
    if state.auth.verify_password(password.to_owned(), user.password_hash.clone()).await {
        return Ok(());
    }
    super::audit_as(state, caller, "auth.password_failed", Some(caller.name.clone()), Value::Null).await?;
    Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "password: wrong password"))
}

pub async fn setup(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<ConfirmPassword>,
) -> Result<Json<MfaSetup>, ApiError> {
    password_only(&caller)?;
    confirm_password(&state, &caller, &body.password).await?;
    let secret = totp::new_secret().map_err(ApiError::bad_request)?;
    if !state.db.begin_mfa(caller.name.clone(), secret.clone(), now_ms()).await? {
        return Err(ApiError::conflict(
            "a second factor is already on for this account; turn it off first (POST /api/auth/mfa/disable, `kanade mfa disable`)",
        ));
    }
    let uri = totp::uri(&secret, &caller.name).map_err(ApiError::bad_request)?;
    let qr = totp::qr_rows(&uri).map_err(ApiError::bad_request)?;
    Ok(Json(MfaSetup {
        secret,
        otpauth_uri: uri,
        qr,
        next: "add it to an authenticator app (scan the QR code or type the secret), then confirm with its current code: POST /api/auth/mfa/enable {\"code\": \"123456\"}".into(),
    }))
}

pub async fn enable(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<MfaCode>,
) -> Result<Json<MfaEnabled>, ApiError> {
    password_only(&caller)?;
    let pending = state.db.mfa(caller.name.clone()).await?.filter(|m| m.enabled_ms.is_none());
    let Some(pending) = pending else {
        return Err(ApiError::conflict(
            "nothing to confirm: start with POST /api/auth/mfa/setup (`kanade mfa setup`), or the second factor is already on",
        ));
    };
    let Some(step) = totp::matching_step(&pending.secret, &body.code, (now_ms() / 1000) as u64) else {
        return Err(ApiError::invalid(vec![
            "code: not the current code for the secret from set-up; check the phone's clock and enter the code it shows now".into(),
        ]));
    };
    let codes = totp::new_recovery_codes().map_err(ApiError::bad_request)?;
    let hashes = codes.iter().map(|c| sha256_hex(&totp::normalise_recovery(c))).collect();
    if !state.db.enable_mfa(caller.name.clone(), step as i64, hashes, now_ms()).await? {
        return Err(ApiError::conflict(
            "the set-up changed meanwhile; start again with POST /api/auth/mfa/setup",
        ));
    }
    super::audit_as(&state, &caller, "auth.mfa_enabled", Some(caller.name.clone()), Value::Null).await?;
    Ok(Json(MfaEnabled {
        enabled: true,
        recovery_codes: codes,
        note: "keep these recovery codes somewhere safe: each signs you in once without the phone, and they are not shown again".into(),
    }))
}

pub async fn disable(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<ConfirmPassword>,
) -> Result<Json<MfaDisabled>, ApiError> {
    password_only(&caller)?;
    confirm_password(&state, &caller, &body.password).await?;
    let user = state.db.user(caller.name.clone()).await?.ok_or_else(|| ApiError::not_found("user gone"))?;
    if user.account.role == "admin"
        && state.auth.config.require_mfa_for_admins
        && user.account.mfa_enabled_ms.is_some()
    {
        return Err(ApiError::conflict(
            "admins must keep a second factor here (auth.require_mfa_for_admins); set up a new phone with an admin's reset instead",
        ));
    }
    let removed = state.db.delete_mfa(caller.name.clone()).await?;
    if removed {
        super::audit_as(&state, &caller, "auth.mfa_disabled", Some(caller.name.clone()), Value::Null).await?;
    }
    Ok(Json(MfaDisabled { disabled: removed }))
}

/// An admin takes a user's second factor away (a lost phone); the user signs in with the
/// password alone and sets up a new one.
pub async fn reset(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<MfaReset>, ApiError> {
    if state.db.user(name.clone()).await?.is_none() {
        return Err(ApiError::not_found(format!("no user {name:?}; `GET /api/users` lists them")));
    }
    let removed = state.db.delete_mfa(name.clone()).await?;
    if removed {
        super::audit_as(&state, &caller, "user.mfa_reset", Some(name.clone()), Value::Null).await?;
    }
    Ok(Json(MfaReset { reset: removed, user: name }))
}
