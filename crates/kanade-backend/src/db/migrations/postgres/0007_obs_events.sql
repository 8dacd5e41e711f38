-- Observability events (SPEC §12): agents' own (stream OBS), and the ones the backend derives
-- (job.started / job.finished from the run's messages, agent.online / agent.offline from
-- heartbeat gaps). (pc_id, event_id) is unique, so a redelivered event is stored once.
-- `at_ms` is the event's time (an agent's clock, never later than a few minutes past receipt);
-- `received_ms` is when the backend stored it.
CREATE TABLE obs_events (
    pc_id        TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    kind         TEXT NOT NULL,
    at_ms        BIGINT NOT NULL,
    received_ms  BIGINT NOT NULL,
    exec_id      TEXT,
    data_json    TEXT NOT NULL,
    PRIMARY KEY (pc_id, event_id)
);
CREATE INDEX obs_events_at ON obs_events(at_ms);
CREATE INDEX obs_events_pc_at ON obs_events(pc_id, at_ms);
