//! Every route, once: the router and the OpenAPI document are both built from this table, so
//! they cannot disagree (a test walks the table against the router).

use axum::routing::{MethodRouter, delete, get, patch, post, put};
use serde_json::{Map, Value, json};

use super::{
    AppState, accounts, agent_config, catalog, compliance, dashboard, enroll, executions, facts, fleet,
    freeze, groups, live, mfa, notifications, ops, releases, schedules, scripts, session, telemetry,
};
use crate::auth::{Access, Role};

/// The JSON Schema of a body or query type, registered with the document's generator.
pub type SchemaFn = fn(&mut schemars::SchemaGenerator) -> schemars::Schema;

pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    /// Who may call it; the router enforces it and a test walks every route against it.
    pub access: Access,
    pub summary: &'static str,
    pub handler: fn() -> MethodRouter<AppState>,
    /// The JSON body it reads (the type its handler deserializes; for a job, plan or schedule
    /// document, which may also come as YAML, its as-written shape).
    pub body: Option<SchemaFn>,
    /// Media types of a body that is not JSON (a script's text, a release binary).
    pub takes: &'static [&'static str],
    /// Its query parameters (the type its handler deserializes).
    pub query: Option<SchemaFn>,
    /// The JSON body a success answers.
    pub response: Option<SchemaFn>,
    /// What a success answers when it is not JSON: its media types, or none for an empty
    /// answer (204). Every route declares this or `response` (a test checks).
    pub answers: Option<&'static [&'static str]>,
    /// Media types a refusal may come in besides the JSON error (an installer refuses with a
    /// script that says why, so `curl … | sh` shows it).
    pub refusals: &'static [&'static str],
}

/// A success with no body.
const EMPTY: &[&str] = &[];
const TEXT: &[&str] = &["text/plain; charset=utf-8"];
const EVENTS: &[&str] = &["text/event-stream"];
/// A job, plan or schedule document may come as YAML as well as JSON.
const YAML: &[&str] = &["application/yaml"];

macro_rules! route {
    ($method:literal, $path:literal, $access:expr, $summary:literal, $make:expr
        $(, body = $body:ty)? $(, takes = $takes:expr)? $(, query = $query:ty)? $(, response = $response:ty)? $(, answers = $answers:expr)? $(, refusals = $refusals:expr)? $(,)?) => {
        Route {
            method: $method,
            path: $path,
            access: $access,
            summary: $summary,
            handler: || $make,
            body: route!(@schema $($body)?),
            takes: route!(@media $($takes)?),
            query: route!(@schema $($query)?),
            response: route!(@schema $($response)?),
            answers: route!(@answers $($answers)?),
            refusals: route!(@media $($refusals)?),
        }
    };
    (@media) => {
        &[]
    };
    (@media $r:expr) => {
        $r
    };
    (@answers) => {
        None
    };
    (@answers $a:expr) => {
        Some($a)
    };
    (@schema) => {
        None
    };
    (@schema $t:ty) => {
        Some(|g: &mut schemars::SchemaGenerator| g.subschema_for::<$t>())
    };
}

const PUBLIC: Access = Access::Public;
const SIGNED_IN: Access = Access::SignedIn;
const VIEWER: Access = Access::Role(Role::Viewer);
const OPERATOR: Access = Access::Role(Role::Operator);
const ADMIN: Access = Access::Role(Role::Admin);

pub fn table() -> Vec<Route> {
    vec![
        route!(
            "POST",
            "/api/auth/login",
            PUBLIC,
            "Sign in with name and password; returns a session token",
            post(session::login),
            body = kanade_shared::api::accounts::Login,
            response = kanade_shared::api::accounts::Session
        ),
        route!(
            "GET",
            "/api/auth/me",
            SIGNED_IN,
            "The caller: name, role, how authenticated",
            get(session::me),
            response = kanade_shared::api::accounts::Me
        ),
        route!(
            "POST",
            "/api/auth/password",
            SIGNED_IN,
            "Change the caller's password (current, new)",
            post(session::change_password),
            body = kanade_shared::api::accounts::PasswordChange,
            response = kanade_shared::api::accounts::PasswordChanged
        ),
        route!(
            "POST",
            "/api/auth/mfa/setup",
            SIGNED_IN,
            "Start setting up a second factor (password): a new TOTP secret, its otpauth:// URI and QR code",
            post(mfa::setup),
            body = kanade_shared::api::accounts::ConfirmPassword,
            response = kanade_shared::api::accounts::MfaSetup
        ),
        route!(
            "POST",
            "/api/auth/mfa/enable",
            SIGNED_IN,
            "Confirm the second factor with its current code; returns the recovery codes, once",
            post(mfa::enable),
            body = kanade_shared::api::accounts::MfaCode,
            response = kanade_shared::api::accounts::MfaEnabled
        ),
        route!(
            "POST",
            "/api/auth/mfa/disable",
            SIGNED_IN,
            "Turn the caller's second factor off (password)",
            post(mfa::disable),
            body = kanade_shared::api::accounts::ConfirmPassword,
            response = kanade_shared::api::accounts::MfaDisabled
        ),
        route!(
            "DELETE",
            "/api/users/{name}/mfa",
            ADMIN,
            "Take a user's second factor away (a lost phone); audited",
            delete(mfa::reset),
            response = kanade_shared::api::accounts::MfaReset
        ),
        route!(
            "GET",
            "/api/users",
            ADMIN,
            "Users (admin)",
            get(accounts::list_users),
            response = kanade_shared::api::Items<kanade_shared::api::accounts::User>
        ),
        route!(
            "POST",
            "/api/users",
            ADMIN,
            "Create a user with a temporary password (admin)",
            post(accounts::create_user),
            body = kanade_shared::api::accounts::NewUser,
            response = kanade_shared::api::accounts::UserCreated
        ),
        route!(
            "PATCH",
            "/api/users/{name}",
            ADMIN,
            "Change a user's role, disabled flag or password (admin)",
            patch(accounts::update_user),
            body = kanade_shared::api::accounts::UserChange,
            response = kanade_shared::api::accounts::User
        ),
        route!(
            "DELETE",
            "/api/users/{name}",
            ADMIN,
            "Delete a user (admin)",
            delete(accounts::delete_user),
            answers = EMPTY
        ),
        route!(
            "GET",
            "/api/tokens",
            ADMIN,
            "API tokens, without their secrets (admin)",
            get(accounts::list_tokens),
            response = kanade_shared::api::Items<kanade_shared::api::accounts::ApiToken>
        ),
        route!(
            "POST",
            "/api/tokens",
            ADMIN,
            "Create an API token; its secret is shown once (admin)",
            post(accounts::create_token),
            body = kanade_shared::api::accounts::NewToken,
            response = kanade_shared::api::accounts::TokenCreated
        ),
        route!(
            "DELETE",
            "/api/tokens/{id}",
            ADMIN,
            "Revoke an API token (admin)",
            delete(accounts::revoke_token),
            answers = EMPTY
        ),
        route!(
            "GET",
            "/health",
            PUBLIC,
            "Liveness and broker connectivity",
            get(super::health),
            response = kanade_shared::api::service::Health
        ),
        route!(
            "GET",
            "/api/scripts",
            VIEWER,
            "Uploaded scripts: key,
            size,
            sha256",
            get(scripts::list),
            response = kanade_shared::api::Items<kanade_shared::api::executions::Script>
        ),
        route!(
            "POST",
            "/api/scripts/{name}/{version}",
            OPERATOR,
            "Upload a script (the raw body, at most 1 MiB of UTF-8); returns its sha256",
            post(scripts::upload),
            takes = &["text/plain"],
            response = kanade_shared::api::executions::Script
        ),
        route!(
            "GET",
            "/api/scripts/{name}/{version}",
            VIEWER,
            "A script's text",
            get(scripts::show),
            answers = TEXT
        ),
        route!(
            "DELETE",
            "/api/scripts/{name}/{version}",
            OPERATOR,
            "Delete a script no catalog job runs",
            delete(scripts::delete),
            answers = EMPTY
        ),
        route!(
            "GET",
            "/api/freeze",
            VIEWER,
            "The fleet freeze window, and whether it holds now",
            get(freeze::show),
            response = kanade_shared::wire::freeze::FreezeStatus
        ),
        route!(
            "PUT",
            "/api/freeze",
            ADMIN,
            "Freeze the fleet (until or for, reason): schedules skip, rollouts hold, manual runs need an override",
            put(freeze::set),
            body = kanade_shared::wire::freeze::SetFreeze,
            response = kanade_shared::wire::freeze::FreezeStatus
        ),
        route!(
            "DELETE",
            "/api/freeze",
            ADMIN,
            "Lift the fleet freeze",
            delete(freeze::lift),
            answers = EMPTY
        ),
        route!(
            "POST",
            "/api/enroll/tokens",
            ADMIN,
            "Make an enrolment token (expires_in, max_uses, groups); its value and install lines are shown once",
            post(enroll::create_token),
            body = kanade_shared::wire::enroll::CreateToken,
            response = kanade_shared::wire::enroll::CreatedToken
        ),
        route!(
            "GET",
            "/api/enroll/tokens",
            ADMIN,
            "Enrolment tokens, without their values",
            get(enroll::list_tokens),
            response = kanade_shared::wire::enroll::TokenList
        ),
        route!(
            "DELETE",
            "/api/enroll/tokens/{id}",
            ADMIN,
            "Revoke an enrolment token (PCs enrolled with it keep their credentials)",
            delete(enroll::revoke_token),
            answers = EMPTY
        ),
        route!(
            "POST",
            "/api/enroll",
            PUBLIC,
            "Enrol a PC with a token: its agent.toml, its own broker credentials and the release to install",
            post(enroll::enroll),
            body = kanade_shared::wire::enroll::EnrollRequest,
            response = kanade_shared::wire::enroll::EnrollResponse,
            answers = &["application/toml"]
        ),
        route!(
            "GET",
            "/api/enroll/install.sh",
            PUBLIC,
            "The Linux/macOS installer for a token (?token=)",
            get(enroll::install_sh_script),
            query = kanade_shared::wire::enroll::ScriptQuery,
            answers = &["text/x-shellscript; charset=utf-8"],
            refusals = &["text/x-shellscript; charset=utf-8"]
        ),
        route!(
            "GET",
            "/api/enroll/install.ps1",
            PUBLIC,
            "The Windows installer for a token (?token=)",
            get(enroll::install_ps1_script),
            query = kanade_shared::wire::enroll::ScriptQuery,
            answers = TEXT,
            refusals = TEXT
        ),
        route!(
            "GET",
            "/api/enroll/agent",
            PUBLIC,
            "The agent binary for a new PC (?token=&os=&arch=[&version=])",
            get(enroll::agent_binary),
            query = kanade_shared::wire::enroll::AgentQuery,
            answers = &["application/octet-stream"]
        ),
        route!(
            "DELETE",
            "/api/agents/{pc}/credentials",
            ADMIN,
            "Revoke an enrolled agent's broker credentials and disconnect it",
            delete(enroll::revoke_credentials),
            response = kanade_shared::wire::enroll::RevokedCredentials
        ),
        route!(
            "GET",
            "/livez",
            PUBLIC,
            "The process is up (liveness probe)",
            get(super::livez),
            response = kanade_shared::api::service::Probe
        ),
        route!(
            "GET",
            "/readyz",
            PUBLIC,
            "Database and broker reachable (readiness probe); 503 naming what is not",
            get(super::readyz),
            response = kanade_shared::api::service::Probe
        ),
        route!(
            "GET",
            "/",
            PUBLIC,
            "The web dashboard",
            get(dashboard::index),
            answers = &["text/html; charset=utf-8"]
        ),
        route!(
            "GET",
            "/ui/{*path}",
            PUBLIC,
            "The dashboard's scripts and styles",
            get(dashboard::asset),
            answers = &[
                "text/html; charset=utf-8",
                "text/css; charset=utf-8",
                "text/javascript; charset=utf-8",
                "image/svg+xml"
            ]
        ),
        route!(
            "GET",
            "/api/overview",
            VIEWER,
            "Fleet overview: agents online, executions and results of the last 24 h, recent failures",
            get(fleet::overview),
            response = kanade_shared::api::fleet::Overview
        ),
        route!(
            "GET",
            "/api/signing-key",
            PUBLIC,
            "The public key commands are signed with, for agents' security.trusted_keys",
            get(super::signing_key),
            response = kanade_shared::api::service::SigningKey
        ),
        route!(
            "GET",
            "/metrics",
            VIEWER,
            "Prometheus metrics",
            get(ops::metrics),
            answers = &["text/plain; version=0.0.4"]
        ),
        route!(
            "GET",
            "/api/openapi.json",
            PUBLIC,
            "This document",
            get(openapi_json),
            answers = &["application/json"]
        ),
        route!(
            "GET",
            "/api/jetstream/status",
            VIEWER,
            "Streams, buckets and stores with usage and limits",
            get(super::jetstream_status),
            response = kanade_shared::api::Items<kanade_shared::api::service::ResourceStatus>
        ),
        route!(
            "GET",
            "/api/stream",
            VIEWER,
            "Server-sent events: agents seen, results, executions",
            get(ops::stream),
            answers = EVENTS
        ),
        route!(
            "GET",
            "/api/agents",
            VIEWER,
            "Agents, paginated (group, cursor, limit)",
            get(executions::agents),
            query = kanade_shared::api::fleet::AgentsQuery,
            response = kanade_shared::api::fleet::AgentPage
        ),
        route!(
            "GET",
            "/api/software",
            VIEWER,
            "Which PCs have a program: name (part of it, any case), version (prefix), limit",
            get(fleet::software),
            query = kanade_shared::api::fleet::SoftwareQuery,
            response = kanade_shared::api::fleet::SoftwareHits
        ),
        route!(
            "GET",
            "/api/agents/{pc}",
            VIEWER,
            "One agent with inventory and recent results",
            get(fleet::show_agent),
            response = kanade_shared::api::fleet::AgentDetail
        ),
        route!(
            "POST",
            "/api/agents/{pc}/ping",
            OPERATOR,
            "Ping an agent; replies with a fresh heartbeat",
            post(fleet::ping),
            response = kanade_shared::api::fleet::Pong
        ),
        route!(
            "GET",
            "/api/groups",
            VIEWER,
            "Dynamic groups: name,
            rule,
            member count",
            get(groups::list),
            response = kanade_shared::api::Items<kanade_shared::api::groups::DynamicGroup>
        ),
        route!(
            "POST",
            "/api/groups",
            OPERATOR,
            "Create a dynamic group {name, rule}; its members join at once (422 names a bad rule)",
            post(groups::create),
            body = kanade_shared::api::groups::CreateGroup,
            response = kanade_shared::api::groups::GroupDetail
        ),
        route!(
            "GET",
            "/api/groups/{name}",
            VIEWER,
            "One dynamic group with its members",
            get(groups::show),
            response = kanade_shared::api::groups::GroupDetail
        ),
        route!(
            "GET",
            "/api/groups/{name}/members",
            VIEWER,
            "The PCs in a dynamic group, each with when it joined",
            get(groups::members),
            response = kanade_shared::api::groups::GroupMembers
        ),
        route!(
            "PUT",
            "/api/groups/{name}",
            OPERATOR,
            "Change a dynamic group's rule {rule}; members follow at once",
            put(groups::set_rule),
            body = kanade_shared::api::groups::SetRule,
            response = kanade_shared::api::groups::GroupDetail
        ),
        route!(
            "DELETE",
            "/api/groups/{name}",
            OPERATOR,
            "Delete a dynamic group; its members leave it",
            delete(groups::delete),
            response = kanade_shared::api::groups::GroupDeleted
        ),
        route!(
            "GET",
            "/api/agents/{pc}/logs",
            OPERATOR,
            "The end of an agent's log file (?lines=200&since=RFC3339; follow with file&offset from the reply's cursor)",
            get(live::logs),
            query = kanade_shared::api::fleet::LogsQuery,
            response = kanade_shared::wire::LogReply
        ),
        route!(
            "PUT",
            "/api/agents/{pc}/groups",
            OPERATOR,
            "Set the operator-assigned groups of an agent",
            put(fleet::set_groups),
            body = kanade_shared::api::fleet::SetGroups,
            response = kanade_shared::api::fleet::GroupsSet
        ),
        route!(
            "GET",
            "/api/agent/releases",
            VIEWER,
            "Published agent releases (version, target, size, digest)",
            get(releases::list),
            response = kanade_shared::api::Items<kanade_shared::api::releases::Release>
        ),
        route!(
            "POST",
            "/api/agent/releases",
            OPERATOR,
            "Publish an agent binary (raw body; ?version=V[&target=T], target detected when absent)",
            post(releases::publish).layer(axum::extract::DefaultBodyLimit::max(512 * 1024 * 1024)),
            takes = &["application/octet-stream"],
            query = kanade_shared::api::releases::PublishQuery,
            response = kanade_shared::api::releases::ReleasePublished
        ),
        route!(
            "PUT",
            "/api/agent/rollout",
            OPERATOR,
            "Ask a scope (global, group or pc) to run a published version",
            put(releases::rollout),
            body = kanade_shared::api::releases::Rollout,
            response = kanade_shared::api::releases::RolloutSet
        ),
        route!(
            "POST",
            "/api/agent/clear-quarantine",
            OPERATOR,
            "Let a scope's agents install the versions they quarantined so far again",
            post(releases::clear_quarantine),
            body = kanade_shared::api::releases::Scope,
            response = kanade_shared::api::releases::QuarantineCleared
        ),
        route!(
            "GET",
            "/api/agents/{pc}/perf",
            VIEWER,
            "Host performance samples of one agent (?since=&until= epoch ms; the last hour by default)",
            get(telemetry::agent_perf),
            query = kanade_shared::api::fleet::HostPerfQuery,
            response = kanade_shared::wire::PerfSamples
        ),
        route!(
            "GET",
            "/api/agents/{pc}/processes",
            VIEWER,
            "Investigation mode's top processes of one agent (?since=&until= epoch ms; the last hour by default)",
            get(telemetry::agent_processes),
            query = kanade_shared::api::fleet::ProcessQuery,
            response = kanade_shared::wire::ProcessSamples
        ),
        route!(
            "GET",
            "/api/agent/config",
            VIEWER,
            "What each agent_config scope (global, group:<g>, pc:<pc>) sets",
            get(agent_config::show),
            response = kanade_shared::wire::agent_config::AgentConfigScopes
        ),
        route!(
            "PATCH",
            "/api/agent/config/{scope}",
            OPERATOR,
            "Set fields of one scope (global, group:<g>, pc:<pc>); null removes a field; 422 names each bad field",
            patch(agent_config::patch),
            body = kanade_shared::wire::AgentConfigPatch,
            response = kanade_shared::wire::agent_config::ScopeConfig
        ),
        route!(
            "GET",
            "/api/agent/current",
            VIEWER,
            "target_version per scope, the versions agents run, quarantines and pending updates",
            get(releases::current),
            response = kanade_shared::api::releases::FleetVersions
        ),
        route!(
            "GET",
            "/api/jobs",
            VIEWER,
            "The job catalog",
            get(catalog::list),
            response = kanade_shared::api::Items<kanade_shared::api::executions::JobSummary>
        ),
        route!(
            "POST",
            "/api/jobs/validate",
            VIEWER,
            "Check a job manifest (JSON or YAML) without storing it; 422 lists every problem",
            post(catalog::validate),
            body = kanade_shared::manifest::raw::RawManifest,
            takes = YAML,
            response = kanade_shared::api::executions::JobValid
        ),
        route!(
            "POST",
            "/api/jobs",
            OPERATOR,
            "Add or replace a job (JSON or YAML manifest)",
            post(catalog::create),
            body = kanade_shared::manifest::raw::RawManifest,
            takes = YAML,
            response = kanade_shared::api::executions::JobStored
        ),
        route!(
            "GET",
            "/api/jobs/{id}",
            VIEWER,
            "One job's manifest and revoke state",
            get(catalog::show),
            response = kanade_shared::api::executions::JobDetail
        ),
        route!(
            "DELETE",
            "/api/jobs/{id}",
            OPERATOR,
            "Delete a job (refused while a schedule uses it)",
            delete(catalog::delete),
            answers = EMPTY
        ),
        route!(
            "POST",
            "/api/jobs/{id}/revoke",
            OPERATOR,
            "Revoke a job: agents skip it (126)",
            post(catalog::revoke),
            response = kanade_shared::api::executions::JobStatus
        ),
        route!(
            "POST",
            "/api/jobs/{id}/unrevoke",
            OPERATOR,
            "Lift a revoke",
            post(catalog::unrevoke),
            response = kanade_shared::api::executions::JobStatus
        ),
        route!(
            "POST",
            "/api/jobs/{id}/kill",
            OPERATOR,
            "Kill every unfinished execution of a job",
            post(catalog::kill),
            response = kanade_shared::api::executions::JobKilled
        ),
        route!(
            "POST",
            "/api/exec/{job_id}",
            OPERATOR,
            "Run a catalog job with a plan (JSON or YAML)",
            post(executions::exec),
            body = kanade_shared::manifest::raw::RawPlan,
            takes = YAML,
            query = kanade_shared::api::executions::LaunchQuery,
            response = kanade_shared::api::executions::Launched
        ),
        route!(
            "POST",
            "/api/deploy",
            OPERATOR,
            "Register a manifest and run it with its plan",
            post(executions::deploy),
            body = kanade_shared::manifest::raw::RawManifest,
            takes = YAML,
            query = kanade_shared::api::executions::LaunchQuery,
            response = kanade_shared::api::executions::Launched
        ),
        route!(
            "POST",
            "/api/run",
            OPERATOR,
            "Run an ad-hoc script on named pcs",
            post(ops::run),
            body = kanade_shared::api::executions::RunScript,
            query = kanade_shared::api::executions::LaunchQuery,
            response = kanade_shared::api::executions::Launched
        ),
        route!(
            "GET",
            "/api/executions",
            VIEWER,
            "Executions, newest first (job, status, since, cursor, limit)",
            get(executions::list),
            query = kanade_shared::api::executions::ExecutionsQuery,
            response = kanade_shared::api::Page<kanade_shared::api::executions::Execution, kanade_shared::ExecId>
        ),
        route!(
            "GET",
            "/api/executions/{exec_id}",
            VIEWER,
            "One execution with per-pc rows and waves (?pcs=false: status, counters and waves only)",
            get(executions::show),
            query = kanade_shared::api::executions::ExecutionQuery,
            response = kanade_shared::api::executions::ExecutionDetail
        ),
        route!(
            "POST",
            "/api/executions/{exec_id}/kill",
            OPERATOR,
            "Kill an execution on every pc",
            post(executions::kill),
            response = kanade_shared::api::executions::KillSent
        ),
        route!(
            "GET",
            "/api/executions/{exec_id}/pcs/{pc}/tail",
            VIEWER,
            "Server-sent events: one PC's output of a run as it is written (output, skipped, waiting), then end",
            get(live::tail),
            answers = EVENTS
        ),
        route!(
            "GET",
            "/api/results",
            VIEWER,
            "Results, newest first (pc, job, exec, status, since, cursor, limit)",
            get(fleet::results),
            query = kanade_shared::api::fleet::ResultQuery,
            response = kanade_shared::api::Page<kanade_shared::api::fleet::RunResult, kanade_shared::ResultId>
        ),
        route!(
            "GET",
            "/api/results/{result_id}",
            VIEWER,
            "One result",
            get(fleet::result),
            response = kanade_shared::api::fleet::RunResult
        ),
        route!(
            "GET",
            "/api/schedules",
            VIEWER,
            "Schedules with next fire, last tick and 24 h outcomes",
            get(schedules::list),
            response = kanade_shared::api::Items<kanade_shared::api::schedules::ScheduleView>
        ),
        route!(
            "POST",
            "/api/schedules",
            OPERATOR,
            "Create or replace a schedule (JSON or YAML); refused with every problem",
            post(schedules::create),
            body = kanade_shared::manifest::raw::RawSchedule,
            takes = YAML,
            query = kanade_shared::api::executions::LaunchQuery,
            response = kanade_shared::api::schedules::ScheduleView
        ),
        route!(
            "GET",
            "/api/schedules/{id}",
            VIEWER,
            "One schedule with its next 5 fires and status",
            get(schedules::show),
            response = kanade_shared::api::schedules::ScheduleView
        ),
        route!(
            "DELETE",
            "/api/schedules/{id}",
            OPERATOR,
            "Delete a schedule; it stops firing at once",
            delete(schedules::delete),
            answers = EMPTY
        ),
        route!(
            "POST",
            "/api/schedules/{id}/enable",
            OPERATOR,
            "Enable a schedule",
            post(schedules::enable),
            response = kanade_shared::api::schedules::ScheduleView
        ),
        route!(
            "POST",
            "/api/schedules/{id}/disable",
            OPERATOR,
            "Disable a schedule; it stops firing at once",
            post(schedules::disable),
            response = kanade_shared::api::schedules::ScheduleView
        ),
        route!(
            "GET",
            "/api/schedules/{id}/preview",
            VIEWER,
            "The next n fire times (n ≤ 100, default 10) in the schedule's time zone",
            get(schedules::preview),
            query = kanade_shared::api::schedules::PreviewQuery,
            response = kanade_shared::api::schedules::SchedulePreview
        ),
        route!(
            "GET",
            "/api/facts",
            VIEWER,
            "Facts tables that jobs with facts.explode fill: job, key, columns, row count",
            get(facts::tables),
            response = kanade_shared::wire::FactTables
        ),
        route!(
            "GET",
            "/api/facts/{table}",
            VIEWER,
            "One facts table's rows (pc, <column>=<value> filters, limit, offset)",
            get(facts::rows),
            response = kanade_shared::wire::FactRows
        ),
        route!(
            "DELETE",
            "/api/facts/{table}",
            ADMIN,
            "Drop a facts table and its rows (admin; audited); the job's next result makes it again",
            delete(facts::drop_table),
            response = kanade_shared::api::compliance::TableDropped
        ),
        route!(
            "GET",
            "/api/agents/{pc}/facts",
            VIEWER,
            "The PC's latest whole output of each job with facts: (its fact documents)",
            get(facts::documents),
            response = kanade_shared::wire::FactDocuments
        ),
        route!(
            "POST",
            "/api/query",
            ADMIN,
            "Run one read-only SELECT over the projection (admin; audited; 5 s, 1,000 rows by default)",
            post(facts::query),
            body = kanade_shared::wire::QueryRequest,
            response = kanade_shared::wire::QueryAnswer
        ),
        route!(
            "GET",
            "/api/checks",
            VIEWER,
            "Compliance checks with their PCs counted by status (pass, warn, fail, unknown)",
            get(compliance::checks),
            response = kanade_shared::wire::Checks
        ),
        route!(
            "GET",
            "/api/checks/{name}",
            VIEWER,
            "One check's PCs: status, detail, since when (status, cursor, limit)",
            get(compliance::check),
            query = kanade_shared::api::compliance::CheckQuery,
            response = kanade_shared::wire::CheckDetail
        ),
        route!(
            "DELETE",
            "/api/checks/{name}",
            ADMIN,
            "Forget every PC's status for a renamed or retired check (admin; audited)",
            delete(compliance::forget),
            response = kanade_shared::api::compliance::CheckForgotten
        ),
        route!(
            "POST",
            "/api/notifications",
            OPERATOR,
            "Send a notification to the people at the endpoints (title, body, priority, target, expires_in); audited",
            post(notifications::send),
            body = kanade_shared::wire::SendNotification,
            query = kanade_shared::api::executions::LaunchQuery,
            response = kanade_shared::wire::NotificationSent
        ),
        route!(
            "GET",
            "/api/notifications",
            VIEWER,
            "Notifications, newest first, with PCs addressed and PCs that acknowledged (limit)",
            get(notifications::list),
            query = kanade_shared::wire::notification::NotificationsQuery,
            response = kanade_shared::wire::Notifications
        ),
        route!(
            "GET",
            "/api/notifications/{id}",
            VIEWER,
            "One notification: per PC, acked (by whom, when) or outstanding",
            get(notifications::show),
            response = kanade_shared::wire::NotificationDetail
        ),
        route!(
            "DELETE",
            "/api/notifications/{id}",
            OPERATOR,
            "Withdraw a notification: agents drop it; audited",
            delete(notifications::withdraw),
            response = kanade_shared::wire::NotificationSummary
        ),
        route!(
            "GET",
            "/api/events",
            VIEWER,
            "Observability events, newest first (pc, kind or kind prefix, since, until epoch ms, cursor, limit)",
            get(telemetry::events),
            query = kanade_shared::api::fleet::EventsQuery,
            response = kanade_shared::wire::ObsEvents
        ),
        route!(
            "GET",
            "/api/audit",
            VIEWER,
            "Audit log (actor, action, target, since, until, cursor, limit)",
            get(fleet::audit_log),
            query = kanade_shared::api::fleet::AuditQuery,
            response = kanade_shared::api::Page<kanade_shared::api::fleet::AuditEntry, kanade_shared::AuditId>
        ),
    ]
}

/// A route's path as OpenAPI writes it: axum's catch-all `{*rest}` is the parameter `{rest}`.
pub fn doc_path(path: &str) -> String {
    path.replace("{*", "{")
}

/// The OpenAPI 3.1 document: every route with its access, path and query parameters, the body
/// it reads and what it answers (a JSON type, or the media types of another answer); every
/// error in the one error shape. Schemas are JSON Schema 2020-12 from the Rust types themselves
/// (`schemars`), under `components/schemas`.
pub fn openapi() -> Value {
    let settings = schemars::generate::SchemaSettings::draft2020_12().with(|s| {
        s.definitions_path = "/components/schemas".into();
    });
    let mut generator = settings.into_generator();
    // Query types are expanded into parameters, so they are generated inline.
    let mut inline = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    let error = json!({ "description": "error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } } });
    let mut paths = Map::new();
    for r in table() {
        let path = doc_path(r.path);
        let mut params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        if let Some(query) = r.query {
            params.extend(query_parameters(&query(&mut inline)));
        }
        // What a success answers: the JSON type, and any other media type it may come in.
        let mut content: Map<String, Value> =
            r.answers.unwrap_or_default().iter().map(|m| ((*m).to_owned(), json!({}))).collect();
        if let Some(response) = r.response {
            content.insert("application/json".into(), json!({ "schema": response(&mut generator) }));
        }
        let success = match content.is_empty() {
            true => json!({ "description": "success, no body" }),
            false => json!({ "description": "success", "content": content }),
        };
        let mut refused = error.clone();
        for media in r.refusals {
            refused["content"][*media] = json!({});
        }
        let mut op = json!({
            "summary": r.summary,
            "x-kanade-access": r.access.describe(),
            "operationId": format!("{}_{}", r.method.to_lowercase(), path.trim_start_matches('/').replace(['/', '{', '}', '.'], "_")),
            "parameters": params,
            "responses": { "2XX": success, "4XX": refused, "5XX": error.clone() }
        });
        if let Some(body) = r.body {
            op["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": body(&mut generator) } } });
        }
        for media in r.takes {
            op["requestBody"]["content"][*media] = json!({});
        }
        if r.access != Access::Public {
            op["security"] = json!([{ "bearer": [] }]);
        }
        let entry = paths.entry(path).or_insert_with(|| json!({}));
        entry[r.method.to_lowercase()] = op;
    }
    generator.subschema_for::<kanade_shared::api::ErrorBody>();
    let schemas = generator.take_definitions(true);
    json!({
        "openapi": "3.1.0",
        "info": { "title": "kanade-backend", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "description": "a session token from POST /api/auth/login, or an API token" } },
            "schemas": schemas
        }
    })
}

/// A query type's properties as OpenAPI query parameters.
fn query_parameters(schema: &schemars::Schema) -> Vec<Value> {
    let value = schema.as_value();
    let required: Vec<&str> =
        value["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    value["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, schema)| {
            let mut param = json!({ "name": name, "in": "query", "required": required.contains(&name.as_str()), "schema": schema });
            if let Some(d) = schema.get("description") {
                param["description"] = d.clone();
            }
            param
        })
        .collect()
}

/// `GET /api/openapi.json`.
pub async fn openapi_json() -> axum::Json<Value> {
    axum::Json(openapi())
}
