//! Heartbeats arrive on core NATS (`heartbeat.*`), thousands per interval: buffered and written
//! in one transaction per second (or per 2,000 beats), newest beat per pc wins.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use kanade_shared::subjects;
use kanade_shared::wire::{self, Heartbeat};
use tokio::sync::watch;

use super::Projectors;
use crate::db::now_ms;

const FLUSH_EVERY: Duration = Duration::from_secs(1);
const FLUSH_AT: usize = 2000;

pub async fn heartbeat_projector(
    p: Arc<Projectors>,
    client: async_nats::Client,
    mut stop: watch::Receiver<bool>,
) {
    let lost = "agents will show as offline";
    let subscribed =
        super::core_subscription(&p, &client, subjects::HEARTBEAT_ALL, "kanade-backend-heartbeats", lost)
            .await;
    let Some(mut sub) = subscribed else { return };
    let mut pending: HashMap<String, Heartbeat> = HashMap::new();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    loop {
        tokio::select! {
            Some(msg) = sub.next() => {
                match wire::decode::<Heartbeat>(&msg.payload) {
                    Ok(beat) if msg.subject.as_str() == subjects::heartbeat(&beat.pc_id) => {
                        pending.insert(beat.pc_id.to_string(), beat);
                    }
                    Ok(beat) => tracing::warn!(subject = %msg.subject, pc_id = %beat.pc_id, "heartbeat on another pc's subject; ignored"),
                    Err(e) => tracing::warn!(subject = %msg.subject, error = %e, "malformed heartbeat; ignored"),
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
        let beats: Vec<Heartbeat> = pending.drain().map(|(_, b)| b).collect();
        let n = beats.len() as u64;
        let now = now_ms();
        match p.db.apply_heartbeats(beats, now, p.offline_after_ms).await {
            Ok(()) => {
                p.stats.heartbeats.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot write heartbeats; the next ones will refresh these agents")
            }
        }
    }
}
