-- Accounts and API tokens: not a projection, so wipe-projector keeps them.
CREATE TABLE users (
    name                  TEXT PRIMARY KEY,
    password_hash         TEXT NOT NULL,            -- argon2id, PHC string
    role                  TEXT NOT NULL,            -- viewer operator admin
    disabled              INTEGER NOT NULL DEFAULT 0,
    must_change_password  INTEGER NOT NULL DEFAULT 0,
    password_changed_ms   INTEGER NOT NULL,
    created_ms            INTEGER NOT NULL,
    updated_ms            INTEGER NOT NULL
) WITHOUT ROWID;

-- The secret is shown once at creation; only its sha256 is kept.
CREATE TABLE api_tokens (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    secret_sha256 TEXT NOT NULL,
    role          TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_ms    INTEGER NOT NULL,
    revoked_ms    INTEGER
) WITHOUT ROWID;
