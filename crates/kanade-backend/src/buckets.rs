//! The KV buckets this backend reads and writes, each opened once and kept.
//!
//! Opening a bucket asks the broker for its stream's info, and only the stream's leader
//! answers that. Reading through a kept handle is a direct get, which the leader and every
//! follower that has applied a write since it started answer: an exec right after a cluster
//! lost a node reads the job catalog while the buckets the dead node led are still electing a
//! new leader (there the open waited out the request timeout and the exec failed as "broker
//! unavailable"), and an exec makes three broker round trips fewer. A handle keeps the names
//! and the read mode its bucket had when opened; this backend sets both itself when it starts
//! (`ensure_jetstream_resources`), and only ever turns direct gets on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_nats::jetstream::{self, context::KeyValueError, kv};

/// What an exec reads or writes, opened when the backend starts.
pub const EXEC_READS: [&str; 4] =
    ["jobs", "script_status", "script_current", kanade_shared::jetstream::EXEC_KILLS];

#[derive(Clone)]
pub struct Buckets {
    js: jetstream::Context,
    open: Arc<Mutex<HashMap<String, kv::Store>>>,
}

impl Buckets {
    pub fn new(js: jetstream::Context) -> Self {
        Self { js, open: Arc::default() }
    }

    /// `name`'s handle, opened on first use.
    pub async fn get(&self, name: &str) -> Result<kv::Store, KeyValueError> {
        if let Some(store) = self.lock().get(name) {
            return Ok(store.clone());
        }
        // Two first uses at once both open it; either handle serves.
        let store = self.js.get_key_value(name).await?;
        self.lock().insert(name.to_owned(), store.clone());
        Ok(store)
    }

    /// Whether `name` is open already (nothing is asked of the broker).
    pub fn is_open(&self, name: &str) -> bool {
        self.lock().contains_key(name)
    }

    /// Open `names` now; one that cannot be opened is logged and opened on first use.
    pub async fn open_ahead(&self, names: impl IntoIterator<Item = &str>) {
        for name in names {
            if let Err(e) = self.get(name).await {
                tracing::warn!(bucket = name, error = %e, "cannot open a KV bucket yet; opened when first used");
            }
        }
    }

    /// The largest message the broker takes (a value must fit with its headers).
    pub fn max_payload(&self) -> usize {
        self.js.client().max_payload()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, kv::Store>> {
        // The map is only ever inserted into whole; a panic elsewhere leaves it usable.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}
