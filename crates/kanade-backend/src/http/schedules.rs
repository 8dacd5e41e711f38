//! `/api/schedules`: schedules live in KV `schedules` (the scheduler follows it); these routes
//! validate, store, toggle and explain them. Every change is audited.

use super::Json;
use super::Path;
use super::Query;
use super::RawBody;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use kanade_shared::ScheduleId;
use kanade_shared::api::Items;
use kanade_shared::api::schedules::PreviewQuery;
use kanade_shared::api::schedules::SchedulePreview;
use kanade_shared::api::schedules::ScheduleView;
use kanade_shared::manifest::{self, Schedule, ScheduleJob};
use serde_json::{Value, json};

use super::body::parse_doc;
use super::{ApiError, AppState, broker};
use crate::auth::Caller;
use crate::db::now_ms;
use crate::pipeline::catalog;
use crate::scheduler::{self, times};

const DAY_MS: i64 = 86_400_000;

fn schedule_id(raw: &str) -> Result<ScheduleId, ApiError> {
    raw.parse().map_err(|e: kanade_shared::IdError| ApiError::invalid(vec![e.to_string()]))
}

async fn load(state: &AppState, id: &ScheduleId) -> Result<Schedule, ApiError> {
    let kv = state.buckets.get("schedules").await.map_err(broker)?;
    let bytes = kv.get(id.as_str()).await.map_err(broker)?.ok_or_else(|| {
        ApiError::not_found(format!("schedule {id} does not exist (GET /api/schedules lists them)"))
    })?;
    manifest::schedule_from_json(&bytes).map_err(|p| {
        tracing::error!(schedule = %id, problems = %p, "stored schedule does not validate");
        ApiError::invalid(p.messages())
    })
}

/// A schedule as the API shows it: its definition, next fires, last tick and 24 h outcomes.
async fn describe(state: &AppState, s: &Schedule, fires: usize) -> Result<ScheduleView, ApiError> {
    let now = now_ms();
    let next: Vec<i64> = match times::zone(&s.timezone) {
        Ok(tz) if s.enabled => times::preview(&s.cron, &tz, now, fires),
        _ => Vec::new(),
    };
    let id = s.id.to_string();
    let (st, outcomes) = state.db.schedule_outcomes(id, now - DAY_MS).await.map_err(ApiError::from)?;
    let schedule = match serde_json::to_value(s) {
        Ok(Value::Object(fields)) => fields,
        _ => Default::default(),
    };
    Ok(ScheduleView { schedule, next_fires_ms: next, state: st, last_24h: outcomes, changed: None })
}

pub async fn list(State(state): State<AppState>) -> Result<Json<Items<ScheduleView>>, ApiError> {
    let mut items = Vec::new();
    for (_, s) in super::stored(&state.buckets, "schedules", manifest::schedule_from_json).await? {
        items.push(describe(&state, &s, 1).await?);
    }
    Ok(Json(Items { items }))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<kanade_shared::api::executions::LaunchQuery>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<ScheduleView>), ApiError> {
    let mut s = parse_doc(&headers, body, manifest::schedule_from_yaml, manifest::schedule_from_json).await?;
    // An inline job runs exactly the script content it is stored with, like a catalog job.
    if let ScheduleJob::Inline(m) = &mut s.job {
        super::scripts::pin(&state, m.as_mut()).await?;
    }
    // A PC named in the plan is checked here, once: the scheduler's fires accept it later (a PC
    // retired since must not stop the others).
    let agents = state.db.known_agents().await?;
    let unknown = crate::pipeline::plan::unknown_pcs(&s.plan, &agents);
    if !unknown.is_empty() && !q.allows_unknown() {
        return Err(ApiError::invalid(vec![crate::pipeline::plan::unknown_pcs_problem(&unknown)]));
    }
    let tz = times::zone(&s.timezone).map_err(|why| ApiError::invalid(vec![format!("timezone: {why}")]))?;
    if times::next_after(&s.cron, &tz, now_ms()).is_none() {
        return Err(ApiError::invalid(vec![format!(
            "cron: {:?} never fires (no such date)",
            s.cron.as_str()
        )]));
    }
    match &s.job {
        ScheduleJob::Id(job) => {
            catalog::load(&state.buckets, job).await.map_err(|e| match e {
                crate::pipeline::ExecError::NotFound(m) => ApiError::invalid(vec![format!("job_id: {m}")]),
                other => other.into(),
            })?;
        }
        ScheduleJob::Inline(m) => {
            let file = kanade_shared::manifest::JobFile { manifest: (**m).clone(), plan: None };
            catalog::store(&state.buckets, &catalog::Entry::new(file, None)).await?;
            super::audit_as(
                &state,
                &caller,
                "job.create",
                Some(m.id.to_string()),
                json!({ "version": m.version, "schedule": s.id }),
            )
            .await?;
        }
    }
    let kv = state.buckets.get("schedules").await.map_err(broker)?;
    let existed = kv.get(s.id.as_str()).await.map_err(broker)?.is_some();
    let bytes = serde_json::to_vec(&s).map_err(|e| ApiError::bad_request(e.to_string()))?;
    kv.put(s.id.as_str(), bytes.into()).await.map_err(broker)?;
    let action = if existed { "schedule.update" } else { "schedule.create" };
    super::audit_as(
        &state,
        &caller,
        action,
        Some(s.id.to_string()),
        serde_json::to_value(&s).unwrap_or_default(),
    )
    .await?;
    let status = if existed { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(describe(&state, &s, 5).await?)))
}

pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    let s = load(&state, &schedule_id(&id)?).await?;
    Ok(Json(describe(&state, &s, 5).await?))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = schedule_id(&id)?;
    load(&state, &id).await?;
    let kv = state.buckets.get("schedules").await.map_err(broker)?;
    kv.delete(id.as_str()).await.map_err(broker)?;
    let key = id.to_string();
    state.db.forget_schedule(key).await.map_err(ApiError::from)?;
    super::audit_as(&state, &caller, "schedule.delete", Some(id.to_string()), Value::Null).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn toggle(
    state: AppState,
    caller: Caller,
    id: String,
    enabled: bool,
) -> Result<Json<ScheduleView>, ApiError> {
    let id = schedule_id(&id)?;
    let action = if enabled { "schedule.enable" } else { "schedule.disable" };
    let changed = scheduler::set_enabled(
        &state.pipeline,
        id.as_str(),
        enabled,
        &caller.name,
        (caller.source.clone(), caller.client),
        action,
    )
    .await?;
    let s = load(&state, &id).await?;
    let view = describe(&state, &s, 5).await?;
    Ok(Json(ScheduleView { changed: Some(changed), ..view }))
}

pub async fn enable(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    toggle(state, caller, id, true).await
}

pub async fn disable(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    toggle(state, caller, id, false).await
}

pub async fn preview(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<PreviewQuery>,
) -> Result<Json<SchedulePreview>, ApiError> {
    let n = match q.n {
        None => 10,
        Some(n) if (1..=100).contains(&n) => n,
        Some(n) => return Err(ApiError::invalid(vec![format!("n: {n} is outside 1..=100")])),
    };
    let s = load(&state, &schedule_id(&id)?).await?;
    let tz = times::zone(&s.timezone).map_err(|why| ApiError::invalid(vec![format!("timezone: {why}")]))?;
    let fires = times::preview(&s.cron, &tz, now_ms(), n);
    let text: Vec<String> = fires
        .iter()
        .filter_map(|ms| jiff::Timestamp::from_millisecond(*ms).ok())
        .map(|t| t.to_zoned(tz.clone()).to_string())
        .collect();
    Ok(Json(SchedulePreview {
        id: s.id,
        cron: s.cron.as_str().to_owned(),
        timezone: s.timezone,
        enabled: s.enabled,
        fires_ms: fires,
        fires: text,
    }))
}
