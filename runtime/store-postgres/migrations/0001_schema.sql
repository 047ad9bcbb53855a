-- Fluxo's shared store on PostgreSQL: the same model as the embedded SQLite store
-- (runtime/store-sqlite/migrations), for several nodes. Times are milliseconds since the
-- Unix epoch (BIGINT); records are MessagePack (BYTEA) or JSON (TEXT) as in SQLite.

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    created_ms BIGINT NOT NULL
);
CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    created_ms BIGINT NOT NULL
);
CREATE TABLE actions (
    tenant TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    active_version BIGINT NOT NULL,
    limits TEXT NOT NULL DEFAULT '{}',
    retry TEXT NOT NULL DEFAULT '{}',
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);
CREATE TABLE versions (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    hash TEXT NOT NULL,
    size BIGINT NOT NULL,
    imports TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, name, version),
    FOREIGN KEY (tenant, name) REFERENCES actions (tenant, name) ON DELETE CASCADE
);
CREATE INDEX versions_hash ON versions (hash);
-- Version numbers are never reused, even after an action is deleted.
CREATE TABLE version_marks (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    last_version BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);
CREATE TABLE secrets (
    id BIGSERIAL PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    UNIQUE (tenant, name)
);
CREATE TABLE components (
    hash TEXT PRIMARY KEY,
    bytes BYTEA NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE TABLE webhook_endpoints (
    tenant TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    url TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    disabled_reason TEXT,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE webhook_secrets (
    id BIGSERIAL PRIMARY KEY,
    tenant TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT,
    FOREIGN KEY (tenant, endpoint) REFERENCES webhook_endpoints (tenant, id) ON DELETE CASCADE
);
CREATE INDEX webhook_secrets_endpoint ON webhook_secrets (tenant, endpoint);

CREATE TABLE runs (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target_name TEXT NOT NULL,
    target_version BIGINT NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('run', 'test')),
    priority BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'retrying', 'succeeded', 'failed', 'dead', 'cancelled')),
    attempt BIGINT NOT NULL DEFAULT 0,
    crash_redeliveries BIGINT NOT NULL DEFAULT 0,
    fence BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_expires_ms BIGINT,
    available_ms BIGINT NOT NULL,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    idempotency_key TEXT,
    event BYTEA NOT NULL,
    limits BYTEA NOT NULL,
    retry BYTEA NOT NULL,
    report BYTEA,
    error_kind TEXT,
    attempts BYTEA,
    committed_fence BIGINT,
    committed_result BYTEA,
    charged_cost BIGINT NOT NULL DEFAULT 0,
    node TEXT,
    created_ms BIGINT NOT NULL,
    started_ms BIGINT,
    finished_ms BIGINT
);
CREATE UNIQUE INDEX runs_idempotency ON runs (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_runnable ON runs (tenant, priority DESC, available_ms, seq) WHERE state IN ('queued', 'retrying');
CREATE INDEX runs_interactive ON runs (seq) WHERE priority > 0 AND state IN ('queued', 'retrying');
CREATE INDEX runs_leases ON runs (lease_expires_ms) WHERE state = 'running';
CREATE INDEX runs_tenant_seq ON runs (tenant, seq);
CREATE INDEX runs_finished ON runs (finished_ms) WHERE finished_ms IS NOT NULL;
CREATE INDEX runs_state ON runs (state);
CREATE INDEX runs_lease_owner ON runs (lease_owner) WHERE state = 'running';

CREATE TABLE tenant_queue (
    tenant TEXT PRIMARY KEY,
    runnable BIGINT NOT NULL DEFAULT 0,
    running BIGINT NOT NULL DEFAULT 0,
    deficit BIGINT NOT NULL DEFAULT 0,
    served BIGINT NOT NULL DEFAULT 0,
    est_cost BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX tenant_queue_ready ON tenant_queue (served) WHERE runnable > 0;
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('served', 0);

CREATE TABLE state (
    tenant TEXT NOT NULL,
    scope TEXT NOT NULL CHECK (scope IN ('tenant', 'contact')),
    contact TEXT NOT NULL,
    key TEXT NOT NULL,
    value BYTEA NOT NULL,
    expires_ms BIGINT,
    PRIMARY KEY (tenant, scope, contact, key),
    CHECK ((scope = 'tenant') = (contact = ''))
);
CREATE INDEX state_expiry ON state (tenant, expires_ms) WHERE expires_ms IS NOT NULL;
CREATE TABLE state_usage (
    tenant TEXT PRIMARY KEY,
    bytes BIGINT NOT NULL
);

CREATE TABLE contacts (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    record TEXT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, id)
);

CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY,
    tenant TEXT NOT NULL,
    run_id TEXT,
    dedup_key TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('email', 'webhook')),
    payload TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'failed')),
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    claim BIGINT NOT NULL DEFAULT 0,
    claimed_by TEXT,
    lease_until BIGINT,
    last_error TEXT,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    UNIQUE (tenant, dedup_key)
);
CREATE INDEX outbox_queued_kind ON outbox (kind, next_attempt_ms, id) WHERE status = 'queued';
CREATE INDEX outbox_claimed ON outbox (kind, lease_until) WHERE status = 'sending';
CREATE INDEX outbox_settled ON outbox (updated_ms) WHERE status IN ('sent', 'failed');
