//! The job catalog (`jobs` KV) and the stop-the-bleed switches: revoke/unrevoke
//! (`script_status`) and kill by job.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use kanade_shared::JobId;
use kanade_shared::manifest;
use serde_json::{Value, json};

use super::body::parse_doc;
use super::{ApiError, AppState, broker};
use crate::auth::Caller;
use crate::db::queries;

fn job_id(raw: &str) -> Result<JobId, ApiError> {
    raw.parse().map_err(|e: kanade_shared::IdError| ApiError::invalid(vec![e.to_string()]))
}

pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let items: Vec<Value> = super::stored(&state.js, "jobs", manifest::job_from_json)
        .await?
        .into_iter()
        .map(|(_, f)| {
            let m = f.manifest;
            json!({ "id": m.id, "version": m.version, "description": m.description, "shell": m.execute.shell })
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let file = parse_doc(&headers, body, manifest::job_from_yaml, manifest::job_from_json).await?;
    let m = file.manifest;
    crate::pipeline::catalog::store(&state.js, &m).await?;
    super::audit_as(&state, &caller, "job.create", Some(m.id.to_string()), json!({ "version": m.version }))
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": m.id, "version": m.version }))))
}

/// Check a manifest (and its plan, if any) without storing it: the dashboard's editor shows
/// every problem next to the text.
pub async fn validate(headers: HeaderMap, body: Bytes) -> Result<Json<Value>, ApiError> {
    let file = parse_doc(&headers, body, manifest::job_from_yaml, manifest::job_from_json).await?;
    Ok(Json(json!({ "valid": true, "id": file.manifest.id, "version": file.manifest.version })))
}

pub async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = job_id(&id)?;
    let kv = state.js.get_key_value("jobs").await.map_err(broker)?;
    let bytes = kv
        .get(id.as_str())
        .await
        .map_err(broker)?
        .ok_or_else(|| ApiError::not_found(format!("job {id} not found")))?;
    let manifest: Value = serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let status = state
        .js
        .get_key_value("script_status")
        .await
        .map_err(broker)?
        .get(id.as_str())
        .await
        .map_err(broker)?;
    let revoked = status.is_some_and(|s| s.as_ref().eq_ignore_ascii_case(b"REVOKED"));
    let yaml = serde_yaml_ng::to_string(&manifest).unwrap_or_default();
    Ok(Json(json!({ "manifest": manifest, "yaml": yaml, "revoked": revoked })))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = job_id(&id)?;
    let jobs = state.js.get_key_value("jobs").await.map_err(broker)?;
    if jobs.get(id.as_str()).await.map_err(broker)?.is_none() {
        return Err(ApiError::not_found(format!("job {id} not found")));
    }
    if let Some((key, _)) = super::stored(&state.js, "schedules", manifest::schedule_from_json)
        .await?
        .into_iter()
        .find(|(_, s)| s.job.job_id() == &id)
    {
        return Err(ApiError::conflict(format!(
            "job {id} is used by schedule {key}; delete or change the schedule first"
        )));
    }
    jobs.delete(id.as_str()).await.map_err(broker)?;
    super::audit_as(&state, &caller, "job.delete", Some(id.to_string()), Value::Null).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_status(
    state: &AppState,
    caller: &Caller,
    id: &JobId,
    value: &str,
    action: &str,
) -> Result<Json<Value>, ApiError> {
    let kv = state.js.get_key_value("script_status").await.map_err(broker)?;
    kv.put(id.as_str(), value.to_owned().into()).await.map_err(broker)?;
    super::audit_as(state, caller, action, Some(id.to_string()), Value::Null).await?;
    Ok(Json(json!({ "id": id, "status": value })))
}

pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_status(&state, &caller, &job_id(&id)?, "REVOKED", "job.revoke").await
}

pub async fn unrevoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_status(&state, &caller, &job_id(&id)?, "ACTIVE", "job.unrevoke").await
}

/// Kill every execution of the job that has not finished.
pub async fn kill(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = job_id(&id)?;
    let job = id.to_string();
    let live = state.db.read(move |c| queries::unfinished_executions(c, &job)).await?;
    // Audited first: the AUDIT stream is what rebuilds the killed states after a wipe.
    super::audit_as(&state, &caller, "job.kill", Some(id.to_string()), json!({ "executions": live })).await?;
    for exec in &live {
        if let Ok(exec_id) = exec.parse() {
            state.pipeline.stop(&state.nats, exec_id, &caller.name).await?;
        }
    }
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id, "killed": live }))))
}
