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
mod wait;
pub mod wine;

pub use browser::{Browser, Element};
pub use cluster::NatsCluster;
pub use gate::Gate;
pub use nats::{NatsServer, free_port};
pub use postgres::PgCluster;
pub use wait::{process_running, wait_until, wait_until_async};
