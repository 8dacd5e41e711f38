-- Projection of the streams. Every timestamp is epoch milliseconds (UTC), so comparisons and
-- retention are plain integer arithmetic. These tables can be dropped and rebuilt from the
-- streams (`kanade-backend wipe-projector`).

CREATE TABLE agents (
    pc_id          TEXT PRIMARY KEY,
    hostname       TEXT NOT NULL,
    os_family      TEXT NOT NULL,
    os_name        TEXT NOT NULL,
    os_version     TEXT NOT NULL,
    arch           TEXT NOT NULL,
    agent_version  TEXT NOT NULL,
    groups_json    TEXT NOT NULL,
    uptime_secs    INTEGER NOT NULL,
    rss_bytes      INTEGER NOT NULL,
    cpu_pct        REAL NOT NULL,
    running_jobs   INTEGER NOT NULL,
    first_seen_ms  INTEGER NOT NULL,
    last_seen_ms   INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE executions (
    exec_id        TEXT PRIMARY KEY,
    job_id         TEXT NOT NULL,
    version        TEXT NOT NULL,
    status         TEXT NOT NULL,            -- pending running completed failed expired aborted
    target_count   INTEGER NOT NULL,
    succeeded      INTEGER NOT NULL DEFAULT 0,
    failed         INTEGER NOT NULL DEFAULT 0,
    skipped        INTEGER NOT NULL DEFAULT 0,
    other          INTEGER NOT NULL DEFAULT 0, -- killed, timed_out, unknown
    created_by     TEXT NOT NULL,
    plan_json      TEXT NOT NULL,
    message        TEXT,
    created_ms     INTEGER NOT NULL,
    updated_ms     INTEGER NOT NULL,
    finished_ms    INTEGER
) WITHOUT ROWID;
CREATE INDEX executions_created ON executions(created_ms);
CREATE INDEX executions_job ON executions(job_id, created_ms);

-- The PCs an execution expects a result from (explicit pcs, or live members at publish time).
CREATE TABLE execution_targets (
    exec_id  TEXT NOT NULL,
    pc_id    TEXT NOT NULL,
    wave     INTEGER NOT NULL,
    PRIMARY KEY (exec_id, pc_id)
) WITHOUT ROWID;

CREATE TABLE execution_results (
    result_id    TEXT PRIMARY KEY,
    exec_id      TEXT NOT NULL,
    pc_id        TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    job_id       TEXT NOT NULL,
    version      TEXT NOT NULL,
    status       TEXT NOT NULL,              -- running until the result arrives
    exit_code    INTEGER,
    skip_reason  TEXT,
    message      TEXT,
    stdout       TEXT NOT NULL DEFAULT '',
    stderr       TEXT NOT NULL DEFAULT '',
    truncated    INTEGER NOT NULL DEFAULT 0,
    attempt      INTEGER NOT NULL,
    started_ms   INTEGER,
    finished_ms  INTEGER,
    received_ms  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX execution_results_exec ON execution_results(exec_id, pc_id);
CREATE INDEX execution_results_pc ON execution_results(pc_id, received_ms);
CREATE INDEX execution_results_received ON execution_results(received_ms);

CREATE TABLE rollout_waves (
    exec_id       TEXT NOT NULL,
    wave          INTEGER NOT NULL,
    due_ms        INTEGER NOT NULL,
    target_json   TEXT NOT NULL,
    status        TEXT NOT NULL,             -- pending published cancelled
    published_ms  INTEGER,
    PRIMARY KEY (exec_id, wave)
) WITHOUT ROWID;
CREATE INDEX rollout_waves_due ON rollout_waves(status, due_ms);

CREATE TABLE audit_log (
    id          TEXT PRIMARY KEY,
    at_ms       INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT,
    source      TEXT,
    detail_json TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX audit_log_at ON audit_log(at_ms);

CREATE TABLE inventory (
    pc_id         TEXT PRIMARY KEY,
    collected_ms  INTEGER NOT NULL,
    body_json     TEXT NOT NULL
) WITHOUT ROWID;

-- Settings of the projection itself; `generation` names the durable consumers, so a wiped
-- projection gets new consumers that replay every stream from the start.
CREATE TABLE projection_meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
) WITHOUT ROWID;
