-- the e-mail outbox and action state.
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    message_id TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_error TEXT,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_ms);
CREATE TABLE state (
    tenant TEXT NOT NULL,
    contact TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    expires_ms INTEGER,
    PRIMARY KEY (tenant, contact, key)
);
