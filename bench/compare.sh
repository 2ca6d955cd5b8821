#!/usr/bin/env bash
# The gateway's own cost, side by side with nginx and HAProxy, behind a backend that costs
# nothing (issue "[6/9] Performance"). One command: installs what is missing (wrk, nginx,
# HAProxy, jq from Debian; oha from crates.io into target/bench-tools; matplotlib into
# target/bench-venv), builds the release binaries, runs bench/compare.py, and writes
# BENCHMARKS.md and bench/plots/*.png.
#
# Usage: bench/compare.sh [--runs N=3] [--secs S=10] [--smoke]
#   --smoke   one round of every load for 1 s each, one worker, 200 idle connections, debug
#             binaries, no plots, results to a temp dir (CI: proves the harness runs end to
#             end in about a minute; no timing is asserted)
# Needs Postgres as for `residency up` (RESIDENCY_PG, default the local superuser).
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0
for a in "$@"; do [[ $a == --smoke ]] && smoke=1; done

need=()
for c in wrk nginx haproxy jq openssl; do command -v "$c" >/dev/null || need+=("$c"); done
if ((${#need[@]})); then
  pkgs=()
  for c in "${need[@]}"; do
    case $c in nginx) pkgs+=(nginx-light) ;; *) pkgs+=("$c") ;; esac
  done
  apt-get update -qq && apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi

tools=${CARGO_TARGET_DIR:-target}/bench-tools
oha_version=1.16.0
if ! "$tools/bin/oha" --version 2>/dev/null | grep -q "$oha_version"; then
  cargo install --locked --quiet oha --version "$oha_version" --root "$tools"
fi
export PATH="$PWD/$tools/bin:$PATH"
[[ $tools == /* ]] && export PATH="$tools/bin:$PATH"

py=python3
if ((smoke == 0)); then
  venv=${CARGO_TARGET_DIR:-target}/bench-venv
  if ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'matplotlib==3.9.2'
  fi
  py=$venv/bin/python
fi

if ((smoke)); then
  cargo build -q --locked -p residency-cli -p residency-gateway -p residency-region-node
else
  cargo build -q --locked --release -p residency-cli -p residency-gateway -p residency-region-node
fi
exec "$py" bench/compare.py "$@"
