-- the durable run queue (leases, fences, fair claims), the one-transaction ledger,
-- scoped state with a usage counter, the claimed outbox, component blobs, webhooks.
--
-- Runs recorded before this layout (ids of the form run-…, reports in JSON) stay, as
-- they were, in legacy_runs; contacts stored under an empty id (the aliasing bug) in
-- legacy_contacts.
ALTER TABLE runs RENAME TO legacy_runs;
CREATE TABLE runs (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target_name TEXT NOT NULL,
    target_version INTEGER NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('run', 'test')),
    priority INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'retrying', 'succeeded', 'failed', 'dead', 'cancelled')),
    attempt INTEGER NOT NULL DEFAULT 0,
    crash_redeliveries INTEGER NOT NULL DEFAULT 0,
    fence INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_expires_ms INTEGER,
    available_ms INTEGER NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT,
    event BLOB NOT NULL,
    limits BLOB NOT NULL,
    retry BLOB NOT NULL,
    report BLOB,
    error_kind TEXT,
    attempts BLOB,
    committed_attempt INTEGER,
    committed_result BLOB,
    created_ms INTEGER NOT NULL,
    started_ms INTEGER,
    finished_ms INTEGER
);
CREATE UNIQUE INDEX runs_idempotency ON runs (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_runnable ON runs (tenant, priority DESC, available_ms, seq) WHERE state IN ('queued', 'retrying');
CREATE INDEX runs_interactive ON runs (seq) WHERE priority > 0 AND state IN ('queued', 'retrying');
CREATE INDEX runs_leases ON runs (lease_expires_ms) WHERE state = 'running';
CREATE INDEX runs_tenant_seq ON runs (tenant, seq);
CREATE INDEX runs_finished ON runs (finished_ms) WHERE finished_ms IS NOT NULL;
CREATE INDEX runs_state ON runs (state);

CREATE TABLE tenant_queue (
    tenant TEXT PRIMARY KEY,
    runnable INTEGER NOT NULL DEFAULT 0,
    running INTEGER NOT NULL DEFAULT 0,
    deficit INTEGER NOT NULL DEFAULT 0,
    served INTEGER NOT NULL DEFAULT 0,
    est_cost INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX tenant_queue_ready ON tenant_queue (served) WHERE runnable > 0;
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO counters (name, value) VALUES ('served', 0);

ALTER TABLE actions ADD COLUMN retry TEXT NOT NULL DEFAULT '{}';

ALTER TABLE state RENAME TO state_v1;
CREATE TABLE state (
    tenant TEXT NOT NULL,
    scope TEXT NOT NULL CHECK (scope IN ('tenant', 'contact')),
    contact TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    expires_ms INTEGER,
    PRIMARY KEY (tenant, scope, contact, key),
    CHECK ((scope = 'tenant') = (contact = ''))
);
INSERT INTO state (tenant, scope, contact, key, value, expires_ms)
    SELECT tenant, CASE contact WHEN '' THEN 'tenant' ELSE 'contact' END, contact, key, value, expires_ms
    FROM state_v1;
DROP TABLE state_v1;
CREATE INDEX state_expiry ON state (tenant, expires_ms) WHERE expires_ms IS NOT NULL;
CREATE TABLE state_usage (
    tenant TEXT PRIMARY KEY,
    bytes INTEGER NOT NULL
);
INSERT INTO state_usage (tenant, bytes)
    SELECT tenant, SUM(LENGTH(CAST(key AS BLOB)) + LENGTH(value)) FROM state GROUP BY tenant;

CREATE TABLE legacy_contacts AS SELECT * FROM contacts WHERE id = '';
DELETE FROM contacts WHERE id = '';

ALTER TABLE outbox RENAME TO outbox_v1;
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    run_id TEXT,
    dedup_key TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('email', 'webhook')),
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
INSERT INTO outbox (id, tenant, run_id, dedup_key, kind, payload, status, attempts, next_attempt_ms, last_error, created_ms, updated_ms)
    SELECT id, tenant, NULL, 'legacy:' || message_id, 'email', json_set(payload, '$.kind', 'email'),
           status, attempts, next_attempt_ms, last_error, created_ms, updated_ms
    FROM outbox_v1;
DROP TABLE outbox_v1;
CREATE INDEX outbox_queued ON outbox (next_attempt_ms, id) WHERE status = 'queued';
CREATE INDEX outbox_claimed ON outbox (lease_until) WHERE status = 'sending';
CREATE INDEX outbox_settled ON outbox (updated_ms) WHERE status IN ('sent', 'failed');

CREATE TABLE components (
    hash TEXT PRIMARY KEY,
    bytes BLOB NOT NULL,
    created_ms INTEGER NOT NULL
);

CREATE TABLE webhook_endpoints (
    tenant TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    url TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    disabled_reason TEXT,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE webhook_secrets (
    tenant TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER,
    FOREIGN KEY (tenant, endpoint) REFERENCES webhook_endpoints (tenant, id) ON DELETE CASCADE
);
