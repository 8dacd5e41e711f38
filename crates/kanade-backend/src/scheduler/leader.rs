//! One backend fires schedules: the holder of the `leader` key in the `scheduler_leader`
//! bucket. The bucket's max age (30 s) is the lease TTL; the holder rewrites the key every
//! `TTL / 3` with a compare-and-set on its revision, and stops calling itself leader as soon as
//! one renewal fails, well before the key expires and another backend can take it.

use std::time::Duration;

use async_nats::jetstream::kv::Store;
use tokio::sync::watch;

const KEY: &str = "leader";

/// A holder renews every `TTL / 3`, so one lost renewal still leaves time for the next.
pub fn renew_every(ttl: Duration) -> Duration {
    ttl / 3
}

/// A candidate tries often: the takeover delay after a leader dies is the TTL plus this.
const CANDIDATE_RETRY: Duration = Duration::from_secs(1);

/// Campaign until `stop`: `is_leader` says whether this instance may fire right now.
pub async fn campaign(
    kv: Store,
    instance: String,
    ttl: Duration,
    is_leader: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut revision: Option<u64> = None;
    loop {
        let attempt = match revision {
            Some(rev) => kv.update(KEY, instance.clone().into(), rev).await.map_err(|e| e.to_string()),
            None => kv.create(KEY, instance.clone().into()).await.map_err(|e| e.to_string()),
        };
        let was = revision.is_some();
        revision = attempt.ok();
        if revision.is_some() != was {
            if revision.is_some() {
                tracing::info!(instance, "this backend now fires schedules (scheduler leader)");
            } else {
                tracing::warn!(instance, "scheduler leadership lost; another backend fires schedules");
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
        if let Err(e) = kv.delete_expect_revision(KEY, Some(rev)).await {
            tracing::warn!(error = %e, "cannot release the scheduler lease; it expires on its own");
        }
    }
}
