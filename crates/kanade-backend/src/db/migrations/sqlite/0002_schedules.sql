-- Which schedule fired an execution (NULL for operator runs); rebuilt from `exec.create` audit
-- events like the rest of the row.
ALTER TABLE executions ADD COLUMN schedule_id TEXT;
CREATE INDEX executions_schedule ON executions(schedule_id, created_ms) WHERE schedule_id IS NOT NULL;

-- The scheduler's own bookkeeping (not a projection: kept by wipe-projector). `last_tick_ms`
-- is the last tick handled, so a restarted backend never handles the same tick twice.
CREATE TABLE schedule_state (
    schedule_id   TEXT PRIMARY KEY,
    last_tick_ms  INTEGER NOT NULL,
    last_fire_ms  INTEGER,
    last_exec_id  TEXT,
    last_outcome  TEXT NOT NULL
) WITHOUT ROWID;
