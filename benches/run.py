"""Side-by-side benchmark: Portico against nginx, on loopback, in one command.

    python benches/run.py [--duration S] [--warmup S] [--connections N] [--threads N] [--rounds N]
                          [--no-edge] [--tls] [--only CASE[,CASE...]] [--ceiling-spin US,...]
                          [--micro] [--keep]
    python benches/run.py --shape production [--duration S] [--warmup S] [--connections N]
                          [--threads N] [--rounds N] [--only CASE[,CASE...]] [--keep]
    python benches/run.py --shape jwt [--jwt-tokens N] [...the same flags]   (see benches/auth_jwt.py)
    python benches/run.py --shape cache [...the same flags]   (see benches/cache.py)
    python benches/run.py --shape templates [...the same flags]   (see benches/mapping_templates.py)
    python benches/run.py --shape validate [...the same flags]   (see benches/validate.py)
    python benches/run.py --shape rest [...the same flags]   (see benches/rest.py)

What it starts (every port is a free one picked at run time; everything listens on 127.0.0.1):
  upstream      nginx (1 worker) answering every request with a small fixed JSON body
  nginx-proxy   nginx (1 worker) reverse-proxying to the upstream, with an upstream keep-alive pool
  portico       `python -m portico serve CONFIG --port P --workers 1`, routes:
                  GET /proxy    HTTP_PROXY -> the upstream
                  GET /lambda   AWS_PROXY  -> benches/handlers.py:hello (payload 2.0)
                  GET /mock     MOCK       -> 200 {"ok":true}
                  GET /limited  MOCK behind a route throttle of rate 1 / burst 1 (answers 429)
                Served by its edge (the default): every request runs the core's pipeline in Rust,
                the Lambda handler runs on the Python side's threads in process. With `--no-edge`, a
                second Portico serves the embedded ASGI app through Granian (`portico serve
                --no-edge`, the same pipeline behind Python's ASGI door), measured side by side.
  ceiling       benches/bare_proxy.py on the same Granian settings as Portico: the least an ASGI proxy
                can do (a pooled GET, nothing else). Its ratio to nginx bounds every design that runs
                Python per request; Portico's gap to it is the cost of the gateway's own work.

What it measures, with wrk (`-t THREADS -c CONNECTIONS -d DURATION --latency`): requests/s and latency
p50/p99 for each case. Every round runs every case once, the order reversed on odd rounds (ABC, CBA, ...)
so that machine drift cancels; the table shows the median over the rounds, and the ratio of Portico's
HTTP_PROXY throughput to nginx's proxy.

With `--shape production`, the traffic production sends instead: an access log, CORS, bodies, each
case against nginx doing the same job in the same run (one worker each):
  upstream          as above (answers POST too)
  nginx-production  the proxy above plus a JSON `log_format` of the access log's ten fields written to
                    a file (`buffer=64k flush=1s`), and Access-Control-Allow-Origin / -Expose-Headers
                    for the allowed Origin (none without one)
  portico-cors      `settings.accessLog` (JSON, the ten `$context` fields, to a file) and an API with
                    `corsConfiguration`: GET /proxy HTTP_PROXY -> the upstream
  portico-log       the same access log, no CORS: POST /proxy HTTP_PROXY -> the upstream,
                    GET /lambda AWS_PROXY -> benches/handlers.py:ok
  nginx, portico    the bare proxies of the default shape (no log, no CORS), the reference row
Cases (keys for --only): GET with `Origin: https://app.example` (nginx-cors, cors); POST of a 1 KB
JSON body by a wrk Lua script (nginx-post, post); GET of the Lambda route (lambda) against nginx's
proxied GET with its log (nginx-log); the bare GET (nginx, proxy). The table sets each ratio and p99
next to its target (GET >= 0.8x nginx, POST >= 0.7x, Lambda >= 0.6x; proxied p99 <= 2x nginx's,
Lambda p99 <= 5 ms). After the rounds the logging servers are stopped (so they flush) and each case's
access-log lines (by routeKey) are printed next to the requests wrk counted as answered, warm-up and
checks included; wrk does not count the requests in flight when a run ends, so lines may exceed
requests by up to CONNECTIONS per run, never fall short.

With `--shape auth`, routes that require authorization against the same route without any, in one
Portico (one worker) in front of the nginx upstream:
  portico-auth      a REST API (`protocolType: REST`, stage `bench`): GET /open HTTP_PROXY -> the
                    upstream, and GET /keyed, the same with `apiKeyRequired` (two keys, in two usage
                    plans bound to the stage: one without limits, one with a throttle and a monthly
                    quota), GET /keyed-mock (MOCK, apiKeyRequired), and GET /lambda, the same behind
                    a Lambda TOKEN authorizer (benches/handlers.py:token_authorizer, results cached
                    300 s)
Cases: open (the reference), apikey (GET /keyed with `x-api-key`; target >= 0.95x open),
apikey-403 (GET /keyed without a key: the 403 the core answers itself, for scale), lambda (GET
/lambda with the same token every time: decided from the authorizer's cache after the first
request; target >= 0.8x open), plan (GET /keyed with a second key, whose usage plan has a
throttle and a quota, too high to refuse: what the plan's bucket and quota count cost; target
>= 0.95x apikey), and apikey-mock / plan-mock (the same two keys on a MOCK route, GET
/keyed-mock, where the gateway's own work is all there is; target >= 0.95x).

Flags:
  --shape S         bare (the default: the cases above), production (the production-shaped cases),
                    auth (routes with authorization against the same route without), jwt, cache
                    (warm stage-cache hits against nginx's proxy_cache hits: benches/cache.py),
                    templates (a MOCK's VTL response template against none:
                    benches/mapping_templates.py), validate (a validated 10 KB POST against the
                    same route without validation: benches/validate.py), or rest (both of those
                    in one REST API with the access log on: benches/rest.py)
  --duration S      seconds per measurement (default 5)
  --warmup S        seconds of untimed load per case before the rounds (default 1)
  --connections N   wrk connections (default 32)
  --threads N       wrk threads (default 1)
  --rounds N        rounds (default 3)
  --no-edge         also measure Portico without its edge (Python pipeline only), side by side
  --tls             also measure Portico serving https (its edge's TLS, a certificate of a CA made for
                    the run with trustme), side by side with plain http: cases mock[tls] and
                    proxy[tls], and their ratio to the same routes over http; nginx answering over
                    https too (upstream[tls]), for its ratio on the same machine and wrk. wrk keeps
                    its connections open, so this is the cost of encryption, not of handshakes
  --only CASES      comma-separated subset of: upstream, nginx, proxy, ceiling, lambda, mock, 429
                    (production: nginx-cors, cors, nginx-post, post, nginx-log, lambda, nginx, proxy)
  --ceiling-spin US[,US...]
                    add US microseconds of busy work per request to the ceiling's proxy, one proxy per
                    value, side by side (e.g. 0,4,8,12): what each microsecond of per-request Python
                    costs
  --micro           also run the Rust micro-benchmark (`cargo bench --bench core`)
  --keep            keep the temporary directory (configs and logs) and print its path

Every process started is stopped on exit, on errors and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

BENCHES = Path(__file__).resolve().parent
REPO = BENCHES.parent
UPSTREAM_BODY = '{"message":"hello from upstream","ok":true}'
# Requests each case answers before it is timed (the first spends a throttled route's one token).
CHECKS = 2

# ------------------------------------------------------------------------------------------ processes


class Processes:
    """Every process this run started; stopped (process group first, then kill) on exit."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], log: Path, **kwargs) -> subprocess.Popen:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
            )
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        """Stop one process (its group) and wait for it: servers flush their logs on the way out."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=8)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    # Our own session: the group holds only what this process started (nginx workers,
                    # Granian workers).
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 8
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self.procs.clear()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _connection(port: int, timeout: float, tls: ssl.SSLContext | None) -> http.client.HTTPConnection:
    if tls is not None:
        return http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=tls)
    return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)


def wait_http(
    port: int,
    path: str,
    proc: subprocess.Popen,
    log: Path,
    timeout: float = 30,
    tls: ssl.SSLContext | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"process exited with {proc.returncode}; log {log}:\n{log.read_text()[-3000:]}"
            )
        try:
            conn = _connection(port, 1, tls)
            conn.request("GET", path)
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered on port {port} within {timeout} s; log {log}")


def fetch(
    port: int,
    path: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    tls: ssl.SSLContext | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = _connection(port, 5, tls)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def descendants(pid: int) -> list[int]:
    """Child processes, recursively (from /proc)."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children[ppid].append(int(entry))
    out: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


# ------------------------------------------------------------------------------------------ configs


def nginx_conf(tmp: Path, name: str, port: int, body: str) -> Path:
    common = f"""
worker_processes 1;
daemon off;
pid {tmp}/{name}.pid;
error_log {tmp}/{name}.error.log warn;
events {{ worker_connections 4096; }}
"""
    temp_paths = "".join(
        f"    {kind}_temp_path {tmp}/{name}-{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = tmp / f"{name}.conf"
    conf.write_text(common + "http {\n    access_log off;\n" + temp_paths + body.format(port=port) + "}\n")
    return conf


UPSTREAM_HTTP = """
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        location / {{
            default_type application/json;
            return 200 'BODY';
        }}
    }}
""".replace("BODY", UPSTREAM_BODY.replace("{", "{{").replace("}", "}}"))

# The upstream's answer over https (--tls): nginx's own cost of TLS on this machine and this wrk,
# the reference for Portico's.
UPSTREAM_HTTPS = UPSTREAM_HTTP.replace(
    "reuseport backlog=4096;",
    "reuseport backlog=4096 ssl;\n        ssl_certificate CERT;\n        ssl_certificate_key KEY;"
    "\n        ssl_protocols TLSv1.2 TLSv1.3;",
)

PROXY_HTTP = """
    keepalive_requests 1000000;
    upstream backend {{
        server 127.0.0.1:UPSTREAM_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
"""


# No account limit: a benchmark measures the gateway, not AWS's default 10,000 requests/s.
NO_ACCOUNT_LIMIT = {"accountThrottle": {}}


def portico_config(upstream_port: int) -> dict:
    return {
        "settings": NO_ACCOUNT_LIMIT,
        "functions": {"hello": "handlers:hello"},
        "apis": [
            {
                "name": "bench",
                "id": "bench12345",
                "routes": [
                    {"route": "GET /proxy", "integration": "upstream"},
                    {"route": "GET /lambda", "integration": "hello"},
                    {"route": "GET /mock", "integration": "canned"},
                    {"route": "GET /limited", "integration": "canned"},
                ],
                "integrations": {
                    "upstream": {
                        "type": "HTTP_PROXY",
                        "uri": f"http://127.0.0.1:{upstream_port}/",
                        "method": "GET",
                        "timeoutInMillis": 10000,
                    },
                    "hello": {
                        "type": "AWS_PROXY",
                        "uri": "arn:aws:lambda:us-east-1:123456789012:function:hello",
                        "payloadFormatVersion": "2.0",
                    },
                    "canned": {
                        "type": "MOCK",
                        "statusCode": 200,
                        "headers": {"content-type": "application/json"},
                        "body": '{"ok":true}',
                    },
                },
                "stages": [
                    {
                        "name": "$default",
                        "routeSettings": {
                            "GET /limited": {"throttlingRateLimit": 1, "throttlingBurstLimit": 1}
                        },
                    }
                ],
            }
        ],
    }


# ------------------------------------------------------------------------------------------ wrk

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"cannot parse latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass
class Sample:
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: int
    requests: int  # answered, as wrk counts them ("N requests in ...")


def run_wrk(url: str, duration: float, connections: int, threads: int, extra: tuple[str, ...] = ()) -> Sample:
    """One wrk run; `extra` are more wrk arguments (`-H HEADER`, `-s SCRIPT`)."""
    seconds = max(1, round(duration))  # wrk takes whole seconds
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", *extra, url]
    out = subprocess.run(args, capture_output=True, text=True, timeout=duration + 30, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    non = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return Sample(
        rps,
        p50,
        p99,
        int(non.group(1)) if non else 0,
        sum(int(g) for g in errs.groups()) if errs else 0,
        requests,
    )


@dataclass
class Case:
    key: str
    label: str
    port: int
    path: str
    expect_status: int = 200
    samples: list[Sample] = field(default_factory=list)
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    script: Path | None = None  # a wrk Lua script (the POST case)
    expect_headers: dict[str, str] = field(default_factory=dict)  # checked once, before timing
    requests: int = 0  # every request answered, warm-up and checks included (for access-log counts)
    tls: ssl.SSLContext | None = None  # https, trusting this context's CA

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}{self.path}"

    def wrk_args(self) -> tuple[str, ...]:
        args: list[str] = []
        for name, value in self.headers.items():
            args += ["-H", f"{name}: {value}"]
        if self.script is not None:
            args += ["-s", str(self.script)]
        return tuple(args)


# ------------------------------------------------------------------------------------------ report


def machine() -> list[str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "-"

    def tool(args: list[str]) -> str:
        """A tool's version line (nginx writes it to stderr, wrk to stdout); `-` when the tool is
        not installed (benches that do not use it still run)."""
        try:
            done = subprocess.run(args, capture_output=True, text=True)
        except OSError:
            return f"{args[0]} -"
        lines = (done.stderr + done.stdout).splitlines()
        return lines[0].split(" Copyright")[0] if lines else f"{args[0]} -"

    nginx = tool(["nginx", "-v"])
    wrk = tool(["wrk", "-v"])
    return [
        f"machine : {os.cpu_count()} CPUs, {model}",
        f"kernel  : {platform.system()} {platform.release()}",
        f"python  : {platform.python_implementation()} {platform.python_version()}",
        f"granian : {version('granian')}   aiohttp {version('aiohttp')}   uvloop {version('uvloop')}",
        f"tools   : {nginx.replace('nginx version: ', '')}   {wrk}",
    ]


def print_table(cases: list[Case], nginx_key: str, proxy_keys: list[str]) -> None:
    print()
    print(f"{'case':<34} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8}   rounds (req/s)")
    medians: dict[str, float] = {}
    for case in cases:
        if not case.samples:
            continue
        rps = statistics.median(s.rps for s in case.samples)
        medians[case.key] = rps
        p50 = statistics.median(s.p50_ms for s in case.samples)
        p99 = statistics.median(s.p99_ms for s in case.samples)
        rounds = " ".join(f"{s.rps:,.0f}" for s in case.samples)
        warn = ""
        bad = sum(s.non_2xx for s in case.samples) if case.expect_status == 200 else 0
        errors = sum(s.errors for s in case.samples)
        if bad:
            warn += f"  [!{bad} non-2xx]"
        if errors:
            warn += f"  [!{errors} socket errors]"
        print(f"{case.label:<34} {rps:>10,.0f} {p50:>8.2f} {p99:>8.2f}   {rounds}{warn}")
    print()
    for key in proxy_keys:
        if key in medians and nginx_key in medians:
            label = next(c.label for c in cases if c.key == key)
            print(f"ratio {label} / nginx proxy: {medians[key] / medians[nginx_key]:.2f}")


# ------------------------------------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-edge", action="store_true")
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--only", default="")
    parser.add_argument("--ceiling-spin", default="0")
    parser.add_argument("--micro", action="store_true")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--shape",
        choices=("bare", "production", "auth", "jwt", "cache", "templates", "validate", "rest"),
        default="bare",
    )
    parser.add_argument("--jwt-tokens", type=int, default=200_000)
    args = parser.parse_args()
    if args.shape != "bare" and (args.no_edge or args.tls or args.ceiling_spin not in ("0", "")):
        parser.error(f"--shape {args.shape} takes none of --no-edge, --tls, --ceiling-spin")
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: apt-get install -y wrk nginx-light", file=sys.stderr)
            return 2

    return in_scratch("portico-bench-", args.keep, lambda tmp, procs: run(args, tmp, procs))


def in_scratch(prefix: str, keep: bool, body: Callable[[Path, Processes], int]) -> int:
    """`body(tmp, procs)` in a fresh temporary directory: every process it starts is stopped on
    return, on errors, on Ctrl-C and on SIGTERM; the directory is removed unless `keep`."""

    def stop(signum, frame):  # SIGTERM -> the same clean-up as Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    procs = Processes()
    try:
        return body(tmp, procs)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        if keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, tmp: Path, procs: Processes) -> int:
    for line in machine():
        print(line)
    print(
        f"load    : wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s --latency, "
        f"{args.rounds} rounds (order alternating), median shown"
    )
    if args.shape == "production":
        return run_production(args, tmp, procs)
    if args.shape == "auth":
        return run_auth(args, tmp, procs)
    if args.shape == "jwt":
        from auth_jwt import run_jwt  # JWT authorizers' cases: PyJWT mints their tokens

        return run_jwt(args, tmp, procs)
    if args.shape == "cache":
        from cache import run_cache  # warm stage-cache hits against nginx's proxy_cache hits

        return run_cache(args, tmp, procs)
    if args.shape == "templates":
        from mapping_templates import run_templates  # a MOCK's VTL response template against none

        return run_templates(args, tmp, procs)
    if args.shape == "validate":
        from validate import run_validate  # a validated 10 KB POST against the same route without

        return run_validate(args, tmp, procs)
    if args.shape == "rest":
        from rest import run_rest  # both of the above in one REST API, with the access log on

        return run_rest(args, tmp, procs)
    return run_bare(args, tmp, procs)


def bench_env(**extra: str) -> dict[str, str]:
    """The environment of the servers started here: ours, with benches/ on PYTHONPATH (handlers)."""
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCHES), env.get("PYTHONPATH")]))
    return env


def start_nginx(
    tmp: Path, procs: Processes, name: str, body: str, tls: ssl.SSLContext | None = None
) -> tuple[int, subprocess.Popen]:
    port = free_port()
    conf = nginx_conf(tmp, name, port, body)
    log = tmp / f"{name}.log"
    proc = procs.start(["nginx", "-p", str(tmp), "-e", str(tmp / f"{name}.error.log"), "-c", str(conf)], log)
    wait_http(port, "/", proc, log, tls=tls)
    return port, proc


def start_portico(
    tmp: Path,
    procs: Processes,
    name: str,
    config: dict,
    ready: str,
    flags: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    workers: int = 1,
    tls: ssl.SSLContext | None = None,
) -> tuple[int, subprocess.Popen, Path]:
    """`python -m portico serve` on a free port (one worker unless told); returns (port, process,
    config path). Its output goes to `tmp/NAME.log`."""
    port = free_port()
    config_path = tmp / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    log = tmp / f"{name}.log"
    cmd = [sys.executable, "-m", "portico", "serve", str(config_path), "--port", str(port)]
    cmd += ["--workers", str(workers), *flags]
    proc = procs.start(cmd, log, cwd=BENCHES, env=env or bench_env())
    wait_http(port, ready, proc, log, tls=tls)
    return port, proc, config_path


def measure(args: argparse.Namespace, cases: list[Case]) -> None:
    """Check every case once, warm each up, then the rounds in alternating order."""
    for case in cases:
        for _ in range(CHECKS):  # the throttled route spends its one token on the first
            sent = dict(case.headers)
            if case.body is not None:
                sent.setdefault("content-type", "application/json")
            status, headers, body = fetch(case.port, case.path, case.method, sent, case.body, case.tls)
            case.requests += 1
        if status != case.expect_status:
            raise RuntimeError(f"{case.label}: expected {case.expect_status}, got {status}: {body[:200]!r}")
        for name, value in case.expect_headers.items():
            if headers.get(name) != value:
                raise RuntimeError(f"{case.label}: expected {name}: {value}, got {headers.get(name)!r}")
    if args.warmup > 0:
        for case in cases:
            sample = run_wrk(case.url, args.warmup, args.connections, args.threads, case.wrk_args())
            case.requests += sample.requests
    for round_no in range(args.rounds):
        order = cases if round_no % 2 == 0 else list(reversed(cases))
        for case in order:
            sample = run_wrk(case.url, args.duration, args.connections, args.threads, case.wrk_args())
            case.samples.append(sample)
            case.requests += sample.requests
        print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)


def run_bare(args: argparse.Namespace, tmp: Path, procs: Processes) -> int:
    # upstream and nginx proxy
    up_port, _ = start_nginx(tmp, procs, "upstream", UPSTREAM_HTTP)
    ngx_port, _ = start_nginx(tmp, procs, "proxy", PROXY_HTTP.replace("UPSTREAM_PORT", str(up_port)))

    # Portico: served by its edge (the default), and with `--no-edge` the embedded ASGI app behind
    # Granian, side by side.
    config = portico_config(up_port)
    porticos: dict[str, int] = {}
    for mode in ("edge", "no-edge") if args.no_edge else ("edge",):
        flags = ("--no-edge",) if mode == "no-edge" else ()
        port, _, _ = start_portico(tmp, procs, f"portico-{mode}", config, "/mock", flags, bench_env())
        porticos[mode] = port

    # With --tls, the same config served over https by the edge.
    tls_port, up_tls_port, tls_client = None, None, None
    if args.tls:
        import trustme

        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1", "localhost")
        cert, key = tmp / "tls-cert.pem", tmp / "tls-key.pem"
        cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        key.write_bytes(leaf.private_key_pem.bytes())
        tls_client = ssl.create_default_context()
        ca.configure_trust(tls_client)
        flags = ("--tls-cert", str(cert), "--tls-key", str(key))
        tls_port, _, _ = start_portico(
            tmp, procs, "portico-tls", config, "/mock", flags, bench_env(), tls=tls_client
        )
        upstream_https = UPSTREAM_HTTPS.replace("CERT", str(cert)).replace("KEY", str(key))
        up_tls_port, _ = start_nginx(tmp, procs, "upstream-tls", upstream_https, tls_client)

    # The ceiling: a bare ASGI proxy on the Granian settings `portico serve` uses; one per
    # --ceiling-spin value, measured side by side.
    spins = [float(v) for v in str(args.ceiling_spin).split(",") if v.strip()] or [0.0]
    bare_ports: dict[float, int] = {}
    for spin in spins:
        bare_port = free_port()
        env = bench_env(BARE_UPSTREAM=f"127.0.0.1:{up_port}", BARE_SPIN_US=str(spin))
        bare_cmd = [sys.executable, "-m", "granian", "--interface", "asgi", "--loop", "uvloop", "--no-ws"]
        bare_cmd += ["--workers", "1", "--backpressure", "1024", "--log-level", "warning"]
        bare_cmd += ["--host", "127.0.0.1", "--port", str(bare_port), "bare_proxy:app"]
        log = tmp / f"bare-proxy-{spin:g}.log"
        wait_http(bare_port, "/", procs.start(bare_cmd, log, cwd=BENCHES, env=env), log)
        bare_ports[spin] = bare_port

    cases = [
        Case("upstream", "upstream (nginx, direct)", up_port, "/"),
        Case("nginx", "nginx proxy -> upstream", ngx_port, "/"),
    ]
    proxy_keys = []
    for name, port in porticos.items():
        suffix = "" if name == "edge" else f" ({name})"
        key = "proxy" if name == "edge" else f"proxy[{name}]"
        proxy_keys.append(key)
        cases.append(Case(key, f"portico HTTP_PROXY{suffix}", port, "/proxy"))
    for spin, bare_port in bare_ports.items():
        key = f"ceiling[{spin:g}]" if spin else "ceiling"
        label = "bare ASGI proxy on Granian" + (f" + {spin:g} us" if spin else "")
        cases.append(Case(key, label, bare_port, "/"))
        proxy_keys.append(key)
    # The other cases once per mode (the HTTP client matters to HTTP_PROXY only).
    modes = {"edge": porticos["edge"]}
    for name, port in porticos.items():
        if name.startswith("no-edge"):
            modes.setdefault("no-edge", port)
    for mode, port in modes.items():
        suffix, tag = ("", "") if mode == "edge" else (" (no-edge)", "[no-edge]")
        cases += [
            Case(f"lambda{tag}", f"portico AWS_PROXY (in-process){suffix}", port, "/lambda"),
            Case(f"mock{tag}", f"portico MOCK{suffix}", port, "/mock"),
            Case(f"429{tag}", f"portico throttled (429){suffix}", port, "/limited", expect_status=429),
        ]
    if tls_port is not None:
        cases += [
            Case("upstream[tls]", "upstream (nginx, direct, https)", up_tls_port, "/", tls=tls_client),
            Case("proxy[tls]", "portico HTTP_PROXY (https)", tls_port, "/proxy", tls=tls_client),
            Case("mock[tls]", "portico MOCK (https)", tls_port, "/mock", tls=tls_client),
        ]
    if args.only:
        wanted = {w.strip() for w in args.only.split(",")}
        cases = [c for c in cases if c.key in wanted or c.key.split("[")[0] in wanted]
        proxy_keys = [k for k in proxy_keys if k in {c.key for c in cases}]

    measure(args, cases)
    print_table(cases, "nginx", proxy_keys)
    rps = {c.key: statistics.median(s.rps for s in c.samples) for c in cases if c.samples}
    for plain in ("upstream", "proxy", "mock"):
        if f"{plain}[tls]" in rps and plain in rps:
            ratio = rps[f"{plain}[tls]"] / rps[plain]
            who = "nginx" if plain == "upstream" else "portico"
            print(f"ratio {who} {plain} over https / over http: {ratio:.2f}")

    if args.micro:
        print("\ncargo bench --bench core:")
        subprocess.run(["cargo", "bench", "--bench", "core"], cwd=REPO, check=False)
    return 0


# ------------------------------------------------------------------------------------------ production

ORIGIN = "https://app.example"
EXPOSE = "x-request-id, x-trace-id"
# The access log's fields, as Portico's `$context` variables and as nginx's equivalents.
LOG_FIELDS = (
    ("requestId", "$context.requestId", "$request_id"),
    ("sourceIp", "$context.identity.sourceIp", "$remote_addr"),
    ("requestTime", "$context.requestTime", "$time_local"),
    ("httpMethod", "$context.httpMethod", "$request_method"),
    ("routeKey", "$context.routeKey", "$request_method $uri"),
    ("status", "$context.status", "$status"),
    ("protocol", "$context.protocol", "$server_protocol"),
    ("responseLength", "$context.responseLength", "$body_bytes_sent"),
    ("responseLatency", "$context.responseLatency", "$request_time"),
    ("userAgent", "$context.identity.userAgent", "$http_user_agent"),
)
PORTICO_LOG_FORMAT = "{" + ",".join(f'"{name}":"{var}"' for name, var, _ in LOG_FIELDS) + "}"
NGINX_LOG_FORMAT = "{" + ",".join(f'"{name}":"{var}"' for name, _, var in LOG_FIELDS) + "}"
_ROUTE_KEY = re.compile(r'"routeKey":"([^"]*)"')

# nginx doing Portico's production job: the same proxy, a JSON access log buffered as a production
# nginx would write it, and the CORS headers for the allowed origin only (none without an Origin).
PRODUCTION_PROXY_HTTP = (
    """
    keepalive_requests 1000000;
    log_format bench escape=json 'LOG_FORMAT';
    map $http_origin $cors_origin {{ default ""; "ORIGIN" $http_origin; }}
    map $http_origin $cors_expose {{ default ""; "ORIGIN" "EXPOSE"; }}
    upstream backend {{
        server 127.0.0.1:UPSTREAM_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        access_log ACCESS_LOG bench buffer=64k flush=1s;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            add_header Access-Control-Allow-Origin $cors_origin always;
            add_header Access-Control-Expose-Headers $cors_expose always;
        }}
    }}
""".replace("LOG_FORMAT", NGINX_LOG_FORMAT.replace("{", "{{").replace("}", "}}"))
    .replace("ORIGIN", ORIGIN)
    .replace("EXPOSE", EXPOSE)
)


def production_config(upstream_port: int, access_log: Path, *, cors: bool) -> dict:
    """One API with an access log to `access_log`: with CORS, GET /proxy (case 1); without, POST
    /proxy (case 2) and GET /lambda (case 3)."""
    upstream = {
        "type": "HTTP_PROXY",
        "uri": f"http://127.0.0.1:{upstream_port}/",
        "method": "ANY",
        "timeoutInMillis": 10000,
    }
    api: dict = {"name": "production", "id": "prod12345"}
    if cors:
        api["routes"] = [{"route": "GET /proxy", "integration": "upstream"}]
        api["integrations"] = {"upstream": upstream}
        api["corsConfiguration"] = {
            "allowOrigins": [ORIGIN],
            "allowMethods": ["GET", "POST", "PUT", "DELETE"],
            "allowHeaders": ["authorization", "content-type", "x-api-key"],
            "exposeHeaders": [h.strip() for h in EXPOSE.split(",")],
            "maxAge": 600,
        }
    else:
        api["routes"] = [
            {"route": "POST /proxy", "integration": "upstream"},
            {"route": "GET /lambda", "integration": "ok"},
        ]
        api["integrations"] = {
            "upstream": upstream,
            "ok": {
                "type": "AWS_PROXY",
                "uri": "arn:aws:lambda:us-east-1:123456789012:function:ok",
                "payloadFormatVersion": "2.0",
            },
        }
    return {
        "functions": {"ok": "handlers:ok"},
        "apis": [api],
        "settings": {
            **NO_ACCOUNT_LIMIT,
            "accessLog": {"format": PORTICO_LOG_FORMAT, "destination": str(access_log)},
        },
    }


def json_body(size: int = 1024) -> bytes:
    """A JSON document of exactly `size` bytes, shaped like an API's request."""
    doc = {
        "orderId": "ord-0001234567",
        "customer": {"id": "cus-42", "email": "jane@example.com", "tier": "gold"},
        "items": [{"sku": f"SKU-{i:04d}", "qty": i % 5 + 1, "price": round(9.99 + i, 2)} for i in range(8)],
        "note": "",
    }
    base = len(json.dumps(doc, separators=(",", ":")))
    doc["note"] = "n" * (size - base)
    body = json.dumps(doc, separators=(",", ":")).encode()
    assert len(body) == size, len(body)
    return body


@dataclass
class Target:
    label: str
    portico: str  # case keys
    nginx: str
    min_ratio: float | None  # Portico/nginx req/s
    p99_rule: tuple[str, float]  # ("x", N): p99 <= N x nginx's; ("ms", N): p99 <= N ms


TARGETS = (
    Target("GET, access log + CORS", "cors", "nginx-cors", 0.8, ("x", 2.0)),
    Target("POST 1 KB, access log", "post", "nginx-post", 0.7, ("x", 2.0)),
    Target("Lambda GET, access log", "lambda", "nginx-log", 0.6, ("ms", 5.0)),
    Target("bare GET (reference)", "proxy", "nginx", None, ("x", 2.0)),
)


def run_production(args: argparse.Namespace, tmp: Path, procs: Processes) -> int:
    up_port, _ = start_nginx(tmp, procs, "upstream", UPSTREAM_HTTP)
    bare_ngx_port, _ = start_nginx(tmp, procs, "proxy", PROXY_HTTP.replace("UPSTREAM_PORT", str(up_port)))
    ngx_log = tmp / "nginx-production.access.log"
    ngx_body = PRODUCTION_PROXY_HTTP.replace("UPSTREAM_PORT", str(up_port)).replace(
        "ACCESS_LOG", str(ngx_log)
    )
    ngx_port, ngx_proc = start_nginx(tmp, procs, "proxy-production", ngx_body)

    cors_log, plain_log = tmp / "portico-cors.access.log", tmp / "portico-log.access.log"
    # Readiness on an unrouted path: its log line has routeKey "-", outside every case's count.
    cors_port, cors_proc, _ = start_portico(
        tmp, procs, "portico-cors", production_config(up_port, cors_log, cors=True), "/ready"
    )
    log_port, log_proc, _ = start_portico(
        tmp, procs, "portico-log", production_config(up_port, plain_log, cors=False), "/ready"
    )
    bare_port, _, _ = start_portico(tmp, procs, "portico-bare", portico_config(up_port), "/mock")

    script = tmp / "post.lua"
    body = json_body()
    script.write_text(
        f'wrk.method = "POST"\nwrk.body = [==[{body.decode()}]==]\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    origin = {"Origin": ORIGIN}
    cors_headers = {"access-control-allow-origin": ORIGIN, "access-control-expose-headers": EXPOSE}
    post = {"method": "POST", "body": body, "script": script}
    cases = [
        Case(
            "nginx-cors",
            "nginx GET, log + CORS",
            ngx_port,
            "/cors",
            headers=origin,
            expect_headers=cors_headers,
        ),
        Case(
            "cors",
            "portico GET, log + CORS",
            cors_port,
            "/proxy",
            headers=origin,
            expect_headers=cors_headers,
        ),
        Case("nginx-post", "nginx POST 1 KB, log", ngx_port, "/post", **post),
        Case("post", "portico POST 1 KB, log", log_port, "/proxy", **post),
        Case("nginx-log", "nginx GET, log", ngx_port, "/get"),
        Case("lambda", "portico AWS_PROXY GET, log", log_port, "/lambda"),
        Case("nginx", "nginx GET, bare", bare_ngx_port, "/"),
        Case("proxy", "portico GET, bare", bare_port, "/proxy"),
    ]
    # Where each case's requests are logged: (file, routeKey).
    logs = {
        "nginx-cors": (ngx_log, "GET /cors"),
        "nginx-post": (ngx_log, "POST /post"),
        "nginx-log": (ngx_log, "GET /get"),
        "cors": (cors_log, "GET /proxy"),
        "post": (plain_log, "POST /proxy"),
        "lambda": (plain_log, "GET /lambda"),
    }
    if args.only:
        wanted = {w.strip() for w in args.only.split(",")}
        cases = [c for c in cases if c.key in wanted]

    measure(args, cases)
    print_table(cases, "nginx", [])
    print_targets(cases)

    # Count the log lines once the servers have stopped (and flushed): one per request answered.
    for proc in (cors_proc, log_proc, ngx_proc):
        procs.stop(proc)
    counts: dict[Path, collections.Counter[str]] = {}
    for path in {path for path, _ in logs.values()}:
        text = path.read_text(errors="replace") if path.exists() else ""
        counts[path] = collections.Counter(_ROUTE_KEY.findall(text))
    print(
        f"\naccess log: lines written vs requests answered (wrk's count, warm-up and "
        f"{CHECKS} checks included; wrk leaves up to -c requests per run uncounted)"
    )
    print(f"{'case':<30} {'log lines':>10} {'requests':>10} {'lines - requests':>17}")
    for case in cases:
        if case.key in logs:
            path, route = logs[case.key]
            lines = counts[path][route]
            slack = args.connections * (len(case.samples) + (args.warmup > 0))  # in flight at the ends
            diff = lines - case.requests
            warn = "  [!lines missing]" if diff < 0 else "  [!more than in flight]" if diff > slack else ""
            print(f"{case.label:<30} {lines:>10,} {case.requests:>10,} {diff:>17,}{warn}")
    return 0


def print_targets(cases: list[Case]) -> None:
    by_key = {case.key: case for case in cases if case.samples}

    def med(case: Case, attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in case.samples)

    print()
    head = f"{'':<24} {'portico':>25}   {'nginx':>25}"
    print(head)
    print(
        f"{'case':<24} {'req/s':>9} {'p50':>7} {'p99':>7}   {'req/s':>9} {'p50':>7} {'p99':>7}"
        f"   {'ratio':>5} {'target':>7}   {'p99 target':>12}"
    )
    for target in TARGETS:
        portico, nginx = by_key.get(target.portico), by_key.get(target.nginx)
        if portico is None or nginx is None:
            continue
        p_rps, n_rps = med(portico, "rps"), med(nginx, "rps")
        p_p99, n_p99 = med(portico, "p99_ms"), med(nginx, "p99_ms")
        ratio = p_rps / n_rps
        if target.min_ratio is None:
            ratio_target = "ref"
        else:
            ratio_target = f">={target.min_ratio:g} " + ("ok" if ratio >= target.min_ratio else "NO")
        kind, bound = target.p99_rule
        limit = bound * n_p99 if kind == "x" else bound
        p99_target = (f"<={bound:g}x " if kind == "x" else f"<={bound:g}ms ") + (
            "ok" if p_p99 <= limit else "NO"
        )
        print(
            f"{target.label:<24} {p_rps:>9,.0f} {med(portico, 'p50_ms'):>7.2f} {p_p99:>7.2f}"
            f"   {n_rps:>9,.0f} {med(nginx, 'p50_ms'):>7.2f} {n_p99:>7.2f}"
            f"   {ratio:>5.2f} {ratio_target:>7}   {p99_target:>12}"
        )
    print("(latencies in ms, medians over the rounds; Lambda is against nginx's proxied GET with its log)")


# ------------------------------------------------------------------------------------------ auth

BENCH_API_KEY = "BenchApiKeyValue0123456789abcdef"
# A key in a usage plan with a throttle and a quota (too high to refuse anything in a run).
BENCH_PLAN_KEY = "BenchPlanKeyValue0123456789abcde"
# (case, reference case, least ratio of their throughputs)
AUTH_TARGETS = (
    ("apikey", "open", 0.95),
    ("lambda", "open", 0.8),
    ("plan", "apikey", 0.95),
    ("plan-mock", "apikey-mock", 0.95),
)
BENCH_TOKEN = "Bearer bench-token-0123456789"


def auth_config(upstream_port: int) -> dict:
    upstream = {
        "type": "HTTP_PROXY",
        "uri": f"http://127.0.0.1:{upstream_port}/",
        "method": "GET",
        "timeoutInMillis": 10000,
    }
    return {
        "settings": NO_ACCOUNT_LIMIT,
        "functions": {"token_authorizer": "handlers:token_authorizer"},
        "apis": [
            {
                "name": "auth",
                "id": "authbench",
                "protocolType": "REST",
                "routes": [
                    {"routeKey": "GET /open", "integration": "upstream"},
                    {"routeKey": "GET /keyed", "integration": "upstream", "apiKeyRequired": True},
                    {"routeKey": "GET /keyed-mock", "integration": "canned", "apiKeyRequired": True},
                    {
                        "routeKey": "GET /lambda",
                        "integration": "upstream",
                        "authorizationType": "CUSTOM",
                        "authorizerId": "token",
                    },
                ],
                "integrations": {
                    "upstream": upstream,
                    "canned": {"type": "MOCK", "statusCode": 200, "body": '{"ok":true}'},
                },
                "authorizers": {
                    "token": {
                        "authorizerType": "TOKEN",
                        "authorizerUri": "arn:aws:lambda:us-east-1:123456789012:function:token_authorizer",
                        "identitySource": "method.request.header.Authorization",
                        "authorizerResultTtlInSeconds": 300,
                    }
                },
                "stages": [{"stageName": "bench"}],
            }
        ],
        "apiKeys": [
            {"name": "bench", "value": BENCH_API_KEY, "enabled": True},
            {"name": "metered", "value": BENCH_PLAN_KEY, "enabled": True},
        ],
        "usagePlans": [
            {"name": "bench", "apiStages": [{"apiId": "authbench", "stage": "bench"}], "apiKeys": ["bench"]},
            {
                "name": "metered",
                "apiStages": [{"apiId": "authbench", "stage": "bench"}],
                "apiKeys": ["metered"],
                "throttle": {"rateLimit": 1e9, "burstLimit": 1_000_000_000},
                "quota": {"limit": 2**31 - 1, "period": "MONTH"},
            },
        ],
    }


def run_auth(args: argparse.Namespace, tmp: Path, procs: Processes) -> int:
    up_port, _ = start_nginx(tmp, procs, "upstream", UPSTREAM_HTTP)
    port, _, _ = start_portico(tmp, procs, "portico-auth", auth_config(up_port), "/bench/open")
    cases = [
        Case("open", "REST HTTP_PROXY, no authorization", port, "/bench/open"),
        Case(
            "apikey", "the same, apiKeyRequired", port, "/bench/keyed", headers={"x-api-key": BENCH_API_KEY}
        ),
        Case("apikey-403", "apiKeyRequired, no key (403)", port, "/bench/keyed", expect_status=403),
        Case(
            "plan",
            "the same, key's plan: throttle + quota",
            port,
            "/bench/keyed",
            headers={"x-api-key": BENCH_PLAN_KEY},
        ),
        Case(
            "apikey-mock",
            "MOCK, apiKeyRequired",
            port,
            "/bench/keyed-mock",
            headers={"x-api-key": BENCH_API_KEY},
        ),
        Case(
            "plan-mock",
            "MOCK, key's plan: throttle + quota",
            port,
            "/bench/keyed-mock",
            headers={"x-api-key": BENCH_PLAN_KEY},
        ),
        Case(
            "lambda",
            "the same, Lambda authorizer (cached)",
            port,
            "/bench/lambda",
            headers={"Authorization": BENCH_TOKEN},
        ),
    ]
    measure_and_compare(args, cases, AUTH_TARGETS, "ratios against each case's reference, AUTH_TARGETS")
    return 0


def measure_and_compare(
    args: argparse.Namespace,
    cases: list[Case],
    targets: tuple[tuple[str, str, float], ...],
    ratios: str,
) -> list[Case]:
    """Measure `cases` (those of `--only`, when given) in alternating rounds and print each one's
    median req/s, p50 and p99, and for each `(case, baseline, target)` of `targets` the case's
    req/s over its baseline's against the target. Returns the cases measured."""
    if args.only:
        wanted = {w.strip() for w in args.only.split(",")}
        cases = [c for c in cases if c.key in wanted]
    measure(args, cases)
    by_key = {case.key: case for case in cases}

    def med(case: Case, attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in case.samples)

    print()
    print(f"{'case':<36} {'req/s':>9} {'p50':>7} {'p99':>7}   {'ratio':>5} {'target':>9}")
    for case in cases:
        target = next((t for t in targets if t[0] == case.key), None)
        ratio, verdict = "", ""
        if target is not None and target[1] in by_key:
            value = med(case, "rps") / med(by_key[target[1]], "rps")
            ratio = f"{value:.2f}"
            verdict = f">={target[2]:g} " + ("ok" if value >= target[2] else "NO")
        print(
            f"{case.label:<36} {med(case, 'rps'):>9,.0f} {med(case, 'p50_ms'):>7.2f} "
            f"{med(case, 'p99_ms'):>7.2f}   {ratio:>5} {verdict:>9}"
        )
    print(f"(latencies in ms, medians over the rounds; {ratios})")
    return cases


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


if __name__ == "__main__":
    sys.exit(main())
