//! Scripts run by reference (`execute.script_object: <name>/<version>`): uploaded once into
//! the `scripts` object store, immutable once there (a new content is a new version), pinned
//! by sha256 into every job that names them when the job is stored, and fetched, checked and
//! cached by the agent.

use super::Path;
use super::RawBody;
use axum::extract::State;
use axum::http::StatusCode;
use kanade_shared::api::Items;
use kanade_shared::api::executions::Script;
use kanade_shared::manifest::{Manifest, ScriptSource};
use kanade_shared::{JobId, Version};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use super::{ApiError, AppState, Json, broker};
use crate::auth::Caller;

/// What one script may weigh: scripts are text; a payload belongs in a release or a download.
pub const MAX_SCRIPT_BYTES: usize = 1024 * 1024;

const STORE: &str = "scripts";

fn key(name: &str, version: &str) -> Result<String, ApiError> {
    let mut problems = Vec::new();
    if let Err(e) = name.parse::<JobId>() {
        problems.push(format!("name {name:?}: {e}"));
    }
    if let Err(e) = version.parse::<Version>() {
        problems.push(format!("version {version:?}: {e}"));
    }
    if problems.is_empty() { Ok(format!("{name}/{version}")) } else { Err(ApiError::invalid(problems)) }
}

async fn store(state: &AppState) -> Result<async_nats::jetstream::object_store::ObjectStore, ApiError> {
    state.js.get_object_store(STORE).await.map_err(broker)
}

/// The stored body of `key`, or `None` when there is no such script.
async fn read(state: &AppState, key: &str) -> Result<Option<Vec<u8>>, ApiError> {
    let store = store(state).await?;
    let mut object = match store.get(key).await {
        Ok(o) => o,
        Err(e) if e.kind() == async_nats::jetstream::object_store::GetErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(broker(e)),
    };
    let mut body = Vec::new();
    object.read_to_end(&mut body).await.map_err(broker)?;
    Ok(Some(body))
}

/// `POST /api/scripts/{name}/{version}`: the raw body is the script. The same content again is
/// fine (nothing changes); another content under a stored version is refused.
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<Script>), ApiError> {
    let key = key(&name, &version)?;
    if body.is_empty() {
        return Err(ApiError::invalid(vec!["the script is empty: send its text as the request body".into()]));
    }
    if body.len() > MAX_SCRIPT_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the script is {} bytes; a script may have at most {MAX_SCRIPT_BYTES}", body.len()),
        ));
    }
    if std::str::from_utf8(&body).is_err() {
        return Err(ApiError::invalid(vec!["the script is not UTF-8 text".into()]));
    }
    let sha256 = kanade_shared::files::sha256_hex(&body);
    let answer = Script {
        key: key.clone(),
        name: name.to_string(),
        version: version.to_string(),
        sha256: Some(sha256.clone()),
        bytes: body.len(),
        modified: None,
    };
    if let Some(existing) = read(&state, &key).await? {
        return if kanade_shared::files::sha256_hex(&existing) == sha256 {
            Ok((StatusCode::OK, Json(answer)))
        } else {
            Err(ApiError::conflict(format!(
                "script {key} is stored with another content; scripts never change once uploaded: upload it as a new version"
            )))
        };
    }
    super::audit_as(
        &state,
        &caller,
        "script.upload",
        Some(key.clone()),
        json!({ "sha256": sha256, "bytes": body.len() }),
    )
    .await?;
    let mut reader = &body[..];
    store(&state).await?.put(key.as_str(), &mut reader).await.map_err(broker)?;
    Ok((StatusCode::CREATED, Json(answer)))
}

/// `GET /api/scripts`: every stored script with its size and sha256.
pub async fn list(State(state): State<AppState>) -> Result<Json<Items<Script>>, ApiError> {
    let mut items = Vec::new();
    for info in super::objects(&state.js, STORE).await? {
        let (name, version) = info.name.split_once('/').unwrap_or((info.name.as_str(), ""));
        items.push(Script {
            name: name.to_owned(),
            version: version.to_owned(),
            bytes: info.size,
            sha256: info.digest.as_deref().and_then(kanade_shared::files::object_digest_hex),
            modified: info
                .modified
                .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
            key: info.name,
        });
    }
    items.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(Json(Items { items }))
}

/// `GET /api/scripts/{name}/{version}`: the script's text.
pub async fn show(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<String, ApiError> {
    let key = key(&name, &version)?;
    let body = read(&state, &key).await?.ok_or_else(|| not_uploaded(&key))?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn not_uploaded(key: &str) -> ApiError {
    ApiError::not_found(format!(
        "script {key} is not uploaded (`kanade script upload <file> --name {} --version {}`; `kanade script list` shows what is)",
        key.split_once('/').map_or(key, |(n, _)| n),
        key.split_once('/').map_or("", |(_, v)| v),
    ))
}

/// `DELETE /api/scripts/{name}/{version}`: refused while a catalog job runs it.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let key = key(&name, &version)?;
    if read(&state, &key).await?.is_none() {
        return Err(not_uploaded(&key));
    }
    let users: Vec<String> = super::stored(&state.buckets, "jobs", crate::pipeline::catalog::parse)
        .await?
        .into_iter()
        .filter(|(_, e)| matches!(&e.manifest.execute.source, ScriptSource::Object(k) if *k == key))
        .map(|(id, _)| id)
        .collect();
    if !users.is_empty() {
        return Err(ApiError::conflict(format!(
            "script {key} is run by job(s) {}; delete or change them first",
            users.join(", ")
        )));
    }
    super::audit_as(&state, &caller, "script.delete", Some(key.clone()), Value::Null).await?;
    store(&state).await?.delete(key.as_str()).await.map_err(broker)?;
    Ok(StatusCode::NO_CONTENT)
}

/// A job naming a script is stored with that script's sha256: filled in when the manifest
/// names none, refused when it names another or the script is not uploaded. Agents then run
/// exactly the content the job was stored with.
pub(super) async fn pin(state: &AppState, m: &mut Manifest) -> Result<(), ApiError> {
    let ScriptSource::Object(key) = &m.execute.source else { return Ok(()) };
    let Some(body) = read(state, key).await? else {
        let e = not_uploaded(key);
        return Err(ApiError::invalid(vec![format!("execute.script_object: {}", e.message)]));
    };
    let stored = kanade_shared::files::sha256_hex(&body);
    match &m.execute.script_sha256 {
        Some(named) if *named != stored => Err(ApiError::invalid(vec![format!(
            "execute.script_sha256: {named} is not the sha256 of script {key} as uploaded ({stored})"
        )])),
        _ => {
            m.execute.script_sha256 = Some(stored);
            Ok(())
        }
    }
}
