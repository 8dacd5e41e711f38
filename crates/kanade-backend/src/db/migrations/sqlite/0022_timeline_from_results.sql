-- The timeline's job.started / job.finished are read from execution_results rather than stored
-- again in obs_events (queries::obs_events). These index each by the time the timeline shows
-- (the agent's, never later than 5 minutes past receipt: projection::obs::AHEAD_MS); the copies
-- stored before are removed where the result row still says the same.
CREATE INDEX execution_results_finished_at ON execution_results(min(finished_ms, received_ms + 300000));
CREATE INDEX execution_results_started_at ON execution_results(min(started_ms, received_ms + 300000));
DELETE FROM obs_events WHERE kind = 'job.finished'
    AND EXISTS (SELECT 1 FROM execution_results r WHERE r.result_id = substr(obs_events.event_id, 14));
DELETE FROM obs_events WHERE kind = 'job.started' AND event_id = 'job.started.' || exec_id || '.1'
    AND EXISTS (SELECT 1 FROM execution_results r
                WHERE r.exec_id = obs_events.exec_id AND r.pc_id = obs_events.pc_id AND r.started_ms IS NOT NULL);
