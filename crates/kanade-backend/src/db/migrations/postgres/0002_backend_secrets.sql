-- Secrets every backend of one database must agree on (the session signing secret when
-- `auth.jwt_secret` is not set): a session one backend signed is valid on all of them.
CREATE TABLE backend_secrets (
    name   TEXT COLLATE "C" PRIMARY KEY,
    value  TEXT NOT NULL
);
