//! `HostPerf`: one sample of how a host is doing, published on core `host_perf.<pc>` every
//! `host_perf_interval` (SPEC §12). Rates are per second over the time since the agent's
//! previous sample.

use serde::{Deserialize, Serialize};

use super::{Timestamp, schema_v1};
use crate::ids::PcId;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostPerf {
    #[serde(default = "schema_v1")]
    pub schema: u32,
    pub pc_id: PcId,
    #[serde(with = "time::serde::rfc3339")]
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
pub struct PerfSamples {
    pub pc_id: String,
    pub since_ms: i64,
    pub until_ms: i64,
    pub samples: Vec<PerfSample>,
    /// More samples fell in the range than one answer holds: these are the newest.
    #[serde(default)]
    pub truncated: bool,
}

/// One stored sample (`at`: epoch milliseconds when the backend received it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerfSample {
    pub at: i64,
    pub cpu_pct: f64,
    pub mem_used_bytes: i64,
    pub mem_total_bytes: i64,
    pub swap_used_bytes: i64,
    pub swap_total_bytes: i64,
    pub load: Option<f64>,
    pub net_rx_bytes_per_s: i64,
    pub net_tx_bytes_per_s: i64,
    pub disks: Vec<DiskPerf>,
}
