-- The outbox also carries contact updates: a run's field and tag changes for the
-- platform that owns the tenant's contacts. SQLite cannot alter a CHECK constraint, so
-- the table is rebuilt with every row, its claims and its indexes (as 0007 did).
ALTER TABLE outbox RENAME TO outbox_v3;
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    run_id TEXT,
    dedup_key TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('email', 'webhook', 'message', 'contact_update')),
    payload TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    claim INTEGER NOT NULL DEFAULT 0,
    claimed_by TEXT,
    lease_until INTEGER,
    last_error TEXT,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    UNIQUE (tenant, dedup_key)
);
INSERT INTO outbox (id, tenant, run_id, dedup_key, kind, payload, status, attempts,
        next_attempt_ms, claim, claimed_by, lease_until, last_error, created_ms, updated_ms)
    SELECT id, tenant, run_id, dedup_key, kind, payload, status, attempts,
        next_attempt_ms, claim, claimed_by, lease_until, last_error, created_ms, updated_ms
    FROM outbox_v3;
DROP TABLE outbox_v3;
CREATE INDEX outbox_queued ON outbox (next_attempt_ms, id) WHERE status = 'queued';
CREATE INDEX outbox_claimed ON outbox (lease_until) WHERE status = 'sending';
CREATE INDEX outbox_settled ON outbox (updated_ms) WHERE status IN ('sent', 'failed');
CREATE INDEX outbox_queued_kind ON outbox (kind, next_attempt_ms, id) WHERE status = 'queued';

-- Each contact's updates are numbered in commit order, so a receiver can tell a retried
-- older update from a newer one.
CREATE TABLE contact_update_seq (
    tenant TEXT NOT NULL,
    contact TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (tenant, contact)
) WITHOUT ROWID;
