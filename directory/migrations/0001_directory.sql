-- The global directory: routing metadata only, never customer data.

CREATE TABLE organizations (
    id         uuid PRIMARY KEY,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    domain     text NOT NULL UNIQUE CHECK (domain ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$'),
    plan       text NOT NULL DEFAULT 'free' CHECK (plan ~ '^[a-z][a-z0-9_-]{0,31}$'),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenants (
    id                 uuid PRIMARY KEY,
    org_id             uuid REFERENCES organizations (id),
    name               text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    region             text NOT NULL CHECK (region ~ '^[a-z][a-z0-9-]{0,31}$'),
    tier               text NOT NULL CHECK (tier IN ('starter', 'growth', 'scale', 'enterprise')),
    status             text NOT NULL CHECK (status IN ('provisioning', 'active', 'suspended', 'moving', 'deleted')),
    rate_limit_per_min integer CHECK (rate_limit_per_min > 0),
    version            bigint NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tenants_region ON tenants (region, id);
CREATE INDEX tenants_org ON tenants (org_id, id);

CREATE TABLE api_keys (
    id         uuid PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    prefix     text NOT NULL UNIQUE CHECK (prefix ~ '^[a-z0-9]{8,32}$'),
    -- Lowercase hex SHA-256 of the whole key; the key itself is never stored.
    hash       text NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
    role       text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    revoked_at timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, id);

-- Append-only history of every tenant change (placement, tier, status, limits), with actor.
CREATE TABLE tenant_history (
    id        bigserial PRIMARY KEY,
    tenant_id uuid NOT NULL,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text NOT NULL,
    change    text NOT NULL CHECK (change IN ('created', 'updated')),
    region    text NOT NULL,
    status    text NOT NULL,
    tier      text NOT NULL,
    version   bigint NOT NULL,
    detail    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX tenant_history_tenant ON tenant_history (tenant_id, id);

CREATE FUNCTION directory_refuse_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    RAISE EXCEPTION 'tenant history is append-only' USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER tenant_history_append_only BEFORE UPDATE OR DELETE ON tenant_history
    FOR EACH ROW EXECUTE FUNCTION directory_refuse_change();

-- Every update bumps the version; the gateway uses it to ignore stale reloads.
CREATE FUNCTION directory_bump_version() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    NEW.version := OLD.version + 1;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER tenants_bump_version BEFORE UPDATE ON tenants
    FOR EACH ROW EXECUTE FUNCTION directory_bump_version();

-- History: who (the transaction-local setting residency.actor) changed what.
CREATE FUNCTION directory_record_history() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_catalog AS $$
DECLARE
    diff jsonb := '{}';
BEGIN
    IF TG_OP = 'UPDATE' THEN
        SELECT coalesce(jsonb_object_agg(n.key, jsonb_build_object('from', to_jsonb(OLD) -> n.key, 'to', n.value)), '{}')
          INTO diff
          FROM jsonb_each(to_jsonb(NEW)) n
         WHERE n.key NOT IN ('version', 'updated_at') AND (to_jsonb(OLD) -> n.key) IS DISTINCT FROM n.value;
        IF diff = '{}' THEN
            RETURN NEW;
        END IF;
    END IF;
    INSERT INTO tenant_history (tenant_id, actor, change, region, status, tier, version, detail)
    VALUES (NEW.id, coalesce(nullif(current_setting('residency.actor', true), ''), 'unknown'),
            CASE TG_OP WHEN 'INSERT' THEN 'created' ELSE 'updated' END,
            NEW.region, NEW.status, NEW.tier, NEW.version, diff);
    RETURN NEW;
END
$$;
CREATE TRIGGER tenants_history AFTER INSERT OR UPDATE ON tenants
    FOR EACH ROW EXECUTE FUNCTION directory_record_history();

-- Change notifications for gateway caches (LISTEN residency_directory).
CREATE FUNCTION directory_notify() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    r record;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    IF TG_TABLE_NAME = 'tenants' THEN
        PERFORM pg_notify('residency_directory', json_build_object('kind', 'tenant', 'id', r.id)::text);
    ELSE
        PERFORM pg_notify('residency_directory',
            json_build_object('kind', 'api_key', 'id', r.id, 'prefix', r.prefix)::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER tenants_notify AFTER INSERT OR UPDATE OR DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION directory_notify();
CREATE TRIGGER api_keys_notify AFTER INSERT OR UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION directory_notify();
