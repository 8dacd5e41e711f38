//! kanade-backend as a library, so integration tests build the real router and start-up.
//! `main.rs` only parses arguments and calls in here.

pub mod auth;
pub mod backup;
pub mod boot;
pub mod broker;
pub mod buckets;
pub mod callout;
pub mod cleanup;
pub mod db;
pub mod dynamic_groups;
pub mod enroll;
pub mod events;
pub mod failpoint;
pub mod fleet;
pub mod http;
pub mod lease;
pub mod pipeline;
pub mod presence;
pub mod projector;
pub mod scheduler;
pub mod workers;
