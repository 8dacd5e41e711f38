-- The fleet freeze: at most one window. Operator state, not a projection: kept by wipe-projector.
CREATE TABLE fleet_freeze (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    from_ms  INTEGER NOT NULL,
    until_ms INTEGER NOT NULL,
    reason   TEXT NOT NULL,
    set_by   TEXT NOT NULL,
    set_ms   INTEGER NOT NULL
);
