-- Enrolment tokens and each enrolled agent's own broker credentials. Operator state, not a
-- projection: kept by wipe-projector. Only hashes of the secrets are stored.
CREATE TABLE enroll_tokens (
    id           TEXT PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_by   TEXT NOT NULL,
    created_ms   INTEGER NOT NULL,
    expires_ms   INTEGER NOT NULL,
    max_uses     INTEGER NOT NULL,
    uses         INTEGER NOT NULL DEFAULT 0,
    groups_json  TEXT NOT NULL,
    revoked_ms   INTEGER
);
CREATE TABLE agent_credentials (
    pc_id          TEXT PRIMARY KEY,
    secret_sha256  TEXT NOT NULL,
    token_id       TEXT,
    enrolled_ms    INTEGER NOT NULL,
    revoked_ms     INTEGER,
    revoked_by     TEXT,
    -- The broker connection the last authorization admitted (to disconnect it on revocation).
    server_id      TEXT,
    client_id      INTEGER,
    authorized_ms  INTEGER
);
