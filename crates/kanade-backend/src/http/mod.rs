//! The HTTP surface. `app(state)` builds the whole router so tests drive it without a socket.

mod accounts;
mod agent_config;
pub mod authz;
mod body;
mod catalog;
mod compliance;
mod dashboard;
mod enroll;
mod error;
mod executions;
mod extract;
mod facts;
mod fleet;
mod freeze;
mod groups;
mod live;
mod metrics;
mod mfa;
mod notifications;
mod ops;
mod releases;
pub mod routes;
mod schedules;
mod scripts;
pub mod serve;
mod session;
mod telemetry;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use kanade_shared::api::Items;
use kanade_shared::api::service::Health;
use kanade_shared::api::service::Probe;
use kanade_shared::api::service::ResourceStatus;
use kanade_shared::api::service::SigningKey;
use serde_json::Value;

pub use error::ApiError;
pub use extract::{Json, Path, Query, RawBody};
pub use metrics::CallerName;

use crate::auth::Auth;
use crate::db::Db;
use crate::events::Bus;
use crate::pipeline::Pipeline;
use crate::projector::Stats;

#[derive(Clone)]
pub struct AppState {
    pub nats: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    /// The KV buckets, opened once (the pipeline's, shared).
    pub buckets: crate::buckets::Buckets,
    pub db: Db,
    pub bus: Bus,
    pub stats: Arc<Stats>,
    pub http_metrics: Arc<metrics::HttpMetrics>,
    pub pipeline: Pipeline,
    pub auth: Auth,
    /// Silence after which an agent's `agent.offline` event is recorded (the alive window;
    /// shorter only in tests).
    pub offline_after_ms: i64,
    /// `[retention] check_stale`: a check status older than this shows as `unknown`.
    pub check_stale_ms: i64,
    /// Turns true when the backend stops: open event streams end, so a graceful shutdown does
    /// not wait for the dashboards watching them.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Enrolment: the broker URL for new agents, the callout key, the system account.
    pub enroll: Arc<crate::enroll::Settings>,
}

impl axum::extract::FromRef<AppState> for crate::auth::Auth {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

/// Record a change `caller` made, with their name and address.
pub async fn audit_as(
    state: &AppState,
    caller: &crate::auth::Caller,
    action: &str,
    target: Option<String>,
    detail: Value,
) -> Result<(), crate::pipeline::ExecError> {
    crate::pipeline::audit(
        &state.js,
        &caller.name,
        action,
        target,
        caller.source.clone(),
        caller.client,
        detail,
    )
    .await
}

/// The pipeline origin of a call made by `caller`.
pub fn origin(caller: &crate::auth::Caller) -> crate::pipeline::Origin {
    crate::pipeline::Origin {
        actor: caller.name.clone(),
        source: caller.source.clone(),
        client: caller.client.to_owned(),
        ..Default::default()
    }
}

/// Every stored document of a bucket that validates, sorted by key. One that does not is
/// logged with its key and problems and left out, so a bad entry never hides the others.
pub async fn stored<T>(
    buckets: &crate::buckets::Buckets,
    bucket: &str,
    parse: impl Fn(&[u8]) -> Result<T, kanade_shared::manifest::Problems>,
) -> Result<Vec<(String, T)>, ApiError> {
    use futures::StreamExt;
    let kv = buckets.get(bucket).await.map_err(broker)?;
    let mut keys = kv.keys().await.map_err(broker)?;
    let mut out = Vec::new();
    while let Some(key) = keys.next().await {
        let key = key.map_err(broker)?;
        let Some(bytes) = kv.get(&key).await.map_err(broker)? else { continue };
        match parse(&bytes) {
            Ok(v) => out.push((key, v)),
            Err(p) => tracing::warn!(bucket, key, problems = %p, "stored entry does not validate; left out"),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// A broker error as the API reports it.
/// Every object of an object store that is not deleted.
pub async fn objects(
    js: &async_nats::jetstream::Context,
    bucket: &str,
) -> Result<Vec<async_nats::jetstream::object_store::ObjectInfo>, ApiError> {
    use futures::StreamExt;
    let store = js.get_object_store(bucket).await.map_err(broker)?;
    let mut listed = store.list().await.map_err(broker)?;
    let mut out = Vec::new();
    while let Some(info) = listed.next().await {
        let info = info.map_err(broker)?;
        if !info.deleted {
            out.push(info);
        }
    }
    Ok(out)
}

pub fn broker(e: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable("nats_unavailable", format!("the broker did not answer: {e}"))
}

/// Page size: 50 unless asked, at most 500.
pub fn check_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(50),
        Some(n) if (1..=500).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::invalid(vec![format!("limit: {n} is not between 1 and 500")])),
    }
}

/// A filter that can only be one of a few words: anything else would silently match nothing.
pub fn check_one_of(field: &str, value: Option<&str>, allowed: &[&str]) -> Result<(), ApiError> {
    match value {
        Some(v) if !allowed.contains(&v) => {
            Err(ApiError::invalid(vec![format!("{field}: {v:?} is not one of {}", allowed.join(", "))]))
        }
        _ => Ok(()),
    }
}

/// A page's `cursor` is the id of the last row of the page before (`next_cursor`); anything
/// else would quietly start the list over.
pub fn check_cursor<T: std::str::FromStr>(cursor: Option<&str>) -> Result<(), ApiError> {
    match cursor {
        Some(c) if c.parse::<T>().is_err() => Err(ApiError::invalid(vec![format!(
            "cursor: {c:?} is not a cursor this list gave (pass the answer's next_cursor as it is)"
        )])),
        _ => Ok(()),
    }
}

/// Result statuses, for the `status` filter (`failed` also matches every unsuccessful end).
pub const RESULT_STATUSES: [&str; 7] =
    ["running", "succeeded", "failed", "timed_out", "killed", "skipped", "unknown"];

impl AppState {
    pub fn new(nats: async_nats::Client, db: Db, auth: Auth) -> Self {
        let js = async_nats::jetstream::new(nats.clone());
        let bus = Bus::default();
        let buckets = crate::buckets::Buckets::new(js.clone());
        let pipeline = Pipeline {
            db: db.clone(),
            js: js.clone(),
            buckets: buckets.clone(),
            bus: bus.clone(),
            signer: None,
            start_within: kanade_shared::manifest::MAX_START_WITHIN,
        };
        Self {
            nats,
            js,
            buckets,
            db,
            bus,
            stats: Arc::new(Stats::default()),
            http_metrics: Arc::default(),
            pipeline,
            auth,
            offline_after_ms: crate::fleet::ALIVE_WINDOW_MS,
            check_stale_ms: 30 * 24 * 3_600_000,
            // Never turns true unless `with_stopping` gives the real signal.
            stopping: tokio::sync::watch::channel(false).1,
            enroll: Arc::default(),
        }
    }
}

impl AppState {
    pub fn with_check_stale(mut self, stale: std::time::Duration) -> Self {
        self.check_stale_ms = stale.as_millis() as i64;
        self
    }

    /// End open event streams when `stopping` turns true.
    pub fn with_stopping(mut self, stopping: tokio::sync::watch::Receiver<bool>) -> Self {
        self.stopping = stopping;
        self
    }

    /// Record `agent.offline` after this much silence instead of the alive window (tests).
    pub fn with_offline_after(mut self, after: std::time::Duration) -> Self {
        self.offline_after_ms = after.as_millis() as i64;
        self
    }

    /// Enrol agents with these settings (the callout key makes the workers answer the broker).
    pub fn with_enroll(mut self, settings: crate::enroll::Settings) -> Self {
        self.enroll = Arc::new(settings);
        self
    }

    /// Sign every command this backend publishes with `key`.
    pub fn with_signer(mut self, key: ed25519_dalek::SigningKey) -> Self {
        self.pipeline.signer = Some(Arc::new(key));
        self
    }

    /// The start deadline of commands whose plan names none (`[exec] start_within`).
    pub fn with_start_within(mut self, start_within: std::time::Duration) -> Self {
        self.pipeline.start_within = start_within;
        self
    }
}

/// The public half of the command signing key, for agents' `security.trusted_keys`.
async fn signing_key(State(state): State<AppState>) -> Result<Json<SigningKey>, ApiError> {
    let key = state.pipeline.signer.as_ref().ok_or_else(|| {
        ApiError::not_found("this backend does not sign commands (it runs without a signing key)")
    })?;
    let public = kanade_shared::signing::encode_public(&key.verifying_key());
    let config = format!("[security]\ntrusted_keys = [\"{public}\"]");
    Ok(Json(SigningKey { public_key: public, config }))
}

pub fn app(state: AppState) -> Router {
    let mut by_path: std::collections::BTreeMap<&str, axum::routing::MethodRouter<AppState>> =
        Default::default();
    for r in routes::table() {
        let guard = (state.auth.clone(), state.db.clone(), r.access);
        let handler = (r.handler)().layer(axum::middleware::from_fn_with_state(guard, authz::authorize));
        let merged = match by_path.remove(r.path) {
            Some(existing) => existing.merge(handler),
            None => handler,
        };
        by_path.insert(r.path, merged);
    }
    let mut router = Router::new();
    for (path, handler) in by_path {
        router = router.route(path, handler);
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // gzip when the client accepts it (a 10,000-PC execution is megabytes of JSON); never
        // the event stream, which must flush each event.
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .with_state(state)
}

/// The process is up and serving (for a supervisor's liveness probe: restart when it fails).
async fn livez() -> Json<Probe> {
    Json(Probe { status: "ok".into() })
}

/// Ready for traffic: the database answers and the broker is connected; 503 naming what is not
/// (for a load balancer's readiness probe: send no requests until it passes).
async fn readyz(State(state): State<AppState>) -> Result<Json<Probe>, ApiError> {
    let mut down = Vec::new();
    // What went wrong is logged, never sent: the probe is public.
    match tokio::time::timeout(std::time::Duration::from_secs(5), state.db.user_count()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the database is not answering");
            down.push("database: unavailable (see the backend log)".to_owned());
        }
        Err(_) => down.push("database: did not answer within 5 s".to_owned()),
    }
    if state.nats.connection_state() != async_nats::connection::State::Connected {
        down.push("broker: not connected".to_owned());
    }
    if down.is_empty() {
        Ok(Json(Probe { status: "ready".into() }))
    } else {
        Err(ApiError::unavailable("not_ready", format!("not ready: {}", down.join("; "))))
    }
}

/// Liveness plus the one dependency that matters: is the broker reachable right now.
async fn health(State(state): State<AppState>) -> Json<Health> {
    let nats = match state.nats.connection_state() {
        async_nats::connection::State::Connected => "connected",
        async_nats::connection::State::Disconnected => "disconnected",
        async_nats::connection::State::Pending => "connecting",
    };
    Json(Health { status: "ok".into(), version: env!("CARGO_PKG_VERSION").into(), nats: nats.into() })
}

async fn jetstream_status(State(state): State<AppState>) -> Result<Json<Items<ResourceStatus>>, ApiError> {
    let statuses = kanade_shared::jetstream::jetstream_status(&state.js).await.map_err(|e| {
        ApiError::unavailable("nats_unavailable", format!("cannot read JetStream status: {e}"))
    })?;
    Ok(Json(Items { items: statuses }))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not take {method}; GET /api/openapi.json lists what each route takes", uri.path()),
    )
}

/// Resolves once `rx` is true; never when its sender is gone without stopping.
pub(super) async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        let now = *rx.borrow_and_update();
        if now {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// A PC id from a path, or 422 saying what is wrong with it.
pub(super) fn pc_id(raw: &str) -> Result<kanade_shared::PcId, ApiError> {
    raw.parse().map_err(|e: kanade_shared::IdError| ApiError::invalid(vec![e.to_string()]))
}
