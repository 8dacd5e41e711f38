-- Host performance samples (SPEC §12), one row per agent sample. `at_ms` is when the backend
-- received it (its own clock: ranges and retention never depend on an agent's clock);
-- `sampled_ms` is the agent's.
CREATE TABLE host_perf_samples (
    pc_id              TEXT NOT NULL,
    at_ms              BIGINT NOT NULL,
    sampled_ms         BIGINT NOT NULL,
    cpu_pct            DOUBLE PRECISION NOT NULL,
    mem_used_bytes     BIGINT NOT NULL,
    mem_total_bytes    BIGINT NOT NULL,
    swap_used_bytes    BIGINT NOT NULL,
    swap_total_bytes   BIGINT NOT NULL,
    load               DOUBLE PRECISION,
    net_rx_bps         BIGINT NOT NULL,
    net_tx_bps         BIGINT NOT NULL,
    disks_json         TEXT NOT NULL,
    PRIMARY KEY (pc_id, at_ms)
);
CREATE INDEX host_perf_samples_at ON host_perf_samples(at_ms);
