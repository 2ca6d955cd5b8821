-- Region database schema: shared connector catalogue and every customer-scoped table with
-- Row-Level Security. Applied by the owner role. {{app_role}} and {{auditor_role}} are
-- replaced by validated identifiers (see db/migrate.rs) before this runs.

-- Shared, read-only connector catalogue (not customer data: no tenant_id).
CREATE TABLE connectors (
    id          text PRIMARY KEY CHECK (id ~ '^[a-z][a-z0-9_]{0,62}$'),
    name        text NOT NULL,
    category    text NOT NULL,
    auth_type   text NOT NULL CHECK (auth_type IN ('oauth2', 'api_key', 'basic')),
    description text NOT NULL
);

CREATE TABLE connector_actions (
    connector_id text NOT NULL REFERENCES connectors (id),
    action       text NOT NULL CHECK (action ~ '^[a-z][a-z0-9_]{0,62}$'),
    description  text NOT NULL,
    PRIMARY KEY (connector_id, action)
);

-- Guards shared by every customer-scoped table. SECURITY INVOKER (the default) with a pinned
-- search_path, so they cannot be hijacked through a schema on the path.
CREATE FUNCTION refuse_tenant_id_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    IF NEW.tenant_id IS DISTINCT FROM OLD.tenant_id THEN
        RAISE EXCEPTION 'tenant_id of a row cannot change' USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION refuse_audit_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only' USING ERRCODE = 'restrict_violation';
END
$$;

-- The customer's home record in this region.
CREATE TABLE tenants (
    tenant_id  uuid PRIMARY KEY,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    region     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE roles (
    tenant_id   uuid NOT NULL REFERENCES tenants (tenant_id),
    id          uuid NOT NULL,
    name        text NOT NULL CHECK (name ~ '^[a-z][a-z0-9_-]{0,62}$'),
    description text NOT NULL DEFAULT '',
    is_system   boolean NOT NULL DEFAULT false,
    based_on    text,
    permissions text[] NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);

CREATE TABLE members (
    tenant_id    uuid NOT NULL REFERENCES tenants (tenant_id),
    id           uuid NOT NULL,
    subject      text NOT NULL CHECK (length(subject) BETWEEN 1 AND 256),
    email        text NOT NULL CHECK (length(email) BETWEEN 3 AND 320),
    display_name text NOT NULL DEFAULT '',
    role_id      uuid NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, subject),
    UNIQUE (tenant_id, email),
    FOREIGN KEY (tenant_id, role_id) REFERENCES roles (tenant_id, id)
);
CREATE INDEX members_tenant_role ON members (tenant_id, role_id);

CREATE TABLE connections (
    tenant_id       uuid NOT NULL REFERENCES tenants (tenant_id),
    id              uuid NOT NULL,
    connector_id    text NOT NULL REFERENCES connectors (id),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    enabled_actions text[] NOT NULL DEFAULT '{}',
    -- nonce || AES-256-GCM ciphertext of the credentials JSON, bound to (tenant_id, id).
    credentials     bytea NOT NULL,
    credentials_kid text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);
CREATE INDEX connections_tenant_connector ON connections (tenant_id, connector_id);

CREATE TABLE workflows (
    tenant_id     uuid NOT NULL REFERENCES tenants (tenant_id),
    id            uuid NOT NULL,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description   text NOT NULL DEFAULT '',
    definition    jsonb NOT NULL CHECK (jsonb_typeof(definition) = 'object'),
    connection_id uuid,
    enabled       boolean NOT NULL DEFAULT true,
    version       integer NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name),
    -- Composite: a workflow can only ever reference a connection of its own tenant.
    FOREIGN KEY (tenant_id, connection_id) REFERENCES connections (tenant_id, id)
);
CREATE INDEX workflows_tenant_connection ON workflows (tenant_id, connection_id);

CREATE TABLE executions (
    tenant_id   uuid NOT NULL,
    id          uuid NOT NULL,
    workflow_id uuid NOT NULL,
    status      text NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    trigger     text NOT NULL DEFAULT 'api',
    input       jsonb NOT NULL DEFAULT '{}',
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, workflow_id) REFERENCES workflows (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX executions_tenant_workflow ON executions (tenant_id, workflow_id, id);

CREATE TABLE execution_logs (
    tenant_id    uuid NOT NULL,
    execution_id uuid NOT NULL,
    seq          integer NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    level        text NOT NULL CHECK (level IN ('debug', 'info', 'warn', 'error')),
    message      text NOT NULL,
    PRIMARY KEY (tenant_id, execution_id, seq),
    FOREIGN KEY (tenant_id, execution_id) REFERENCES executions (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE configurations (
    tenant_id  uuid NOT NULL REFERENCES tenants (tenant_id),
    key        text NOT NULL CHECK (key ~ '^[A-Za-z0-9._:-]{1,128}$'),
    value      jsonb NOT NULL,
    version    integer NOT NULL DEFAULT 1,
    updated_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);

-- Append-only: the app role has INSERT and SELECT only, and a trigger refuses UPDATE and
-- DELETE for everyone, the owner included. No FK to tenants, so evidence outlives a tenant.
CREATE TABLE audit_events (
    tenant_id   uuid NOT NULL,
    id          uuid NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    target_type text NOT NULL,
    target_id   text NOT NULL,
    request_id  text NOT NULL DEFAULT '',
    detail      jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX audit_events_tenant_action ON audit_events (tenant_id, action, id);
CREATE INDEX audit_events_tenant_actor ON audit_events (tenant_id, actor, id);
CREATE INDEX audit_events_tenant_at ON audit_events (tenant_id, at);
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION refuse_audit_change();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_audit_change();

-- Row-Level Security on every customer-scoped table, identical everywhere:
--   * ENABLE + FORCE, so the owner is subject to it too;
--   * one policy for USING and WITH CHECK on app.tenant_id, which is NULL (no rows, no
--     writes) when the setting is missing or empty: isolation fails closed;
--   * the auditor may count rows per tenant (it can read the tenant_id column only);
--   * tenant_id can never change.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenants', 'roles', 'members', 'connections', 'workflows',
                             'executions', 'execution_logs', 'configurations', 'audit_events']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I '
            'USING (tenant_id = (SELECT nullif(current_setting(''app.tenant_id'', true), '''')::uuid)) '
            'WITH CHECK (tenant_id = (SELECT nullif(current_setting(''app.tenant_id'', true), '''')::uuid))',
            t);
        EXECUTE format('CREATE POLICY auditor_placement ON %I FOR SELECT TO {{auditor_role}} USING (true)', t);
        EXECUTE format('GRANT SELECT (tenant_id) ON %I TO {{auditor_role}}', t);
        EXECUTE format(
            'CREATE TRIGGER %I BEFORE UPDATE OF tenant_id ON %I '
            'FOR EACH ROW EXECUTE FUNCTION refuse_tenant_id_change()',
            t || '_tenant_id_immutable', t);
    END LOOP;
END
$$;

-- Least privilege for the application role: no TRUNCATE, no REFERENCES, no DDL.
GRANT SELECT ON connectors, connector_actions TO {{app_role}}, {{auditor_role}};
GRANT SELECT, INSERT, UPDATE ON tenants TO {{app_role}};
GRANT SELECT, INSERT, UPDATE, DELETE ON roles, members, connections, workflows, executions,
    execution_logs, configurations TO {{app_role}};
GRANT SELECT, INSERT ON audit_events TO {{app_role}};
