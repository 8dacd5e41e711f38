//! The backend's long-lived tasks, started the same way by `main` and by tests: one projector
//! per stream, the heartbeat projector, the rollout dispatcher, cleanup, presence and the scheduler.

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
    let projectors = Arc::new(Projectors {
        db: state.db.clone(),
        js: state.js.clone(),
        stats: state.stats.clone(),
        bus: state.bus.clone(),
    });
    for kind in Kind::ALL {
        tasks.spawn(projector::supervise(projectors.clone(), kind, stop.clone()));
    }
    tasks.spawn(projector::heartbeat_projector(projectors, state.nats.clone(), stop.clone()));
    tasks.spawn(rollout::dispatcher(state.pipeline.clone(), stop.clone()));
    let c = Cleanup { db: state.db.clone(), js: state.js.clone(), bus: state.bus.clone(), retention };
    tasks.spawn(cleanup::worker(c, stop.clone()));
    tasks.spawn(crate::presence::worker(state.db.clone(), state.bus.clone(), stop.clone()));
    tasks.spawn(crate::scheduler::run(state.pipeline.clone(), Default::default(), stop));
    tasks
}
