//! Executions: deploy (manifest + plan), exec (catalog job + plan), list, show, kill; and the
//! agents list the target picker needs.

use super::Json;
use super::Path;
use super::Query;
use super::RawBody;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use kanade_shared::api::Page;
use kanade_shared::api::executions::ExecutionQuery;
use kanade_shared::api::executions::ExecutionsQuery;
use kanade_shared::api::executions::LaunchQuery;
use kanade_shared::api::executions::{Execution, ExecutionDetail, KillSent, Launched};
use kanade_shared::api::fleet::AgentPage;
use kanade_shared::api::fleet::AgentsQuery;
use kanade_shared::manifest;
use kanade_shared::{ExecId, JobId};
use serde_json::json;

use super::body::parse_doc;
use super::{ApiError, AppState, check_limit};
use crate::auth::Caller;
use crate::db::{now_ms, queries};
use crate::pipeline::catalog;
use crate::pipeline::plan::ALIVE_WINDOW_MS;

pub(super) fn launch_origin(caller: &Caller, q: &LaunchQuery) -> crate::pipeline::Origin {
    crate::pipeline::Origin { allow_unknown: q.allow_unknown.unwrap_or(false), ..super::origin(caller) }
}

pub async fn deploy(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<LaunchQuery>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<Launched>), ApiError> {
    let source = super::body::source(&headers, &body)?;
    let mut file = parse_doc(&headers, body, manifest::job_from_yaml, manifest::job_from_json).await?;
    // SPEC: `"override_freeze": true` in the plan; the query parameter says the same.
    let overrides = q.overrides_freeze() || file.plan.as_ref().is_some_and(|p| p.override_freeze);
    super::freeze::guard(&state, &caller, overrides, file.manifest.id.as_str()).await?;
    super::scripts::pin(&state, &mut file.manifest).await?;
    super::facts::refuse_redefinition(&state, &file.manifest).await?;
    let entry = catalog::Entry::new(file, source);
    let (manifest, plan) = (&entry.manifest, entry.plan.clone());
    let plan = plan.ok_or_else(|| {
        ApiError::invalid(vec![
            "target: a deploy needs a plan: a target (pcs, groups or all: true) or rollout.waves".into(),
        ])
    })?;
    catalog::store(&state.buckets, &entry).await?;
    let launched = state.pipeline.exec(manifest, &plan, &launch_origin(&caller, &q)).await?;
    Ok((StatusCode::CREATED, Json(launched)))
}

pub async fn exec(
    State(state): State<AppState>,
    caller: Caller,
    Path(job_id): Path<String>,
    Query(q): Query<LaunchQuery>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<Launched>), ApiError> {
    let job: JobId =
        job_id.parse().map_err(|e: kanade_shared::IdError| ApiError::invalid(vec![e.to_string()]))?;
    // A body is checked before the job is looked up; no body: the plan stored with the job.
    let given = match body.iter().all(u8::is_ascii_whitespace) {
        true => None,
        false => Some(parse_doc(&headers, body, manifest::plan_from_yaml, manifest::plan_from_json).await?),
    };
    let entry = catalog::load_entry(&state.buckets, &job).await?;
    let overrides = q.overrides_freeze() || given.as_ref().is_some_and(|p| p.override_freeze);
    super::freeze::guard(&state, &caller, overrides, job.as_str()).await?;
    let plan = match (given, entry.plan) {
        (Some(plan), _) | (None, Some(plan)) => plan,
        (None, None) => {
            return Err(ApiError::invalid(vec![format!(
                "target: job {job} has no stored target; say where to run it (a target or rollout.waves)"
            )]));
        }
    };
    let launched = state.pipeline.exec(&entry.manifest, &plan, &launch_origin(&caller, &q)).await?;
    Ok((StatusCode::CREATED, Json(launched)))
}

pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ExecutionsQuery>,
) -> Result<Json<Page<Execution, ExecId>>, ApiError> {
    super::check_one_of("status", q.status.as_deref(), &kanade_shared::api::executions::EXECUTION_STATUSES)?;
    super::check_cursor::<ExecId>(q.cursor.as_deref())?;
    let filter = queries::ExecutionFilter {
        job: q.job.clone(),
        status: q.status.clone(),
        since_ms: q.since,
        before: q.cursor.clone(),
        limit: check_limit(q.limit)?,
    };
    let n = filter.limit;
    let rows = state.db.executions(filter).await?;
    let next_cursor = (rows.len() as i64 == n).then(|| rows.last().map(|r| r.exec_id)).flatten();
    Ok(Json(Page { items: rows, next_cursor }))
}

pub async fn show(
    State(state): State<AppState>,
    Path(exec_id): Path<String>,
    Query(q): Query<ExecutionQuery>,
) -> Result<Json<ExecutionDetail>, ApiError> {
    let id: ExecId =
        exec_id.parse().map_err(|e: kanade_shared::IdError| ApiError::invalid(vec![e.to_string()]))?;
    let with_pcs = q.pcs.unwrap_or(true);
    let (execution, mut pcs, waves) = state
        .db
        .execution(id, with_pcs)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("execution {id} not found")))?;
    let now = now_ms();
    let with_output = q.output.unwrap_or(true);
    for p in &mut pcs {
        p.online = Some(p.last_seen_ms.is_some_and(|seen| now - seen <= ALIVE_WINDOW_MS));
        if !with_output {
            p.stdout = None;
            p.stderr = p
                .stderr
                .as_deref()
                .and_then(|e| e.lines().map(str::trim).find(|l| !l.is_empty()))
                .map(str::to_owned);
        }
    }
    Ok(Json(ExecutionDetail { execution, pcs, waves }))
}

pub async fn kill(
    State(state): State<AppState>,
    caller: Caller,
    Path(exec_id): Path<String>,
) -> Result<(StatusCode, Json<KillSent>), ApiError> {
    let id: ExecId =
        exec_id.parse().map_err(|e: kanade_shared::IdError| ApiError::invalid(vec![e.to_string()]))?;
    // A typo'd id, or a run already over, is not a kill to report as sent.
    let (execution, _, _) =
        state.db.execution(id, false).await?.ok_or_else(|| {
            ApiError::not_found(format!("execution {id} not found (kanade executions list)"))
        })?;
    if execution.ended() {
        return Err(ApiError::conflict(format!(
            "execution {id} already ended ({}); there is nothing to kill",
            execution.status
        )));
    }
    let message = format!("killed by {}", caller.name);
    // Audited first: the AUDIT stream is what rebuilds the killed state after a wipe.
    super::audit_as(
        &state,
        &caller,
        "exec.kill",
        Some(id.to_string()),
        json!({ "exec_id": id, "message": message }),
    )
    .await?;
    state.pipeline.stop(&state.nats, id, &caller.name).await?;
    let sent = KillSent { exec_id: id, kill: "sent".into(), status: "killed".into() };
    Ok((StatusCode::ACCEPTED, Json(sent)))
}

pub async fn agents(
    State(state): State<AppState>,
    Query(q): Query<AgentsQuery>,
) -> Result<Json<AgentPage>, ApiError> {
    let n = check_limit(q.limit)?;
    super::check_cursor::<kanade_shared::PcId>(q.cursor.as_deref())?;
    let now = now_ms();
    let mut problems = Vec::new();
    let online = match q.status.as_deref() {
        None | Some("") => None,
        Some("online") => Some(true),
        Some("offline") => Some(false),
        Some(other) => {
            problems.push(format!("status: {other:?} is not online or offline"));
            None
        }
    };
    let sort = match q.sort.as_deref() {
        None | Some("") => queries::AgentSort::PcId,
        Some(s) => queries::AgentSort::parse(s).unwrap_or_else(|| {
            problems.push(format!("sort: {s:?} is not one of pc_id, hostname, agent_version, last_seen"));
            queries::AgentSort::PcId
        }),
    };
    let offset = q.offset.unwrap_or(0);
    if offset < 0 {
        problems.push("offset: must not be negative".into());
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems));
    }
    let filter = queries::AgentFilter {
        pc: None,
        group: q.group.clone(),
        text: q.q.clone().filter(|t| !t.is_empty()),
        online,
        alive_since_ms: now - ALIVE_WINDOW_MS,
        sort,
        descending: q.desc,
        after: q.cursor.clone(),
        offset,
        limit: n,
    };
    let (items, total) = state.db.agents_page(filter).await?;
    let next_cursor = (items.len() as i64 == n && sort == queries::AgentSort::PcId && !q.desc)
        .then(|| items.last().map(|r| r.pc_id.clone()))
        .flatten();
    Ok(Json(AgentPage { items, total, next_cursor }))
}
