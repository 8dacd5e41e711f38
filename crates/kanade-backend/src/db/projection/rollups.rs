//! Host performance rollups: each stored sample is added to its PC's 5-minute and 1-hour bucket
//! in the same transaction. A sample already stored (same PC and receipt time) adds nothing, so
//! applying a batch twice leaves the same sums.

use kanade_shared::wire::HostPerf;

use super::super::DbError;
use super::super::sql::{Sql, vals};

pub const FIVE_MINUTES_MS: i64 = 5 * 60 * 1000;
pub const HOUR_MS: i64 = 60 * 60 * 1000;
pub const RESOLUTIONS: [i64; 2] = [FIVE_MINUTES_MS, HOUR_MS];

/// The bucket `at_ms` falls in at resolution `res_ms`: its start.
pub fn bucket(at_ms: i64, res_ms: i64) -> i64 {
    at_ms - at_ms.rem_euclid(res_ms)
}

// Parameters are cast: on Postgres a bare parameter in a SELECT list has no type.
const ADD: &str = "INSERT INTO host_perf_rollups (pc_id, res_ms, bucket_ms, n, cpu_sum, cpu_max, mem_used_sum,
        mem_total, swap_used_sum, swap_total, load_sum, load_n, net_rx_sum, net_tx_sum, disk_read_sum, disk_write_sum)
     SELECT CAST(?1 AS TEXT), CAST(?2 AS BIGINT), CAST(?3 AS BIGINT), 1, CAST(?5 AS DOUBLE PRECISION),
        CAST(?5 AS DOUBLE PRECISION), CAST(?6 AS DOUBLE PRECISION), CAST(?7 AS BIGINT), CAST(?8 AS DOUBLE PRECISION),
        CAST(?9 AS BIGINT), CAST(?10 AS DOUBLE PRECISION), CAST(?11 AS BIGINT), CAST(?12 AS DOUBLE PRECISION),
        CAST(?13 AS DOUBLE PRECISION), CAST(?14 AS DOUBLE PRECISION), CAST(?15 AS DOUBLE PRECISION)
     WHERE NOT EXISTS (SELECT 1 FROM host_perf_samples WHERE pc_id = ?1 AND at_ms = ?4)
     ON CONFLICT(pc_id, res_ms, bucket_ms) DO UPDATE SET
        n = host_perf_rollups.n + 1,
        cpu_sum = host_perf_rollups.cpu_sum + excluded.cpu_sum,
        cpu_max = CASE WHEN excluded.cpu_max > host_perf_rollups.cpu_max THEN excluded.cpu_max ELSE host_perf_rollups.cpu_max END,
        mem_used_sum = host_perf_rollups.mem_used_sum + excluded.mem_used_sum,
        mem_total = excluded.mem_total,
        swap_used_sum = host_perf_rollups.swap_used_sum + excluded.swap_used_sum,
        swap_total = excluded.swap_total,
        load_sum = host_perf_rollups.load_sum + excluded.load_sum,
        load_n = host_perf_rollups.load_n + excluded.load_n,
        net_rx_sum = host_perf_rollups.net_rx_sum + excluded.net_rx_sum,
        net_tx_sum = host_perf_rollups.net_tx_sum + excluded.net_tx_sum,
        disk_read_sum = host_perf_rollups.disk_read_sum + excluded.disk_read_sum,
        disk_write_sum = host_perf_rollups.disk_write_sum + excluded.disk_write_sum";

/// Add each sample not stored yet to its buckets. Run before the raw rows are inserted: the
/// raw row is what marks a sample as counted.
pub async fn add<S: Sql>(s: &mut S, samples: &[(i64, HostPerf)]) -> Result<(), DbError> {
    if samples.is_empty() {
        return Ok(());
    }
    let rows = samples
        .iter()
        .flat_map(|(at_ms, p)| {
            let read: u64 = p.disks.iter().map(|d| d.read_bytes_per_s).sum();
            let write: u64 = p.disks.iter().map(|d| d.write_bytes_per_s).sum();
            RESOLUTIONS.map(|res| {
                vals![
                    p.pc_id.as_str(),
                    res,
                    bucket(*at_ms, res),
                    *at_ms,
                    f64::from(p.cpu_pct),
                    p.mem_used_bytes as f64,
                    p.mem_total_bytes as i64,
                    p.swap_used_bytes as f64,
                    p.swap_total_bytes as i64,
                    p.load.map_or(0.0, f64::from),
                    i64::from(p.load.is_some()),
                    p.net_rx_bytes_per_s as f64,
                    p.net_tx_bytes_per_s as f64,
                    read as f64,
                    write as f64
                ]
            })
        })
        .collect();
    s.exec_many(ADD, rows).await.map(drop)
}

/// A PC's buckets at `res_ms` in `[since_ms, until_ms]` as samples (averages; `at` is the
/// bucket's start), the newest `limit`, oldest first.
pub async fn read<S: Sql>(
    s: &mut S,
    pc: &kanade_shared::PcId,
    res_ms: i64,
    since_ms: i64,
    until_ms: i64,
    limit: i64,
) -> Result<Vec<kanade_shared::wire::PerfSample>, DbError> {
    let rows = s
        .rows(
            "SELECT bucket_ms, n, cpu_sum, cpu_max, mem_used_sum, mem_total, swap_used_sum, swap_total, load_sum, load_n,
                    net_rx_sum, net_tx_sum, disk_read_sum, disk_write_sum
             FROM host_perf_rollups WHERE pc_id = ?1 AND res_ms = ?2 AND bucket_ms >= ?3 AND bucket_ms <= ?4
             ORDER BY bucket_ms DESC LIMIT ?5",
            vals![pc, res_ms, bucket(since_ms, res_ms), until_ms, limit],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows.iter().rev() {
        let n = r.get::<i64>(1)?.max(1) as f64;
        let avg = |sum: f64| (sum / n).round() as i64;
        let load_n: i64 = r.get(9)?;
        out.push(kanade_shared::wire::PerfSample {
            at: r.get(0)?,
            cpu_pct: r.get::<f64>(2)? / n,
            cpu_max_pct: Some(r.get(3)?),
            mem_used_bytes: avg(r.get(4)?),
            mem_total_bytes: r.get(5)?,
            swap_used_bytes: avg(r.get(6)?),
            swap_total_bytes: r.get(7)?,
            load: (load_n > 0).then(|| r.get::<f64>(8).map(|l| l / load_n as f64)).transpose()?,
            net_rx_bytes_per_s: avg(r.get(10)?),
            net_tx_bytes_per_s: avg(r.get(11)?),
            disk_read_bytes_per_s: avg(r.get(12)?),
            disk_write_bytes_per_s: avg(r.get(13)?),
            samples: Some(n as i64),
            disks: Vec::new(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_start_on_their_boundary() {
        assert_eq!(bucket(0, FIVE_MINUTES_MS), 0);
        assert_eq!(bucket(FIVE_MINUTES_MS - 1, FIVE_MINUTES_MS), 0);
        assert_eq!(bucket(FIVE_MINUTES_MS, FIVE_MINUTES_MS), FIVE_MINUTES_MS);
        assert_eq!(bucket(2 * HOUR_MS + 17, HOUR_MS), 2 * HOUR_MS);
    }
}
