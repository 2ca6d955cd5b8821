-- Workflows that run (issue 18): what the worker needs to call a connector action and to
-- carry a run's progress from one claim of its job to the next.

-- How each connector is reached. `base_url` is the default; a node overrides it with
-- `[connectors.<id>] base_url` (tests and the local stack point it at a local service).
ALTER TABLE connectors ADD COLUMN base_url text NOT NULL DEFAULT ''
    CHECK (base_url = '' OR base_url ~ '^https?://[^\s]+$');

-- How each action is called: its method, its path template below the base URL (`{name}`
-- segments are filled from the step's input, percent-encoded), and where the connection's
-- credential goes: `bearer` (Authorization: Bearer), `basic` (username/password),
-- `header:<name>` or `query:<name>`.
ALTER TABLE connector_actions
    ADD COLUMN method text NOT NULL DEFAULT 'POST'
        CHECK (method IN ('GET', 'POST', 'PUT', 'PATCH', 'DELETE')),
    ADD COLUMN path text NOT NULL DEFAULT '/' CHECK (path ~ '^/[A-Za-z0-9/_.:{}~-]*$'),
    ADD COLUMN placement text NOT NULL DEFAULT 'bearer'
        CHECK (placement ~ '^(bearer|basic|header:[A-Za-z][A-Za-z0-9-]{0,63}|query:[A-Za-z][A-Za-z0-9_]{0,63})$');

UPDATE connectors c SET base_url = v.base_url
FROM (VALUES
    ('slack',         'https://slack.com/api'),
    ('hubspot',       'https://api.hubapi.com'),
    ('gmail',         'https://gmail.googleapis.com'),
    ('notion',        'https://api.notion.com'),
    ('salesforce',    'https://login.salesforce.com'),
    ('github',        'https://api.github.com'),
    ('jira',          'https://jira.example.invalid'),
    ('stripe',        'https://api.stripe.com'),
    ('google_sheets', 'https://sheets.googleapis.com'),
    ('zendesk',       'https://zendesk.example.invalid')
) AS v (id, base_url)
WHERE c.id = v.id;

UPDATE connector_actions a SET method = v.method, path = v.path, placement = v.placement
FROM (VALUES
    ('slack',         'post_message',       'POST',  '/chat.postMessage',                          'bearer'),
    ('slack',         'list_channels',      'GET',   '/conversations.list',                        'bearer'),
    ('slack',         'create_channel',     'POST',  '/conversations.create',                      'bearer'),
    ('hubspot',       'create_contact',     'POST',  '/crm/v3/objects/contacts',                   'bearer'),
    ('hubspot',       'update_deal',        'PATCH', '/crm/v3/objects/deals/{deal_id}',            'bearer'),
    ('hubspot',       'search_companies',   'POST',  '/crm/v3/objects/companies/search',           'bearer'),
    ('gmail',         'send_email',         'POST',  '/gmail/v1/users/me/messages/send',           'bearer'),
    ('gmail',         'list_messages',      'GET',   '/gmail/v1/users/me/messages',                'bearer'),
    ('notion',        'create_page',        'POST',  '/v1/pages',                                  'bearer'),
    ('notion',        'query_database',     'POST',  '/v1/databases/{database_id}/query',          'bearer'),
    ('salesforce',    'create_lead',        'POST',  '/services/data/v60.0/sobjects/Lead',         'bearer'),
    ('salesforce',    'update_opportunity', 'PATCH', '/services/data/v60.0/sobjects/Opportunity/{opportunity_id}', 'bearer'),
    ('github',        'create_issue',       'POST',  '/repos/{owner}/{repo}/issues',               'bearer'),
    ('github',        'list_pull_requests', 'GET',   '/repos/{owner}/{repo}/pulls',                'bearer'),
    ('jira',          'create_issue',       'POST',  '/rest/api/3/issue',                          'basic'),
    ('jira',          'transition_issue',   'POST',  '/rest/api/3/issue/{issue_key}/transitions',  'basic'),
    ('stripe',        'create_customer',    'POST',  '/v1/customers',                              'bearer'),
    ('stripe',        'list_invoices',      'GET',   '/v1/invoices',                               'bearer'),
    ('google_sheets', 'append_row',         'POST',  '/v4/spreadsheets/{spreadsheet_id}/values/{range}:append', 'bearer'),
    ('google_sheets', 'read_range',         'GET',   '/v4/spreadsheets/{spreadsheet_id}/values/{range}', 'bearer'),
    ('zendesk',       'create_ticket',      'POST',  '/api/v2/tickets',                            'basic'),
    ('zendesk',       'update_ticket',      'PUT',   '/api/v2/tickets/{ticket_id}',                'basic')
) AS v (connector_id, action, method, path, placement)
WHERE a.connector_id = v.connector_id AND a.action = v.action;

-- A run's principal and progress. `run_by`/`run_role`: the subject and the role the run
-- acts as (the starter's, recorded at `POST /v1/workflows/{id}/runs` or a retry), checked
-- with live role data at every step. `state`: the worker's progress (next step, outputs of
-- the steps done, attempts of the current step), so a run resumes after a lost worker.
-- `error`: why a run failed or was stopped (no credential, no SQL).
ALTER TABLE executions
    ADD COLUMN run_by     text,
    ADD COLUMN run_role   text,
    ADD COLUMN state      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(state) = 'object'),
    ADD COLUMN error      text,
    ADD COLUMN started_at timestamptz;
