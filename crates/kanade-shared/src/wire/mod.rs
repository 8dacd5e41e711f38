//! Wire types: the JSON bodies that travel over NATS.
//!
//! Readers are tolerant: unknown fields are ignored and unknown enum values become `Unknown`, so
//! an old agent keeps working against a newer backend. Writers are strict: every field is written
//! and an `Unknown` enum value that only exists to absorb newer input cannot be serialized.
//! Each type carries `schema` (currently 1) so a reader can tell a future shape apart.
//! Golden payloads under `test-data/wire/` pin the shapes.

pub mod agent_config;
mod audit;
pub mod checks;
mod command;
pub mod enroll;
mod event;
pub mod facts;
pub mod freeze;
mod heartbeat;
mod host_perf;
mod inventory;
pub mod live;
pub mod notification;
pub mod obs;
mod query;
mod result;

pub use agent_config::{AgentConfigPatch, AgentGroups};
pub use audit::AuditEvent;
pub use checks::{CheckDetail, CheckPc, CheckSummary, Checks};
pub use command::{
    Command, DEFAULT_TIMEOUT, Emit, IssuedView, Retry, RunAs, Shell, Staleness, StalenessMode,
};
pub use event::StartedEvent;
pub use facts::{FactDocument, FactDocuments, FactRows, FactTable, FactTables};
pub use heartbeat::{Heartbeat, OsInfo};
pub use host_perf::{
    DiskPerf, HostPerf, PerfSample, PerfSamples, ProcessPerf, ProcessSample, ProcessSamples, ProcessStat,
    top_processes,
};
pub use inventory::{Cpu, Disk, Hardware, Inventory, NetworkInterface, Software};
pub use live::{
    ChunkStream, LogCursor, LogReply, LogRequest, OutputChunk, TailEvent, TailReply, TailRequest,
};
pub use notification::{
    AckBy, Notification, NotificationDetail, NotificationMessage, NotificationPc, NotificationSent,
    NotificationSummary, NotificationTarget, Notifications, NotifyAck, Priority, SendNotification,
    TargetRequest, Withdrawal,
};
pub use obs::{ObsEvent, ObsEventRow, ObsEvents};
pub use query::{QueryAnswer, QueryRequest};
pub use result::{ExecResult, ExecStatus, SkipReason, Stream as OutputStream};

pub use time::OffsetDateTime as Timestamp;

/// The schema number every writer stamps today.
pub const SCHEMA: u32 = 1;

pub(crate) fn schema_v1() -> u32 {
    SCHEMA
}

/// Parse a wire body, naming the type and the JSON path of the first bad field.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    // Tracking the path costs every message (the projectors decode 100,000s of them); only a
    // body that fails is parsed a second time to say where.
    if let Ok(value) = T::deserialize(&mut serde_json::Deserializer::from_slice(bytes)) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| DecodeError {
        type_name: std::any::type_name::<T>().rsplit("::").next().unwrap_or("message"),
        path: e.path().to_string(),
        message: e.into_inner().to_string(),
    })
}

/// Serialize a wire body. Fails only for values a strict writer must not send (an `Unknown`).
pub fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(value)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {type_name} at `{path}`: {message}")]
pub struct DecodeError {
    pub type_name: &'static str,
    pub path: String,
    pub message: String,
}

#[cfg(test)]
mod golden;
