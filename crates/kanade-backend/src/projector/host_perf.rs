//! Host performance samples arrive on core NATS (`host_perf.*`), one per agent per interval:
//! buffered and written in one transaction per second (or per 2,000 samples), like heartbeats.
//! Stored under the backend's receipt time, at most one per PC per `MIN_SPACING_MS` and with at
//! most `MAX_DISKS` disks, so no sender (nor a wrong clock) can make the table grow faster than
//! the 1 s minimum interval allows.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kanade_shared::subjects;
use kanade_shared::wire::{self, HostPerf};
use tokio::sync::watch;

use super::Projectors;

const FLUSH_EVERY: Duration = Duration::from_secs(1);
const FLUSH_AT: usize = 2000;
/// Agents sample at most once a second; anything closer is dropped.
pub const MIN_SPACING_MS: i64 = 900;
pub const MAX_DISKS: usize = 64;

/// Keep a sample received at `now_ms` from a PC last kept at `last_ms`?
pub fn keep(last_ms: Option<i64>, now_ms: i64) -> bool {
    last_ms.is_none_or(|last| now_ms - last >= MIN_SPACING_MS)
}

pub async fn host_perf_projector(
    p: Arc<Projectors>,
    client: async_nats::Client,
    mut stop: watch::Receiver<bool>,
) {
    let lost = "no host performance sample will be kept";
    let subscribed =
        super::core_subscription(&p, &client, subjects::HOST_PERF_ALL, "kanade-backend-host-perf", lost)
            .await;
    let Some(mut sub) = subscribed else { return };
    let mut pending: Vec<(i64, HostPerf)> = Vec::new();
    let mut last_kept: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    loop {
        tokio::select! {
            Some(msg) = sub.next() => {
                match wire::decode::<HostPerf>(&msg.payload) {
                    Ok(mut sample) if msg.subject.as_str() == subjects::host_perf(&sample.pc_id) => {
                        let now = crate::db::now_ms();
                        let last = last_kept.get(sample.pc_id.as_str()).copied();
                        if keep(last, now) {
                            last_kept.insert(sample.pc_id.to_string(), now);
                            sample.disks.truncate(MAX_DISKS);
                            pending.push((now, sample));
                        }
                    }
                    Ok(sample) => tracing::warn!(subject = %msg.subject, pc_id = %sample.pc_id, "host performance sample on another pc's subject; ignored"),
                    Err(e) => tracing::warn!(subject = %msg.subject, error = %e, "malformed host performance sample; ignored"),
                }
                if pending.len() < FLUSH_AT {
                    continue;
                }
            }
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if pending.is_empty() {
            continue;
        }
        let samples = std::mem::take(&mut pending);
        // Only the last few seconds matter for spacing: the map stays the size of the senders.
        let now = crate::db::now_ms();
        last_kept.retain(|_, at| now - *at < 10_000);
        if let Err(e) = p.db.apply_host_perf(samples).await {
            tracing::warn!(error = %e, "cannot write host performance samples; these are lost");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_closer_than_the_minimum_interval_are_dropped() {
        assert!(keep(None, 5));
        assert!(!keep(Some(1_000), 1_000 + MIN_SPACING_MS - 1));
        assert!(keep(Some(1_000), 1_000 + MIN_SPACING_MS));
    }
}
