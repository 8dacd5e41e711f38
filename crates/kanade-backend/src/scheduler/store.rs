//! The schedules every backend knows: a full snapshot of KV `schedules` at start, then every
//! change as it happens (an empty bucket is simply no schedules). A stored schedule that no
//! longer validates is logged with its problems and left out, never fired half-understood.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::kv::{Operation, Store};
use futures::StreamExt;
use kanade_shared::manifest::{self, Schedule};
use tokio::sync::{Notify, watch};

#[derive(Clone, Default)]
pub struct Schedules {
    inner: Arc<RwLock<BTreeMap<String, Schedule>>>,
    changed: Arc<Notify>,
}

impl Schedules {
    pub fn snapshot(&self) -> Vec<Schedule> {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// Resolves at the next change (create, edit, delete).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    fn apply(&self, key: &str, value: Option<Schedule>) {
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        match value {
            Some(s) => map.insert(key.to_owned(), s),
            None => map.remove(key),
        };
        drop(map);
        self.changed.notify_waiters();
    }
}

/// Follow the bucket until `stop`, re-watching (with its history) after any error.
pub async fn follow(kv: Store, schedules: Schedules, mut stop: watch::Receiver<bool>) {
    loop {
        match kv.watch_with_history(">").await {
            Ok(mut watch) => loop {
                let entry = tokio::select! {
                    e = watch.next() => e,
                    _ = stop.wait_for(|s| *s) => return,
                };
                let Some(Ok(entry)) = entry else { break };
                let value = match entry.operation {
                    Operation::Put => match manifest::schedule_from_json(&entry.value) {
                        Ok(s) => Some(s),
                        Err(p) => {
                            tracing::error!(schedule = entry.key, problems = %p, "stored schedule does not validate; not firing it");
                            None
                        }
                    },
                    Operation::Delete | Operation::Purge => None,
                };
                schedules.apply(&entry.key, value);
            },
            Err(e) => tracing::warn!(error = %e, "cannot watch the schedules bucket; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
