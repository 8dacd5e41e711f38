-- Dynamic groups: a rule over agent fields and facts, and the PCs it matched at the last pass
-- (what was written into their agent_groups). Operator state, not a projection.
CREATE TABLE dynamic_groups (
    name        TEXT PRIMARY KEY,
    rule        TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    evaluated_ms INTEGER
) WITHOUT ROWID;

CREATE TABLE dynamic_members (
    group_name  TEXT NOT NULL,
    pc_id       TEXT NOT NULL,
    since_ms    INTEGER NOT NULL,
    PRIMARY KEY (group_name, pc_id)
) WITHOUT ROWID;
CREATE INDEX dynamic_members_pc ON dynamic_members (pc_id);
