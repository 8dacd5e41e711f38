-- Audit events the backend must get into AUDIT, written in the same transaction as the change
-- they describe and deleted once the stream acknowledged them: a broker that is away, or a
-- backend killed between the two, loses none.
CREATE TABLE audit_outbox (
    id          TEXT COLLATE "C" PRIMARY KEY,
    subject     TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_ms  BIGINT NOT NULL
);
CREATE INDEX audit_outbox_created ON audit_outbox(created_ms);
