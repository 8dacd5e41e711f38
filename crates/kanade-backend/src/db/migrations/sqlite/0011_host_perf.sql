-- Host performance samples (SPEC §12), one row per agent sample. `at_ms` is when the backend
-- received it (its own clock: ranges and retention never depend on an agent's clock);
-- `sampled_ms` is the agent's.
CREATE TABLE host_perf_samples (
    pc_id              TEXT NOT NULL,
    at_ms              INTEGER NOT NULL,
    sampled_ms         INTEGER NOT NULL,
    cpu_pct            REAL NOT NULL,
    mem_used_bytes     INTEGER NOT NULL,
    mem_total_bytes    INTEGER NOT NULL,
    swap_used_bytes    INTEGER NOT NULL,
    swap_total_bytes   INTEGER NOT NULL,
    load               REAL,
    net_rx_bps         INTEGER NOT NULL,
    net_tx_bps         INTEGER NOT NULL,
    disks_json         TEXT NOT NULL,
    PRIMARY KEY (pc_id, at_ms)
) WITHOUT ROWID;
CREATE INDEX host_perf_samples_at ON host_perf_samples(at_ms);
