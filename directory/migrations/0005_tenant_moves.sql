-- Tenant moves between regions (issue 13): the move record the admin drives, with its plan,
-- per-table progress and keyset cursor, so a move whose driver died is resumed from here.
--
-- * At most one move per tenant is in flight (not done, not rolled back): a unique partial
--   index, so two concurrent requests cannot both start one.
-- * The driver holds a lease (driver, lease_until) renewed with every write it makes; every
--   write of the driver is conditioned on still holding it, so a resumed driver and a slow
--   old one never both act.
-- * A tenant's region changes only with a verified move: the writer role may now update
--   tenants.region, and a trigger refuses the change unless a move of that tenant to that
--   region is in phase 'verifying' with matching checksums for every table, inside the same
--   transaction that records the flip.

CREATE TABLE tenant_moves (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants (id),
    from_region     text NOT NULL CHECK (from_region ~ '^[a-z][a-z0-9-]{0,31}$'),
    to_region       text NOT NULL CHECK (to_region ~ '^[a-z][a-z0-9-]{0,31}$'),
    phase           text NOT NULL CHECK (phase IN ('planned', 'frozen', 'copying', 'verifying',
                        'flipped', 'purging', 'done', 'failed', 'rolled_back')),
    failed_in       text,
    abort_requested boolean NOT NULL DEFAULT false,
    actor           text NOT NULL,
    error           text,
    phases          jsonb NOT NULL DEFAULT '{}',
    driver          uuid,
    lease_until     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (from_region <> to_region)
);
CREATE UNIQUE INDEX tenant_moves_one_in_flight ON tenant_moves (tenant_id)
    WHERE phase NOT IN ('done', 'rolled_back');
CREATE INDEX tenant_moves_tenant ON tenant_moves (tenant_id, created_at);

CREATE TABLE tenant_move_tables (
    move_id         uuid NOT NULL REFERENCES tenant_moves (id),
    ord             integer NOT NULL,
    table_name      text NOT NULL,
    rows_total      bigint NOT NULL,
    estimated_bytes bigint NOT NULL,
    rows_copied     bigint NOT NULL DEFAULT 0,
    last_key        jsonb,
    copied          boolean NOT NULL DEFAULT false,
    checksum_source text,
    checksum_target text,
    PRIMARY KEY (move_id, ord)
);

CREATE FUNCTION directory_region_needs_verified_move() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_catalog AS $$
BEGIN
    IF NEW.region IS DISTINCT FROM OLD.region AND NOT EXISTS (
        SELECT 1 FROM tenant_moves m
         WHERE m.tenant_id = NEW.id AND m.to_region = NEW.region AND m.phase = 'verifying'
           AND NOT EXISTS (SELECT 1 FROM tenant_move_tables t
                            WHERE t.move_id = m.id
                              AND (t.checksum_source IS NULL
                                   OR t.checksum_source IS DISTINCT FROM t.checksum_target)))
    THEN
        RAISE EXCEPTION 'a tenant''s region changes only with a verified move'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER tenants_region_needs_verified_move BEFORE UPDATE OF region ON tenants
    FOR EACH ROW EXECUTE FUNCTION directory_region_needs_verified_move();

REVOKE ALL ON tenant_moves, tenant_move_tables FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON tenant_moves, tenant_move_tables TO {{writer_role}};
GRANT SELECT ON tenant_moves, tenant_move_tables TO {{reader_role}};
GRANT UPDATE (region) ON tenants TO {{writer_role}};
