//! The backend's long-lived tasks, started the same way by `main` and by tests: the leader
//! campaign, one projector per stream, the heartbeat projector, the rollout dispatcher,
//! cleanup, presence and the scheduler.
//!
//! Who does what: every backend serves the API, writes heartbeats (a queue group shares them
//! when the database is shared) and tracks presence. The holder of the duties lease fires
//! schedules, publishes due waves and expires stalled executions, so each happens once across
//! the broker's backends. Projectors run on every backend that owns its database (SQLite), and
//! on the holder of the projection's own lease when several backends share one (Postgres): one
//! writer per stream keeps the stream's order.

use std::sync::Arc;

use kanade_shared::config::RetentionConfig;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cleanup::{self, Cleanup};
use crate::http::AppState;
use crate::lease::{self, Leadership};
use crate::pipeline::rollout;
use crate::projector::{self, Kind, Projectors};

pub async fn spawn(state: &AppState, retention: RetentionConfig, stop: watch::Receiver<bool>) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    // Opened now, while the broker is whole: an exec that comes after a node died then reads
    // them through any replica (see `buckets.rs`). Not a worker: a stop does not wait for it.
    let buckets = state.buckets.clone();
    tokio::spawn(async move { buckets.open_ahead(crate::buckets::EXEC_READS).await });
    let instance = crate::lease::instance_name();
    let (leader_tx, is_leader) = Leadership::new(lease::DUTIES.to_owned());
    let duties = lease::DUTIES.to_owned();
    tasks.spawn(lease::lead(state.js.clone(), duties, instance.clone(), leader_tx, stop.clone()));
    let shared = state.db.shared();
    // A shared projection has a lease of its own: its projectors run on one of its backends.
    let mut projecting = None;
    if shared {
        tasks.spawn(state.bus.clone().relay(state.nats.clone(), stop.clone()));
        match state.db.projection_name().await {
            Ok(name) => {
                let key = lease::projection_key(&name.id);
                let (projecting_tx, gate) = Leadership::new(key.clone());
                projecting = Some(gate);
                tasks.spawn(lease::lead(
                    state.js.clone(),
                    key,
                    instance.clone(),
                    projecting_tx,
                    stop.clone(),
                ));
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the projection's name; this backend will not project")
            }
        }
    }
    let projectors = Arc::new(Projectors {
        db: state.db.clone(),
        js: state.js.clone(),
        stats: state.stats.clone(),
        bus: state.bus.clone(),
        offline_after_ms: state.offline_after_ms,
        event_budget: Default::default(),
    });
    for kind in Kind::ALL {
        if shared && projecting.is_none() {
            break;
        }
        tasks.spawn(projector::supervise(projectors.clone(), kind, projecting.clone(), stop.clone()));
    }
    tasks.spawn(projector::host_perf_projector(projectors.clone(), state.nats.clone(), stop.clone()));
    tasks.spawn(projector::process_perf_projector(projectors.clone(), state.nats.clone(), stop.clone()));
    tasks.spawn(projector::heartbeat_projector(projectors, state.nats.clone(), stop.clone()));
    tasks.spawn(crate::pipeline::drain_outbox(state.js.clone(), state.db.clone(), stop.clone()));
    if let Some(issuer) = &state.enroll.callout {
        tasks.spawn(crate::callout::serve(
            state.nats.clone(),
            state.db.clone(),
            issuer.clone(),
            stop.clone(),
        ));
    }
    tasks.spawn(rollout::dispatcher(state.pipeline.clone(), is_leader.clone(), stop.clone()));
    let c = Cleanup { db: state.db.clone(), js: state.js.clone(), bus: state.bus.clone(), retention };
    tasks.spawn(cleanup::worker(c, is_leader.clone(), stop.clone()));
    tasks.spawn(crate::dynamic_groups::worker(
        state.db.clone(),
        state.buckets.clone(),
        is_leader.clone(),
        stop.clone(),
    ));
    tasks.spawn(crate::presence::worker(
        state.db.clone(),
        state.bus.clone(),
        state.offline_after_ms,
        stop.clone(),
    ));
    tasks.spawn(crate::scheduler::run(state.pipeline.clone(), Default::default(), instance, is_leader, stop));
    tasks
}
