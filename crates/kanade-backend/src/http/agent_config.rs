//! `agent_config` scopes read and edited through the API (SPEC §12, "Agent configuration"):
//! `GET /api/agent/config` lists what every scope sets, `PATCH /api/agent/config/{scope}` sets
//! or (with `null`) removes fields of one scope. Edits are validated field by field
//! (`wire::agent_config::apply_edit`), written with compare-and-set so two operators' edits never
//! lose one another, and audited.

use super::Json;
use super::Path;
use async_nats::jetstream::kv::{CreateErrorKind, UpdateErrorKind};
use axum::extract::State;
use futures::StreamExt;
use kanade_shared::Version;
use kanade_shared::wire::agent_config::{AgentConfigScopes, ConfigScope, ScopeConfig, apply_edit};
use serde_json::{Map, Value, json};

use super::{ApiError, AppState, broker};
use crate::auth::Caller;

/// Tries of the read-edit-write cycle when another edit lands in between.
const CAS_TRIES: usize = 5;

pub async fn show(State(state): State<AppState>) -> Result<Json<AgentConfigScopes>, ApiError> {
    let kv = state.buckets.get("agent_config").await.map_err(broker)?;
    let mut keys = kv.keys().await.map_err(broker)?;
    let mut scopes = Vec::new();
    while let Some(key) = keys.next().await {
        let key = key.map_err(broker)?;
        let Some(scope) = ConfigScope::from_key(&key) else { continue };
        let Some(bytes) = kv.get(&key).await.map_err(broker)? else { continue };
        match serde_json::from_slice::<Map<String, Value>>(&bytes) {
            Ok(config) if !config.is_empty() => scopes.push(ScopeConfig { scope: scope.to_string(), config }),
            Ok(_) => {}
            Err(e) => tracing::warn!(key, error = %e, "agent_config entry is not a JSON object; left out"),
        }
    }
    // global first, then groups, then PCs, each by name.
    let rank = |s: &str| {
        if s == "global" {
            0
        } else if s.starts_with("group:") {
            1
        } else {
            2
        }
    };
    scopes.sort_by(|a, b| (rank(&a.scope), &a.scope).cmp(&(rank(&b.scope), &b.scope)));
    Ok(Json(AgentConfigScopes { scopes }))
}

pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Path(scope): Path<String>,
    Json(edit): Json<Value>,
) -> Result<Json<ScopeConfig>, ApiError> {
    let scope: ConfigScope = scope.parse().map_err(|e: String| ApiError::invalid(vec![e]))?;
    let Value::Object(edit) = edit else {
        return Err(ApiError::invalid(vec![
            "body: a JSON object of fields, e.g. {\"heartbeat_interval\": \"30s\"} (null removes one)".into(),
        ]));
    };
    if edit.is_empty() {
        return Err(ApiError::invalid(vec!["body: names no field to change".into()]));
    }
    let detail = json!({ "set": edit });
    let config = edit_scope(&state, &caller, &scope, &edit, "agent.config", detail).await?;
    Ok(Json(ScopeConfig { scope: scope.to_string(), config }))
}

/// Change fields of one scope (audited as `action` with `detail`): every field checked first (all problems in one 422), a
/// `target_version` must be published, the change audited, then written with compare-and-set on
/// the key's revision so concurrent edits (PATCH, rollout, clear-quarantine) never drop one
/// another; fields this version does not know are kept. Returns what the scope now sets.
pub(super) async fn edit_scope(
    state: &AppState,
    caller: &Caller,
    scope: &ConfigScope,
    edit: &Map<String, Value>,
    action: &str,
    detail: Value,
) -> Result<Map<String, Value>, ApiError> {
    let now = kanade_shared::wire::Timestamp::now_utc();
    apply_edit(&Map::new(), edit, now).map_err(ApiError::invalid)?;
    // A version is only asked for once it can be downloaded.
    if let Some(Value::String(v)) = edit.get("target_version")
        && let Ok(version) = v.parse::<Version>()
    {
        ensure_published(state, "target_version", &version).await?;
    }
    let kv = state.buckets.get("agent_config").await.map_err(broker)?;
    let key = scope.key();
    // Audited before it is written: a change the log does not show never happens.
    super::audit_as(state, caller, action, Some(scope.to_string()), detail).await?;
    for _ in 0..CAS_TRIES {
        let entry = kv.entry(&key).await.map_err(broker)?;
        let stored: Map<String, Value> = entry
            .as_ref()
            .filter(|e| e.operation == async_nats::jetstream::kv::Operation::Put)
            .and_then(|e| serde_json::from_slice(&e.value).ok())
            .unwrap_or_default();
        let config = apply_edit(&stored, edit, now).map_err(ApiError::invalid)?;
        let bytes = serde_json::to_vec(&config).unwrap_or_default();
        let lost_race = match &entry {
            Some(e) => match kv.update(&key, bytes.into(), e.revision).await {
                Ok(_) => false,
                Err(err) if err.kind() == UpdateErrorKind::WrongLastRevision => true,
                Err(err) => return Err(broker(err)),
            },
            None => match kv.create(&key, bytes.into()).await {
                Ok(_) => false,
                Err(err) if err.kind() == CreateErrorKind::AlreadyExists => true,
                Err(err) => return Err(broker(err)),
            },
        };
        if !lost_race {
            return Ok(config);
        }
    }
    Err(ApiError::new(
        axum::http::StatusCode::CONFLICT,
        "conflict",
        format!("agent_config {key} kept changing under this edit ({CAS_TRIES} tries); try again"),
    ))
}

/// 422 (naming `field`) unless some release of `version` is in `agent_releases`.
pub(super) async fn ensure_published(
    state: &AppState,
    field: &str,
    version: &Version,
) -> Result<(), ApiError> {
    let store = state.js.get_object_store("agent_releases").await.map_err(broker)?;
    let mut objects = store.list().await.map_err(broker)?;
    let prefix = format!("{version}/");
    while let Some(info) = objects.next().await {
        if info.map_err(broker)?.name.starts_with(&prefix) {
            return Ok(());
        }
    }
    Err(ApiError::invalid(vec![format!(
        "{field}: {version} has no published release; kanade agent publish it first"
    )]))
}
