-- Compliance checks (SPEC §12): each PC's latest status per check, from the newest result of a
-- job with `check:`. `since_ms` is when the status last changed, `updated_ms` the run that
-- last confirmed it (both the agent's clock, clamped to a few minutes past receipt, to order
-- runs); `received_ms` when the backend got that run (its clock: staleness and pruning).
CREATE TABLE check_status (
    check_name   TEXT NOT NULL,
    pc_id        TEXT NOT NULL,
    status       TEXT NOT NULL,
    detail       TEXT,
    since_ms     INTEGER NOT NULL,
    updated_ms   INTEGER NOT NULL,
    result_id    TEXT NOT NULL,
    exec_id      TEXT NOT NULL,
    received_ms  INTEGER NOT NULL,
    PRIMARY KEY (check_name, pc_id)
);
CREATE INDEX check_status_pc ON check_status(pc_id);

-- Facts (SPEC §12): operator-named tables (`fact_<name>`, made on first use) and what made
-- them; which result last wrote each PC's rows of each table (an older one never replaces
-- them); each PC's latest whole fact document per job; why a result's facts were refused.
CREATE TABLE facts_tables (
    name        TEXT PRIMARY KEY,
    job_id      TEXT NOT NULL,
    spec_json   TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
);
CREATE TABLE facts_writes (
    table_name   TEXT NOT NULL,
    pc_id        TEXT NOT NULL,
    finished_ms  INTEGER NOT NULL,
    result_id    TEXT NOT NULL,
    PRIMARY KEY (table_name, pc_id)
);
CREATE TABLE inventory_facts (
    pc_id        TEXT NOT NULL,
    job_id       TEXT NOT NULL,
    finished_ms  INTEGER NOT NULL,
    result_id    TEXT NOT NULL,
    body_json    TEXT NOT NULL,
    PRIMARY KEY (pc_id, job_id)
);
ALTER TABLE execution_results ADD COLUMN facts_error TEXT;
