//! Test support: a real `nats-server` with JetStream per test, a real headless Chromium for the
//! dashboard, and waiting on conditions with a deadline instead of bare sleeps.
//!
//! **Invariant:** no mock broker. Every test that touches NATS gets its own server on a free
//! loopback port with its own store directory, killed when the handle drops.

mod browser;
mod cluster;
mod gate;
pub mod http;
mod nats;
pub mod pki;
mod postgres;
pub mod proc;
mod wait;
pub mod wine;

pub use browser::{Browser, Element};
pub use cluster::NatsCluster;
pub use gate::Gate;
pub use nats::{NatsServer, free_port};
pub use postgres::PgCluster;
pub use wait::{process_running, wait_until, wait_until_async};

/// The running test's package directory, read when it runs: a test binary that another clone
/// built into the same target dir (see `scripts/lib.sh`) must read this clone's files, not the
/// ones `env!("CARGO_MANIFEST_DIR")` baked in.
pub fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .expect("CARGO_MANIFEST_DIR is set by cargo when it runs tests")
        .into()
}
