-- Least privilege (issue 10): the owner (who applies migrations) keeps every table and all
-- DDL. Two LOGIN roles, NOSUPERUSER NOBYPASSRLS, owning nothing, get only what they use:
--   {{reader_role}}  the gateway's cache: reads tenants and API keys, LISTENs (no grant
--                    needed; the payloads carry ids and public prefixes, never hashes);
--   {{writer_role}}  the admin API: creates organizations, tenants and keys, updates a
--                    tenant's name, tier, status and limit, revokes keys, appends history
--                    (through the trigger, which runs as the writer), reads all of it.
-- Nobody but the owner may DELETE, TRUNCATE, move a tenant's region or rewrite a key hash.
-- {{reader_role}} and {{writer_role}} are replaced by the runner with checked identifiers.

REVOKE ALL ON organizations, tenants, api_keys, tenant_history FROM PUBLIC;

GRANT SELECT ON tenants, api_keys TO {{reader_role}};

GRANT SELECT, INSERT ON organizations, tenants, api_keys, tenant_history TO {{writer_role}};
GRANT UPDATE (name, tier, status, rate_limit_per_min) ON tenants TO {{writer_role}};
GRANT UPDATE (revoked_at) ON api_keys TO {{writer_role}};
GRANT USAGE ON SEQUENCE tenant_history_id_seq TO {{writer_role}};
