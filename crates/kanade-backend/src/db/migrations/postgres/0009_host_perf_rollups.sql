-- Host performance rollups (SPEC §12): per PC, per 5-minute (res_ms 300000, kept 30 days) and
-- 1-hour (res_ms 3600000, kept 1 year) bucket, sums and extremes of the raw samples, maintained
-- as each sample is stored, so long ranges read a few thousand rows instead of every sample.
CREATE TABLE host_perf_rollups (
    pc_id            TEXT NOT NULL,
    res_ms           BIGINT NOT NULL,
    bucket_ms        BIGINT NOT NULL,
    n                BIGINT NOT NULL,
    cpu_sum          DOUBLE PRECISION NOT NULL,
    cpu_max          DOUBLE PRECISION NOT NULL,
    mem_used_sum     DOUBLE PRECISION NOT NULL,
    mem_total        BIGINT NOT NULL,
    swap_used_sum    DOUBLE PRECISION NOT NULL,
    swap_total       BIGINT NOT NULL,
    load_sum         DOUBLE PRECISION NOT NULL,
    load_n           BIGINT NOT NULL,
    net_rx_sum       DOUBLE PRECISION NOT NULL,
    net_tx_sum       DOUBLE PRECISION NOT NULL,
    disk_read_sum    DOUBLE PRECISION NOT NULL,
    disk_write_sum   DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (pc_id, res_ms, bucket_ms)
);
CREATE INDEX host_perf_rollups_age ON host_perf_rollups(res_ms, bucket_ms);
