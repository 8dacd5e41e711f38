//! The in-process event bus feeding `GET /api/stream`: projectors publish what changed,
//! each SSE client gets its own receiver. Lossy by design: a slow client skips events and
//! re-reads the API.

use kanade_shared::wire::ExecStatus;
use kanade_shared::{ExecId, PcId};
use serde::Serialize;
use tokio::sync::broadcast;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    /// An agent's heartbeats resumed (or the backend saw it for the first time).
    AgentUp {
        pc_id: String,
    },
    /// No heartbeat from the agent within the alive window.
    AgentDown {
        pc_id: String,
    },
    Result {
        exec_id: String,
        pc_id: String,
        status: &'static str,
    },
    Execution {
        exec_id: String,
    },
}

impl LiveEvent {
    /// The `type` tag, also used as the SSE event name.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::AgentUp { .. } => "agent_up",
            Self::AgentDown { .. } => "agent_down",
            Self::Result { .. } => "result",
            Self::Execution { .. } => "execution",
        }
    }
}

#[derive(Clone)]
pub struct Bus(broadcast::Sender<LiveEvent>);

impl Default for Bus {
    fn default() -> Self {
        Self(broadcast::channel(4096).0)
    }
}

impl Bus {
    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.0.subscribe()
    }

    pub fn agent_up(&self, pc_id: String) {
        let _ = self.0.send(LiveEvent::AgentUp { pc_id });
    }

    pub fn agent_down(&self, pc_id: String) {
        let _ = self.0.send(LiveEvent::AgentDown { pc_id });
    }

    pub fn result(&self, exec_id: ExecId, pc: PcId, status: ExecStatus) {
        let _ = self.0.send(LiveEvent::Result {
            exec_id: exec_id.to_string(),
            pc_id: pc.to_string(),
            status: status.as_str(),
        });
    }

    pub fn execution(&self, exec_id: impl std::fmt::Display) {
        let _ = self.0.send(LiveEvent::Execution { exec_id: exec_id.to_string() });
    }
}
