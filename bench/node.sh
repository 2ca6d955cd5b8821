#!/usr/bin/env bash
# Region-node read benchmark (SPEC §5): a DB-backed node read vs pgbench select-only on the
# same Postgres, and the cost of RLS vs the same query with a plain WHERE tenant_id.
# Usage: bench/node.sh [seconds=15] [connections=32]   (installs wrk from Debian if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}; conns=${2:-32}; threads=2
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
admin=${RESIDENCY_TEST_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
work=$(mktemp -d)
cargo build --release -q -p integration-tests --bin bench-node
mkfifo "$work/hold"
target/release/bench-node "$work" < "$work/hold" &
fixture=$!
exec 3>"$work/hold"
trap 'exec 3>&-; wait $fixture 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 200); do [ -s "$work/fixture.env" ] && [ -s "$work/assertion" ] && break; sleep 0.1; done
# shellcheck disable=SC1091
. "$work/fixture.env"

echo "== node: GET one configuration through the tenant transaction (${conns} connections, ${secs}s)"
node_rps=$(wrk -t$threads -c"$conns" -d"${secs}s" -H "x-residency-assertion: $(cat "$work/assertion")" "$URL" \
  | tee /dev/stderr | awk '/Requests\/sec/ {print $2}')

echo "== pgbench -S (select-only, same server, ${conns} clients, ${secs}s)"
pgdb="rgbench_$$"
psql -q "$admin" -c "CREATE DATABASE $pgdb" >/dev/null
pgurl="${admin%/*}/$pgdb"
pgbench -q -i -s 10 "$pgurl" >/dev/null 2>&1
pg_tps=$(pgbench -S -c "$conns" -j $threads -T "$secs" "$pgurl" 2>/dev/null | awk '/^tps/ {print $3; exit}')
psql -q "$admin" -c "DROP DATABASE $pgdb WITH (FORCE)" >/dev/null
echo "pgbench select-only tps: $pg_tps"

echo "== RLS cost: the same read as the app role under RLS vs the superuser with WHERE tenant_id"
cat > "$work/rls.sql" <<SQL
BEGIN;
SELECT set_config('app.tenant_id', '$TENANT', true);
SELECT value FROM configurations WHERE key = 'theme';
COMMIT;
SQL
cat > "$work/plain.sql" <<SQL
BEGIN;
SELECT set_config('app.tenant_id', '$TENANT', true);
SELECT value FROM configurations WHERE tenant_id = '$TENANT' AND key = 'theme';
COMMIT;
SQL
rls_tps=$(pgbench -n -M prepared -f "$work/rls.sql" -c "$conns" -j $threads -T "$secs" "$APP_URL" 2>/dev/null | awk '/^tps/ {print $3; exit}')
plain_tps=$(pgbench -n -M prepared -f "$work/plain.sql" -c "$conns" -j $threads -T "$secs" "$ADMIN_DB_URL" 2>/dev/null | awk '/^tps/ {print $3; exit}')

python3 - "$node_rps" "$pg_tps" "$rls_tps" "$plain_tps" <<'PY'
import sys
node, pg, rls, plain = map(float, sys.argv[1:])
print(f"\nnode read rps          {node:10.0f}")
print(f"pgbench -S tps         {pg:10.0f}   node/pgbench = {node/pg:.2f}  (bar: >= 0.35, SPEC §5)")
print(f"RLS read tps           {rls:10.0f}")
print(f"plain WHERE read tps   {plain:10.0f}   RLS cost = {plain/rls:.2f}x  (bar: <= 1.10x)")
PY
