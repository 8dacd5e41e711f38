-- Liveness is judged by the backend's clock at receipt (last_seen_ms); the agent's own clock
-- is kept only as its offset from ours, to show on the agent page.
ALTER TABLE agents ADD COLUMN clock_skew_ms INTEGER
