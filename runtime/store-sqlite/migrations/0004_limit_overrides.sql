-- per-action limit overrides.
ALTER TABLE actions ADD COLUMN limits TEXT NOT NULL DEFAULT '{}';
