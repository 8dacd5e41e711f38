-- When the broker refused an outbox event for good (larger than its max_payload): kept for the
-- record, no longer sent, and no longer holding back what waits for it.
ALTER TABLE audit_outbox ADD COLUMN refused_ms INTEGER;
