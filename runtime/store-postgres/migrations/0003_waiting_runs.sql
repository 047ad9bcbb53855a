-- Workflow runs wait for the contact's reply: a `waiting` state, the host's checkpoint
-- (opaque JSON), the timeout (`wake_ms`, a durable timer the claim fires), the contact
-- whose reply it waits for, the reply that resumed it (and its inbox sequence number),
-- and how many segments committed.
ALTER TABLE runs DROP CONSTRAINT runs_state_check;
ALTER TABLE runs ADD CONSTRAINT runs_state_check
    CHECK (state IN ('queued', 'running', 'retrying', 'waiting', 'succeeded', 'failed', 'dead', 'cancelled'));
ALTER TABLE runs ADD COLUMN checkpoint TEXT;
ALTER TABLE runs ADD COLUMN wake_ms BIGINT;
ALTER TABLE runs ADD COLUMN wait_contact TEXT;
ALTER TABLE runs ADD COLUMN reply BYTEA;
ALTER TABLE runs ADD COLUMN reply_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN segments BIGINT NOT NULL DEFAULT 0;
CREATE INDEX runs_timers ON runs (wake_ms) WHERE state = 'waiting';
CREATE INDEX runs_waiting_for ON runs (tenant, wait_contact) WHERE state = 'waiting';

-- Messages the platform reported from contacts (`POST /v1/contacts/{id}/messages`),
-- kept a while so a run that was queued or running when a message arrived, and which
-- waits after, still gets it. BIGSERIAL never reuses a number (a run remembers the last
-- one it was given).
CREATE TABLE inbox (
    seq BIGSERIAL PRIMARY KEY,
    tenant TEXT NOT NULL,
    contact TEXT NOT NULL,
    message BYTEA NOT NULL,
    received_ms BIGINT NOT NULL
);
CREATE INDEX inbox_contact ON inbox (tenant, contact, seq);
CREATE INDEX inbox_received ON inbox (received_ms);
