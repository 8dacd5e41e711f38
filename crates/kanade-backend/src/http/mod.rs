//! The HTTP surface. `app(state)` builds the whole router so tests drive it without a socket.

mod body;
mod error;
mod executions;

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

pub use error::ApiError;

use crate::db::Db;
use crate::events::Bus;
use crate::pipeline::Pipeline;
use crate::projector::Stats;

#[derive(Clone)]
pub struct AppState {
    pub nats: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    pub db: Db,
    pub bus: Bus,
    pub stats: Arc<Stats>,
    pub pipeline: Pipeline,
}

impl AppState {
    pub fn new(nats: async_nats::Client, db: Db) -> Self {
        let js = async_nats::jetstream::new(nats.clone());
        let bus = Bus::default();
        let pipeline = Pipeline { db: db.clone(), js: js.clone(), bus: bus.clone() };
        Self { nats, js, db, bus, stats: Arc::new(Stats::default()), pipeline }
    }
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/api/jetstream/status", get(jetstream_status))
        .route("/api/deploy", post(executions::deploy))
        .route("/api/exec/{job_id}", post(executions::exec))
        .route("/api/executions", get(executions::list))
        .route("/api/executions/{exec_id}", get(executions::show))
        .route("/api/executions/{exec_id}/kill", post(executions::kill))
        .route("/api/agents", get(executions::agents))
        .fallback(not_found)
        .with_state(state)
}

/// Liveness plus the one dependency that matters: is the broker reachable right now.
async fn health(State(state): State<AppState>) -> Json<Value> {
    let nats = match state.nats.connection_state() {
        async_nats::connection::State::Connected => "connected",
        async_nats::connection::State::Disconnected => "disconnected",
        async_nats::connection::State::Pending => "connecting",
    };
    Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION"), "nats": nats }))
}

async fn jetstream_status(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let statuses = kanade_shared::jetstream::jetstream_status(&state.js).await.map_err(|e| {
        ApiError::unavailable("nats_unavailable", format!("cannot read JetStream status: {e}"))
    })?;
    Ok(Json(json!({ "items": statuses })))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}
