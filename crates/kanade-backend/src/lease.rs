//! One backend leads: the holder of the `leader` key in the `scheduler_leader` bucket (named
//! after its first duty). The leader fires schedules, publishes due rollout waves and expires
//! stalled executions; with a shared database (Postgres) it also runs the stream projectors.
//! The bucket's max age (30 s) is the lease TTL; the holder rewrites the key every `TTL / 3`
//! with a compare-and-set on its revision, and stops calling itself leader as soon as one
//! renewal fails, well before the key expires and another backend can take it.

use std::time::Duration;

use async_nats::jetstream::{self, kv::Store};
use tokio::sync::watch;

/// The key of the broker-wide duties (schedules, waves, expiry).
pub const DUTIES: &str = "leader";

/// The key of one shared projection's projectors: backends of another database on the same
/// broker (an old SQLite backend during a move to Postgres) never hold it.
pub fn projection_key(projection_id: &str) -> String {
    format!("projection-{projection_id}")
}
pub const BUCKET: &str = "scheduler_leader";
const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// A name for this backend process in the lease and the logs.
pub fn instance_name() -> String {
    format!("backend-{}-{}", std::process::id(), &uuid::Uuid::now_v7().simple().to_string()[24..])
}

/// Open the lease bucket (retrying while the broker is not ready), then campaign for `key`
/// until `stop`.
pub async fn lead(
    js: jetstream::Context,
    key: String,
    instance: String,
    is_leader: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let kv = loop {
        match js.get_key_value(BUCKET).await {
            Ok(kv) => break kv,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the leader lease bucket; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
    };
    let ttl = kv.status().await.map(|s| s.max_age()).ok().filter(|d| !d.is_zero()).unwrap_or(DEFAULT_TTL);
    campaign(kv, &key, instance, ttl, is_leader, stop).await;
}

/// A holder renews every `TTL / 3`, so one lost renewal still leaves time for the next.
pub fn renew_every(ttl: Duration) -> Duration {
    ttl / 3
}

/// A candidate tries often: the takeover delay after a leader dies is the TTL plus this.
const CANDIDATE_RETRY: Duration = Duration::from_secs(1);

/// Campaign until `stop`: `is_leader` says whether this instance may fire right now.
pub async fn campaign(
    kv: Store,
    key: &str,
    instance: String,
    ttl: Duration,
    is_leader: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut revision: Option<u64> = None;
    loop {
        let attempt = match revision {
            Some(rev) => kv.update(key, instance.clone().into(), rev).await.map_err(|e| e.to_string()),
            None => kv.create(key, instance.clone().into()).await.map_err(|e| e.to_string()),
        };
        let was = revision.is_some();
        revision = match attempt {
            Ok(rev) => Some(rev),
            // A write whose answer was lost may still have landed: the key naming this instance
            // is still ours (otherwise the leader would lock itself out for a whole TTL).
            Err(_) => match kv.entry(key).await {
                Ok(Some(e)) if e.value.as_ref() == instance.as_bytes() => Some(e.revision),
                _ => None,
            },
        };
        if revision.is_some() != was {
            if revision.is_some() {
                tracing::info!(instance, lease = key, "this backend now leads");
            } else {
                tracing::warn!(instance, lease = key, "leadership lost; another backend leads");
            }
        }
        is_leader.send_replace(revision.is_some());
        let wait = if revision.is_some() { renew_every(ttl) } else { CANDIDATE_RETRY };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    // Hand over at once on a clean stop instead of making the others wait out the TTL.
    if let Some(rev) = revision {
        is_leader.send_replace(false);
        if let Err(e) = kv.delete_expect_revision(key, Some(rev)).await {
            tracing::warn!(error = %e, "cannot release the leader lease; it expires on its own");
        }
    }
}
