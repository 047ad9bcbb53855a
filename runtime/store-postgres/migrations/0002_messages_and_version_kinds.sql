-- The outbox also carries platform messages (replies, notifications, handoffs) a run
-- committed, and versions record their kind.
ALTER TABLE outbox DROP CONSTRAINT outbox_kind_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_kind_check
    CHECK (kind IN ('email', 'webhook', 'message'));

-- A version says what it holds. Workflow versions were marked by a first import of
-- 'fluxo:workflow'; the marker moves into the column and leaves the imports.
ALTER TABLE versions ADD COLUMN kind TEXT NOT NULL DEFAULT 'component'
    CHECK (kind IN ('component', 'workflow'));
UPDATE versions SET kind = 'workflow', imports = ((imports::jsonb) - 0)::text
    WHERE imports::jsonb ->> 0 = 'fluxo:workflow';
