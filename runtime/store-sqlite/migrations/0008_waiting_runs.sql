-- Workflow runs wait for the contact's reply: a `waiting` state, the host's checkpoint
-- (opaque JSON), the timeout (`wake_ms`, a durable timer the claim fires), the contact
-- whose reply it waits for, the reply that resumed it (and its inbox sequence number),
-- and how many segments committed. SQLite cannot alter a CHECK constraint, so the table
-- is rebuilt with every row and its indexes.
ALTER TABLE runs RENAME TO runs_v7;
CREATE TABLE runs (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target_name TEXT NOT NULL,
    target_version INTEGER NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('run', 'test')),
    priority INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'retrying', 'waiting', 'succeeded', 'failed', 'dead', 'cancelled')),
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
    finished_ms INTEGER,
    committed_fence INTEGER,
    charged_cost INTEGER NOT NULL DEFAULT 0,
    node TEXT,
    checkpoint TEXT,
    wake_ms INTEGER,
    wait_contact TEXT,
    reply BLOB,
    reply_seq INTEGER NOT NULL DEFAULT 0,
    segments INTEGER NOT NULL DEFAULT 0
);
INSERT INTO runs (seq, id, tenant, target_kind, target_name, target_version, mode, priority,
        state, attempt, crash_redeliveries, fence, lease_owner, lease_expires_ms, available_ms,
        cancel_requested, idempotency_key, event, limits, retry, report, error_kind, attempts,
        committed_attempt, committed_result, created_ms, started_ms, finished_ms,
        committed_fence, charged_cost, node)
    SELECT seq, id, tenant, target_kind, target_name, target_version, mode, priority,
        state, attempt, crash_redeliveries, fence, lease_owner, lease_expires_ms, available_ms,
        cancel_requested, idempotency_key, event, limits, retry, report, error_kind, attempts,
        committed_attempt, committed_result, created_ms, started_ms, finished_ms,
        committed_fence, charged_cost, node
    FROM runs_v7;
DROP TABLE runs_v7;
CREATE UNIQUE INDEX runs_idempotency ON runs (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_runnable ON runs (tenant, priority DESC, available_ms, seq) WHERE state IN ('queued', 'retrying');
CREATE INDEX runs_interactive ON runs (seq) WHERE priority > 0 AND state IN ('queued', 'retrying');
CREATE INDEX runs_leases ON runs (lease_expires_ms) WHERE state = 'running';
CREATE INDEX runs_tenant_seq ON runs (tenant, seq);
CREATE INDEX runs_finished ON runs (finished_ms) WHERE finished_ms IS NOT NULL;
CREATE INDEX runs_state ON runs (state);
CREATE INDEX runs_timers ON runs (wake_ms) WHERE state = 'waiting';
CREATE INDEX runs_waiting_for ON runs (tenant, wait_contact) WHERE state = 'waiting';

-- Messages the platform reported from contacts (`POST /v1/contacts/{id}/messages`),
-- kept a while so a run that was queued or running when a message arrived, and which
-- waits after, still gets it. AUTOINCREMENT: a sequence number is never reused after
-- pruning empties the table (a run remembers the last one it was given).
CREATE TABLE inbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    contact TEXT NOT NULL,
    message BLOB NOT NULL,
    received_ms INTEGER NOT NULL
);
CREATE INDEX inbox_contact ON inbox (tenant, contact, seq);
CREATE INDEX inbox_received ON inbox (received_ms);
