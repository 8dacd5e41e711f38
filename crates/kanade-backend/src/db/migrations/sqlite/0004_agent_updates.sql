-- Self-update as agents report it: versions they quarantined (JSON array of
-- {version, at, reason}) and why the version they are asked for is not running yet.
ALTER TABLE agents ADD COLUMN quarantined_json TEXT NOT NULL DEFAULT '[]';
ALTER TABLE agents ADD COLUMN update_status TEXT;
