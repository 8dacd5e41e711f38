//! Performance samples arrive on core NATS, one per agent per interval: host performance on
//! `host_perf.*`, investigation mode's process tables on `process_perf.*`. Each kind is buffered
//! and written in one transaction per second (or per 2,000 samples), like heartbeats. Stored
//! under the backend's receipt time, at most one per PC per `MIN_SPACING_MS` and trimmed to a
//! bounded size, so no sender (nor a wrong clock) can make a table grow faster than the 1 s
//! minimum interval allows.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kanade_shared::wire::{self, HostPerf, ProcessPerf};
use kanade_shared::{PcId, subjects};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::Projectors;
use crate::db::{Db, DbError};

const FLUSH_EVERY: Duration = Duration::from_secs(1);
const FLUSH_AT: usize = 2000;
/// Agents sample at most once a second; anything closer is dropped.
pub const MIN_SPACING_MS: i64 = 900;
pub const MAX_DISKS: usize = 64;
/// Twice the largest top N (by CPU and by memory, `agent_config::MAX_TOP_N` each).
pub const MAX_PROCESSES: usize = 200;

/// The longest name kept, in bytes (cut on a character boundary).
pub const MAX_NAME: usize = 256;

/// Cut `s` to at most `max` bytes without splitting a character.
pub fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// Keep a sample received at `now_ms` from a PC last kept at `last_ms`?
pub fn keep(last_ms: Option<i64>, now_ms: i64) -> bool {
    last_ms.is_none_or(|last| now_ms - last >= MIN_SPACING_MS)
}

/// One kind of sample: where it arrives and how it is checked.
struct Kind<T> {
    all: &'static str,
    queue: &'static str,
    /// What the log calls it.
    what: &'static str,
    subject: fn(&PcId) -> String,
    pc: fn(&T) -> &PcId,
    /// Bound what one sample may hold.
    trim: fn(&mut T),
}

pub async fn host_perf_projector(
    p: Arc<Projectors>,
    client: async_nats::Client,
    stop: watch::Receiver<bool>,
) {
    let kind = Kind {
        all: subjects::HOST_PERF_ALL,
        queue: "kanade-backend-host-perf",
        what: "host performance sample",
        subject: subjects::host_perf,
        pc: |s: &HostPerf| &s.pc_id,
        trim: |s: &mut HostPerf| {
            s.disks.truncate(MAX_DISKS);
            s.disks.iter_mut().for_each(|d| cut(&mut d.name, MAX_NAME));
        },
    };
    project(p, client, stop, kind, |db: Db, batch| async move { db.apply_host_perf(batch).await }).await
}

pub async fn process_perf_projector(
    p: Arc<Projectors>,
    client: async_nats::Client,
    stop: watch::Receiver<bool>,
) {
    let kind = Kind {
        all: subjects::PROCESS_PERF_ALL,
        queue: "kanade-backend-process-perf",
        what: "process sample",
        subject: subjects::process_perf,
        pc: |s: &ProcessPerf| &s.pc_id,
        trim: |s: &mut ProcessPerf| {
            s.processes.truncate(MAX_PROCESSES);
            s.processes.iter_mut().for_each(|p| cut(&mut p.name, MAX_NAME));
        },
    };
    project(p, client, stop, kind, |db: Db, batch| async move { db.apply_process_perf(batch).await }).await
}

async fn project<T, F, Fut>(
    p: Arc<Projectors>,
    client: async_nats::Client,
    mut stop: watch::Receiver<bool>,
    kind: Kind<T>,
    apply: F,
) where
    T: DeserializeOwned,
    F: Fn(Db, Vec<(i64, T)>) -> Fut,
    Fut: Future<Output = Result<(), DbError>>,
{
    let lost = format!("no {} will be kept", kind.what);
    let Some(mut sub) = super::core_subscription(&p, &client, kind.all, kind.queue, &lost).await else {
        return;
    };
    let mut pending: Vec<(i64, T)> = Vec::new();
    let mut last_kept: HashMap<PcId, i64> = HashMap::new();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    loop {
        tokio::select! {
            Some(msg) = sub.next() => {
                match wire::decode::<T>(&msg.payload) {
                    Ok(mut sample) if msg.subject.as_str() == (kind.subject)((kind.pc)(&sample)) => {
                        let now = crate::db::now_ms();
                        let pc = (kind.pc)(&sample).clone();
                        if keep(last_kept.get(&pc).copied(), now) {
                            last_kept.insert(pc, now);
                            (kind.trim)(&mut sample);
                            pending.push((now, sample));
                        }
                    }
                    Ok(sample) => tracing::warn!(subject = %msg.subject, pc_id = %(kind.pc)(&sample), "{} on another pc's subject; ignored", kind.what),
                    Err(e) => tracing::warn!(subject = %msg.subject, error = %e, "malformed {}; ignored", kind.what),
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
        if let Err(e) = apply(p.db.clone(), samples).await {
            tracing::warn!(error = %e, "cannot write {}s; these are lost", kind.what);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cut_on_a_character_boundary() {
        let mut name = "é".repeat(200); // 400 bytes, 2 per character
        cut(&mut name, 255);
        assert_eq!(name.len(), 254);
        let mut short = "svchost.exe".to_owned();
        cut(&mut short, MAX_NAME);
        assert_eq!(short, "svchost.exe");
    }

    #[test]
    fn samples_closer_than_the_minimum_interval_are_dropped() {
        assert!(keep(None, 5));
        assert!(!keep(Some(1_000), 1_000 + MIN_SPACING_MS - 1));
        assert!(keep(Some(1_000), 1_000 + MIN_SPACING_MS));
    }
}
