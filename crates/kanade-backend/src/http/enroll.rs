//! `/api/enroll*`: enrolment tokens (admin), the enrolment itself and the install scripts and
//! agent download it uses (the token is the credential), and revoking an agent's broker access.

use super::Path;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kanade_shared::wire::Timestamp;
use kanade_shared::wire::agent_config::ConfigScope;
use kanade_shared::wire::enroll::AgentQuery;
use kanade_shared::wire::enroll::ScriptQuery;
use kanade_shared::wire::enroll::{
    AgentToml, BrokerCredentials, CreateToken, CreatedToken, EnrollRequest, EnrollResponse, InstallLines,
    ReleaseRef, RevokedCredentials, TokenInfo, TokenList, agent_toml, platform,
};
use kanade_shared::{PcId, Version, release};
use serde_json::json;
use tokio::io::AsyncReadExt;

use super::authz::Peer;
use super::{ApiError, AppState, Json, Query, broker};
use crate::auth::{Caller, random_hex, sha256_hex};
use crate::db::enroll::{Refused, Revoked};
use crate::db::{now_ms, ts_ms};
use crate::enroll::{
    base_url, choose_release, install_ps1, install_sh, is_token_text, linux_line, windows_line,
};
use crate::pipeline::{audit_message, send_stored_audit};

/// This backend's URL for scripts: `[enroll] public_url`, else the request's own.
fn base(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    if let Some(url) = &state.enroll.public_url {
        return Ok(url.trim_end_matches('/').to_owned());
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let https = headers.get("x-forwarded-proto").and_then(|h| h.to_str().ok()) == Some("https");
    base_url(host, https).map_err(ApiError::bad_request)
}

fn refused(why: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "enroll_refused", why)
}

/// An audit event for a change `caller` makes, to store with the change (see
/// [`send_stored_audit`]).
fn caller_audit(
    caller: &Caller,
    action: &str,
    target: Option<String>,
    detail: serde_json::Value,
) -> Result<crate::pipeline::Message, ApiError> {
    Ok(audit_message(&caller.name, action, target, caller.source.clone(), caller.client, detail)?)
}

/// The token's text as pasted: 64 hex characters (anything else is a copying mistake).
fn check_token_text(token: &str) -> Result<(), ApiError> {
    if is_token_text(token) {
        Ok(())
    } else {
        Err(refused("token: not an enrolment token (64 hex characters); copy the whole line again".into()))
    }
}

/// `POST /api/enroll/tokens` (admin): a new token, shown this once, with the install lines.
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let now = Timestamp::now_utc();
    let spec = body.validate(now).map_err(ApiError::invalid)?;
    let base = base(&state, &headers)?;
    let token = random_hex(32).map_err(|e| ApiError::unavailable("no_randomness", e))?;
    let sha = sha256_hex(&token);
    let id = sha[..12].to_owned();
    let detail = json!({ "id": id, "expires_at": spec.expires_at.unix_timestamp(), "max_uses": spec.max_uses,
        "groups": spec.groups });
    let audit = caller_audit(&caller, "enroll.token_created", Some(id.clone()), detail)?;
    state
        .db
        .create_enroll_token(id.clone(), sha, caller.name.clone(), ts_ms(now), spec.clone(), audit.outgoing())
        .await?;
    send_stored_audit(&state.js, &state.db, audit).await;
    let info = TokenInfo {
        id,
        created_by: caller.name,
        created_at: now,
        expires_at: spec.expires_at,
        max_uses: spec.max_uses,
        uses: 0,
        groups: spec.groups,
        revoked_at: None,
    };
    let install = InstallLines { linux: linux_line(&base, &token), windows: windows_line(&base, &token) };
    Ok((StatusCode::CREATED, Json(CreatedToken { token, info, install })))
}

/// `GET /api/enroll/tokens` (admin): every token, newest first, without its value.
pub async fn list_tokens(State(state): State<AppState>) -> Result<Json<TokenList>, ApiError> {
    let items = state.db.enroll_tokens().await?.into_iter().map(|t| t.info).collect();
    Ok(Json(TokenList { items }))
}

/// `DELETE /api/enroll/tokens/{id}` (admin): no PC enrols with it from now on; PCs enrolled
/// with it keep their credentials.
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let audit = caller_audit(&caller, "enroll.token_revoked", Some(id.clone()), json!({}))?;
    if !state.db.revoke_enroll_token(id.clone(), now_ms(), audit.outgoing()).await? {
        return Err(ApiError::not_found(format!(
            "no enrolment token {id:?} that is not revoked already (kanade enroll list)"
        )));
    }
    send_stored_audit(&state.js, &state.db, audit).await;
    Ok(StatusCode::NO_CONTENT)
}

/// A token from a query or body: its text checked, then found and still usable for downloads
/// (not expired, not revoked; a used-up token may still fetch the binary).
async fn usable_token(state: &AppState, token: &str) -> Result<TokenInfo, ApiError> {
    check_token_text(token)?;
    let Some(stored) = state.db.enroll_token_by_hash(sha256_hex(token)).await? else {
        return Err(refused("this enrolment token is not known here; ask an admin for a new one".into()));
    };
    let now = Timestamp::now_utc();
    // Uses do not matter for a download; expiry and revocation do.
    match stored.info.closed(now) {
        Some(why) => Err(refused(why)),
        None => Ok(stored.info),
    }
}

/// The published releases and the fleet's target version.
async fn releases(state: &AppState) -> Result<(Vec<(Version, String)>, Option<Version>), ApiError> {
    let mut published = Vec::new();
    for info in super::objects(&state.js, "agent_releases").await? {
        if let Some((v, t)) = info.name.split_once('/')
            && let Ok(v) = v.parse::<Version>()
        {
            published.push((v, t.to_owned()));
        }
    }
    let kv = state.buckets.get("agent_config").await.map_err(broker)?;
    let target = kv
        .get(ConfigScope::Global.key())
        .await
        .map_err(broker)?
        .and_then(|b| serde_json::from_slice::<kanade_shared::wire::AgentConfigPatch>(&b).ok())
        .and_then(|p| p.target_version);
    Ok((published, target))
}

fn accepts_toml(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|h| h.to_str().ok()).is_some_and(|a| a.contains("application/toml"))
}

/// `POST /api/enroll` (no session; the token is the credential): this PC's credentials and
/// config. `Accept: application/toml` answers with the agent.toml alone (for install.sh).
/// Everything that can fail runs before the enrolment is written, which is one transaction with
/// its audit event: a PC never loses a use of its token without getting its credentials.
pub async fn enroll(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    Json(body): Json<EnrollRequest>,
) -> Result<Response, ApiError> {
    let (os, arch) = platform(&body.os, &body.arch).map_err(ApiError::invalid)?;
    check_token_text(&body.token)?;
    let base = base(&state, &headers)?;
    let (published, target) = releases(&state).await?;
    let Some((version, target)) = choose_release(&published, target.as_ref(), os, arch) else {
        return Err(no_release(os, arch));
    };
    let secret = random_hex(32).map_err(|e| ApiError::unavailable("no_randomness", e))?;
    let now = Timestamp::now_utc();
    let pc = body.pc_id.clone();
    let token_id = sha256_hex(&body.token)[..12].to_owned();
    let client = crate::auth::client_of(&headers);
    let detail = json!({ "token": token_id, "os": os, "arch": arch, "release": version });
    let audit = audit_message(
        &format!("enroll:{token_id}"),
        "agent.enrolled",
        Some(pc.to_string()),
        peer,
        client,
        detail,
    )?;
    let outgoing = audit.outgoing();
    let token = match state
        .db
        .enrol(sha256_hex(&body.token), pc.clone(), sha256_hex(&secret), now, outgoing)
        .await?
    {
        Ok(t) => t,
        Err(Refused::Token(why)) => return Err(refused(why)),
        Err(Refused::Enrolled(pc)) => {
            return Err(ApiError::conflict(format!(
                "{pc} is enrolled already; to enrol it again (a reinstalled PC), revoke its credentials first: kanade agents revoke {pc}"
            )));
        }
    };
    send_stored_audit(&state.js, &state.db, audit).await;
    let signing =
        state.pipeline.signer.as_ref().map(|k| kanade_shared::signing::encode_public(&k.verifying_key()));
    let toml = agent_toml(&AgentToml {
        pc: &pc,
        os,
        nats_url: &state.enroll.agent_nats_url,
        groups: &token.groups,
        trusted_key: signing.as_deref(),
        password: &secret,
        token_id: &token.id,
        now,
    });
    if accepts_toml(&headers) {
        let mut response = toml.into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/toml"));
        return Ok(response);
    }
    let release = ReleaseRef {
        url: format!("{base}/api/enroll/agent?token={}&os={os}&arch={arch}&version={version}", body.token),
        version,
        target,
    };
    let response = EnrollResponse {
        pc_id: pc.clone(),
        agent_toml: toml,
        credentials: BrokerCredentials { user: pc, password: secret },
        release,
    };
    Ok(Json(response).into_response())
}

fn no_release(os: &str, arch: &str) -> ApiError {
    ApiError::not_found(format!(
        "no agent release for {os}/{arch} is published; an admin publishes one with: kanade agent publish <binary> --version <v>"
    ))
}

/// A script that says why and fails: what `curl … | sh` (or `| iex`) shows for a refused token.
fn failing_script(shell: bool, status: StatusCode, why: &str) -> Response {
    let clean: String =
        why.chars().filter(|c| !matches!(c, '\'' | '"' | '`' | '$' | '\\' | '\n' | '\r')).collect();
    let text = if shell {
        format!("#!/bin/sh\necho 'kanade install: {clean}' >&2\nexit 1\n")
    } else {
        format!("throw 'kanade install: {clean}'\n")
    };
    (status, [(header::CONTENT_TYPE, script_type(shell))], text).into_response()
}

fn script_type(shell: bool) -> &'static str {
    if shell { "text/x-shellscript; charset=utf-8" } else { "text/plain; charset=utf-8" }
}

async fn script(state: AppState, headers: HeaderMap, token: String, shell: bool) -> Response {
    let info = match usable_token(&state, &token).await {
        Ok(info) => info,
        Err(e) => return failing_script(shell, e.status, &e.message),
    };
    if info.uses >= info.max_uses {
        let why = info.refusal(Timestamp::now_utc()).unwrap_or_default();
        return failing_script(shell, StatusCode::FORBIDDEN, &why);
    }
    let base = match base(&state, &headers) {
        Ok(b) => b,
        Err(e) => return failing_script(shell, e.status, &e.message),
    };
    let text = if shell { install_sh(&base, &token) } else { install_ps1(&base, &token) };
    ([(header::CONTENT_TYPE, script_type(shell))], text).into_response()
}

/// `GET /api/enroll/install.sh?token=`: the Linux/macOS installer for this token.
pub async fn install_sh_script(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ScriptQuery>,
) -> Response {
    script(state, headers, q.token, true).await
}

/// `GET /api/enroll/install.ps1?token=`: the Windows installer for this token.
pub async fn install_ps1_script(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ScriptQuery>,
) -> Response {
    script(state, headers, q.token, false).await
}

/// `GET /api/enroll/agent?token=&os=&arch=[&version=]`: the agent binary a new PC installs.
pub async fn agent_binary(
    State(state): State<AppState>,
    Query(q): Query<AgentQuery>,
) -> Result<Response, ApiError> {
    let (os, arch) = platform(&q.os, &q.arch).map_err(ApiError::invalid)?;
    usable_token(&state, &q.token).await?;
    let (published, target) = releases(&state).await?;
    let wanted = match q.version.as_deref() {
        Some(v) => Some(v.parse::<Version>().map_err(|e| ApiError::invalid(vec![format!("version: {e}")]))?),
        None => target,
    };
    let Some((version, target)) = choose_release(&published, wanted.as_ref(), os, arch) else {
        return Err(no_release(os, arch));
    };
    let store = state.js.get_object_store("agent_releases").await.map_err(broker)?;
    let mut object = store.get(release::key(&version, &target)).await.map_err(broker)?;
    let mut body = Vec::new();
    object.read_to_end(&mut body).await.map_err(broker)?;
    let headers = [
        (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
        (header::HeaderName::from_static("x-kanade-version"), version.to_string()),
        (header::HeaderName::from_static("x-kanade-target"), target),
    ];
    Ok((headers, body).into_response())
}

/// `DELETE /api/agents/{pc}/credentials` (admin): the agent's broker account stops admitting
/// it, and its connection is dropped.
pub async fn revoke_credentials(
    State(state): State<AppState>,
    caller: Caller,
    Path(pc): Path<String>,
) -> Result<Json<RevokedCredentials>, ApiError> {
    let pc: PcId = pc.parse().map_err(|e| ApiError::invalid(vec![format!("pc: {e}")]))?;
    let audit = caller_audit(&caller, "agent.credentials_revoked", Some(pc.to_string()), json!({}))?;
    let found = state
        .db
        .revoke_agent_credentials(pc.clone(), caller.name.clone(), now_ms(), audit.outgoing())
        .await?;
    let conn = match found {
        Revoked::Now(conn) => conn,
        Revoked::Already => {
            return Err(ApiError::conflict(format!("{pc}'s broker credentials are revoked already")));
        }
        Revoked::NotEnrolled => {
            return Err(ApiError::not_found(format!(
                "{pc} was never enrolled; a broker account from kanade-backend nats-config is removed by regenerating that config without it"
            )));
        }
    };
    send_stored_audit(&state.js, &state.db, audit).await;
    let (disconnected, detail) = disconnect(&state, &pc, conn).await;
    tracing::info!(pc = %pc, disconnected, detail, "agent credentials revoked");
    Ok(Json(RevokedCredentials { pc_id: pc, disconnected, detail }))
}

/// Drop every broker connection of `pc`: the one its last authorization admitted (`recorded`,
/// which may still be starting up) and whatever the servers list under its name.
async fn disconnect(state: &AppState, pc: &PcId, recorded: Option<(String, u64)>) -> (bool, String) {
    let Some((url, auth)) = &state.enroll.system else {
        return (
            false,
            "revoked; this backend has no broker system account ([nats] system_user) to disconnect it with, so it stays connected until its connection drops".into(),
        );
    };
    let system = match kanade_shared::nats::connect_once(url, auth, "kanade-backend-system").await {
        Ok(c) => c,
        Err(e) => {
            return (
                false,
                format!("revoked; cannot connect as the broker's system user to disconnect it: {e}"),
            );
        }
    };
    let mut problems = Vec::new();
    let mut live =
        match crate::callout::connections_of(&system, pc.as_str(), std::time::Duration::from_millis(500))
            .await
        {
            Ok(found) => found,
            Err(e) => {
                problems.push(e);
                Vec::new()
            }
        };
    live.sort();
    live.dedup();
    let mut dropped = 0;
    for (server, cid) in &live {
        match crate::callout::kick(&system, server, *cid).await {
            Ok(true) => dropped += 1,
            Ok(false) => {}
            Err(e) => problems.push(e),
        }
    }
    // The connection the last authorization admitted may not be listed yet (still starting up);
    // an error here is a connection long gone (an old server id, a client id no longer used).
    if let Some((server, cid)) = recorded.filter(|r| !live.contains(r))
        && let Ok(true) = crate::callout::kick(&system, &server, cid).await
    {
        dropped += 1;
    }
    let _ = system.drain().await;
    let detail = match (dropped, problems.is_empty()) {
        (0, true) => "revoked; it was not connected, and cannot connect now".to_owned(),
        (n, true) => format!("revoked and disconnected ({n} connection{})", if n == 1 { "" } else { "s" }),
        (n, false) => format!("revoked; {n} connection(s) dropped, but: {}", problems.join("; ")),
    };
    (dropped > 0, detail)
}
