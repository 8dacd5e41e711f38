-- Investigation mode's process samples (SPEC §12), one row per agent sample, kept 7 days.
-- `at_ms` is the backend's receipt time, `sampled_ms` the agent's clock; `processes_json` the
-- top processes by CPU and memory as the agent sent them (bounded by the projector).
CREATE TABLE process_perf_samples (
    pc_id           TEXT NOT NULL,
    at_ms           INTEGER NOT NULL,
    sampled_ms      INTEGER NOT NULL,
    processes_json  TEXT NOT NULL,
    PRIMARY KEY (pc_id, at_ms)
);
CREATE INDEX process_perf_samples_at ON process_perf_samples(at_ms);
