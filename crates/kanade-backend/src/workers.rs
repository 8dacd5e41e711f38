//! The backend's long-lived tasks, started the same way by `main` and by tests: the leader
//! campaign, one projector per stream, the heartbeat projector, the rollout dispatcher,
//! cleanup, presence and the scheduler.
//!
//! Who does what: every backend serves the API, writes heartbeats (a queue group shares them
//! when the database is shared) and tracks presence. The leader fires schedules, publishes due
//! waves and expires stalled executions, so each happens once across backends. Projectors run
//! on every backend that owns its database (SQLite), and only on the leader when several
//! backends share one (Postgres): one writer per stream keeps the stream's order.

use std::sync::Arc;

use kanade_shared::config::RetentionConfig;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cleanup::{self, Cleanup};
use crate::http::AppState;
use crate::pipeline::rollout;
use crate::projector::{self, Kind, Projectors};

pub fn spawn(state: &AppState, retention: RetentionConfig, stop: watch::Receiver<bool>) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    let instance = crate::lease::instance_name();
    let (leader_tx, is_leader) = watch::channel(false);
    tasks.spawn(crate::lease::lead(state.js.clone(), instance.clone(), leader_tx, stop.clone()));
    let shared = state.db.shared();
    if shared {
        tasks.spawn(state.bus.clone().relay(state.nats.clone(), stop.clone()));
    }
    let projectors = Arc::new(Projectors {
        db: state.db.clone(),
        js: state.js.clone(),
        stats: state.stats.clone(),
        bus: state.bus.clone(),
    });
    for kind in Kind::ALL {
        let gate = shared.then(|| is_leader.clone());
        tasks.spawn(projector::supervise(projectors.clone(), kind, gate, stop.clone()));
    }
    tasks.spawn(projector::heartbeat_projector(projectors, state.nats.clone(), stop.clone()));
    tasks.spawn(rollout::dispatcher(state.pipeline.clone(), is_leader.clone(), stop.clone()));
    let c = Cleanup { db: state.db.clone(), js: state.js.clone(), bus: state.bus.clone(), retention };
    tasks.spawn(cleanup::worker(c, is_leader.clone(), stop.clone()));
    tasks.spawn(crate::presence::worker(state.db.clone(), state.bus.clone(), stop.clone()));
    tasks.spawn(crate::scheduler::run(state.pipeline.clone(), Default::default(), instance, is_leader, stop));
    tasks
}
