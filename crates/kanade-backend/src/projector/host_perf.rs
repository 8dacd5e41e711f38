//! Host performance samples arrive on core NATS (`host_perf.*`), one per agent per interval:
//! buffered and written in one transaction per second (or per 2,000 samples), like heartbeats.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kanade_shared::subjects;
use kanade_shared::wire::{self, HostPerf};
use tokio::sync::watch;

use super::Projectors;

const FLUSH_EVERY: Duration = Duration::from_secs(1);
const FLUSH_AT: usize = 2000;

pub async fn host_perf_projector(
    p: Arc<Projectors>,
    client: async_nats::Client,
    mut stop: watch::Receiver<bool>,
) {
    // Backends sharing a database share the samples too: each reaches one of them.
    let sub = if p.db.shared() {
        client.queue_subscribe(subjects::HOST_PERF_ALL, "kanade-backend-host-perf".into()).await
    } else {
        client.subscribe(subjects::HOST_PERF_ALL).await
    };
    let mut sub = match sub {
        Ok(sub) => sub,
        Err(e) => {
            tracing::error!(error = %e, "cannot subscribe to host performance samples; none will be kept");
            return;
        }
    };
    let mut pending: Vec<HostPerf> = Vec::new();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    loop {
        tokio::select! {
            Some(msg) = sub.next() => {
                match wire::decode::<HostPerf>(&msg.payload) {
                    Ok(sample) if msg.subject.as_str() == subjects::host_perf(&sample.pc_id) => pending.push(sample),
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
        if let Err(e) = p.db.apply_host_perf(samples).await {
            tracing::warn!(error = %e, "cannot write host performance samples; these are lost");
        }
    }
}
