//! Facts (SPEC §12): the tables jobs with `facts.explode[]` fill, and their rows.

use std::collections::BTreeMap;

use super::Json;
use super::Path;
use super::Query;
use axum::extract::State;
use kanade_shared::PcId;
use kanade_shared::wire::{FactRows, FactTables};

use super::{ApiError, AppState};
use crate::db::projection::facts::filter_value;

/// A job that would fill a facts table defined otherwise is refused when it is stored, naming
/// the table and what defines it, not later on each PC's result as `facts_error`.
pub(super) async fn refuse_redefinition(
    state: &AppState,
    m: &kanade_shared::manifest::Manifest,
) -> Result<(), ApiError> {
    let Some(facts) = &m.facts else { return Ok(()) };
    let problems = state.db.facts_redefinitions(facts.explode.clone()).await?;
    if problems.is_empty() { Ok(()) } else { Err(ApiError::invalid(problems)) }
}

/// `DELETE /api/facts/{table}` (admins, audited): the table and its rows go; the next result of
/// a job naming it makes it again as that job defines it (how a table's columns change).
pub async fn drop_table(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    Path(name): Path<String>,
) -> Result<Json<kanade_shared::api::compliance::TableDropped>, ApiError> {
    let Some(table) = state.db.fact_table(name.clone()).await? else {
        return Err(ApiError::not_found(format!("no facts table {name:?} (GET /api/facts lists them)")));
    };
    let detail = serde_json::json!({ "job_id": table.job_id, "key": table.key, "columns": table.columns });
    super::audit_as(&state, &caller, "facts.drop", Some(name.clone()), detail).await?;
    if !state.db.drop_fact_table(name.clone()).await? {
        return Err(ApiError::not_found(format!("no facts table {name:?} (dropped meanwhile?)")));
    }
    Ok(Json(kanade_shared::api::compliance::TableDropped { dropped: name }))
}

/// `GET /api/agents/{pc}/facts`: the PC's latest whole output of each job with `facts:`.
pub async fn documents(
    State(state): State<AppState>,
    Path(pc): Path<String>,
) -> Result<Json<kanade_shared::wire::FactDocuments>, ApiError> {
    let pc: PcId =
        pc.parse().map_err(|e: kanade_shared::IdError| ApiError::invalid(vec![format!("pc: {e}")]))?;
    if state.db.agent_presence(pc.clone()).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "agent {pc} has never sent a heartbeat (kanade agents list shows the PCs)"
        )));
    }
    let documents = state.db.fact_documents(pc.clone()).await?;
    Ok(Json(kanade_shared::wire::FactDocuments { pc_id: pc.to_string(), documents }))
}

pub async fn tables(State(state): State<AppState>) -> Result<Json<FactTables>, ApiError> {
    Ok(Json(FactTables { tables: state.db.fact_tables().await? }))
}

const LIMIT: i64 = 500;
const LIMIT_MAX: i64 = 10_000;

/// `?pc=&limit=&offset=&<column>=<value>...`: every other parameter must name a column.
pub async fn rows(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Json<FactRows>, ApiError> {
    let Some(table) = state.db.fact_table(name.clone()).await? else {
        return Err(ApiError::not_found(format!("no facts table {name:?} (GET /api/facts lists them)")));
    };
    let mut problems = Vec::new();
    let number = |key: &str, default: i64, max: i64, problems: &mut Vec<String>| match q.get(key) {
        None => default,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (0..=max).contains(&n) && (key != "limit" || n > 0) => n,
            _ => {
                problems.push(format!("{key}: {v:?} is not a number in 0..={max}"));
                default
            }
        },
    };
    let limit = number("limit", LIMIT, LIMIT_MAX, &mut problems);
    let offset = number("offset", 0, i64::MAX, &mut problems);
    let pc = q.get("pc").cloned();
    if let Some(p) = &pc
        && let Err(e) = p.parse::<PcId>()
    {
        problems.push(format!("pc: {e}"));
    }
    let mut filters = Vec::new();
    for (key, value) in q.iter().filter(|(k, _)| !["pc", "limit", "offset"].contains(&k.as_str())) {
        match table.columns.get(key) {
            None => problems.push(format!(
                "{key}: not a column of {name} (columns: {}; also pc, limit, offset)",
                table.columns.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
            Some(t) => match filter_value(*t, value) {
                Ok(v) => filters.push((key.clone(), v)),
                Err(e) => problems.push(format!("{key}: {e}")),
            },
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems));
    }
    let rows = state.db.fact_rows(table.clone(), pc, filters, limit, offset).await?;
    let next_offset = (rows.len() as i64 == limit).then_some(offset + limit);
    Ok(Json(FactRows { table: table.name, key: table.key, columns: table.columns, rows, next_offset }))
}

/// How long an ad-hoc query may run.
pub const QUERY_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);
const QUERY_ROWS: u32 = 1000;
const QUERY_ROWS_MAX: u32 = 10_000;

/// `POST /api/query` (admins): one read-only SELECT over the projection, audited before it runs.
pub async fn query(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    Json(body): Json<kanade_shared::wire::QueryRequest>,
) -> Result<Json<kanade_shared::wire::QueryAnswer>, ApiError> {
    use crate::db::adhoc::{self, QueryError};
    let mut problems = Vec::new();
    let sql = adhoc::check(&body.sql).map_err(|e| problems.push(format!("sql: {e}"))).ok();
    let max_rows = match body.max_rows {
        None => QUERY_ROWS,
        Some(n) if (1..=QUERY_ROWS_MAX).contains(&n) => n,
        Some(n) => {
            problems.push(format!("max_rows: {n} is outside 1..={QUERY_ROWS_MAX}"));
            QUERY_ROWS
        }
    };
    let Some(sql) = sql.filter(|_| problems.is_empty()) else { return Err(ApiError::invalid(problems)) };
    let shown: String = sql.chars().take(2000).collect();
    super::audit_as(&state, &caller, "query.run", None, serde_json::json!({ "sql": shown })).await?;
    let t0 = std::time::Instant::now();
    match state.db.adhoc_query(sql, max_rows as usize, QUERY_LIMIT).await {
        Ok(o) => Ok(Json(kanade_shared::wire::QueryAnswer {
            columns: o.columns,
            rows: o.rows,
            truncated: o.truncated,
            elapsed_ms: t0.elapsed().as_millis() as u64,
        })),
        Err(QueryError::Db(e)) => Err(e.into()),
        Err(e) => Err(ApiError::invalid(vec![format!("sql: {e}")])),
    }
}
