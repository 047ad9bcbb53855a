-- The outbox also carries contact updates: a run's field and tag changes for the
-- platform that owns the tenant's contacts.
ALTER TABLE outbox DROP CONSTRAINT outbox_kind_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_kind_check
    CHECK (kind IN ('email', 'webhook', 'message', 'contact_update'));

-- Each contact's updates are numbered in commit order: the counter's row lock orders
-- concurrent commits for one contact, so a receiver can tell a retried older update
-- from a newer one.
CREATE TABLE contact_update_seq (
    tenant TEXT NOT NULL,
    contact TEXT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (tenant, contact)
);
