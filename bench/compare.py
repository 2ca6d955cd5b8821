#!/usr/bin/env python3
"""Side-by-side proxy benchmark: the gateway doing its whole job against nginx and HAProxy,
all in front of one backend that costs nothing (nginx `return 200` on loopback).

Run through bench/compare.sh, which installs the tools and builds the binaries.

Contenders (TLS on the front of every one; worker count W the same for each):
  gateway-jwt     the gateway, full job: ES256 JWT (verified-token cache), directory, GCRA
                  rate limit, assertion minting, streaming proxy; `listen.public_cores = W`
                  (W single-threaded runtimes serve the connections) and
                  TOKIO_WORKER_THREADS=1 for the rest (accept loop, admin, background tasks)
  gateway-apikey  the same with the customer's API key
  nginx           nginx `proxy_pass` with `worker_processes W`, no authentication at all
  haproxy-jwt     HAProxy `nbthread W` doing the same job in its own rules: bearer -> alg check
                  -> jwt_verify(ES256) -> exp check -> tenant_id claim -> map(tenants.map) ->
                  backend
  direct          the backend itself, plain HTTP (the baseline for added latency)

Loads:
  saturation      wrk -t1 -c16, every contender, W in {1, 2}, interleaved in random order
                  per round, --runs rounds
  http2           oha --http2 -c4 -p4 (closed loop) on the gateway, nginx and HAProxy
  rate            oha -q R --latency-correction at 10/25/50/75 % of the gateway's best rate,
                  on the gateway, nginx and the direct backend: percentiles against offered
                  load, and the gateway's added latency at half load
  idle            10,000 idle TLS keep-alive connections to the gateway: RSS per connection

Everything shares this machine's cores; results are ranges over the rounds.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTENDERS = ["gateway-jwt", "gateway-apikey", "nginx", "haproxy-jwt", "direct"]
FRACTIONS = (0.1, 0.25, 0.5, 0.75)


def log(msg: str) -> None:
    print(f"[compare] {msg}", flush=True)


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def consecutive_free(n: int) -> int:
    for base in range(24000, 30000, 20):
        ok = True
        for p in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise SystemExit("no free port range")


def wait_http(url: str, ctx: ssl.SSLContext | None = None, headers=None, timeout=60.0) -> None:
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            req = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(req, context=ctx, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception as e:  # noqa: BLE001 - any failure means "not yet"
            last = e
        time.sleep(0.1)
    raise SystemExit(f"{url} not ready: {last}")


def insecure() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Procs:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, args, log_path: Path, env=None) -> subprocess.Popen:
        f = open(log_path, "wb")
        p = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, env=env,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen) -> None:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            try:
                self.stop(p)
            except ProcessLookupError:
                pass


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def version_of(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        text = (out.stdout + out.stderr).strip().splitlines()
        return text[0] if text else "?"
    except Exception:  # noqa: BLE001
        return "not found"


# ---------------------------------------------------------------------------- the setup


class Setup:
    """The `residency up` stack (directory, identity provider, certificates), the static
    backend, and the contenders started with a given worker count."""

    def __init__(self, args, work: Path, procs: Procs) -> None:
        self.args, self.work, self.procs = args, work, procs
        self.bin = ROOT / "target" / ("debug" if args.smoke else "release")
        if os.environ.get("CARGO_TARGET_DIR"):
            self.bin = Path(os.environ["CARGO_TARGET_DIR"]) / ("debug" if args.smoke else "release")
        self.stack = work / "stack"
        self.running: dict[str, subprocess.Popen] = {}

    def up(self) -> None:
        base = consecutive_free(8)
        log(f"residency up (prefix rgcmp, ports {base}-{base + 5})")
        self.up_proc = self.procs.start(
            [str(self.bin / "residency"), "up", "--prefix", "rgcmp", "--base-port", str(base),
             "--dir", str(self.stack), "--fresh"], self.work / "up.log")
        deadline = time.time() + 300
        sj = self.stack / "stack.json"
        while not (sj.exists() and sj.stat().st_size > 0):
            if self.up_proc.poll() is not None or time.time() > deadline:
                sys.stderr.write((self.work / "up.log").read_text()[-3000:])
                raise SystemExit("stack did not come up")
            time.sleep(0.5)
        time.sleep(0.2)
        self.s = json.loads(sj.read_text())
        t = next(t for t in self.s["demo_tenants"]
                 if t["region"] == "eu" and t["tier"] == "enterprise")
        self.tenant, self.api_key = t["id"], t["api_key"]
        admin, token = self.s["admin"]["url"], self.s["admin"]["token"]
        req = urllib.request.Request(
            f"{admin}/admin/v1/tenants/{self.tenant}", method="PATCH",
            data=json.dumps({"limits": {"rate_limit_per_min": 60_000_000}}).encode(),
            headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
        urllib.request.urlopen(req, timeout=10).read()
        req = urllib.request.Request(self.s["jwt"]["token_url"], method="POST",
                                     data=json.dumps({"tenant_id": self.tenant}).encode())
        self.jwt = json.loads(urllib.request.urlopen(req, timeout=10).read())["access_token"]
        self.cert = self.stack / "tls" / "gateway.pem"
        self.key = self.stack / "tls" / "gateway.key"
        (self.work / "frontend.pem").write_text(self.cert.read_text() + self.key.read_text())
        subprocess.run(["openssl", "pkey", "-in", str(self.stack / "keys" / "jwt.pem"),
                        "-pubout", "-out", str(self.work / "jwt-pub.pem")], check=True)
        with open(self.work / "tenants.map", "w") as f:
            for t in self.s["demo_tenants"]:
                f.write(f"{t['id']} {t['region']}\n")
        self.regions = sorted({r["id"] for r in self.s["regions"]})

    def backend(self) -> None:
        self.backend_port, = free_ports(1)
        d = self.work / "backend"
        d.mkdir()
        self.nginx(d, 1, f"""
  server {{
    listen 127.0.0.1:{self.backend_port} backlog=4096;
    location / {{ default_type application/json; return 200 '{{"ok":true}}\\n'; }}
  }}""")
        wait_http(f"http://127.0.0.1:{self.backend_port}/v1/me")

    def nginx(self, d: Path, workers: int, servers: str) -> subprocess.Popen:
        """Starts nginx from `d` with `workers` workers, no access log, long keep-alive and
        `servers` (the `upstream`/`server` blocks) inside `http`."""
        (d / "nginx.conf").write_text(f"""
user root;
worker_processes {workers};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
daemon off;
worker_rlimit_nofile 19000;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 600s;
  client_body_temp_path {d}; proxy_temp_path {d};
  fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};
{servers}
}}
""")
        return self.procs.start(["nginx", "-p", str(d), "-c", str(d / "nginx.conf"), "-e",
                                 str(d / "error.log")], d / "out.log")

    # -- contenders, started per worker count and stopped after
    def start_all(self, workers: int) -> dict[str, str]:
        urls = {
            "gateway": self.start_gateway(workers),
            "nginx": self.start_nginx(workers),
            "haproxy": self.start_haproxy(workers),
        }
        urls["direct"] = f"http://127.0.0.1:{self.backend_port}"
        return urls

    def stop_all(self) -> None:
        for p in self.running.values():
            self.procs.stop(p)
        self.running = {}

    def start_gateway(self, workers: int) -> str:
        public, admin = free_ports(2)
        text = (self.stack / "config" / "gateway.toml").read_text()
        text = re.sub(r'(?m)^public = .*$', f'public = "127.0.0.1:{public}"', text)
        text = re.sub(r'(?m)^admin = .*$',
                      f'admin = "127.0.0.1:{admin}"\npublic_cores = {workers}', text)
        text = re.sub(r'(?m)^upstreams = .*$',
                      f'upstreams = ["http://127.0.0.1:{self.backend_port}"]', text)
        text = re.sub(r'(?m)^(ca_file|client_cert_file|client_key_file) = .*\n', '', text)
        text += ("\n[limits]\nmax_connections = 30000\nmax_connections_per_ip = 30000\n"
                 "idle_timeout = \"600s\"\n")
        cfg = self.stack / "config" / "bench-gateway.toml"
        cfg.write_text(text)
        env = dict(os.environ, TOKIO_WORKER_THREADS="1", RUST_LOG="warn")
        env.pop("RESIDENCY_PARENT_PID", None)
        p = self.procs.start([str(self.bin / "residency-gateway"), "--config", str(cfg)],
                             self.work / f"gateway-{workers}.log", env=env)
        self.running["gateway"] = p
        self.gateway_pid = p.pid
        wait_http(f"http://127.0.0.1:{admin}/readyz")
        wait_http(f"https://127.0.0.1:{public}/v1/me", insecure(),
                  {"authorization": f"Bearer {self.jwt}"})
        return f"https://127.0.0.1:{public}"

    def start_nginx(self, workers: int) -> str:
        port, = free_ports(1)
        d = self.work / f"nginx-{workers}"
        d.mkdir(exist_ok=True)
        self.running["nginx"] = self.nginx(d, workers, f"""
  upstream backend {{ server 127.0.0.1:{self.backend_port}; keepalive 256; }}
  server {{
    listen 127.0.0.1:{port} ssl http2 backlog=4096;
    ssl_certificate {self.cert};
    ssl_certificate_key {self.key};
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}""")
        wait_http(f"https://127.0.0.1:{port}/v1/me", insecure())
        return f"https://127.0.0.1:{port}"

    def start_haproxy(self, workers: int) -> str:
        port, = free_ports(1)
        w = self.work
        backends = "".join(
            f"backend be_{r}\n  server {r}1 127.0.0.1:{self.backend_port}\n"
            for r in self.regions)
        cfg = w / f"haproxy-{workers}.cfg"
        cfg.write_text(f"""
global
  nbthread {workers}
  maxconn 9000
defaults
  mode http
  timeout connect 5s
  timeout client 600s
  timeout server 60s
  timeout http-keep-alive 600s
  http-reuse always
frontend fe
  bind 127.0.0.1:{port} ssl crt {w}/frontend.pem alpn h2,http/1.1
  http-request set-var(txn.bearer) http_auth_bearer
  http-request deny deny_status 401 unless {{ var(txn.bearer) -m found }}
  http-request deny deny_status 401 unless {{ var(txn.bearer),jwt_header_query('$.alg') -m str ES256 }}
  http-request deny deny_status 401 unless {{ var(txn.bearer),jwt_verify("ES256","{w}/jwt-pub.pem") -m int 1 }}
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('$.exp','int')
  http-request deny deny_status 401 if {{ date,neg,add(txn.exp) -m int lt 0 }}
  http-request set-var(txn.region) var(txn.bearer),jwt_payload_query('$.tenant_id'),map({w}/tenants.map)
  http-request deny deny_status 403 unless {{ var(txn.region) -m found }}
  use_backend be_%[var(txn.region)]
{backends}""")
        self.running["haproxy"] = self.procs.start(["haproxy", "-f", str(cfg), "-db"],
                                                   w / f"haproxy-{workers}.log")
        wait_http(f"https://127.0.0.1:{port}/v1/me", insecure(),
                  {"authorization": f"Bearer {self.jwt}"})
        # The same job refuses a request without a valid token.
        try:
            urllib.request.urlopen(urllib.request.Request(f"https://127.0.0.1:{port}/v1/me"),
                                   context=insecure(), timeout=5)
            raise SystemExit("haproxy answered a request without a token")
        except urllib.error.HTTPError as e:
            if e.code != 401:
                raise SystemExit(f"haproxy without a token: {e.code}, not 401") from e
        return f"https://127.0.0.1:{port}"


# ---------------------------------------------------------------------------- the loads


def unit_ms(v: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)$", v)
    if not m:
        raise ValueError(v)
    return float(m[1]) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m[2]]


def wrk(url: str, headers: dict[str, str], secs: int, conns: int) -> dict:
    hs = [a for k, v in headers.items() for a in ("-H", f"{k}: {v}")]
    subprocess.run(["wrk", "-t1", f"-c{conns}", "-d2s", *hs, url], capture_output=True)
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{secs}s", "--latency", *hs, url],
                         capture_output=True, text=True).stdout
    if "Non-2xx" in out or "Socket errors" in out and "timeout" in out:
        raise SystemExit(f"wrk against {url}: errors\n{out}")
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),
        "p50": unit_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M)[1]),
        "p99": unit_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M)[1]),
    }


def oha(url: str, headers: dict[str, str], secs: int, conns: int, *, qps: float | None = None,
        http2: bool = False, parallel: int = 1) -> dict:
    hs = [a for k, v in headers.items() for a in ("-H", f"{k}: {v}")]
    args = ["oha", "--no-tui", "--output-format", "json", "--insecure", "-z", f"{secs}s",
            "-c", str(conns), *hs]
    if qps:
        args += ["-q", str(int(qps)), "--latency-correction"]
    if http2:
        args += ["--http2", "-p", str(parallel)]
    out = subprocess.run(args + [url], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"oha failed: {out.stderr[-2000:]}")
    j = json.loads(out.stdout)
    codes = j.get("statusCodeDistribution", {})
    bad = {k: v for k, v in codes.items() if not k.startswith("2")}
    # Requests still in flight when the duration ends are cut off by oha itself.
    errors = {k: v for k, v in (j.get("errorDistribution") or {}).items()
              if k != "aborted due to deadline"}
    if bad or errors:
        raise SystemExit(f"oha against {url}: non-2xx {bad} errors {errors}")
    p = j["latencyPercentiles"]
    return {"rps": j["summary"]["requestsPerSec"], "p50": p["p50"] * 1e3,
            "p99": p["p99"] * 1e3, "p999": p.get("p99.9", p["p99"]) * 1e3}


async def idle_connections(host: str, port: int, n: int, headers: dict[str, str]) -> list:
    ctx = insecure()
    ctx.set_alpn_protocols(["http/1.1"])
    req = ("GET /v1/me HTTP/1.1\r\nhost: bench\r\n" +
           "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
    conns, sem = [], asyncio.Semaphore(64)

    async def one():
        async with sem:
            r, w = await asyncio.open_connection(host, port, ssl=ctx)
            w.write(req)
            await w.drain()
            head = await r.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"idle connection got {head[:40]!r}")
            m = re.search(rb"(?i)content-length:\s*(\d+)", head)
            await r.readexactly(int(m[1]) if m else 0)
            conns.append((r, w))

    await asyncio.gather(*(one() for _ in range(n)))
    return conns


# ---------------------------------------------------------------------------- the report


def rng(vals: list[float], fmt: str) -> str:
    lo, hi = min(vals), max(vals)
    return fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else f"{fmt.format(lo)}–{fmt.format(hi)}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--secs", type=int, default=10)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--idle", type=int, default=10_000)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", default=str(ROOT))
    ap.add_argument("--serve", metavar="ENV_FILE",
                    help="start everything with one worker, write the URLs, pids and headers "
                         "to ENV_FILE (shell syntax) and wait until interrupted: for profiling")
    args = ap.parse_args()
    if args.smoke:
        args.runs, args.secs, args.idle = 1, 1, 200
        args.out = tempfile.mkdtemp(prefix="rgcmp-out.")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))

    work = Path(tempfile.mkdtemp(prefix="rgcmp."))
    procs = Procs()
    results: dict = {"saturation": [], "http2": [], "rate": [], "idle": {}}
    try:
        st = Setup(args, work, procs)
        st.up()
        st.backend()
        if args.serve:
            serve(st, Path(args.serve))
            return
        auth = {"gateway-jwt": {"authorization": f"Bearer {st.jwt}"},
                "gateway-apikey": {"x-api-key": st.api_key},
                "nginx": {}, "haproxy-jwt": {"authorization": f"Bearer {st.jwt}"},
                "direct": {}}
        best_gateway = 0.0
        for workers in ((1,) if args.smoke else (1, 2)):
            urls = st.start_all(workers)
            target = {"gateway-jwt": urls["gateway"], "gateway-apikey": urls["gateway"],
                      "nginx": urls["nginx"], "haproxy-jwt": urls["haproxy"],
                      "direct": urls["direct"]}
            for rnd in range(args.runs):
                order = CONTENDERS[:]
                random.shuffle(order)
                for c in order:
                    r = wrk(f"{target[c]}/v1/me", auth[c], args.secs, args.conns)
                    r.update(contender=c, workers=workers, round=rnd)
                    log(f"saturation W={workers} round {rnd} {c}: {r['rps']:.0f} req/s "
                        f"p50 {r['p50']:.3f} ms p99 {r['p99']:.3f} ms")
                    results["saturation"].append(r)
                    if c == "gateway-jwt" and workers == 1:
                        best_gateway = max(best_gateway, r["rps"])
            for rnd in range(args.runs):
                for c in ("gateway-jwt", "nginx", "haproxy-jwt"):
                    r = oha(f"{target[c]}/v1/me", auth[c], args.secs, 4, http2=True, parallel=4)
                    r.update(contender=c, workers=workers, round=rnd)
                    log(f"http2 W={workers} round {rnd} {c}: {r['rps']:.0f} req/s "
                        f"p50 {r['p50']:.3f} ms p99 {r['p99']:.3f} ms")
                    results["http2"].append(r)
            if workers == 1:
                for rnd in range(args.runs):
                    for frac in ((0.5,) if args.smoke else FRACTIONS):
                        for c in ("gateway-jwt", "nginx", "direct"):
                            q = max(10.0, best_gateway * frac)
                            r = oha(f"{target[c]}/v1/me", auth[c], args.secs, args.conns, qps=q)
                            r.update(contender=c, workers=workers, round=rnd, offered=q,
                                     fraction=frac)
                            log(f"rate {frac:.0%} ({q:.0f}/s) round {rnd} {c}: p50 "
                                f"{r['p50']:.3f} ms p99 {r['p99']:.3f} ms")
                            results["rate"].append(r)
                # Idle keep-alive connections: RSS before and after, per connection.
                port = int(urls["gateway"].rsplit(":", 1)[1])
                time.sleep(1)
                before = rss_kib(st.gateway_pid)
                conns = asyncio.run(_idle(port, args.idle, auth["gateway-jwt"], st.gateway_pid,
                                          results))
                results["idle"].update(before_kib=before, n=args.idle)
                log(f"idle: {args.idle} connections, RSS {before} -> "
                    f"{results['idle']['after_kib']} KiB = "
                    f"{(results['idle']['after_kib'] - before) * 1024 / args.idle:.0f} B each")
                del conns
            st.stop_all()
        results["machine"] = {
            "cpu": cpu_model(), "cores": os.cpu_count(),
            "kernel": platform.release(),
            "nginx": version_of(["nginx", "-v"]), "haproxy": version_of(["haproxy", "-v"]),
            "wrk": version_of(["wrk", "--version"]), "oha": version_of(["oha", "--version"]),
            "gateway": version_of([str(st.bin / "residency-gateway"), "--version"]),
            "rustc": version_of(["rustc", "--version"]),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "git": version_of(["git", "-C", str(ROOT), "describe", "--always", "--dirty"]),
        }
        out = Path(args.out)
        (work / "results.json").write_text(json.dumps(results, indent=1))
        report(results, args, out)
    finally:
        procs.stop_all()
        subprocess.run([str(Setup(args, work, procs).bin / "residency"), "up", "--prefix",
                        "rgcmp", "--dir", str(work / "stack"), "--teardown"],
                       capture_output=True)
        if os.environ.get("RGCMP_KEEP"):
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def serve(st: Setup, env_file: Path) -> None:
    urls = st.start_all(1)
    env = {"GATEWAY": urls["gateway"], "NGINX": urls["nginx"], "HAPROXY": urls["haproxy"],
           "DIRECT": urls["direct"], "GATEWAY_PID": str(st.gateway_pid), "JWT": st.jwt,
           "API_KEY": st.api_key}
    env_file.write_text("".join(f"{k}='{v}'\n" for k, v in env.items()))
    log(f"serving; wrote {env_file}; Ctrl-C to stop")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


async def _idle(port: int, n: int, headers, pid: int, results: dict):
    conns = await idle_connections("127.0.0.1", port, n, headers)
    await asyncio.sleep(2)
    results["idle"]["after_kib"] = rss_kib(pid)
    for _, w in conns:
        w.close()
    return None


def report(res: dict, args, out: Path) -> None:
    sat = res["saturation"]

    def vals(rows, c, w, k):
        return [r[k] for r in rows if r["contender"] == c and r["workers"] == w]

    lines = ["# Benchmarks", "",
             "Generated by `bench/compare.sh` (see the script's header for what each contender "
             "does). Every figure is a range over "
             f"{args.runs} rounds (min–max); {args.secs} s per measurement, wrk -t1 -c{args.conns} "
             "for saturation. Contenders run in random order per round, one at a time, all on "
             "the same machine as the load generator and the backend, so the cores are shared "
             "three ways. W workers for the gateway are W per-core runtimes serving its "
             "connections (`listen.public_cores = W`) beside a one-thread runtime for its accept "
             "loop and background tasks.", "",
             "## Machine", ""]
    for k, v in res["machine"].items():
        lines.append(f"- {k}: {v}")
    lines += ["", "## Saturation (HTTP/1.1 over TLS, keep-alive)", ""]
    for w in (1, 2):
        lines += [f"### {w} worker thread{'s' if w > 1 else ''} per contender", "",
                  "| contender | req/s | p50 ms | p99 ms | req/s ÷ nginx (same round) |",
                  "|---|---|---|---|---|"]
        for c in CONTENDERS:
            rps = vals(sat, c, w, "rps")
            if not rps:
                continue
            ratios = []
            for r in [x for x in sat if x["contender"] == c and x["workers"] == w]:
                n = [x for x in sat if x["contender"] == "nginx" and x["workers"] == w
                     and x["round"] == r["round"]]
                if n:
                    ratios.append(r["rps"] / n[0]["rps"])
            lines.append(f"| {c} | {rng(rps, '{:,.0f}')} | {rng(vals(sat, c, w, 'p50'), '{:.3f}')} "
                         f"| {rng(vals(sat, c, w, 'p99'), '{:.3f}')} | {rng(ratios, '{:.2f}')}× |")
        lines.append("")
    h2 = res["http2"]
    lines += ["## HTTP/2 on the front (oha --http2, 4 connections × 4 streams)", "",
              "| contender | workers | req/s | p50 ms | p99 ms |", "|---|---|---|---|---|"]
    for w in (1, 2):
        for c in ("gateway-jwt", "nginx", "haproxy-jwt"):
            if vals(h2, c, w, "rps"):
                lines.append(f"| {c} | {w} | {rng(vals(h2, c, w, 'rps'), '{:,.0f}')} | "
                             f"{rng(vals(h2, c, w, 'p50'), '{:.3f}')} | "
                             f"{rng(vals(h2, c, w, 'p99'), '{:.3f}')} |")
    rate = res["rate"]
    lines += ["", "## Latency at a constant offered rate (oha -q, latency-corrected, 1 worker)", "",
              "| offered (share of the gateway's best rate) | contender | p50 ms | p99 ms | p99.9 ms |",
              "|---|---|---|---|---|"]
    for frac in (0.1, 0.25, 0.5, 0.75):
        for c in ("direct", "gateway-jwt", "nginx"):
            rows = [r for r in rate if r["contender"] == c and r["fraction"] == frac]
            if rows:
                lines.append(f"| {frac:.0%} ({rows[0]['offered']:,.0f}/s) | {c} | "
                             f"{rng([r['p50'] for r in rows], '{:.3f}')} | "
                             f"{rng([r['p99'] for r in rows], '{:.3f}')} | "
                             f"{rng([r['p999'] for r in rows], '{:.3f}')} |")
    added50, added99 = [], []
    for rnd in range(args.runs):
        g = [r for r in rate if r["contender"] == "gateway-jwt" and r["fraction"] == 0.5
             and r["round"] == rnd]
        d = [r for r in rate if r["contender"] == "direct" and r["fraction"] == 0.5
             and r["round"] == rnd]
        if g and d:
            added50.append((g[0]["p50"] - d[0]["p50"]) * 1000)
            added99.append((g[0]["p99"] - d[0]["p99"]) * 1000)
    if added50:
        lines += ["", f"Added latency of the gateway over the direct backend at half of its best "
                  f"rate: p50 **{rng(added50, '{:.0f}')} µs**, p99 **{rng(added99, '{:.0f}')} µs** "
                  "(target p50 ≤ 100 µs, p99 ≤ 500 µs)."]
    idle = res["idle"]
    if idle:
        per = (idle["after_kib"] - idle["before_kib"]) * 1024 / idle["n"]
        lines += ["", "## Idle keep-alive connections", "",
                  f"{idle['n']:,} idle TLS keep-alive connections (one request each, then idle) "
                  f"to the 1-worker gateway: RSS {idle['before_kib'] / 1024:.1f} → "
                  f"{idle['after_kib'] / 1024:.1f} MiB, **{per / 1024:.1f} KiB per connection** "
                  "(target ≤ 16 KiB)."]
    (out / "BENCHMARKS.md").write_text("\n".join(lines) + "\n")
    log(f"wrote {out / 'BENCHMARKS.md'}")
    if not args.smoke:
        plots(res, args, out / "bench" / "plots")


def plots(res: dict, args, d: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d.mkdir(parents=True, exist_ok=True)
    sat = res["saturation"]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.38
    for i, w in enumerate((1, 2)):
        xs, mids, errs = [], [], [[], []]
        for j, c in enumerate(CONTENDERS):
            v = [r["rps"] for r in sat if r["contender"] == c and r["workers"] == w]
            if not v:
                continue
            m = statistics.median(v)
            xs.append(j + (i - 0.5) * width)
            mids.append(m)
            errs[0].append(m - min(v))
            errs[1].append(max(v) - m)
        ax.bar(xs, mids, width, yerr=errs, capsize=3, label=f"{w} worker{'s' if w > 1 else ''}")
    ax.set_xticks(range(len(CONTENDERS)), CONTENDERS)
    ax.set_ylabel("requests/s (median, min–max bars)")
    ax.set_title("Saturation, HTTP/1.1 over TLS, static backend")
    ax.legend()
    fig.tight_layout()
    fig.savefig(d / "throughput.png", dpi=110)
    plt.close(fig)

    rate = res["rate"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, k in zip(axes, ("p50", "p99")):
        for c in ("direct", "gateway-jwt", "nginx"):
            pts = {}
            for r in rate:
                if r["contender"] == c:
                    pts.setdefault(r["offered"], []).append(r[k])
            xs = sorted(pts)
            ax.plot(xs, [statistics.median(pts[x]) for x in xs], marker="o", label=c)
        ax.set_title(f"{k} latency vs offered load (1 worker)")
        ax.set_xlabel("offered requests/s")
        ax.set_ylabel("ms")
        ax.set_yscale("log")
        ax.legend()
    fig.tight_layout()
    fig.savefig(d / "latency.png", dpi=110)
    plt.close(fig)
    log(f"wrote {d}/throughput.png, latency.png")


if __name__ == "__main__":
    main()
