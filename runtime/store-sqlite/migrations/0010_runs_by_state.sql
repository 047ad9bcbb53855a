-- Listing a tenant's runs in one state (`GET /v1/runs?state=queued`) walked the tenant's
-- whole history newest first, reading every row to test its state: with 20 000 finished
-- runs and none queued, each call read all of the tenant's rows into the reader's page
-- cache.
-- The state index now leads with the state and the tenant and is ordered by seq, so
-- that listing is a range of the index; counting runs per state still reads it alone.
-- Built under its own name, then the old one dropped (the migration is one transaction).
CREATE INDEX runs_by_state ON runs (state, tenant, seq);
DROP INDEX runs_state;
