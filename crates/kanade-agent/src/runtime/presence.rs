//! Heartbeats on `heartbeat.<pc>`, the ping responder on `agents.<pc>.ping` (the reply is a
//! fresh heartbeat), and inventory on `inventory.<pc>` at start and then every interval.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::StreamExt;
use kanade_shared::subjects;
use kanade_shared::wire::{self, Heartbeat, Timestamp};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use super::Ctx;

pub(crate) async fn heartbeat_loop(ctx: Arc<Ctx>) {
    let mut stop = ctx.shutdown.clone();
    let mut probe = Probe::new();
    let mut live = ctx.live_config.subscribe();
    let mut reconnects = kanade_shared::nats::Reconnects::new(ctx.connects.clone());
    let interval = |c: &kanade_shared::wire::AgentConfigPatch| {
        c.heartbeat_interval
            .map_or(ctx.settings.heartbeat_interval, |d| d.get())
            .max(std::time::Duration::from_millis(100))
    };
    let mut period = interval(&live.borrow_and_update());
    let mut tick = spread_ticks(period, fastrand::f64());
    // The first beat goes out at once, not at the ticks' random start.
    ctx.beat_now.notify_one();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = ctx.beat_now.notified() => {}
            // Back after an outage: say so now rather than up to an interval later, spread over
            // a second so a fleet coming back together does not beat in the same instant.
            () = reconnects.next() => {
                tokio::time::sleep(std::time::Duration::from_millis(fastrand::u64(0..1_000))).await;
            }
            Ok(()) = live.changed() => {
                let next = interval(&live.borrow_and_update());
                if next != period {
                    tracing::info!(?next, "heartbeat interval changed");
                    period = next;
                    tick = spread_ticks(period, fastrand::f64());
                    ctx.beat_now.notify_one();
                }
                continue;
            }
            () = super::stopped(&mut stop) => return,
        }
        let beat = heartbeat(&ctx, &mut probe).await;
        if let Ok(payload) = wire::encode(&beat) {
            // Core NATS: a heartbeat lost during an outage is replaced by the next one.
            if ctx.client.publish(subjects::heartbeat(&ctx.settings.pc), payload.into()).await.is_ok()
                && ctx.beats_sent.fetch_add(1, Ordering::Relaxed) == 0
                && crate::testfault::dies_after_up(&ctx.version)
            {
                let _ = ctx.client.flush().await;
                crate::testfault::die_after_up(&ctx.version);
            }
        }
    }
}

/// Ticks every `period`, the first at a random point within one period (`unit` of it, drawn
/// from [0, 1)). Agents that start (or
/// take a new interval) together would otherwise beat together ever after: a fleet booted at
/// once, or 10,000 simulated agents started in a few seconds, then sends its heartbeats as one
/// burst a period instead of evenly.
fn spread_ticks(period: std::time::Duration, unit: f64) -> tokio::time::Interval {
    let first = tokio::time::Instant::now() + phase(period, unit);
    let mut tick = tokio::time::interval_at(first, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// How far into a period the ticks start, for `unit` in [0, 1).
fn phase(period: std::time::Duration, unit: f64) -> std::time::Duration {
    period.mul_f64(unit.clamp(0.0, 1.0))
}

pub(crate) async fn ping_responder(ctx: Arc<Ctx>) {
    let mut stop = ctx.shutdown.clone();
    let mut sub = match ctx.client.subscribe(subjects::ping(&ctx.settings.pc)).await {
        Ok(sub) => sub,
        Err(e) => {
            tracing::error!(error = %e, "cannot subscribe to pings");
            return;
        }
    };
    let mut probe = Probe::new();
    loop {
        let msg = tokio::select! {
            msg = sub.next() => match msg { Some(m) => m, None => return },
            () = super::stopped(&mut stop) => return,
        };
        let Some(reply) = msg.reply else { continue };
        let beat = heartbeat(&ctx, &mut probe).await;
        if let Ok(payload) = wire::encode(&beat) {
            let _ = ctx.client.publish(reply, payload.into()).await;
        }
    }
}

async fn heartbeat(ctx: &Ctx, probe: &mut Probe) -> Heartbeat {
    let (rss, cpu) = probe.sample();
    let update = {
        let view = ctx.update.lock().unwrap();
        super::UpdateView { boot: view.boot.clone(), status: view.status.clone() }
    };
    Heartbeat {
        schema: wire::SCHEMA,
        pc_id: ctx.settings.pc.clone(),
        hostname: System::host_name().unwrap_or_default(),
        os: crate::inventory::os_info(),
        arch: std::env::consts::ARCH.to_owned(),
        agent_version: ctx.version.clone(),
        groups: ctx.groups.read().await.clone(),
        at: Timestamp::now_utc(),
        uptime_secs: ctx.started.elapsed().as_secs(),
        agent_rss_bytes: rss,
        agent_cpu_pct: cpu,
        running_jobs: ctx.running.load(Ordering::Relaxed),
        quarantined: update.boot.quarantined,
        update_status: update.status,
    }
}

/// The agent's own memory and CPU use, refreshed for this process only (cheap).
struct Probe {
    system: System,
    pid: Option<Pid>,
}

impl Probe {
    fn new() -> Self {
        // sysinfo keeps each probed process's `/proc/<pid>/stat` open (up to half the fd limit)
        // to save an open per refresh. A heartbeat is seconds apart, and a simulator running
        // thousands of agents in one process ran out of descriptors for their sockets.
        static NO_CACHED_FILES: std::sync::Once = std::sync::Once::new();
        NO_CACHED_FILES.call_once(|| {
            sysinfo::set_open_files_limit(0);
        });
        Self { system: System::new(), pid: sysinfo::get_current_pid().ok() }
    }

    fn sample(&mut self) -> (u64, f32) {
        let Some(pid) = self.pid else { return (0, 0.0) };
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            true,
            // `nothing()` still lists the process's threads (`/proc/<pid>/task`): 41.7 → 34.4 µs a
            // sample with 4 threads, 57.8 → 35.3 µs with 40, without it.
            ProcessRefreshKind::nothing().with_memory().with_cpu().without_tasks(),
        );
        self.system.process(pid).map_or((0, 0.0), |p| (p.memory(), p.cpu_usage()))
    }
}

/// Inventory at start, then every interval plus a random share of the jitter so a fleet does not
/// report in the same second. Sent through the outbox, so a report made offline still arrives.
pub(crate) async fn inventory_loop(ctx: Arc<Ctx>) {
    let Some((default_interval, jitter)) = ctx.settings.inventory else { return };
    let mut stop = ctx.shutdown.clone();
    let mut live = ctx.live_config.subscribe();
    loop {
        let pc = ctx.settings.pc.clone();
        match tokio::task::spawn_blocking(move || crate::inventory::collect(&pc)).await {
            Ok(inventory) => {
                let message = crate::store::Outgoing {
                    seq: 0,
                    msg_id: format!(
                        "inventory-{}-{}.{}",
                        ctx.settings.pc,
                        inventory.collected_at.unix_timestamp(),
                        ctx.msg_secret
                    ),
                    subject: subjects::inventory(&ctx.settings.pc),
                    payload: wire::encode(&inventory).unwrap_or_default(),
                };
                match ctx.store.enqueue(&message) {
                    Ok(()) => ctx.outbox_wake.notify_one(),
                    Err(e) => tracing::warn!(error = %e, "cannot queue inventory"),
                }
                drop((inventory, message));
                let _ = tokio::task::spawn_blocking(|| {
                    crate::memory::release_freed();
                    crate::memory::drop_cold_code();
                })
                .await;
            }
            Err(e) => tracing::error!(error = %e, "inventory collection failed"),
        }
        let interval = live.borrow_and_update().inventory_interval.map_or(default_interval, |d| d.get());
        let wait = interval + std::time::Duration::from_millis(fastrand::u64(0..=jitter.as_millis() as u64));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = super::stopped(&mut stop) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_start_anywhere_within_one_period() {
        let period = std::time::Duration::from_secs(30);
        let cases = [
            (0.0, std::time::Duration::ZERO),
            (0.5, std::time::Duration::from_secs(15)),
            (0.999, std::time::Duration::from_millis(29_970)),
            // Out of range is held to the period.
            (-1.0, std::time::Duration::ZERO),
            (2.0, period),
        ];
        for (unit, want) in cases {
            assert_eq!(phase(period, unit), want, "at {unit}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_ticks_start_at_their_phase_then_come_one_a_period() {
        let period = std::time::Duration::from_secs(30);
        for (unit, phase) in [(0.0, 0), (0.25, 7_500), (0.9, 27_000)] {
            let start = tokio::time::Instant::now();
            let mut tick = spread_ticks(period, unit);
            let first = tick.tick().await;
            assert_eq!(first - start, std::time::Duration::from_millis(phase), "at {unit}");
            assert_eq!(tick.tick().await - first, period, "at {unit}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn probes_do_not_hold_proc_files_open() {
        let stat = format!("/proc/{}/stat", std::process::id());
        let mut probes: Vec<Probe> = (0..20).map(|_| Probe::new()).collect();
        for p in &mut probes {
            let (memory, _) = p.sample();
            assert!(memory > 0, "the probe read no memory figure");
        }
        let held = std::fs::read_dir("/proc/self/fd")
            .expect("list own fds")
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target.to_str() == Some(stat.as_str()))
            .count();
        assert_eq!(held, 0, "{held} descriptors of {stat} held by {} probes", probes.len());
    }
}
