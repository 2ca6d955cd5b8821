-- Tenant moves between regions (issue 13).
--
-- * tenants.frozen: a tenant being moved away (or arriving) is frozen on this node. Every
--   customer transaction takes a shared advisory lock on its tenant before it reads this flag
--   (db/tenant_tx.rs), and a frozen tenant's transactions are READ ONLY; freezing takes the
--   same lock exclusively, so it waits for every write in flight and no write starts after
--   it. Reads go on.
-- * purge_moved_tenant(t): deletes every row of a frozen tenant, audit events and the home
--   record included, in reverse foreign-key order. The app role may not DELETE audit events
--   or tenant rows itself; this SECURITY DEFINER function (pinned search_path, the owner
--   subject to FORCE RLS like everyone) is its only way, only for the tenant of the
--   transaction's own app.tenant_id, and only while that tenant is frozen.
-- * audit events stay append-only for everyone else: the trigger lets a DELETE through only
--   inside that function (app.purge_tenant names the row's tenant and the trigger runs as the
--   function's owner, which only the function itself can make it).

ALTER TABLE tenants ADD COLUMN frozen boolean NOT NULL DEFAULT false;

CREATE OR REPLACE FUNCTION refuse_audit_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    IF TG_OP = 'DELETE'
       AND current_setting('app.purge_tenant', true) = OLD.tenant_id::text
       AND current_user = (SELECT pg_get_userbyid(proowner) FROM pg_proc
                            WHERE oid = 'public.purge_moved_tenant(uuid)'::regprocedure) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit events are append-only' USING ERRCODE = 'restrict_violation';
END
$$;

CREATE FUNCTION purge_moved_tenant(t uuid) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_catalog AS $$
DECLARE
    n bigint := 0;
    c bigint;
BEGIN
    IF t IS DISTINCT FROM nullif(current_setting('app.tenant_id', true), '')::uuid THEN
        RAISE EXCEPTION 'only the transaction''s own tenant can be purged' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF EXISTS (SELECT 1 FROM tenants WHERE tenant_id = t AND NOT frozen) THEN
        RAISE EXCEPTION 'only a frozen tenant can be purged' USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    PERFORM set_config('app.purge_tenant', t::text, true);
    DELETE FROM audit_events WHERE tenant_id = t;   GET DIAGNOSTICS c = ROW_COUNT; n := n + c;
    DELETE FROM configurations WHERE tenant_id = t; GET DIAGNOSTICS c = ROW_COUNT; n := n + c;
    DELETE FROM execution_logs WHERE tenant_id = t; GET DIAGNOSTICS c = ROW_COUNT; n := n + c;
    DELETE FROM executions WHERE tenant_id = t;     GET DIAGNOSTICS c = ROW_COUNT; n := n + c;
    DELETE FROM workflows WHERE tenant_id = t;      GET DIAGNOSTICS c = ROW_COUNT; n := n + c;
    DELETE FROM connections WHERE tenant_id = t;    GET DIAGNOSTICS c = ROW_COUNT; n := n + c;
    DELETE FROM members WHERE tenant_id = t;        GET DIAGNOSTICS c = ROW_COUNT; n := n + c;
    DELETE FROM roles WHERE tenant_id = t;          GET DIAGNOSTICS c = ROW_COUNT; n := n + c;
    DELETE FROM tenants WHERE tenant_id = t;        GET DIAGNOSTICS c = ROW_COUNT; n := n + c;
    PERFORM set_config('app.purge_tenant', '', true);
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION purge_moved_tenant(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION purge_moved_tenant(uuid) TO {{app_role}};
