-- The outbox also carries contact updates: a run's field and tag changes for the
-- platform that owns the tenant's contacts.
ALTER TABLE outbox DROP CONSTRAINT outbox_kind_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_kind_check
    CHECK (kind IN ('email', 'webhook', 'message', 'contact_update'));
