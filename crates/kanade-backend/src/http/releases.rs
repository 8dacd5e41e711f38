//! `/api/agent/*`: agent releases in the `agent_releases` object store, the `target_version`
//! each scope of `agent_config` asks for, and what the fleet actually runs.

use kanade_shared::api::releases::PublishQuery;
use std::collections::BTreeMap;

use super::Json;
use super::Query;
use super::RawBody;
use axum::extract::State;
use axum::http::StatusCode;
use futures::StreamExt;
use kanade_shared::api::Items;
use kanade_shared::api::releases::FleetVersions;
use kanade_shared::api::releases::QuarantineCleared;
use kanade_shared::api::releases::Release;
use kanade_shared::api::releases::ReleasePublished;
use kanade_shared::api::releases::Rollout;
use kanade_shared::api::releases::RolloutSet;
use kanade_shared::api::releases::Scope;
use kanade_shared::api::releases::UpdateWaiting;
use kanade_shared::wire::AgentConfigPatch;
use kanade_shared::wire::agent_config::ConfigScope;
use kanade_shared::{GroupName, PcId, Version, release};
use serde_json::{Map, json};

use super::{ApiError, AppState, agent_config, broker};
use crate::auth::Caller;

/// Upload a binary (raw body) as release `<version>/<target>`.
pub async fn publish(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<PublishQuery>,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<ReleasePublished>), ApiError> {
    let version: Version = q
        .version
        .parse()
        .map_err(|e: kanade_shared::IdError| ApiError::invalid(vec![format!("version: {e}")]))?;
    if body.is_empty() {
        return Err(ApiError::invalid(vec!["body: empty; send the agent binary".into()]));
    }
    let target = match q.target {
        Some(t) => {
            release::check_target(&t).map_err(|e| ApiError::invalid(vec![format!("target: {e}")]))?;
            t
        }
        None => release::detect_target(&body)
            .ok_or_else(|| {
                ApiError::invalid(vec![
                    "target: not an executable this backend recognises; pass target=<triple>".into(),
                ])
            })?
            .to_owned(),
    };
    let store = state.js.get_object_store("agent_releases").await.map_err(broker)?;
    let key = release::key(&version, &target);
    // Signed with the command key: agents that pin it install nothing else, so broker
    // credentials alone cannot ship a binary to the fleet.
    let metadata = state
        .pipeline
        .signer
        .as_deref()
        .map(|k| kanade_shared::signing::sign_release(k, &key, &body))
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let meta = async_nats::jetstream::object_store::ObjectMetadata {
        name: key.clone(),
        metadata,
        ..Default::default()
    };
    let info = store.put(meta, &mut body.as_ref()).await.map_err(broker)?;
    let signed = info.metadata.contains_key(kanade_shared::signing::RELEASE_SIGNATURE);
    let published = ReleasePublished {
        version: version.to_string(),
        target,
        size: info.size,
        digest: info.digest,
        signed,
    };
    let detail = serde_json::to_value(&published).unwrap_or_default();
    super::audit_as(&state, &caller, "agent.release_published", Some(key.clone()), detail).await?;
    Ok((StatusCode::CREATED, Json(published)))
}

pub async fn list(State(state): State<AppState>) -> Result<Json<Items<Release>>, ApiError> {
    let mut items = Vec::new();
    for info in super::objects(&state.js, "agent_releases").await? {
        let (version, target) = info.name.split_once('/').unwrap_or((info.name.as_str(), ""));
        items.push(Release {
            version: version.to_owned(),
            target: target.to_owned(),
            size: info.size,
            digest: info.digest,
            published: info.modified.map(|t| t.to_string()),
        });
    }
    items.sort_by(|a, b| (&a.version, &a.target).cmp(&(&b.version, &b.target)));
    Ok(Json(Items { items }))
}

/// The `agent_config` scope a request names: the fleet, a group or a pc.
fn scope_of(group: Option<&str>, pc: Option<&str>) -> Result<ConfigScope, ApiError> {
    match (group, pc) {
        (None, None) => Ok(ConfigScope::Global),
        (Some(g), None) => g
            .parse::<GroupName>()
            .map(ConfigScope::Group)
            .map_err(|e| ApiError::invalid(vec![format!("group: {e}")])),
        (None, Some(p)) => {
            p.parse::<PcId>().map(ConfigScope::Pc).map_err(|e| ApiError::invalid(vec![format!("pc: {e}")]))
        }
        (Some(_), Some(_)) => Err(ApiError::invalid(vec!["name a group or a pc, not both".into()])),
    }
}

/// Ask a scope to run `version` (it must have been published).
pub async fn rollout(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<Rollout>,
) -> Result<Json<RolloutSet>, ApiError> {
    let version: Version = body
        .version
        .parse()
        .map_err(|e: kanade_shared::IdError| ApiError::invalid(vec![format!("version: {e}")]))?;
    let scope = scope_of(body.group.as_deref(), body.pc.as_deref())?;
    agent_config::ensure_published(&state, "version", &version).await?;
    let edit = Map::from_iter([("target_version".to_owned(), json!(version))]);
    let detail = json!({ "version": version });
    agent_config::edit_scope(&state, &caller, &scope, &edit, "agent.rollout", detail).await?;
    let key = scope.key();
    Ok(Json(RolloutSet { scope: key, target_version: version.to_string() }))
}

/// Let a scope's agents install the versions they quarantined until now again.
pub async fn clear_quarantine(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<Scope>,
) -> Result<Json<QuarantineCleared>, ApiError> {
    let scope = scope_of(body.group.as_deref(), body.pc.as_deref())?;
    let now = kanade_shared::wire::Timestamp::now_utc();
    let at = now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let edit = Map::from_iter([("clear_quarantine".to_owned(), json!(at))]);
    let detail = json!({ "before": at });
    agent_config::edit_scope(&state, &caller, &scope, &edit, "agent.clear_quarantine", detail).await?;
    let key = scope.key();
    Ok(Json(QuarantineCleared { scope: key, clear_quarantine: at }))
}

/// What each scope asks for, and the versions the fleet reports in its heartbeats.
pub async fn current(State(state): State<AppState>) -> Result<Json<FleetVersions>, ApiError> {
    let kv = state.buckets.get("agent_config").await.map_err(broker)?;
    let mut keys = kv.keys().await.map_err(broker)?;
    let mut scopes = BTreeMap::new();
    while let Some(key) = keys.next().await {
        let key = key.map_err(broker)?;
        if let Some(bytes) = kv.get(&key).await.map_err(broker)?
            && let Ok(patch) = serde_json::from_slice::<AgentConfigPatch>(&bytes)
            && let Some(v) = patch.target_version
        {
            scopes.insert(key, v.to_string());
        }
    }
    let agents = state.db.agent_update_states().await?;
    let mut running: BTreeMap<String, u64> = BTreeMap::new();
    let mut quarantined: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut pending = Vec::new();
    for a in agents {
        *running.entry(a.agent_version).or_default() += 1;
        for q in a.quarantined {
            quarantined.entry(q.version.to_string()).or_default().push(a.pc_id.to_string());
        }
        if let Some(status) = a.update_status {
            pending.push(UpdateWaiting { pc_id: a.pc_id, status });
        }
    }
    Ok(Json(FleetVersions { target_versions: scopes, running, quarantined, update_status: pending }))
}
