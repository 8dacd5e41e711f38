-- The newest lease term that wrote to this database, per lease (see the Postgres migration; a
-- SQLite database has one backend, but both engines keep one schema).
CREATE TABLE lease_fences (
    lease     TEXT PRIMARY KEY,
    revision  INTEGER NOT NULL
);
