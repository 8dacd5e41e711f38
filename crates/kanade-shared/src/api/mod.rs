//! HTTP bodies of the backend's JSON API, shared by the backend (which answers them), the CLI
//! (which reads them) and the OpenAPI document (generated from them). Bodies an agent also
//! sends or reads live in [`crate::wire`]; of these, only [`LiveEvent`] crosses the broker,
//! from backend to backend (`kanade.backend.live`), never to or from an agent.
//!
//! Requests refuse unknown fields (a typo is an error, not a silent default); answers are read
//! tolerantly (a newer backend may add fields an older CLI ignores).

pub mod accounts;
pub mod compliance;
pub mod executions;
pub mod fleet;
pub mod groups;
pub mod releases;
pub mod schedules;
pub mod service;

use serde::{Deserialize, Serialize};

use crate::wire::ExecStatus;
use crate::{ExecId, PcId};

/// A list answered whole.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "{T}List"))]
pub struct Items<T> {
    pub items: Vec<T>,
}

/// One page of a longer list, newest first: `next_cursor` continues it (absent on the last page).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "{T}Page"))]
pub struct Page<T, C> {
    pub items: Vec<T>,
    pub next_cursor: Option<C>,
}

/// One event of `GET /api/stream` (server-sent events; the event name is its `type`). Lossy by
/// design: a client that falls behind gets a `lagged` event and re-reads the API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    /// An agent's heartbeats resumed (or the backend saw it for the first time).
    AgentUp {
        pc_id: PcId,
    },
    /// No heartbeat from the agent within the alive window.
    AgentDown {
        pc_id: PcId,
    },
    Result {
        exec_id: ExecId,
        pc_id: PcId,
        status: ExecStatus,
    },
    Execution {
        exec_id: ExecId,
    },
    /// A notification was sent, withdrawn or acknowledged somewhere.
    Notification {
        id: crate::NotificationId,
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
            Self::Notification { .. } => "notification",
        }
    }
}

/// Every error answer: a sentence for people, a stable code for programs, and for a refused
/// request every problem, each naming its field.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub error: String,
    /// Stable machine code: `invalid`, `not_found`, `conflict`, `forbidden`, `mfa_required`, …
    /// (empty when a proxy answered in the same shape without one).
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub detail: Option<ErrorDetail>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ErrorDetail {
    /// One line per problem, each starting with the field it is about.
    pub problems: Vec<String>,
}
