//! `HostPerf`: one sample of how a host is doing, published on core `host_perf.<pc>` every
//! `host_perf_interval` (SPEC §12). Rates are per second over the time since the agent's
//! previous sample.

use serde::{Deserialize, Serialize};

use super::{Timestamp, schema_v1};
use crate::ids::PcId;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HostPerf {
    #[serde(default = "schema_v1")]
    pub schema: u32,
    pub pc_id: PcId,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub at: Timestamp,
    /// Busy share of all cores, 0–100.
    pub cpu_pct: f32,
    pub mem_used_bytes: u64,
    pub mem_total_bytes: u64,
    #[serde(default)]
    pub swap_used_bytes: u64,
    #[serde(default)]
    pub swap_total_bytes: u64,
    /// 1-minute load average (Unix) or processor queue length (Windows), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<f32>,
    #[serde(default)]
    pub net_rx_bytes_per_s: u64,
    #[serde(default)]
    pub net_tx_bytes_per_s: u64,
    #[serde(default)]
    pub disks: Vec<DiskPerf>,
}

/// A disk's traffic, and the free space of the file systems on it where it is mounted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DiskPerf {
    pub name: String,
    #[serde(default)]
    pub read_bytes_per_s: u64,
    #[serde(default)]
    pub write_bytes_per_s: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_bytes: Option<u64>,
}

/// `GET /api/agents/{pc}/perf`: a PC's samples in a time range, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PerfSamples {
    pub pc_id: String,
    pub since_ms: i64,
    pub until_ms: i64,
    /// `raw` (every sample), `5m` or `1h` (one averaged point per bucket): the finest whose
    /// retention covers the range and that keeps it to a few thousand points.
    #[serde(default = "raw")]
    pub resolution: String,
    pub samples: Vec<PerfSample>,
    /// More samples fell in the range than one answer holds: these are the newest.
    #[serde(default)]
    pub truncated: bool,
}

fn raw() -> String {
    "raw".into()
}

/// One stored sample (`at`: epoch milliseconds when the backend received it), or one rollup
/// bucket (`at`: its start; averages over `samples` samples, `cpu_max_pct` the busiest one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PerfSample {
    pub at: i64,
    pub cpu_pct: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_max_pct: Option<f64>,
    /// How many samples a rollup point averages; absent on a raw sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<i64>,
    pub mem_used_bytes: i64,
    pub mem_total_bytes: i64,
    pub swap_used_bytes: i64,
    pub swap_total_bytes: i64,
    pub load: Option<f64>,
    pub net_rx_bytes_per_s: i64,
    pub net_tx_bytes_per_s: i64,
    /// Every disk together.
    #[serde(default)]
    pub disk_read_bytes_per_s: i64,
    #[serde(default)]
    pub disk_write_bytes_per_s: i64,
    /// Per disk, with free space: raw samples only.
    pub disks: Vec<DiskPerf>,
}

/// Investigation mode (SPEC §12): the busiest processes of one host, published on core
/// `process_perf.<pc>` every host-perf interval while `process_perf_enabled` and before
/// `process_perf_expires_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ProcessPerf {
    #[serde(default = "schema_v1")]
    pub schema: u32,
    pub pc_id: PcId,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub at: Timestamp,
    /// The top N by CPU and the top N by memory (one list, no process twice), busiest first.
    pub processes: Vec<ProcessStat>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ProcessStat {
    pub pid: u32,
    pub name: String,
    /// Share of one core, as `top` shows it (a process busy on two cores shows 200).
    pub cpu_pct: f32,
    /// Resident memory.
    pub mem_bytes: u64,
}

/// `GET /api/agents/{pc}/processes`: a PC's process samples in a time range, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ProcessSamples {
    pub pc_id: String,
    pub since_ms: i64,
    pub until_ms: i64,
    pub samples: Vec<ProcessSample>,
    /// More samples fell in the range than one answer holds: these are the newest.
    #[serde(default)]
    pub truncated: bool,
}

/// One stored process sample (`at`: epoch milliseconds when the backend received it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ProcessSample {
    pub at: i64,
    pub processes: Vec<ProcessStat>,
}

/// The processes to report from `all`: the `n` busiest by CPU and the `n` largest by memory,
/// each once, busiest first.
pub fn top_processes(mut all: Vec<ProcessStat>, n: usize) -> Vec<ProcessStat> {
    all.sort_by(|a, b| b.mem_bytes.cmp(&a.mem_bytes).then(a.pid.cmp(&b.pid)));
    let by_mem: std::collections::HashSet<u32> = all.iter().take(n).map(|p| p.pid).collect();
    all.sort_by(|a, b| b.cpu_pct.total_cmp(&a.cpu_pct).then(a.pid.cmp(&b.pid)));
    all.into_iter().enumerate().filter(|(i, p)| *i < n || by_mem.contains(&p.pid)).map(|(_, p)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_top_processes_are_the_busiest_and_the_largest_once_each() {
        let p = |pid, cpu, mem| ProcessStat { pid, name: format!("p{pid}"), cpu_pct: cpu, mem_bytes: mem };
        let all = vec![p(1, 50.0, 10), p(2, 1.0, 900), p(3, 30.0, 800), p(4, 0.0, 5), p(5, 10.0, 1)];
        let pids = |v: Vec<ProcessStat>| v.iter().map(|p| p.pid).collect::<Vec<_>>();
        assert_eq!(pids(top_processes(all.clone(), 2)), [1, 3, 2]);
        assert_eq!(pids(top_processes(all.clone(), 0)), Vec::<u32>::new());
        assert_eq!(pids(top_processes(all, 9)), [1, 3, 5, 2, 4]);
    }
}
