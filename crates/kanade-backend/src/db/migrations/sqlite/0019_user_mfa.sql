-- Second factors (TOTP) of password accounts. Operator state, not a projection.
CREATE TABLE user_mfa (
    name             TEXT PRIMARY KEY,
    secret           TEXT NOT NULL,               -- base32, as the authenticator app holds it
    enabled_ms       INTEGER,                     -- NULL while set-up awaits its first code
    last_step        INTEGER NOT NULL DEFAULT 0,  -- a code's time step is accepted once
    recovery_sha256  TEXT NOT NULL DEFAULT '[]',  -- JSON list; a used code leaves it
    updated_ms       INTEGER NOT NULL
) WITHOUT ROWID;
