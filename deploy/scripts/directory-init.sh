#!/bin/sh
# One-shot, idempotent set-up of the global directory database, run by the directory-init
# service of deploy/compose.yaml (and a Job in a cluster):
#   1. as the server's administrator: the owner, reader and writer roles (all LOGIN
#      NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS; reader and writer
#      NOINHERIT, CONNECT and schema USAGE only) and the directory database (owned by the
#      owner, no PUBLIC access): what residency_directory::bootstrap does for `residency up`;
#   2. as that owner: the directory migrations shipped in the image, with {{reader_role}} and
#      {{writer_role}} replaced by the role names (they hold the reader's and writer's table
#      grants), recorded exactly as the Rust runner records them (pg/src/migrate.rs:
#      schema_migrations(version, name, checksum = SHA-256 of the unrendered file), one
#      transaction per migration), so `residency up` and this script agree on what is applied.
# The gateway then connects as the reader (directory.url) and the admin API as the writer
# (admin.directory_url); the owner and administrator passwords stay in this one-shot job.
# Environment:
#   PGHOST, PGPORT            the directory server
#   PGADMIN_USER, PGADMIN_PASSWORD  its administrator (default user postgres)
#   DIRECTORY_PASSWORD        password of the owner role ([A-Za-z0-9]+)
#   DIRECTORY_READER_PASSWORD, DIRECTORY_WRITER_PASSWORD  passwords of the reader and writer
#   DIRECTORY_DB, DIRECTORY_ROLE  names (default residency_directory, residency_directory_owner)
#   DIRECTORY_READER_ROLE, DIRECTORY_WRITER_ROLE  (default: the owner's name with _reader,
#                             _writer instead of _owner)
#   MIGRATIONS                directory of NNNN_name.sql files (default: the image's copy)
#   REGION_NODE               the region-node binary (default: region-node on PATH)
set -eu
MIGRATIONS=${MIGRATIONS:-/usr/local/share/residency/directory-migrations}
DB=${DIRECTORY_DB:-residency_directory}
ROLE=${DIRECTORY_ROLE:-residency_directory_owner}
BASE=${ROLE%_owner}
READER=${DIRECTORY_READER_ROLE:-${BASE}_reader}
WRITER=${DIRECTORY_WRITER_ROLE:-${BASE}_writer}
for pw in DIRECTORY_PASSWORD DIRECTORY_READER_PASSWORD DIRECTORY_WRITER_PASSWORD; do
  eval "value=\${$pw:-}"
  case "$value" in
    *[!A-Za-z0-9]*|"") echo "$pw must be [A-Za-z0-9]+" >&2; exit 64 ;;
  esac
done
# Only plain identifiers and [A-Za-z0-9] passwords are ever interpolated into SQL.
[ "$READER" != "$WRITER" ] && [ "$READER" != "$ROLE" ] && [ "$WRITER" != "$ROLE" ] \
  || { echo "owner, reader and writer must be three roles" >&2; exit 64; }
for id in "$DB" "$ROLE" "$READER" "$WRITER"; do
  case "$id" in
    [a-z_]*) case "$id" in *[!a-z0-9_]*) echo "bad identifier: $id" >&2; exit 64 ;; esac ;;
    *) echo "bad identifier: $id" >&2; exit 64 ;;
  esac
done

# Passwords go to the server only as SCRAM-SHA-256 verifiers computed here (region-node
# scram-verifier; the password on its standard input, never in argv), so the plaintext never
# reaches the server or its logs.
verifier() { printf '%s\n' "$1" | ${REGION_NODE:-region-node} scram-verifier; }
OWNER_V=$(verifier "$DIRECTORY_PASSWORD")
READER_V=$(verifier "$DIRECTORY_READER_PASSWORD")
WRITER_V=$(verifier "$DIRECTORY_WRITER_PASSWORD")
for v in "$OWNER_V" "$READER_V" "$WRITER_V"; do
  case "$v" in
    SCRAM-SHA-256\$*) case "$v" in *"'"*) echo "unexpected verifier" >&2; exit 70 ;; esac ;;
    *) echo "region-node scram-verifier failed" >&2; exit 70 ;;
  esac
done

LOCKED="LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
PGUSER="${PGADMIN_USER:-postgres}" PGPASSWORD="$PGADMIN_PASSWORD" psql -X -q -v ON_ERROR_STOP=1 -d postgres <<SQL
SELECT 'CREATE ROLE $ROLE' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$ROLE')\gexec
SELECT 'CREATE ROLE $READER' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$READER')\gexec
SELECT 'CREATE ROLE $WRITER' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$WRITER')\gexec
ALTER ROLE $ROLE $LOCKED PASSWORD '$OWNER_V';
ALTER ROLE $READER $LOCKED NOINHERIT PASSWORD '$READER_V';
ALTER ROLE $WRITER $LOCKED NOINHERIT PASSWORD '$WRITER_V';
SELECT 'CREATE DATABASE $DB OWNER $ROLE'
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$DB')\gexec
REVOKE ALL ON DATABASE $DB FROM PUBLIC;
GRANT CONNECT ON DATABASE $DB TO $READER, $WRITER;
\connect $DB
ALTER SCHEMA public OWNER TO $ROLE;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO $READER, $WRITER;
SQL

export PGUSER="$ROLE" PGPASSWORD="$DIRECTORY_PASSWORD" PGDATABASE="$DB"
psql -X -q -v ON_ERROR_STOP=1 <<'SQL'
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now());
SQL
for file in "$MIGRATIONS"/*.sql; do
  name=$(basename "$file" .sql)
  version=$(echo "$name" | sed 's/_.*//; s/^0*//')
  sum=$(sha256sum "$file" | cut -d' ' -f1)
  have=$(psql -X -At -c "SELECT checksum FROM schema_migrations WHERE version = $version")
  if [ -n "$have" ]; then
    [ "$have" = "$sum" ] || { echo "migration $name was changed after it was applied" >&2; exit 1; }
    continue
  fi
  { echo "BEGIN;"; sed -e "s/{{reader_role}}/\"$READER\"/g" -e "s/{{writer_role}}/\"$WRITER\"/g" "$file"; echo;
    echo "INSERT INTO schema_migrations (version, name, checksum) VALUES ($version, '$name', '$sum');";
    echo "COMMIT;"; } | psql -X -q -v ON_ERROR_STOP=1
  echo "applied directory migration $name"
done
echo "directory database ready"
