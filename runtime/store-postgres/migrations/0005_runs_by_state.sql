-- Listing a tenant's runs in one state (`GET /v1/runs?state=queued`) walked the tenant's
-- whole history newest first, reading every row to test its state: with 20 000 finished
-- runs and none queued, each call read every one of the tenant's rows.
-- The state index now leads with the state and the tenant and is ordered by seq, so
-- that listing is a range of the index; counting runs per state still reads it alone.
-- The new index is built under its own name before the old one is dropped. The build
-- takes a SHARE lock on `runs`: reads go on, but submits, claims and heartbeats of
-- every node wait until the migration commits (CONCURRENTLY cannot run inside the
-- migration's transaction); the DROP's ACCESS EXCLUSIVE lock comes only after the build.
CREATE INDEX runs_by_state ON runs (state, tenant, seq);
DROP INDEX runs_state;
