-- Every API key names a role. Keys created without one carried '' and every region node
-- refused them ("the credential names no role of this customer"): they get the documented
-- default, developer, and an empty role can no longer be stored.
UPDATE api_keys SET role = 'developer' WHERE role = '';
ALTER TABLE api_keys
    ALTER COLUMN role SET DEFAULT 'developer',
    ADD CONSTRAINT api_keys_role_named CHECK (role <> '');
