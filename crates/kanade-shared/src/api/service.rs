//! The service itself: health, probes, the backbone's usage, the command key.

use serde::{Deserialize, Serialize};

/// `GET /health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Health {
    /// `ok`.
    pub status: String,
    pub version: String,
    /// `connected`, `disconnected` or `connecting`.
    pub nats: String,
}

/// `GET /livez` and `GET /readyz` when they pass.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Probe {
    /// `ok` (live) or `ready`.
    pub status: String,
}

/// One stream, KV bucket or object store of the backbone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ResourceStatus {
    /// `stream`, `kv` or `object_store`.
    pub kind: String,
    pub name: String,
    pub stream: String,
    /// False when the resource does not exist yet (run `kanade jetstream setup`).
    pub present: bool,
    pub messages: u64,
    pub bytes: u64,
    /// -1 = unlimited.
    pub max_bytes: i64,
    pub max_age: String,
    pub max_messages_per_subject: i64,
    pub consumers: usize,
}

/// `GET /api/signing-key`: the command key's public half.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SigningKey {
    pub public_key: String,
    /// The agent.toml lines that trust it.
    pub config: String,
}
