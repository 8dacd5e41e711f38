//! The event bus feeding `GET /api/stream`: projectors publish what changed, each SSE client
//! gets its own receiver. Lossy by design: a slow client skips events and re-reads the API.
//! With a shared database only the leader projects, so execution and result events go through
//! the broker (core subject [`LIVE_SUBJECT`]) to every backend's clients; agent up/down come
//! from each backend's own presence worker and stay local.

use std::sync::{Arc, OnceLock};

use futures::StreamExt;
use kanade_shared::wire::ExecStatus;
use kanade_shared::{ExecId, PcId};
use tokio::sync::{broadcast, mpsc, watch};

pub const LIVE_SUBJECT: &str = "kanade.backend.live";

pub use kanade_shared::api::LiveEvent;

#[derive(Clone)]
pub struct Bus {
    local: broadcast::Sender<LiveEvent>,
    /// Set while relaying through the broker.
    relay: Arc<OnceLock<mpsc::UnboundedSender<LiveEvent>>>,
}

impl Default for Bus {
    fn default() -> Self {
        Self { local: broadcast::channel(4096).0, relay: Arc::default() }
    }
}

impl Bus {
    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.local.subscribe()
    }

    pub fn agent_up(&self, pc: PcId) {
        let _ = self.local.send(LiveEvent::AgentUp { pc_id: pc });
    }

    pub fn agent_down(&self, pc: PcId) {
        let _ = self.local.send(LiveEvent::AgentDown { pc_id: pc });
    }

    pub fn result(&self, exec_id: ExecId, pc: PcId, status: ExecStatus) {
        self.fleet_wide(LiveEvent::Result { exec_id, pc_id: pc, status });
    }

    pub fn execution(&self, exec_id: ExecId) {
        self.fleet_wide(LiveEvent::Execution { exec_id });
    }

    pub fn notification(&self, id: kanade_shared::NotificationId) {
        self.fleet_wide(LiveEvent::Notification { id });
    }

    fn fleet_wide(&self, e: LiveEvent) {
        match self.relay.get() {
            Some(relay) => {
                let _ = relay.send(e);
            }
            None => {
                let _ = self.local.send(e);
            }
        }
    }

    /// Relay execution and result events through the broker until `stop`: every backend's
    /// clients see what any backend projected.
    pub async fn relay(self, client: async_nats::Client, mut stop: watch::Receiver<bool>) {
        let mut sub = match client.subscribe(LIVE_SUBJECT).await {
            Ok(sub) => sub,
            Err(e) => {
                tracing::error!(error = %e, "cannot subscribe to live events; dashboards see only this backend's");
                return;
            }
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _ = self.relay.set(tx);
        loop {
            tokio::select! {
                Some(e) = rx.recv() => {
                    if let Ok(body) = serde_json::to_vec(&e) {
                        let _ = client.publish(LIVE_SUBJECT, body.into()).await;
                    }
                }
                Some(m) = sub.next() => {
                    if let Ok(e) = serde_json::from_slice::<LiveEvent>(&m.payload) {
                        let _ = self.local.send(e);
                    }
                }
                () = stopped(&mut stop) => return,
            }
        }
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
