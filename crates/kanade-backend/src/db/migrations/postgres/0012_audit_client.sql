-- Which client an audited action came from (`cli`, `dashboard`, `api`, `scheduler`, `backend`);
-- NULL for events recorded before it was kept.
ALTER TABLE audit_log ADD COLUMN client TEXT;
