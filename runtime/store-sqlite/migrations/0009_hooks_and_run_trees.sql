-- Inbound hooks: a tenant's signed webhook URLs (`POST /v1/hooks/{tenant}/{hook}`) that
-- start a workflow with the caller's payload. The secret is a Standard Webhooks `whsec_`
-- secret, sealed by the vault like the other secrets.
CREATE TABLE hooks (
    tenant TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    workflow TEXT NOT NULL,
    contact_path TEXT,
    secret TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
);

-- How many runs each tree of runs starting runs (`trigger_workflow`) has started, by
-- its first run: a commit that would take a tree past its cap applies nothing. A tree
-- that started nothing for a while (`updated_ms`) is forgotten.
CREATE TABLE run_trees (
    tenant TEXT NOT NULL,
    root TEXT NOT NULL,
    started INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, root)
);
CREATE INDEX run_trees_updated ON run_trees (updated_ms);
