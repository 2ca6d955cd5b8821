#!/bin/sh
# One-shot, idempotent set-up of the global directory database, run by the directory-init
# service of deploy/compose.yaml (and a Job in a cluster):
#   1. as the server's administrator: the owner role and the directory database (owned by
#      it, no PUBLIC access);
#   2. as that owner: the directory migrations shipped in the image, recorded exactly as the
#      Rust runner records them (pg/src/migrate.rs: schema_migrations(version, name,
#      checksum = SHA-256 of the file), one transaction per migration), so `residency up`
#      and this script agree on what is applied.
# Environment:
#   PGHOST, PGPORT            the directory server
#   PGADMIN_USER, PGADMIN_PASSWORD  its administrator (default user postgres)
#   DIRECTORY_PASSWORD        password of the owner role ([A-Za-z0-9]+)
#   DIRECTORY_DB, DIRECTORY_ROLE  names (default residency_directory, residency_directory_owner)
#   MIGRATIONS                directory of NNNN_name.sql files (default: the image's copy)
set -eu
MIGRATIONS=${MIGRATIONS:-/usr/local/share/residency/directory-migrations}
DB=${DIRECTORY_DB:-residency_directory}
ROLE=${DIRECTORY_ROLE:-residency_directory_owner}
case "$DIRECTORY_PASSWORD" in
  *[!A-Za-z0-9]*|"") echo "DIRECTORY_PASSWORD must be [A-Za-z0-9]+" >&2; exit 64 ;;
esac
# Only plain identifiers and [A-Za-z0-9] passwords are ever interpolated into SQL.
for id in "$DB" "$ROLE"; do
  case "$id" in
    [a-z_]*) case "$id" in *[!a-z0-9_]*) echo "bad identifier: $id" >&2; exit 64 ;; esac ;;
    *) echo "bad identifier: $id" >&2; exit 64 ;;
  esac
done

PGUSER="${PGADMIN_USER:-postgres}" PGPASSWORD="$PGADMIN_PASSWORD" psql -X -q -v ON_ERROR_STOP=1 -d postgres <<SQL
SELECT 'CREATE ROLE $ROLE' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$ROLE')\gexec
ALTER ROLE $ROLE LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD '$DIRECTORY_PASSWORD';
SELECT 'CREATE DATABASE $DB OWNER $ROLE'
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$DB')\gexec
REVOKE ALL ON DATABASE $DB FROM PUBLIC;
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
  { echo "BEGIN;"; cat "$file"; echo;
    echo "INSERT INTO schema_migrations (version, name, checksum) VALUES ($version, '$name', '$sum');";
    echo "COMMIT;"; } | psql -X -q -v ON_ERROR_STOP=1
  echo "applied directory migration $name"
done
echo "directory database ready"
