-- Customer webhooks (issue 17, item 4): subscriptions and their deliveries.
--
-- * Both tables are customer-scoped like every other: tenant_id leading every key, forced RLS
--   with the tenant policy, the auditor's placement policy and column grant, immutable
--   tenant_id, and a cascade from `tenants` so the move purge (`purge_moved_tenant`) removes
--   them with the home record.
-- * A subscription's signing secret is stored sealed with the region's credentials key
--   (AES-256-GCM bound to tenant and subscription, `crypto.rs`), never in clear; a move opens
--   and re-seals it like a connection's credentials.
-- * A delivery is a row here plus a `webhook_delivery` job (0004_jobs.sql) whose subject is
--   the delivery's id, both written in the transaction of the write that caused the event:
--   deliveries leave only from the region that holds the row, the customer's home.

CREATE TABLE webhook_subscriptions (
    tenant_id   uuid NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    id          uuid NOT NULL,
    url         text NOT NULL CHECK (length(url) BETWEEN 8 AND 2048),
    events      text[] NOT NULL CHECK (cardinality(events) BETWEEN 1 AND 16),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 500),
    secret      bytea NOT NULL,
    secret_kid  text NOT NULL,
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE webhook_deliveries (
    tenant_id        uuid NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    id               uuid NOT NULL,
    subscription_id  uuid NOT NULL,
    event_id         uuid NOT NULL,
    event_type       text NOT NULL CHECK (event_type ~ '^[a-z][a-z_.]{0,63}$'),
    -- The whole body as delivered: {id, type, created_at, tenant_id, data}.
    payload          jsonb NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'failed', 'dead')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_status_code integer,
    last_error       text CHECK (length(last_error) <= 300),
    last_duration_ms integer,
    next_attempt_at  timestamptz,
    -- One object per attempt: {at, status_code, duration_ms, error}; bounded by max_attempts.
    attempt_log      jsonb NOT NULL DEFAULT '[]',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, subscription_id)
        REFERENCES webhook_subscriptions (tenant_id, id) ON DELETE CASCADE
);
-- The delivery log of a subscription, newest first.
CREATE INDEX webhook_deliveries_subscription ON webhook_deliveries (tenant_id, subscription_id, id);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['webhook_subscriptions', 'webhook_deliveries']
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

GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_subscriptions, webhook_deliveries TO {{app_role}};
