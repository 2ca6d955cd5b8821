-- Organization ownership transfer (issue 17, item 3): the organization's owner offers its
-- ownership to an email; the person with that email accepts with an identity-provider JWT of
-- the organization whose verified `email` claim matches (organization tokens are not
-- people and cannot accept). Accepting makes that email the organization's owner of record
-- (`organizations.owner_email`) in the same transaction that closes the offer and appends
-- the audit rows; the offer expires 72 hours after it was made, checked in that UPDATE.

CREATE TABLE org_ownership_transfers (
    id         uuid PRIMARY KEY,
    org_id     uuid NOT NULL REFERENCES organizations (id),
    from_email text CHECK (from_email IS NULL OR length(from_email) BETWEEN 3 AND 320),
    to_email   text NOT NULL CHECK (length(to_email) BETWEEN 3 AND 320 AND position('@' IN to_email) > 1),
    offered_by text NOT NULL,
    status     text NOT NULL DEFAULT 'open'
               CHECK (status IN ('open', 'accepted', 'declined', 'cancelled', 'expired')),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL DEFAULT now() + interval '72 hours',
    decided_at timestamptz,
    decided_by text,
    CHECK (expires_at > created_at)
);
-- One open offer per organization.
CREATE UNIQUE INDEX org_ownership_transfers_one_open ON org_ownership_transfers (org_id)
    WHERE status = 'open';
CREATE INDEX org_ownership_transfers_org ON org_ownership_transfers (org_id, id);

-- The organization's append-only audit trail of ownership (offered, accepted, declined,
-- cancelled), like signup_events.
CREATE TABLE org_events (
    id          bigserial PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organizations (id),
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    event       text NOT NULL CHECK (event IN ('ownership.offered', 'ownership.accepted',
                                               'ownership.declined', 'ownership.cancelled')),
    transfer_id uuid REFERENCES org_ownership_transfers (id),
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX org_events_org ON org_events (org_id, id);
CREATE TRIGGER org_events_append_only BEFORE UPDATE OR DELETE ON org_events
    FOR EACH ROW EXECUTE FUNCTION directory_refuse_change();

REVOKE ALL ON org_ownership_transfers, org_events FROM PUBLIC;
GRANT SELECT, INSERT ON org_ownership_transfers, org_events TO {{writer_role}};
GRANT UPDATE (status, decided_at, decided_by) ON org_ownership_transfers TO {{writer_role}};
GRANT UPDATE (owner_email) ON organizations TO {{writer_role}};
GRANT USAGE ON SEQUENCE org_events_id_seq TO {{writer_role}};
