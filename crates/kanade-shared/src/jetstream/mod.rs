//! JetStream resources: what kanade needs on the broker ([`resources`]), creating or updating
//! them idempotently ([`bootstrap`]), and reporting their usage ([`status`]).
//! The definitions and the drift check are pure; only `bootstrap` and `status` talk to NATS.

pub mod bootstrap;
pub mod resources;
pub mod status;

pub use bootstrap::{BootstrapError, Outcome, Report, ensure_jetstream_resources};
pub use resources::{Resource, ResourceKind, definitions, drift, reserved_bytes};
pub use status::{ResourceStatus, jetstream_status};

/// KV bucket: exec id -> why it was killed. Written by the backend when an operator kills an
/// execution; read (one key, by direct get) by agents before starting a run that came back
/// through catch-up, after a restart, or after a jitter wait.
pub const EXEC_KILLS: &str = "exec_kills";
