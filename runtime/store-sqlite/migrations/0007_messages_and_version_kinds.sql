-- The outbox also carries platform messages (replies, notifications, handoffs) a run
-- committed. SQLite cannot alter a CHECK constraint, so the table is rebuilt with every
-- row, its claims and its indexes.
ALTER TABLE outbox RENAME TO outbox_v2;
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    run_id TEXT,
    dedup_key TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('email', 'webhook', 'message')),
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
    FROM outbox_v2;
DROP TABLE outbox_v2;
CREATE INDEX outbox_queued ON outbox (next_attempt_ms, id) WHERE status = 'queued';
CREATE INDEX outbox_claimed ON outbox (lease_until) WHERE status = 'sending';
CREATE INDEX outbox_settled ON outbox (updated_ms) WHERE status IN ('sent', 'failed');
CREATE INDEX outbox_queued_kind ON outbox (kind, next_attempt_ms, id) WHERE status = 'queued';

-- A version says what it holds. Workflow versions were marked by a first import of
-- 'fluxo:workflow'; the marker moves into the column and leaves the imports.
ALTER TABLE versions ADD COLUMN kind TEXT NOT NULL DEFAULT 'component'
    CHECK (kind IN ('component', 'workflow'));
UPDATE versions SET kind = 'workflow', imports = json_remove(imports, '$[0]')
    WHERE json_valid(imports) AND json_extract(imports, '$[0]') = 'fluxo:workflow';
