-- The whole schema as SQLite's migrations 1-6 leave it. Every timestamp is epoch milliseconds
-- (UTC); every integer is BIGINT and every flag a 0/1 BIGINT, so rows read back exactly as from
-- SQLite. Text compares byte by byte (COLLATE "C"), as in SQLite: ids page by keyset and a
-- locale's collation would reorder them.

CREATE TABLE agents (
    pc_id            TEXT COLLATE "C" PRIMARY KEY,
    hostname         TEXT COLLATE "C" NOT NULL,
    os_family        TEXT NOT NULL,
    os_name          TEXT NOT NULL,
    os_version       TEXT NOT NULL,
    arch             TEXT NOT NULL,
    agent_version    TEXT COLLATE "C" NOT NULL,
    groups_json      TEXT NOT NULL,
    uptime_secs      BIGINT NOT NULL,
    rss_bytes        BIGINT NOT NULL,
    cpu_pct          DOUBLE PRECISION NOT NULL,
    running_jobs     BIGINT NOT NULL,
    first_seen_ms    BIGINT NOT NULL,
    last_seen_ms     BIGINT NOT NULL,
    quarantined_json TEXT NOT NULL DEFAULT '[]',
    update_status    TEXT,
    clock_skew_ms    BIGINT
);

CREATE TABLE executions (
    exec_id        TEXT COLLATE "C" PRIMARY KEY,
    job_id         TEXT COLLATE "C" NOT NULL,
    version        TEXT NOT NULL,
    status         TEXT COLLATE "C" NOT NULL,
    target_count   BIGINT NOT NULL,
    succeeded      BIGINT NOT NULL DEFAULT 0,
    failed         BIGINT NOT NULL DEFAULT 0,
    skipped        BIGINT NOT NULL DEFAULT 0,
    other          BIGINT NOT NULL DEFAULT 0,
    created_by     TEXT NOT NULL,
    plan_json      TEXT NOT NULL,
    message        TEXT,
    created_ms     BIGINT NOT NULL,
    updated_ms     BIGINT NOT NULL,
    finished_ms    BIGINT,
    schedule_id    TEXT COLLATE "C",
    title          TEXT
);
CREATE INDEX executions_created ON executions(created_ms);
CREATE INDEX executions_job ON executions(job_id, created_ms);
CREATE INDEX executions_schedule ON executions(schedule_id, created_ms) WHERE schedule_id IS NOT NULL;

CREATE TABLE execution_targets (
    exec_id  TEXT COLLATE "C" NOT NULL,
    pc_id    TEXT COLLATE "C" NOT NULL,
    wave     BIGINT NOT NULL,
    PRIMARY KEY (exec_id, pc_id)
);

CREATE TABLE execution_results (
    result_id    TEXT COLLATE "C" PRIMARY KEY,
    exec_id      TEXT COLLATE "C" NOT NULL,
    pc_id        TEXT COLLATE "C" NOT NULL,
    request_id   TEXT NOT NULL,
    job_id       TEXT COLLATE "C" NOT NULL,
    version      TEXT NOT NULL,
    status       TEXT COLLATE "C" NOT NULL,
    exit_code    BIGINT,
    skip_reason  TEXT,
    message      TEXT,
    stdout       TEXT NOT NULL DEFAULT '',
    stderr       TEXT NOT NULL DEFAULT '',
    truncated    BIGINT NOT NULL DEFAULT 0,
    attempt      BIGINT NOT NULL,
    started_ms   BIGINT,
    finished_ms  BIGINT,
    received_ms  BIGINT NOT NULL
);
CREATE INDEX execution_results_exec ON execution_results(exec_id, pc_id);
CREATE INDEX execution_results_pc ON execution_results(pc_id, received_ms);
CREATE INDEX execution_results_received ON execution_results(received_ms);

CREATE TABLE rollout_waves (
    exec_id       TEXT COLLATE "C" NOT NULL,
    wave          BIGINT NOT NULL,
    due_ms        BIGINT NOT NULL,
    target_json   TEXT NOT NULL,
    status        TEXT COLLATE "C" NOT NULL,
    published_ms  BIGINT,
    PRIMARY KEY (exec_id, wave)
);
CREATE INDEX rollout_waves_due ON rollout_waves(status, due_ms);

CREATE TABLE audit_log (
    id          TEXT COLLATE "C" PRIMARY KEY,
    at_ms       BIGINT NOT NULL,
    actor       TEXT COLLATE "C" NOT NULL,
    action      TEXT COLLATE "C" NOT NULL,
    target      TEXT COLLATE "C",
    source      TEXT,
    detail_json TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log(at_ms);

CREATE TABLE inventory (
    pc_id         TEXT COLLATE "C" PRIMARY KEY,
    collected_ms  BIGINT NOT NULL,
    body_json     TEXT NOT NULL
);

CREATE TABLE projection_meta (
    key    TEXT COLLATE "C" PRIMARY KEY,
    value  TEXT NOT NULL
);

CREATE TABLE schedule_state (
    schedule_id   TEXT COLLATE "C" PRIMARY KEY,
    last_tick_ms  BIGINT NOT NULL,
    last_fire_ms  BIGINT,
    last_exec_id  TEXT,
    last_outcome  TEXT NOT NULL
);

CREATE TABLE users (
    name                  TEXT COLLATE "C" PRIMARY KEY,
    password_hash         TEXT NOT NULL,
    role                  TEXT NOT NULL,
    disabled              BIGINT NOT NULL DEFAULT 0,
    must_change_password  BIGINT NOT NULL DEFAULT 0,
    password_changed_ms   BIGINT NOT NULL,
    created_ms            BIGINT NOT NULL,
    updated_ms            BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id            TEXT COLLATE "C" PRIMARY KEY,
    name          TEXT COLLATE "C" NOT NULL UNIQUE,
    secret_sha256 TEXT NOT NULL,
    role          TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_ms    BIGINT NOT NULL,
    revoked_ms    BIGINT
);
