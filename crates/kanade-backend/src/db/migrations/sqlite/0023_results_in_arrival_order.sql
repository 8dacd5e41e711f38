-- Results were kept in result_id order (WITHOUT ROWID). A result id is its execution's
-- time-ordered id with the PC hashed into its low half, so each batch's rows, whole, landed on
-- pages all over their execution's key range: a batch of a broadcast's results rewrote about
-- every page the execution's rows filled so far, and split pages stayed part-empty. Kept in
-- arrival order (a rowid table), new rows append; only the result_id index takes them all over,
-- with entries a fifth of a row's size. NOT NULL is spelled out: only WITHOUT ROWID implies it.
CREATE TABLE execution_results_by_arrival (
    result_id    TEXT NOT NULL PRIMARY KEY,
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
    received_ms  INTEGER NOT NULL,
    facts_error  TEXT
);
INSERT INTO execution_results_by_arrival (result_id, exec_id, pc_id, request_id, job_id, version, status,
        exit_code, skip_reason, message, stdout, stderr, truncated, attempt, started_ms, finished_ms,
        received_ms, facts_error)
    SELECT result_id, exec_id, pc_id, request_id, job_id, version, status, exit_code, skip_reason,
           message, stdout, stderr, truncated, attempt, started_ms, finished_ms, received_ms, facts_error
    FROM execution_results ORDER BY received_ms;
DROP TABLE execution_results;
ALTER TABLE execution_results_by_arrival RENAME TO execution_results;
CREATE INDEX execution_results_exec ON execution_results(exec_id, pc_id);
CREATE INDEX execution_results_pc ON execution_results(pc_id, received_ms);
CREATE INDEX execution_results_received ON execution_results(received_ms);
CREATE INDEX execution_results_finished_at ON execution_results(min(finished_ms, received_ms + 300000));
CREATE INDEX execution_results_started_at ON execution_results(min(started_ms, received_ms + 300000));
