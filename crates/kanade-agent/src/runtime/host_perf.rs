//! Host performance samples on core `host_perf.<pc>` every `host_perf_interval` (SPEC §12;
//! `agent_config`, live; 60 s when no scope says, `0s` = off). Read through `sysinfo`, the same
//! crate the inventory uses, so Linux and Windows share one sampler. Rates are over the time
//! since the previous sample; the first sample after a start or a switch-on only primes the
//! counters and is not sent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kanade_shared::subjects;
use kanade_shared::wire::{self, AgentConfigPatch, DiskPerf, HostPerf, Timestamp};
use sysinfo::{CpuRefreshKind, Disks, MemoryRefreshKind, Networks, RefreshKind, System};

use super::Ctx;

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Shorter intervals are raised to this: a CPU figure needs some time between two reads.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// The sampling period a merged config asks for; `None` when sampling is off.
pub fn period(config: &AgentConfigPatch) -> Option<Duration> {
    match config.host_perf_interval.map(|d| d.get()) {
        None => Some(DEFAULT_INTERVAL),
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d.max(MIN_INTERVAL)),
    }
}

/// Traffic a host sends itself (`lo`, macOS `lo0`, Windows' "Loopback Pseudo-Interface 1") is not
/// network traffic: an agent beside its broker would otherwise show its own chatter.
pub fn is_loopback(interface: &str) -> bool {
    matches!(interface, "lo" | "lo0") || interface.to_ascii_lowercase().contains("loopback")
}

/// `bytes` over `elapsed`, per second.
pub fn per_second(bytes: u64, elapsed: Duration) -> u64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 { 0 } else { (bytes as f64 / secs).round() as u64 }
}

struct Sampler {
    system: System,
    networks: Networks,
    disks: Disks,
    last: Instant,
}

impl Sampler {
    /// Reads every counter once, so the next sample has something to compare with.
    fn primed() -> Self {
        let system = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_cpu_usage())
                .with_memory(MemoryRefreshKind::everything()),
        );
        Self {
            system,
            networks: Networks::new_with_refreshed_list(),
            disks: Disks::new_with_refreshed_list(),
            last: Instant::now(),
        }
    }

    fn sample(&mut self, pc: &kanade_shared::PcId) -> HostPerf {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        self.networks.refresh(true);
        self.disks.refresh(true);
        let now = Instant::now();
        let elapsed = now - self.last;
        self.last = now;
        let (rx, tx) = self
            .networks
            .iter()
            .filter(|(name, _)| !is_loopback(name))
            .fold((0u64, 0u64), |(rx, tx), (_, n)| (rx + n.received(), tx + n.transmitted()));
        let mut disks: Vec<DiskPerf> = Vec::new();
        for d in self.disks.list() {
            let name = d.name().to_string_lossy().into_owned();
            if disks.iter().any(|seen| seen.name == name) {
                continue; // the same device mounted twice
            }
            let usage = d.usage();
            disks.push(DiskPerf {
                name,
                read_bytes_per_s: per_second(usage.read_bytes, elapsed),
                write_bytes_per_s: per_second(usage.written_bytes, elapsed),
                free_bytes: Some(d.available_space()),
            });
        }
        let load = System::load_average().one as f32;
        HostPerf {
            schema: wire::SCHEMA,
            pc_id: pc.clone(),
            at: Timestamp::now_utc(),
            cpu_pct: self.system.global_cpu_usage().clamp(0.0, 100.0),
            mem_used_bytes: self.system.used_memory(),
            mem_total_bytes: self.system.total_memory(),
            swap_used_bytes: self.system.used_swap(),
            swap_total_bytes: self.system.total_swap(),
            // Windows has no load average (sysinfo reports 0 there): leave it out.
            load: (cfg!(unix)).then_some(load),
            net_rx_bytes_per_s: per_second(rx, elapsed),
            net_tx_bytes_per_s: per_second(tx, elapsed),
            disks,
        }
    }
}

pub(crate) async fn host_perf_loop(ctx: Arc<Ctx>) {
    let mut stop = ctx.shutdown.clone();
    let mut live = ctx.live_config.subscribe();
    let mut sampler: Option<Sampler> = None;
    loop {
        let Some(every) = period(&live.borrow_and_update()) else {
            if sampler.take().is_some() {
                tracing::info!("host performance sampling off");
            }
            tokio::select! {
                changed = live.changed() => if changed.is_err() { return },
                () = super::stopped(&mut stop) => return,
            }
            continue;
        };
        let mut current = match sampler.take() {
            Some(s) => s,
            None => {
                tracing::info!(every = ?every, "host performance sampling on");
                match tokio::task::spawn_blocking(Sampler::primed).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read host performance counters");
                        return;
                    }
                }
            }
        };
        let next = current.last + every;
        tokio::select! {
            () = tokio::time::sleep_until(next.into()) => {}
            changed = live.changed() => {
                sampler = Some(current);
                if changed.is_err() { return }
                continue;
            }
            () = super::stopped(&mut stop) => return,
        }
        let pc = ctx.settings.pc.clone();
        let (current, sample) = match tokio::task::spawn_blocking(move || {
            let sample = current.sample(&pc);
            (current, sample)
        })
        .await
        {
            Ok(done) => done,
            Err(e) => {
                tracing::warn!(error = %e, "host performance sample failed");
                continue;
            }
        };
        sampler = Some(current);
        if let Ok(payload) = wire::encode(&sample) {
            // Core NATS: a sample lost while the broker is away is not worth keeping.
            let _ = ctx.client.publish(subjects::host_perf(&ctx.settings.pc), payload.into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_defaults_to_a_minute_and_zero_turns_it_off() {
        let with = |s: &str| serde_json::from_str::<AgentConfigPatch>(s).unwrap();
        let cases = [
            ("{}", Some(DEFAULT_INTERVAL)),
            (r#"{"host_perf_interval":"2s"}"#, Some(Duration::from_secs(2))),
            (r#"{"host_perf_interval":"0s"}"#, None),
            (r#"{"host_perf_interval":"10ms"}"#, Some(MIN_INTERVAL)),
        ];
        for (config, want) in cases {
            assert_eq!(period(&with(config)), want, "{config}");
        }
    }

    #[test]
    fn loopback_interfaces_are_not_network_traffic() {
        for lo in ["lo", "lo0", "Loopback Pseudo-Interface 1"] {
            assert!(is_loopback(lo), "{lo}");
        }
        for real in ["eth0", "wlan0", "Ethernet", "enp0s3", "local-bridge"] {
            assert!(!is_loopback(real), "{real}");
        }
    }

    #[test]
    fn rates_are_per_second() {
        assert_eq!(per_second(3000, Duration::from_secs(2)), 1500);
        assert_eq!(per_second(10, Duration::from_millis(500)), 20);
        assert_eq!(per_second(10, Duration::ZERO), 0);
    }
}
