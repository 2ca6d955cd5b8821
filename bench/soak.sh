#!/usr/bin/env bash
# Soak: a throwaway `residency up` stack under a steady mixed load for [minutes] (default 10;
# the README documents 10-minute and 1-hour profiles), every response checked, with signing
# key rotations, tier changes, suspensions and API key revocations during the run, and the
# RSS and open file descriptors of the gateway and each node sampled every 10 s. The driver
# (tests/src/bin/soak.rs) says what it checks; this script builds, starts the stack on free
# ports in a temp directory with its own database prefix (as .ci/schemathesis does), runs the
# driver, and tears the stack down (`up --teardown`) also on failure or Ctrl-C.
#
# Usage: bench/soak.sh [minutes=10]
#   SOAK_RATE (default 300 req/s), SOAK_CONNECTIONS (16), SOAK_EVERY (20 s between events),
#   SOAK_OUT (default target/soak): soak.json (summary, series), soak.log, up.log, stack-logs/.
# Exits 0 when every check passed, 1 when any failed, 2 on a setup error.
# Needs Postgres as for `residency up` (RESIDENCY_PG_ADMIN_URL). Binaries from ${CARGO_TARGET_DIR:-target}/debug.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
minutes=${1:-10}
[[ $minutes =~ ^[0-9]+$ ]] && (( minutes > 0 )) || { echo "soak: minutes must be a positive integer" >&2; exit 2; }
rate=${SOAK_RATE:-300}
conns=${SOAK_CONNECTIONS:-16}
every=${SOAK_EVERY:-20}
out=${SOAK_OUT:-$repo/target/soak}

log() { printf '\n==> %s\n' "$*"; }

log "building residency, residency-gateway, region-node and the soak driver"
cargo build --locked -q -p residency-cli -p residency-gateway -p residency-region-node --bins
cargo build --locked -q -p integration-tests --bin soak
bin="${CARGO_TARGET_DIR:-$repo/target}"
bin="$(realpath "$bin")/debug"

mkdir -p "$out"
out=$(realpath "$out")
rm -rf "$out/stack-logs" "$out/soak.json" "$out/soak.log" "$out/up.log"

work=$(mktemp -d "${TMPDIR:-/tmp}/residency-soak.XXXXXX")
stack="$work/stack"
prefix="soak_$$_$RANDOM"
up_pid=""

stop_stack() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$up_pid" ] && kill -0 "$up_pid" 2>/dev/null; then
    log "stopping the stack"
    kill -TERM "$up_pid" 2>/dev/null || true
    wait "$up_pid" 2>/dev/null || true
  fi
  [ -d "$stack/logs" ] && cp -r "$stack/logs" "$out/stack-logs" 2>/dev/null || true
  # Drops the databases and roles of this run's prefix and deletes its directory.
  "$bin/residency" up --teardown --dir "$stack" --prefix "$prefix" >>"$out/up.log" 2>&1 ||
    echo "soak: teardown of prefix $prefix failed (see $out/up.log)" >&2
  rm -rf "$work"
  echo "soak: summary in $out/soak.json, logs in $out"
  exit "$rc"
}
trap stop_stack EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A base port B with B..B+5 free (gateway, admin, IdP, three nodes). Another process may take
# one in between: `up` then exits 71 and we try another base.
free_base() {
  python3 - <<'PY'
import random, socket
for _ in range(200):
    base = random.randrange(20000, 60000)
    try:
        socks = []
        for p in range(base, base + 6):
            s = socket.socket()
            s.bind(("127.0.0.1", p))
            socks.append(s)
    except OSError:
        continue
    finally:
        for s in socks:
            s.close()
    print(base)
    break
else:
    raise SystemExit("no free range of 6 ports found")
PY
}

start_stack() {
  local base=$1
  log "residency up --base-port $base --dir $stack --prefix $prefix"
  "$bin/residency" up --dir "$stack" --prefix "$prefix" --base-port "$base" --bin-dir "$bin" \
    >>"$out/up.log" 2>&1 &
  up_pid=$!
  # Ready when stack.json exists: `up` writes it last, once every process answers.
  local deadline=$((SECONDS + 240))
  while [ ! -f "$stack/stack.json" ]; do
    if ! kill -0 "$up_pid" 2>/dev/null; then
      local rc=0
      wait "$up_pid" || rc=$?
      up_pid=""
      return "$rc"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "soak: the stack was not ready after 240 s; last lines of $out/up.log:" >&2
      tail -n 30 "$out/up.log" >&2
      return 1
    fi
    sleep 0.5
  done
}

attempt=1
while :; do
  rc=0
  start_stack "$(free_base)" || rc=$?
  [ "$rc" -eq 0 ] && break
  if [ "$rc" -eq 71 ] && [ "$attempt" -lt 3 ]; then
    attempt=$((attempt + 1))
    continue
  fi
  echo "soak: residency up failed (exit $rc); last lines of $out/up.log:" >&2
  tail -n 30 "$out/up.log" >&2
  exit 2
done

log "soak: $minutes min, $rate req/s on $conns connections, an event every $every s"
rc=0
"$bin/soak" "$stack" --secs $((minutes * 60)) --rate "$rate" --connections "$conns" \
  --every "$every" --json "$out/soak.json" 2>&1 | tee "$out/soak.log" || rc=$?
exit "$rc"
