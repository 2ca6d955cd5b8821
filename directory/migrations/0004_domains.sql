-- Custom domains (issue 12): a customer's own hostname, served by the gateway with the
-- customer's certificate and for that customer's credentials only. The directory keeps the
-- hostname, its tenant, the name of its certificate (`cert_ref`: a directory under the
-- gateway's tls.domains_dir holding tls.crt and tls.key, e.g. a mounted cert-manager
-- Secret) and the verification state; never a certificate or a private key.
--
-- The hostname is the key: one row per hostname for ever. Removing a domain sets its state
-- to 'removed' (the writer has no DELETE); registering it again, by any tenant, revives the
-- row, so its version only grows and a gateway can order what it reads.

CREATE TABLE domains (
    hostname    text PRIMARY KEY CHECK (length(hostname) <= 253 AND hostname ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$' AND hostname !~ '\.[0-9]+$'),
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    cert_ref    text NOT NULL CHECK (cert_ref ~ '^[a-z0-9]([a-z0-9._-]{0,251}[a-z0-9])?$' AND position('..' IN cert_ref) = 0),
    state       text NOT NULL CHECK (state IN ('pending', 'active', 'failed', 'removed')),
    reason      text NOT NULL DEFAULT '' CHECK (length(reason) <= 500),
    verified_at timestamptz,
    version     bigint NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX domains_tenant ON domains (tenant_id, hostname);

CREATE TRIGGER domains_bump_version BEFORE UPDATE ON domains
    FOR EACH ROW EXECUTE FUNCTION directory_bump_version();

-- Every registration, verification and removal is a tenant history entry (change 'updated',
-- detail {"domain": {"hostname", "from", "to", "cert_ref"}}), attributed like tenant changes.
CREATE FUNCTION directory_record_domain_history() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_catalog AS $$
DECLARE
    t record;
    before text;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF OLD.state = NEW.state AND OLD.tenant_id = NEW.tenant_id
           AND OLD.cert_ref = NEW.cert_ref AND OLD.reason = NEW.reason THEN
            RETURN NULL;
        END IF;
        IF OLD.state <> 'removed' AND OLD.tenant_id = NEW.tenant_id THEN
            before := OLD.state;
        END IF;
    END IF;
    SELECT region, status, tier, version INTO t FROM tenants WHERE id = NEW.tenant_id;
    INSERT INTO tenant_history (tenant_id, actor, change, region, status, tier, version, detail)
    VALUES (NEW.tenant_id, coalesce(nullif(current_setting('residency.actor', true), ''), 'unknown'),
            'updated', t.region, t.status, t.tier, t.version,
            jsonb_build_object('domain', jsonb_build_object(
                'hostname', NEW.hostname, 'from', before, 'to', NEW.state, 'cert_ref', NEW.cert_ref)));
    RETURN NULL;
END
$$;
CREATE TRIGGER domains_history AFTER INSERT OR UPDATE ON domains
    FOR EACH ROW EXECUTE FUNCTION directory_record_domain_history();

-- Change notifications: {"kind": "domain", "hostname": ...}; the gateway re-reads that row.
CREATE FUNCTION directory_notify_domain() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    r record;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    PERFORM pg_notify('residency_directory',
        json_build_object('kind', 'domain', 'hostname', r.hostname)::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER domains_notify AFTER INSERT OR UPDATE OR DELETE ON domains
    FOR EACH ROW EXECUTE FUNCTION directory_notify_domain();

REVOKE ALL ON domains FROM PUBLIC;
GRANT SELECT ON domains TO {{reader_role}};
GRANT SELECT, INSERT ON domains TO {{writer_role}};
GRANT UPDATE (tenant_id, cert_ref, state, reason, verified_at, created_at) ON domains TO {{writer_role}};
