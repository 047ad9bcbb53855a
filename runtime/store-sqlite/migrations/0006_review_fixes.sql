-- Version numbers are never reused: a deleted action's highest version is remembered,
-- so a run pinned to "v2" of a deleted action never runs another component's v2.
CREATE TABLE version_marks (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    last_version INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
);
INSERT INTO version_marks (tenant, name, last_version)
    SELECT tenant, name, MAX(version) FROM versions GROUP BY tenant, name;

-- A commit's idempotency is keyed on the fence (unique per lease), not the attempt
-- number (which a release or a retry of a dead run moves back).
ALTER TABLE runs ADD COLUMN committed_fence INTEGER;
UPDATE runs SET committed_fence = fence WHERE committed_attempt IS NOT NULL;

-- What a claim charged the tenant's deficit, refunded exactly by the commit or release.
ALTER TABLE runs ADD COLUMN charged_cost INTEGER NOT NULL DEFAULT 0;

-- The outbox claim filters by kind; an endpoint's secrets are read per delivery.
CREATE INDEX outbox_queued_kind ON outbox (kind, next_attempt_ms, id) WHERE status = 'queued';
CREATE INDEX webhook_secrets_endpoint ON webhook_secrets (tenant, endpoint);

-- The node that ran a run's last attempt, kept after its lease ends.
ALTER TABLE runs ADD COLUMN node TEXT;
UPDATE runs SET node = lease_owner WHERE lease_owner IS NOT NULL;
