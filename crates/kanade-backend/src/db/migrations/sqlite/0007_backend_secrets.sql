-- Secrets every backend of one database must agree on (the session signing secret when
-- `auth.jwt_secret` is not set). Not a projection: kept by wipe-projector.
CREATE TABLE backend_secrets (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
) WITHOUT ROWID;
