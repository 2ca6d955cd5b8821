-- Partner self-service (issue 17): organization-scoped admin tokens, the organization's
-- owner and provisional state, and the signup pipeline with its audit trail.

-- The applicant who owns an organization created by a signup (NULL for organizations the
-- platform admin created), and whether it runs with reduced limits until reviewed.
ALTER TABLE organizations
    ADD COLUMN owner_email text CHECK (owner_email IS NULL OR (length(owner_email) <= 320 AND position('@' IN owner_email) > 1)),
    ADD COLUMN provisional boolean NOT NULL DEFAULT false;

-- Organization admin tokens: `rog_<prefix>_<secret>`, stored like API keys (public prefix,
-- lowercase hex SHA-256 of the whole token; the token itself is never stored). The gateway
-- looks the token up on every admin request, so a revocation is effective at once on every
-- gateway.
CREATE TABLE org_tokens (
    id         uuid PRIMARY KEY,
    org_id     uuid NOT NULL REFERENCES organizations (id),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role       text NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    prefix     text NOT NULL UNIQUE CHECK (prefix ~ '^[a-z0-9]{8,32}$'),
    hash       text NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    revoked_by text
);
CREATE INDEX org_tokens_org ON org_tokens (org_id, id);

-- Signups: one row per application, with its outcome and reasons; every step and review is
-- a signup_events row (append-only).
CREATE TABLE signups (
    id             uuid PRIMARY KEY,
    email          text NOT NULL CHECK (length(email) BETWEEN 3 AND 320),
    domain         text NOT NULL CHECK (length(domain) BETWEEN 1 AND 253),
    company        text NOT NULL CHECK (length(company) BETWEEN 1 AND 200),
    website        text NOT NULL DEFAULT '' CHECK (length(website) <= 500),
    description    text NOT NULL DEFAULT '' CHECK (length(description) <= 4000),
    status         text NOT NULL CHECK (status IN ('approved', 'provisional', 'manual_review', 'rejected')),
    reasons        jsonb NOT NULL DEFAULT '[]',
    classification jsonb,
    classifier     text NOT NULL DEFAULT '',
    org_id         uuid REFERENCES organizations (id),
    review_note    text CHECK (review_note IS NULL OR length(review_note) <= 2000),
    reviewed_by    text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX signups_status ON signups (status, id);
CREATE INDEX signups_domain ON signups (domain);

CREATE TABLE signup_events (
    id        bigserial PRIMARY KEY,
    signup_id uuid NOT NULL REFERENCES signups (id),
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text NOT NULL,
    event     text NOT NULL CHECK (event IN ('submitted', 'approved', 'rejected', 'promoted')),
    status    text NOT NULL,
    detail    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX signup_events_signup ON signup_events (signup_id, id);
CREATE TRIGGER signup_events_append_only BEFORE UPDATE OR DELETE ON signup_events
    FOR EACH ROW EXECUTE FUNCTION directory_refuse_change();

REVOKE ALL ON org_tokens, signups, signup_events FROM PUBLIC;
GRANT SELECT, INSERT ON org_tokens, signups, signup_events TO {{writer_role}};
GRANT UPDATE (revoked_at, revoked_by) ON org_tokens TO {{writer_role}};
GRANT UPDATE (status, reasons, org_id, review_note, reviewed_by, updated_at) ON signups TO {{writer_role}};
GRANT UPDATE (provisional) ON organizations TO {{writer_role}};
GRANT USAGE ON SEQUENCE signup_events_id_seq TO {{writer_role}};
