//! The job catalog (`jobs` KV) and the stop-the-bleed switches: revoke/unrevoke
//! (`script_status`) and kill by job.

use super::Json;
use super::Path;
use super::RawBody;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use kanade_shared::JobId;
use kanade_shared::api::Items;
use kanade_shared::api::executions::{JobDetail, JobKilled, JobStatus, JobStored, JobSummary, JobValid};
use kanade_shared::manifest;
use serde_json::{Value, json};

use super::body::parse_doc;
use super::{ApiError, AppState, broker};
use crate::auth::Caller;
use crate::pipeline::catalog;

fn job_id(raw: &str) -> Result<JobId, ApiError> {
    raw.parse().map_err(|e: kanade_shared::IdError| ApiError::invalid(vec![e.to_string()]))
}

pub async fn list(State(state): State<AppState>) -> Result<Json<Items<JobSummary>>, ApiError> {
    let items = super::stored(&state.buckets, "jobs", catalog::parse)
        .await?
        .into_iter()
        .map(|(_, e)| {
            let m = e.manifest;
            JobSummary {
                id: m.id,
                version: m.version,
                description: m.description,
                shell: m.execute.shell.as_str().to_owned(),
                has_plan: e.plan.is_some(),
            }
        })
        .collect();
    Ok(Json(Items { items }))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<JobStored>), ApiError> {
    let source = super::body::source(&headers, &body)?;
    let mut file = parse_doc(&headers, body, manifest::job_from_yaml, manifest::job_from_json).await?;
    super::scripts::pin(&state, &mut file.manifest).await?;
    // A target in the file is kept with the job (what `exec` runs when it names none), never
    // dropped; the text is kept as written.
    super::facts::refuse_redefinition(&state, &file.manifest).await?;
    let entry = catalog::Entry::new(file, source);
    catalog::store(&state.buckets, &entry).await?;
    let m = &entry.manifest;
    super::audit_as(&state, &caller, "job.create", Some(m.id.to_string()), json!({ "version": m.version }))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(JobStored { id: m.id.clone(), version: m.version.clone(), has_plan: entry.plan.is_some() }),
    ))
}

/// Check a manifest (and its plan, if any) without storing it: the dashboard's editor shows
/// every problem next to the text.
pub async fn validate(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<JobValid>, ApiError> {
    let mut file = parse_doc(&headers, body, manifest::job_from_yaml, manifest::job_from_json).await?;
    super::scripts::pin(&state, &mut file.manifest).await?;
    super::facts::refuse_redefinition(&state, &file.manifest).await?;
    Ok(Json(JobValid { valid: true, id: file.manifest.id, version: file.manifest.version }))
}

pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobDetail>, ApiError> {
    let id = job_id(&id)?;
    let entry = catalog::load_entry(&state.buckets, &id).await.map_err(|e| match e {
        crate::pipeline::ExecError::NotFound(_) => ApiError::not_found(format!("job {id} not found")),
        other => other.into(),
    })?;
    let manifest = serde_json::to_value(&entry.manifest).unwrap_or_default();
    let plan = entry.plan.as_ref().map(|p| serde_json::to_value(p).unwrap_or_default());
    let status =
        state.buckets.get("script_status").await.map_err(broker)?.get(id.as_str()).await.map_err(broker)?;
    let revoked = status.is_some_and(|s| s.as_ref().eq_ignore_ascii_case(b"REVOKED"));
    // The text as written when there is one; else the parsed form (with its plan) as YAML.
    let yaml = entry.source.clone().unwrap_or_else(|| {
        let mut whole = manifest.clone();
        if let (Some(w), Some(Value::Object(p))) = (whole.as_object_mut(), plan.clone()) {
            w.extend(p);
        }
        serde_yaml_ng::to_string(&whole).unwrap_or_default()
    });
    Ok(Json(JobDetail { manifest, plan, yaml, revoked }))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = job_id(&id)?;
    let jobs = state.buckets.get("jobs").await.map_err(broker)?;
    if jobs.get(id.as_str()).await.map_err(broker)?.is_none() {
        return Err(ApiError::not_found(format!("job {id} not found")));
    }
    if let Some((key, _)) = super::stored(&state.buckets, "schedules", manifest::schedule_from_json)
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
) -> Result<Json<JobStatus>, ApiError> {
    let kv = state.buckets.get("script_status").await.map_err(broker)?;
    // A typo'd id must not read as done: the job is in the catalog, or already has a status.
    let jobs = state.buckets.get("jobs").await.map_err(broker)?;
    if jobs.get(id.as_str()).await.map_err(broker)?.is_none()
        && kv.get(id.as_str()).await.map_err(broker)?.is_none()
    {
        return Err(ApiError::not_found(format!("job {id} is not in the catalog (kanade job list)")));
    }
    kv.put(id.as_str(), value.to_owned().into()).await.map_err(broker)?;
    super::audit_as(state, caller, action, Some(id.to_string()), Value::Null).await?;
    Ok(Json(JobStatus { id: id.clone(), status: value.to_owned() }))
}

pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<JobStatus>, ApiError> {
    set_status(&state, &caller, &job_id(&id)?, "REVOKED", "job.revoke").await
}

pub async fn unrevoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<JobStatus>, ApiError> {
    set_status(&state, &caller, &job_id(&id)?, "ACTIVE", "job.unrevoke").await
}

/// Kill every execution of the job that has not finished.
pub async fn kill(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<JobKilled>), ApiError> {
    let id = job_id(&id)?;
    let live = state.db.unfinished_executions(id.clone()).await?;
    // Audited first: the AUDIT stream is what rebuilds the killed states after a wipe.
    super::audit_as(&state, &caller, "job.kill", Some(id.to_string()), json!({ "executions": live })).await?;
    for exec_id in &live {
        state.pipeline.stop(&state.nats, *exec_id, &caller.name).await?;
    }
    Ok((StatusCode::ACCEPTED, Json(JobKilled { id, killed: live })))
}
