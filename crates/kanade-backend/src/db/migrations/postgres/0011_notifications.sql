-- End-user notifications (SPEC §12), from stream NOTIFICATIONS (one row per notification, however
-- many subjects it went out on), and local users' acknowledgements from EVENTS
-- (`events.notify_ack.<pc>.<id>`), one per (notification, pc, user). Times are epoch ms; `acked_ms`
-- is the agent's clock, `received_ms` the backend's. A projection wipe keeps both tables: EVENTS
-- keeps acknowledgements only 7 days, and replaying either stream into them changes nothing.
CREATE TABLE notifications (
    id            TEXT PRIMARY KEY,
    title         TEXT NOT NULL,
    body          TEXT NOT NULL,
    priority      TEXT NOT NULL,
    target_json   TEXT NOT NULL,
    created_ms    BIGINT NOT NULL,
    expires_ms    BIGINT NOT NULL,
    created_by    TEXT NOT NULL,
    withdrawn_ms  BIGINT,
    withdrawn_by  TEXT
);
CREATE INDEX notifications_created ON notifications(created_ms);
CREATE TABLE notification_acks (
    notification_id  TEXT NOT NULL,
    pc_id            TEXT NOT NULL,
    user_name        TEXT NOT NULL,
    acked_ms         BIGINT NOT NULL,
    received_ms      BIGINT NOT NULL,
    PRIMARY KEY (notification_id, pc_id, user_name)
);
