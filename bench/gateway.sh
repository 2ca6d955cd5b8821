#!/usr/bin/env bash
# Gateway end-to-end benchmark (SPEC §5) on a local `residency up` stack, with wrk, all over
# HTTPS with keep-alive, GET /v1/me of one EU enterprise demo customer (a DB-backed read):
#   direct    straight to an EU region node, with an assertion minted as the gateway mints it
#   jwt       through the gateway with a dev JWT (verified-token cache path)
#   apikey    through the gateway with the customer's API key
#   nginx     nginx proxy_pass to the same node, injecting the same assertion (if installable)
#   haproxy   HAProxy plain proxying to the same node, same assertion (if installable)
# and the gateway's idle RSS. Prints requests/s, p50/p99 latency and gateway/direct ratios.
# Everything shares this machine's cores (wrk, gateway, nodes, Postgres): on a small machine
# the ratios say what the gateway costs next to the node, not what separate hosts would see.
#
# Usage: bench/gateway.sh [seconds=15] [connections=32]
#   BENCH_PROXIES=0 skips nginx/HAProxy. Needs Postgres as for `residency up` (RESIDENCY_PG_ADMIN_URL).
#
# The stack's nodes require the gateway's client certificate (mTLS), which wrk cannot present,
# so `direct` runs against a second EU node started from the stack's own node config minus
# `client_ca_file`: same binary, same database and pool size, server-side TLS only. An
# assertion lives at most 60 s, so runs that carry a minted one are capped at 45 s.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}; conns=${2:-32}; threads=2
proxies=${BENCH_PROXIES:-1}
if (( secs > 45 )); then echo "seconds must be at most 45 (a minted assertion lives 60 s)" >&2; exit 2; fi
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
if [[ $proxies == 1 ]] && ! { command -v nginx >/dev/null && command -v haproxy >/dev/null; }; then
  { apt-get update -qq && timeout 120 apt-get install -y -qq nginx-light haproxy >/dev/null 2>&1; } \
    || echo "(nginx/haproxy not installable; skipping them)"
fi

cargo build --release -q -p residency-cli -p residency-gateway -p residency-region-node
cargo build --release -q -p integration-tests --bin mint-assertion
bin=target/release

# Nine free ports: the stack's six (gateway, admin, idp, three nodes), direct node, nginx, haproxy.
free() { ! ss -Hltn "sport = :$1" | grep -q .; }
base=""
for b in $(seq 21000 20 23000); do
  ok=1; for p in $(seq "$b" $((b + 8))); do free "$p" || { ok=0; break; }; done
  if (( ok )); then base=$b; break; fi
done
[[ -n $base ]] || { echo "no free port range found" >&2; exit 1; }
direct_port=$((base + 6)); nginx_port=$((base + 7)); haproxy_port=$((base + 8))

work=$(mktemp -d /tmp/rgbench.XXXXXX)
stack="$work/stack"
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  "$bin/residency" up --prefix rgbench --dir "$stack" --teardown >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

echo "== residency up (prefix rgbench, ports $base-$((base + 5)))"
"$bin/residency" up --prefix rgbench --base-port "$base" --dir "$stack" --fresh >"$work/up.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 600); do
  [[ -s $stack/stack.json ]] && break
  kill -0 "${pids[0]}" 2>/dev/null || { tail -20 "$work/up.log" >&2; exit 1; }
  sleep 0.5
done
[[ -s $stack/stack.json ]] || { echo "stack did not come up" >&2; tail -20 "$work/up.log" >&2; exit 1; }
S=$stack/stack.json
j() { jq -r "$1" "$S"; }
gw=$(j .gateway.url); ca=$stack/$(j .gateway.ca_cert)
admin=$(j .admin.url); admin_token=$(j .admin.token)
tenant=$(j '.demo_tenants[] | select(.region=="eu" and .tier=="enterprise") | .id')
api_key=$(j '.demo_tenants[] | select(.region=="eu" and .tier=="enterprise") | .api_key')
node_url=$(j '.regions[] | select(.id=="eu") | .node_url')
node_port=${node_url##*:}

gateway_pid=$(ps -eo pid=,args= | awk -v c="$stack/config/gateway.toml" 'index($0, c) && /residency-gateway/ {print $1; exit}')
idle_rss_kb=$(ps -o rss= -p "$gateway_pid" | tr -d ' ')
echo "gateway pid $gateway_pid, idle RSS ${idle_rss_kb} KiB"

# The benchmark customer may send as much as the directory allows, so no run measures 429s.
curl -sf -X PATCH "$admin/admin/v1/tenants/$tenant" -H "authorization: Bearer $admin_token" \
  -H 'content-type: application/json' -d '{"limits":{"rate_limit_per_min":1000000}}' >/dev/null
jwt=$(curl -sf -X POST "$(j .jwt.token_url)" -d "{\"tenant_id\":\"$tenant\"}" | jq -r .access_token)
for _ in $(seq 1 100); do
  limit=$(curl -s -o /dev/null -D - --cacert "$ca" "$gw/v1/me" -H "authorization: Bearer $jwt" \
    | tr -d '\r' | awk -F': ' 'tolower($1)=="ratelimit-limit" {print $2}')
  [[ $limit == 1000000 ]] && break
  sleep 0.1
done
[[ $limit == 1000000 ]] || { echo "rate limit override not applied (got '$limit')" >&2; exit 1; }

# A second EU node without client-certificate authentication, for wrk.
sed -e "s/^listen = .*/listen = \"127.0.0.1:$direct_port\"/" -e '/^client_ca_file/d' \
  "$stack/config/eu-node.toml" >"$stack/config/eu-direct-node.toml"
"$bin/region-node" serve --config "$stack/config/eu-direct-node.toml" >"$work/direct-node.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -sfk "https://127.0.0.1:$direct_port/readyz" >/dev/null && break
  sleep 0.1
done
curl -sfk "https://127.0.0.1:$direct_port/readyz" >/dev/null || { echo "direct node not ready" >&2; exit 1; }
mint() { "$bin/mint-assertion" "$S" eu "$tenant"; }

# wrk with latency percentiles after a 3 s warm-up (connections, pools, caches); fails on any
# non-2xx answer (a 401 or 429 would flatter).
run() {
  local name=$1; shift
  wrk -t$threads -c"$conns" -d3s "$@" >/dev/null
  echo "== $name: ${conns} connections, ${secs}s"
  wrk -t$threads -c"$conns" -d"${secs}s" --latency "$@" >"$work/$name.txt"
  cat "$work/$name.txt"
  if grep -q "Non-2xx" "$work/$name.txt"; then echo "$name: non-2xx answers; figures invalid" >&2; exit 1; fi
}
curl -sfk "https://127.0.0.1:$direct_port/v1/me" -H "x-residency-assertion: $(mint)" >/dev/null \
  || { echo "direct node refused the minted assertion" >&2; exit 1; }
run direct -H "x-residency-assertion: $(mint)" "https://127.0.0.1:$direct_port/v1/me"
run jwt -H "authorization: Bearer $jwt" "$gw/v1/me"
run apikey -H "x-api-key: $api_key" "$gw/v1/me"

if [[ $proxies == 1 ]] && command -v nginx >/dev/null && command -v haproxy >/dev/null; then
  client_cert=$stack/$(j .node_tls.client_cert); client_key=$stack/$(j .node_tls.client_key)
  cat "$stack/tls/gateway.pem" "$stack/tls/gateway.key" >"$work/frontend.pem"
  cat "$client_cert" "$client_key" >"$work/client.pem"
  mkdir -p "$work/nginx"
  assertion=$(mint)
  cat >"$work/nginx/nginx.conf" <<NGINX
user root;
worker_processes $threads;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx;
  fastcgi_temp_path $work/nginx; uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  upstream node { server 127.0.0.1:$node_port; keepalive 64; }
  server {
    listen 127.0.0.1:$nginx_port ssl;
    ssl_certificate $stack/tls/gateway.pem;
    ssl_certificate_key $stack/tls/gateway.key;
    location / {
      proxy_pass https://node;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header x-residency-assertion "$assertion";
      proxy_ssl_certificate $client_cert;
      proxy_ssl_certificate_key $client_key;
      proxy_ssl_session_reuse on;
    }
  }
}
NGINX
  nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" &
  pids+=($!)
  for _ in $(seq 1 50); do curl -sfk "https://127.0.0.1:$nginx_port/v1/me" >/dev/null && break; sleep 0.1; done
  run nginx "https://127.0.0.1:$nginx_port/v1/me"

  assertion=$(mint)
  cat >"$work/haproxy.cfg" <<HAPROXY
global
  nbthread $threads
  maxconn 8192
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend fe
  bind 127.0.0.1:$haproxy_port ssl crt $work/frontend.pem
  default_backend node
backend node
  http-request set-header x-residency-assertion "$assertion"
  server eu 127.0.0.1:$node_port ssl verify none crt $work/client.pem
HAPROXY
  haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 50); do curl -sfk "https://127.0.0.1:$haproxy_port/v1/me" >/dev/null && break; sleep 0.1; done
  run haproxy "https://127.0.0.1:$haproxy_port/v1/me"
fi

python3 - "$work" "$idle_rss_kb" <<'PY'
import os, re, sys
work, rss = sys.argv[1], int(sys.argv[2])
def unit(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    return float(m[1]) * {"us": 1e-3, "ms": 1, "s": 1e3}[m[2]]
res = {}
for name in ["direct", "jwt", "apikey", "nginx", "haproxy"]:
    path = os.path.join(work, name + ".txt")
    if not os.path.exists(path):
        continue
    text = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text)[1])
    p50 = unit(re.search(r"^\s+50%\s+(\S+)", text, re.M)[1])
    p99 = unit(re.search(r"^\s+99%\s+(\S+)", text, re.M)[1])
    res[name] = (rps, p50, p99)
print(f"\n{'path':<10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
for name, (rps, p50, p99) in res.items():
    print(f"{name:<10}{rps:>10.0f}{p50:>10.2f}{p99:>10.2f}")
d = res["direct"][0]
for name in ["jwt", "apikey"]:
    print(f"gateway ({name}) / direct = {res[name][0] / d:.2f}   (bar: >= 0.85)")
for name in ["nginx", "haproxy"]:
    if name in res:
        print(f"gateway (jwt) / {name} = {res['jwt'][0] / res[name][0]:.2f}   (bar: >= 1.0)")
print(f"added p50 (jwt - direct) = {(res['jwt'][1] - res['direct'][1]) * 1000:.0f} us at saturation")
print(f"idle gateway RSS = {rss / 1024:.1f} MiB   (bar: < 30 MiB)")
PY
