//! kanade-agent as a library: the binary, the integration tests and the fleet simulator all drive
//! the same intake, ledger, gates, executor and outbox.

pub mod budget;
pub mod exec;
pub mod gates;
pub mod inventory;
pub mod local_ipc;
pub mod logfile;
pub mod memory;
pub mod runtime;
pub mod store;
pub mod testfault;
pub mod update;
