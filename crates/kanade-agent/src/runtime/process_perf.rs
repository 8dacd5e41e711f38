//! Investigation mode (SPEC §12): while `process_perf_enabled` and before
//! `process_perf_expires_at`, the busiest processes (top N by CPU and by memory) on core
//! `process_perf.<pc>` every host-perf interval (60 s when host performance is off). Reading
//! every process costs far more than a host sample, so the process table is only read while an
//! investigation runs, and the mode ends at its expiry by itself, whether or not the broker or
//! an operator is there to end it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kanade_shared::subjects;
use kanade_shared::wire::{self, ProcessPerf, ProcessStat, Timestamp};
use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};

use super::Ctx;
use super::host_perf::{DEFAULT_INTERVAL, period};

fn read(system: &mut System) -> Vec<ProcessStat> {
    system.refresh_processes_specifics(
        ProcessesToUpdate::All,
        true,
        // Threads are never reported, so they are not listed either (`nothing()` lists each
        // process's `/proc/<pid>/task`): 1.57 → 0.74 ms a read with 6 processes and 42 threads.
        ProcessRefreshKind::nothing().with_cpu().with_memory().without_tasks(),
    );
    system
        .processes()
        .values()
        // Kernel threads are listed as processes on Linux.
        .filter(|p| p.thread_kind().is_none())
        .map(|p| ProcessStat {
            pid: p.pid().as_u32(),
            name: p.name().to_string_lossy().into_owned(),
            cpu_pct: p.cpu_usage().max(0.0),
            mem_bytes: p.memory(),
        })
        .collect()
}

pub(crate) async fn process_perf_loop(ctx: Arc<Ctx>) {
    let mut stop = ctx.shutdown.clone();
    let mut live = ctx.live_config.subscribe();
    // The process table of the last read (CPU use is measured between two reads) and when.
    let mut table: Option<(System, Instant)> = None;
    loop {
        let config = live.borrow_and_update().clone();
        let now = Timestamp::now_utc();
        let (Some(top_n), Some(until)) = (config.investigating(now), config.process_perf_expires_at) else {
            if table.take().is_some() {
                tracing::info!("investigation mode over: process sampling off");
            }
            tokio::select! {
                changed = live.changed() => if changed.is_err() { return },
                () = super::stopped(&mut stop) => return,
            }
            continue;
        };
        let every = period(&config).unwrap_or(DEFAULT_INTERVAL);
        let (system, last) = match table.take() {
            Some(t) => t,
            None => {
                tracing::info!(until = %until, top_n, every = ?every, "investigation mode: sampling processes");
                match tokio::task::spawn_blocking(|| {
                    let mut system = System::new();
                    read(&mut system);
                    system
                })
                .await
                {
                    Ok(system) => (system, Instant::now()),
                    Err(e) => {
                        // Tried again after an interval, not given up until the next restart.
                        tracing::warn!(error = %e, retry_in = ?every, "cannot read the process table");
                        tokio::select! {
                            () = tokio::time::sleep(every) => {}
                            () = super::stopped(&mut stop) => return,
                        }
                        continue;
                    }
                }
            }
        };
        let ends_in = Duration::try_from(until - now).unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep_until((last + every).into()) => {}
            // The expiry: the top of the loop turns sampling off.
            () = tokio::time::sleep(ends_in) => {
                table = Some((system, last));
                continue;
            }
            changed = live.changed() => {
                table = Some((system, last));
                if changed.is_err() { return }
                continue;
            }
            () = super::stopped(&mut stop) => return,
        }
        let read = tokio::task::spawn_blocking(move || {
            let mut system = system;
            let all = read(&mut system);
            (system, all)
        })
        .await;
        let Ok((system, all)) = read else {
            tracing::warn!("process sample failed");
            continue;
        };
        table = Some((system, Instant::now()));
        let sample = ProcessPerf {
            schema: wire::SCHEMA,
            pc_id: ctx.settings.pc.clone(),
            at: Timestamp::now_utc(),
            processes: wire::top_processes(all, top_n),
        };
        if let Ok(payload) = wire::encode(&sample) {
            // Core NATS, like host samples: one lost while the broker is away is not kept.
            let _ = ctx.client.publish(subjects::process_perf(&ctx.settings.pc), payload.into()).await;
        }
    }
}
