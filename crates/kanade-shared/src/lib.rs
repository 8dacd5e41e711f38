//! kanade-shared: the contract every kanade binary speaks.
//!
//! Identifiers, wire types, subjects, JetStream resource definitions, the manifest / plan /
//! schedule schema with validation, and configuration loading.
//!
//! **Invariant:** nothing here reads the process environment or the clock deep inside a decision;
//! callers inject them (see [`config::Environment`]), so every rule is testable.

pub mod api;
pub mod binary;
pub mod boot;
pub mod config;
pub mod duration;
pub mod files;
pub mod ids;
pub mod jetstream;
pub mod logging;
pub mod manifest;
pub mod nats;
pub mod problems;
pub mod release;
pub mod rule;
pub mod secrets;
pub mod service;
pub mod shutdown;
pub mod signing;
pub mod subjects;
pub mod tls;
pub mod wire;

pub use duration::HumanDuration;
pub use ids::{
    AuditId, ExecId, GroupName, IdError, JobId, NotificationId, PcId, RequestId, ResultId, ScheduleId,
    Version,
};
