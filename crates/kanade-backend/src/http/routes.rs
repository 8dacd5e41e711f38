//! Every route, once: the router and the OpenAPI document are both built from this table, so
//! they cannot disagree (a test walks the table against the router).

use axum::routing::{MethodRouter, delete, get, post, put};
use serde_json::{Map, Value, json};

use super::{AppState, catalog, executions, fleet, ops, schedules};

pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub handler: fn() -> MethodRouter<AppState>,
}

macro_rules! route {
    ($method:literal, $path:literal, $summary:literal, $make:expr) => {
        Route { method: $method, path: $path, summary: $summary, handler: || $make }
    };
}

pub fn table() -> Vec<Route> {
    vec![
        route!("GET", "/health", "Liveness and broker connectivity", get(super::health)),
        route!("GET", "/metrics", "Prometheus metrics", get(ops::metrics)),
        route!("GET", "/api/openapi.json", "This document", get(ops::openapi)),
        route!(
            "GET",
            "/api/jetstream/status",
            "Streams, buckets and stores with usage and limits",
            get(super::jetstream_status)
        ),
        route!(
            "GET",
            "/api/stream",
            "Server-sent events: agents seen, results, executions",
            get(ops::stream)
        ),
        route!("GET", "/api/agents", "Agents, paginated (group, cursor, limit)", get(executions::agents)),
        route!(
            "GET",
            "/api/agents/{pc}",
            "One agent with inventory and recent results",
            get(fleet::show_agent)
        ),
        route!(
            "POST",
            "/api/agents/{pc}/ping",
            "Ping an agent; replies with a fresh heartbeat",
            post(fleet::ping)
        ),
        route!(
            "PUT",
            "/api/agents/{pc}/groups",
            "Set the operator-assigned groups of an agent",
            put(fleet::set_groups)
        ),
        route!("GET", "/api/jobs", "The job catalog", get(catalog::list)),
        route!("POST", "/api/jobs", "Add or replace a job (JSON or YAML manifest)", post(catalog::create)),
        route!("GET", "/api/jobs/{id}", "One job's manifest and revoke state", get(catalog::show)),
        route!(
            "DELETE",
            "/api/jobs/{id}",
            "Delete a job (refused while a schedule uses it)",
            delete(catalog::delete)
        ),
        route!("POST", "/api/jobs/{id}/revoke", "Revoke a job: agents skip it (126)", post(catalog::revoke)),
        route!("POST", "/api/jobs/{id}/unrevoke", "Lift a revoke", post(catalog::unrevoke)),
        route!(
            "POST",
            "/api/jobs/{id}/kill",
            "Kill every unfinished execution of a job",
            post(catalog::kill)
        ),
        route!(
            "POST",
            "/api/exec/{job_id}",
            "Run a catalog job with a plan (JSON or YAML)",
            post(executions::exec)
        ),
        route!(
            "POST",
            "/api/deploy",
            "Register a manifest and run it with its plan",
            post(executions::deploy)
        ),
        route!("POST", "/api/run", "Run an ad-hoc script on named pcs", post(ops::run)),
        route!(
            "GET",
            "/api/executions",
            "Executions, newest first (job, status, since, cursor, limit)",
            get(executions::list)
        ),
        route!(
            "GET",
            "/api/executions/{exec_id}",
            "One execution with per-pc rows and waves",
            get(executions::show)
        ),
        route!(
            "POST",
            "/api/executions/{exec_id}/kill",
            "Kill an execution on every pc",
            post(executions::kill)
        ),
        route!(
            "GET",
            "/api/results",
            "Results, newest first (pc, job, exec, status, since, cursor, limit)",
            get(fleet::results)
        ),
        route!("GET", "/api/results/{result_id}", "One result", get(fleet::result)),
        route!(
            "GET",
            "/api/schedules",
            "Schedules with next fire, last tick and 24 h outcomes",
            get(schedules::list)
        ),
        route!(
            "POST",
            "/api/schedules",
            "Create or replace a schedule (JSON or YAML); refused with every problem",
            post(schedules::create)
        ),
        route!(
            "GET",
            "/api/schedules/{id}",
            "One schedule with its next 5 fires and status",
            get(schedules::show)
        ),
        route!(
            "DELETE",
            "/api/schedules/{id}",
            "Delete a schedule; it stops firing at once",
            delete(schedules::delete)
        ),
        route!("POST", "/api/schedules/{id}/enable", "Enable a schedule", post(schedules::enable)),
        route!(
            "POST",
            "/api/schedules/{id}/disable",
            "Disable a schedule; it stops firing at once",
            post(schedules::disable)
        ),
        route!(
            "GET",
            "/api/schedules/{id}/preview",
            "The next n fire times (n ≤ 100, default 10) in the schedule's time zone",
            get(schedules::preview)
        ),
        route!(
            "GET",
            "/api/audit",
            "Audit log (actor, action, target, since, until, cursor, limit)",
            get(fleet::audit_log)
        ),
    ]
}

pub fn openapi() -> Value {
    let mut paths = Map::new();
    for r in table() {
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let op = json!({
            "summary": r.summary,
            "operationId": format!("{}_{}", r.method.to_lowercase(), r.path.trim_start_matches('/').replace(['/', '{', '}', '.'], "_")),
            "parameters": params,
            "responses": {
                "200": { "description": "success", "content": { "application/json": { "schema": { "type": "object" } } } },
                "default": { "description": "error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
            }
        });
        let entry = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        entry[r.method.to_lowercase()] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": { "title": "kanade-backend", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": { "schemas": { "Error": {
            "type": "object",
            "required": ["error", "code"],
            "properties": {
                "error": { "type": "string", "description": "what went wrong, for people" },
                "code": { "type": "string", "description": "stable machine code" },
                "detail": { "description": "more, e.g. every validation problem" }
            }
        } } }
    })
}
