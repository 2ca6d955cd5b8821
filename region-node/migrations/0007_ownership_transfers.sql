-- Ownership transfer offers (issue 17, item 3): a customer's owner offers ownership to
-- another member or to an email (a member who joins later with that email may accept).
--
-- * One open offer per customer (a partial unique index, tenant_id leading it). An open
--   offer past expires_at is expired: the API reports it so, marks it 'expired' before a new
--   offer is made, and the acceptance checks expires_at in its own UPDATE (in SQL, at the
--   database's clock), so an offer cannot be accepted after it expired.
-- * Customer-scoped like every other table: tenant_id leads the primary key and every foreign
--   key, RLS enabled and forced with the tenant_isolation policy, the auditor's placement
--   policy and column grant, the tenant_id trigger. The foreign keys cascade from the
--   tenant and from both members, so removing a member drops its offers, and the move purge
--   (purge_moved_tenant deletes members, then the tenant) removes every offer.

CREATE TABLE ownership_transfers (
    tenant_id      uuid NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    id             uuid NOT NULL,
    from_member_id uuid NOT NULL,
    to_member_id   uuid,
    to_email       text CHECK (length(to_email) BETWEEN 3 AND 320),
    status         text NOT NULL DEFAULT 'open'
                   CHECK (status IN ('open', 'accepted', 'declined', 'cancelled', 'expired')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL DEFAULT now() + interval '72 hours',
    decided_at     timestamptz,
    decided_by     text,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, from_member_id) REFERENCES members (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, to_member_id) REFERENCES members (tenant_id, id) ON DELETE CASCADE,
    CHECK ((to_member_id IS NULL) <> (to_email IS NULL)),
    CHECK (expires_at > created_at)
);
CREATE UNIQUE INDEX ownership_transfers_one_open ON ownership_transfers (tenant_id)
    WHERE status = 'open';
CREATE INDEX ownership_transfers_tenant_from ON ownership_transfers (tenant_id, from_member_id);
CREATE INDEX ownership_transfers_tenant_to ON ownership_transfers (tenant_id, to_member_id);

ALTER TABLE ownership_transfers ENABLE ROW LEVEL SECURITY;
ALTER TABLE ownership_transfers FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ownership_transfers
    USING (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid));
CREATE POLICY auditor_placement ON ownership_transfers FOR SELECT TO {{auditor_role}} USING (true);
GRANT SELECT (tenant_id) ON ownership_transfers TO {{auditor_role}};
CREATE TRIGGER ownership_transfers_tenant_id_immutable BEFORE UPDATE OF tenant_id
    ON ownership_transfers FOR EACH ROW EXECUTE FUNCTION refuse_tenant_id_change();

-- Offers are decided by an UPDATE of their status, never deleted through the API (the
-- cascades above remove them with their members or tenant).
GRANT SELECT, INSERT, UPDATE ON ownership_transfers TO {{app_role}};
