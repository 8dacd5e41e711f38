//! What the backend knows of the fleet, shared by the store (which reads it) and the
//! pipeline (which decides with it).

use kanade_shared::{GroupName, PcId};

/// An agent as the pipeline sees it.
#[derive(Debug, Clone)]
pub struct KnownAgent {
    pub pc: PcId,
    pub groups: Vec<GroupName>,
    pub last_seen_ms: i64,
}

/// Agents whose last heartbeat is at most this old count as alive.
pub const ALIVE_WINDOW_MS: i64 = 2 * 60 * 1000;
