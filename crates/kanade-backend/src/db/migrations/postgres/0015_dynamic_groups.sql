-- Dynamic groups: a rule over agent fields and facts, and the PCs it matched at the last pass
-- (what was written into their agent_groups). Operator state, not a projection.
CREATE TABLE dynamic_groups (
    name         TEXT COLLATE "C" PRIMARY KEY,
    rule         TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_ms   BIGINT NOT NULL,
    updated_ms   BIGINT NOT NULL,
    evaluated_ms BIGINT
);

CREATE TABLE dynamic_members (
    group_name  TEXT COLLATE "C" NOT NULL,
    pc_id       TEXT COLLATE "C" NOT NULL,
    since_ms    BIGINT NOT NULL,
    PRIMARY KEY (group_name, pc_id)
);
CREATE INDEX dynamic_members_pc ON dynamic_members (pc_id);
