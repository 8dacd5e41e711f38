-- The newest lease term that wrote to this database, per lease: a backend that stalled past its
-- lease and wakes up finds a newer term here and writes nothing.
CREATE TABLE lease_fences (
    lease     TEXT COLLATE "C" PRIMARY KEY,
    revision  BIGINT NOT NULL
);
