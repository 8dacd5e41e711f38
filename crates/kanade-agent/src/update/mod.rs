//! Self-update. `policy.rs` decides (install or not, waits, digest check), `stamp.rs` knows the
//! binary's own version and target, `install.rs` stages and swaps files, `boot.rs` applies the
//! boot sentinel before the runtime starts, and `follow.rs` is the runtime task that watches
//! `target_version` and drives an install.

pub mod boot;
pub mod install;
pub mod policy;
pub mod stamp;
