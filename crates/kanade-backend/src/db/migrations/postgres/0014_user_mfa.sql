-- Second factors (TOTP) of password accounts. Operator state, not a projection.
CREATE TABLE user_mfa (
    name             TEXT COLLATE "C" PRIMARY KEY,
    secret           TEXT NOT NULL,
    enabled_ms       BIGINT,
    last_step        BIGINT NOT NULL DEFAULT 0,
    recovery_sha256  TEXT NOT NULL DEFAULT '[]',
    updated_ms       BIGINT NOT NULL
);
