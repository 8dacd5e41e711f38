-- Host performance rollups (SPEC §12): per PC, per 5-minute (res_ms 300000, kept 30 days) and
-- 1-hour (res_ms 3600000, kept 1 year) bucket, sums and extremes of the raw samples, maintained
-- as each sample is stored, so long ranges read a few thousand rows instead of every sample.
CREATE TABLE host_perf_rollups (
    pc_id            TEXT NOT NULL,
    res_ms           INTEGER NOT NULL,
    bucket_ms        INTEGER NOT NULL,
    n                INTEGER NOT NULL,
    cpu_sum          REAL NOT NULL,
    cpu_max          REAL NOT NULL,
    mem_used_sum     REAL NOT NULL,
    mem_total        INTEGER NOT NULL,
    swap_used_sum    REAL NOT NULL,
    swap_total       INTEGER NOT NULL,
    load_sum         REAL NOT NULL,
    load_n           INTEGER NOT NULL,
    net_rx_sum       REAL NOT NULL,
    net_tx_sum       REAL NOT NULL,
    disk_read_sum    REAL NOT NULL,
    disk_write_sum   REAL NOT NULL,
    PRIMARY KEY (pc_id, res_ms, bucket_ms)
) WITHOUT ROWID;
CREATE INDEX host_perf_rollups_age ON host_perf_rollups(res_ms, bucket_ms);
