-- Background jobs of this region: workflow runs and webhook deliveries wait here until a
-- worker of this region's node claims them. Postgres is the queue (no extra broker).
--
-- * `jobs` is customer-scoped like every other table: forced RLS with the tenant policy, the
--   auditor's placement policy, tenant_id leading the key, immutable tenant_id, and a cascade
--   from `tenants` so the move purge removes it. A job holds ids only (the execution or
--   delivery it runs), never content.
-- * Claiming must find due jobs of every tenant, which the tenant policy forbids. The one way
--   across tenants is `claim_jobs` below: SECURITY DEFINER (runs as this migration's owner,
--   which FORCE RLS holds to the policies too), and the only policy that lets the owner see
--   every job applies only while `app.job_claim` is 'on', which the function sets for its own
--   statement and clears before returning. It returns ids and counters, never content; the
--   worker then opens the job's tenant transaction (RLS) to read and write the job itself.
-- * `job_queue_depth` counts due and leased jobs per kind for the metrics, the same way.

CREATE TABLE jobs (
    tenant_id   uuid NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    id          uuid NOT NULL,
    kind        text NOT NULL CHECK (kind ~ '^[a-z][a-z_]{0,31}$'),
    subject_id  uuid NOT NULL,
    run_at      timestamptz NOT NULL DEFAULT now(),
    attempts    integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    lease_owner text,
    lease_until timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CHECK ((lease_owner IS NULL) = (lease_until IS NULL))
);
-- The claim's scan: due jobs of one kind, oldest first.
CREATE INDEX jobs_due ON jobs (kind, run_at);
CREATE INDEX jobs_tenant_subject ON jobs (tenant_id, subject_id);

ALTER TABLE jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON jobs
    USING (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid));
CREATE POLICY auditor_placement ON jobs FOR SELECT TO {{auditor_role}} USING (true);
GRANT SELECT (tenant_id) ON jobs TO {{auditor_role}};
CREATE TRIGGER jobs_tenant_id_immutable BEFORE UPDATE OF tenant_id ON jobs
    FOR EACH ROW EXECUTE FUNCTION refuse_tenant_id_change();
-- Only for the claim functions below (they run as this owner and set the flag themselves).
CREATE POLICY job_claim ON jobs TO CURRENT_USER
    USING (current_setting('app.job_claim', true) = 'on')
    WITH CHECK (current_setting('app.job_claim', true) = 'on');

GRANT SELECT, INSERT, UPDATE, DELETE ON jobs TO {{app_role}};

CREATE FUNCTION claim_jobs(k text, worker text, lease_ms integer, n integer)
RETURNS TABLE (job_tenant uuid, job_id uuid, job_subject uuid, job_attempts integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_catalog AS $$
BEGIN
    IF worker IS NULL OR worker = '' OR lease_ms IS NULL OR lease_ms < 1 OR n IS NULL OR n < 1 THEN
        RAISE EXCEPTION 'claim_jobs: a worker id, a positive lease and a positive count are required'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM set_config('app.job_claim', 'on', true);
    RETURN QUERY
        UPDATE jobs j
           SET lease_owner = worker,
               lease_until = clock_timestamp() + make_interval(secs => lease_ms / 1000.0),
               attempts = j.attempts + 1
         WHERE (j.tenant_id, j.id) IN (
                SELECT q.tenant_id, q.id FROM jobs q
                 WHERE q.kind = k AND q.run_at <= clock_timestamp()
                   AND (q.lease_until IS NULL OR q.lease_until < clock_timestamp())
                 ORDER BY q.run_at
                 LIMIT n
                   FOR UPDATE SKIP LOCKED)
        RETURNING j.tenant_id, j.id, j.subject_id, j.attempts;
    PERFORM set_config('app.job_claim', '', true);
END
$$;

CREATE FUNCTION job_queue_depth()
RETURNS TABLE (job_kind text, due bigint, leased bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_catalog AS $$
BEGIN
    PERFORM set_config('app.job_claim', 'on', true);
    RETURN QUERY
        SELECT q.kind,
               count(*) FILTER (WHERE q.lease_until IS NULL OR q.lease_until < clock_timestamp()),
               count(*) FILTER (WHERE q.lease_until >= clock_timestamp())
          FROM jobs q
         WHERE q.run_at <= clock_timestamp() OR q.lease_until IS NOT NULL
         GROUP BY q.kind;
    PERFORM set_config('app.job_claim', '', true);
END
$$;

REVOKE ALL ON FUNCTION claim_jobs(text, text, integer, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION job_queue_depth() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION claim_jobs(text, text, integer, integer) TO {{app_role}};
GRANT EXECUTE ON FUNCTION job_queue_depth() TO {{app_role}};
