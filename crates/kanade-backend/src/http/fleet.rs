//! Agents (detail, ping, groups), results and the audit log.

use super::Json;
use super::Path;
use super::Query;
use axum::extract::State;
use kanade_shared::PcId;
use kanade_shared::api::Page;
use kanade_shared::api::fleet::AuditQuery;
use kanade_shared::api::fleet::ResultQuery;
use kanade_shared::api::fleet::SoftwareQuery;
use kanade_shared::api::fleet::{
    AgentDetail, AuditEntry, GroupsSet, Overview, Pong, RunResult, SetGroups, SoftwareHits,
};
use kanade_shared::wire::{self, AgentGroups, Heartbeat};
use serde_json::json;

use super::{ApiError, AppState, broker, pc_id};
use crate::auth::Caller;
use crate::db::queries;

pub async fn show_agent(
    State(state): State<AppState>,
    Path(pc): Path<String>,
) -> Result<Json<AgentDetail>, ApiError> {
    let pc = pc_id(&pc)?;
    let alive = crate::db::now_ms() - crate::pipeline::plan::ALIVE_WINDOW_MS;
    let (agent, inventory, recent_results) = state
        .db
        .agent(pc.clone(), alive)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("agent {pc} has never sent a heartbeat")))?;
    // The groups assigned here (KV agent_groups); the agent's own agent.toml groups add to them.
    // Empty while the broker is away: the rest of the page comes from the database.
    let assigned = match state.buckets.get("agent_groups").await {
        Ok(kv) => kv.get(pc.as_str()).await.ok().flatten(),
        Err(_) => None,
    };
    let assigned_value: AgentGroups =
        assigned.and_then(|b| serde_json::from_slice::<AgentGroups>(&b).ok()).unwrap_or_default();
    let assigned: Vec<String> = Some(&assigned_value)
        .map(|g| g.assigned().iter().map(|g| g.to_string()).collect())
        .unwrap_or_default();
    let dynamic_groups: Vec<String> = assigned_value.dynamic.iter().map(|g| g.to_string()).collect();
    Ok(Json(AgentDetail { agent, assigned_groups: assigned, dynamic_groups, inventory, recent_results }))
}

async fn presence(state: &AppState, pc: &PcId) -> Result<Option<(i64, Vec<String>)>, ApiError> {
    Ok(state.db.agent_presence(pc.clone()).await?)
}

/// `3m20s ago` for a past epoch-ms instant.
fn ago(ms: i64) -> String {
    let secs = (crate::db::now_ms() - ms).max(0) / 1000;
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m{}s ago", secs / 60, secs % 60),
        3600..86_400 => format!("{}h{}m ago", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{}h ago", secs / 86_400, secs % 86_400 / 3600),
    }
}

pub async fn ping(State(state): State<AppState>, Path(pc): Path<String>) -> Result<Json<Pong>, ApiError> {
    let pc = pc_id(&pc)?;
    let Some((seen, _)) = presence(&state, &pc).await? else {
        return Err(ApiError::not_found(format!(
            "agent {pc} has never sent a heartbeat; `kanade agents list` shows the fleet (names are case-sensitive)"
        )));
    };
    let unreachable = |why: String| {
        ApiError::unavailable("agent_unreachable", format!("agent {pc} {why}; last heard from {}", ago(seen)))
    };
    let started = std::time::Instant::now();
    let reply = super::live::ask(&state, kanade_shared::subjects::ping(&pc), "".into())
        .await
        .map_err(|why| unreachable(why.to_string()))?;
    let heartbeat: Heartbeat =
        wire::decode(&reply).map_err(|e| ApiError::unavailable("agent_reply", e.to_string()))?;
    Ok(Json(Pong { heartbeat, round_trip_ms: started.elapsed().as_millis() as u64 }))
}

pub async fn set_groups(
    State(state): State<AppState>,
    caller: Caller,
    Path(pc): Path<String>,
    Json(body): Json<SetGroups>,
) -> Result<Json<GroupsSet>, ApiError> {
    let pc = pc_id(&pc)?;
    let mut problems = Vec::new();
    let mut groups = Vec::new();
    for (i, g) in body.groups.iter().enumerate() {
        match g.parse() {
            Ok(g) if !groups.contains(&g) => groups.push(g),
            Ok(_) => {}
            Err(e) => problems.push(format!("groups[{i}]: {e}")),
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems));
    }
    let kv = state.buckets.get("agent_groups").await.map_err(broker)?;
    // The dynamic groups this pc matched stay: only the assigned part is the operator's.
    let compose = |now: AgentGroups| AgentGroups::compose(groups.clone(), now.dynamic);
    let (value, _) = crate::dynamic_groups::update_agent_groups(&kv, &pc, compose).await.map_err(broker)?;
    super::audit_as(&state, &caller, "agent.groups", Some(pc.to_string()), json!(value)).await?;
    // What the agent reported last: these groups plus its agent.toml's own.
    let reported = presence(&state, &pc).await?.map(|(_, groups)| groups);
    Ok(Json(GroupsSet {
        pc_id: pc,
        groups: value.assigned().to_vec(),
        dynamic_groups: value.dynamic,
        known: reported.is_some(),
        reported_groups: reported,
    }))
}

pub async fn results(
    State(state): State<AppState>,
    Query(q): Query<ResultQuery>,
) -> Result<Json<Page<RunResult, kanade_shared::ResultId>>, ApiError> {
    let limit = super::check_limit(q.limit)?;
    super::check_one_of("status", q.status.as_deref(), &super::RESULT_STATUSES)?;
    super::check_cursor::<kanade_shared::ResultId>(q.cursor.as_deref())?;
    let filter = queries::ResultFilter {
        pc: q.pc,
        job: q.job,
        exec: q.exec,
        status: q.status,
        since_ms: q.since,
        before: q.cursor,
        limit,
    };
    let rows = state.db.results(filter).await?;
    let next_cursor = (rows.len() as i64 == limit).then(|| rows.last().map(|r| r.result_id)).flatten();
    Ok(Json(Page { items: rows, next_cursor }))
}

pub async fn result(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RunResult>, ApiError> {
    let not_found = || ApiError::not_found(format!("result {id} not found"));
    let key: kanade_shared::ResultId = id.parse().map_err(|_| not_found())?;
    let row = state.db.result(key).await?.ok_or_else(not_found)?;
    Ok(Json(row))
}

/// Who may appear as an audit event's client.
const CLIENTS: [&str; 5] = ["cli", "dashboard", "api", "scheduler", "backend"];

pub async fn audit_log(
    State(state): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Page<AuditEntry, kanade_shared::AuditId>>, ApiError> {
    let limit = super::check_limit(q.limit)?;
    super::check_cursor::<kanade_shared::AuditId>(q.cursor.as_deref())?;
    if let Some(c) = q.client.as_deref()
        && !CLIENTS.contains(&c)
    {
        return Err(ApiError::invalid(vec![format!("client: {c:?} is not one of {}", CLIENTS.join(", "))]));
    }
    let filter = queries::AuditFilter {
        actor: q.actor,
        client: q.client,
        action: q.action,
        target: q.target,
        since_ms: q.since,
        until_ms: q.until,
        before: q.cursor,
        limit,
    };
    let rows = state.db.audit(filter).await?;
    let next_cursor = (rows.len() as i64 == limit).then(|| rows.last().map(|r| r.id)).flatten();
    Ok(Json(Page { items: rows, next_cursor }))
}

pub async fn overview(State(state): State<AppState>) -> Result<Json<Overview>, ApiError> {
    let now = crate::db::now_ms();
    let since = now - 24 * 3_600_000;
    let alive = now - crate::pipeline::plan::ALIVE_WINDOW_MS;
    Ok(Json(state.db.overview(since, alive).await?))
}

/// Fleet-wide software search over the latest inventories: which PCs have X (version Y).
pub async fn software(
    State(state): State<AppState>,
    Query(q): Query<SoftwareQuery>,
) -> Result<Json<SoftwareHits>, ApiError> {
    let name = q.name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    let Some(name) = name else {
        return Err(ApiError::invalid(vec!["name: say what to look for (part of a program's name)".into()]));
    };
    let limit = super::check_limit(q.limit)?;
    let version = q.version.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let items = state.db.find_software(name, version, limit).await?;
    let pcs = items.iter().map(|h| h.pc_id.as_str()).collect::<std::collections::BTreeSet<_>>().len();
    Ok(Json(SoftwareHits { items, pcs }))
}
