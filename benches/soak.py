"""Soak: mixed load on `portico serve --workers 2` with the admin API on, one worker SIGKILLed and
one redeploy every interval; every answer is counted and every process's memory watched.

    python benches/soak.py [--duration S] [--interval S] [--warmup S] [--rate N] [--connections N]
                           [--victim youngest|oldest] [--json PATH] [--keep]

What it starts (free ports, everything on 127.0.0.1):
  upstream  nginx answering every request with a small JSON body (benches/run.py's upstream)
  portico   `python -m portico serve CONFIG --workers 2 --admin-port A --data-dir D`
              file API (soakfile01):  GET /mock    MOCK
                                      GET /proxy   HTTP_PROXY -> upstream
                                      GET /lambda  AWS_PROXY  -> benches/handlers.py:hello
              admin API (an apigatewayv2 HTTP API created with boto3 once the server is up):
                                      GET /version AWS_PROXY  -> handlers.py:stage_version (answers
                                                   the stage variable `version`)
                                      GET /proxy   HTTP_PROXY -> upstream
Load: --connections threads, each on a keep-alive connection (http.client) replaced after every
--keepalive-requests requests (so that connections keep spreading over the workers, replacements
included), together at most --rate requests/s, round-robin over the five routes. Every answer is
recorded, none is retried.

Every --interval seconds (from the start of the load): SIGKILL of one worker, then a redeploy:
UpdateStage (stage variable version = k) and CreateDeployment of the admin API's `$default`
stage, the way the admin API changes what the workers serve live. `--victim youngest` (the default)
kills the most recently started worker each time, so the other one lives through the whole run
and its memory tells whether a long-lived worker leaks; `oldest` kills the longest-lived one.

What counts as an error:
  - any answer other than 200, on any route, at any time;
  - a /version answer older than a deployment finished STALE_GRACE_SECONDS before it was asked;
  - a connection error (reset, closed without an answer, timeout, refused), unless it could only
    be the killed worker's: the client's connection was one the killed worker held when it was
    killed (its sockets, read from /proc just before the kill) and the error came within
    KILL_WINDOW_SECONDS of the kill. Those are reported apart ("killed worker's").
Memory: VmRSS of the master, each worker slot, the admin API process and multiprocessing's
resource tracker, sampled after --warmup seconds of load (start) and at the end, load still on.
A killed slot's end figure is its latest replacement's.
Targets: no error outside the killed worker's connections; RSS growth under 10% for every process.
The exit status is 1 when a target is missed, 0 otherwise.

Flags:
  --duration S      seconds of load (default 600)
  --interval S      seconds between kills (+ redeploys) (default 30)
  --warmup S        seconds of load before the start RSS sample; less than --interval (default 20)
  --rate N          requests/s at most, all connections together (default 300)
  --connections N   client connections (threads) (default 8)
  --keepalive-requests N
                    requests per connection before the client opens a new one (default 100)
  --victim V        youngest or oldest worker (default youngest)
  --json PATH       also write every figure (and each error, kill, redeploy, RSS sample) as JSON
  --keep            keep the temporary directory (configs, data dir, logs) and print its path
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import boto3
from botocore.config import Config as BotoConfig

from run import (
    UPSTREAM_HTTP,
    Processes,
    descendants,
    free_port,
    in_scratch,
    start_nginx,
    start_portico,
    wait_http,
)

KEY_ID = "AKIASOAKBENCH"
SECRET = "soak-bench-secret-0123456789abcdefghij"
FILE_API_ID = "soakfile01"
VERSION_FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:stage_version"
WORKERS = 2
# A connection error this long after a kill, on a connection the killed worker held, is its.
KILL_WINDOW_SECONDS = 1.0
# A deployment every worker must serve within this (they poll the store every 200 ms).
STALE_GRACE_SECONDS = 2.0
REQUEST_TIMEOUT_SECONDS = 10.0
RSS_GROWTH_TARGET = 0.10
LOG_PROBLEMS = re.compile(r"ERROR|CRITICAL|Traceback|panicked|Exception", re.IGNORECASE)
# Granian's word for each kill: expected, not a problem.
KILLED_WORKER_LINE = re.compile(r"Unexpected exit from worker-\d+$")
TCP_LISTEN = "0A"  # /proc/net/tcp's state of a listening socket


@dataclass(frozen=True)
class Route:
    label: str
    path: str
    host: str  # names the API: two are served


@dataclass
class Kill:
    at: float  # seconds since the load started
    pid: int
    slot: str
    client_ports: set[int]  # the client ends of the connections the worker held
    respawn_seconds: float | None = None
    excused_errors: int = 0


@dataclass
class Redeploy:
    version: int
    done_at: float  # seconds since the load started, when CreateDeployment answered
    seconds: float
    error: str | None = None


@dataclass
class Failure:
    at: float
    route: str
    kind: str  # "status 502", "stale v3 (v4 deployed)", "RemoteDisconnected", ...
    client_port: int | None
    connection_age: float | None
    since_kill: float | None  # seconds since the latest kill


@dataclass
class RouteCounts:
    requests: int = 0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    connection_errors: int = 0  # not the killed worker's
    killed_workers: int = 0  # connection errors excused as the killed worker's
    failures: int = 0  # every error: statuses other than 200, stale versions, connection errors


class Soak:
    """The shared record: routes' counts, failures, kills and deployments (one lock for all)."""

    def __init__(self, routes: list[Route]) -> None:
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.counts = {route.label: RouteCounts() for route in routes}
        self.failures: list[Failure] = []
        self.kills: list[Kill] = []
        self.redeploys: list[Redeploy] = []

    def now(self) -> float:
        return time.monotonic() - self.started

    def answered(self, route: Route, status: int, body: bytes, asked_at: float) -> None:
        with self.lock:
            counts = self.counts[route.label]
            counts.requests += 1
            counts.statuses[status] += 1
            problem = None
            if status != 200:
                problem = f"status {status}"
            elif route.path == "/version":
                problem = self._stale(body, asked_at)
            if problem:
                counts.failures += 1
                self.failures.append(Failure(asked_at, route.label, problem, None, None, self._since_kill()))

    def _stale(self, body: bytes, asked_at: float) -> str | None:
        """Whether /version answered older than a deployment done STALE_GRACE_SECONDS before."""
        settled = [
            r.version
            for r in self.redeploys
            if r.error is None and r.done_at < asked_at - STALE_GRACE_SECONDS
        ]
        expected = max(settled, default=0)
        try:
            version = int(body)
        except ValueError:
            return f"unexpected body {body[:40]!r}"
        return f"stale v{version} (v{expected} deployed)" if version < expected else None

    def connection_error(self, route: Route, kind: str, client_port: int | None, opened_at: float) -> None:
        at = self.now()
        with self.lock:
            counts = self.counts[route.label]
            counts.requests += 1
            kill = self._killed_worker_of(client_port, at)
            if kill is not None:
                kill.excused_errors += 1
                counts.killed_workers += 1
                return
            counts.failures += 1
            counts.connection_errors += 1
            age = at - opened_at if client_port is not None else None
            self.failures.append(Failure(at, route.label, kind, client_port, age, self._since_kill()))

    def _killed_worker_of(self, client_port: int | None, at: float) -> Kill | None:
        for kill in reversed(self.kills):
            if kill.at <= at <= kill.at + KILL_WINDOW_SECONDS and client_port in kill.client_ports:
                return kill
        return None

    def _since_kill(self) -> float | None:
        return self.now() - self.kills[-1].at if self.kills else None


# ------------------------------------------------------------------------------------------ load


def load(
    soak: Soak,
    port: int,
    routes: list[Route],
    rate: float,
    per_connection: int,
    offset: int,
    stop: threading.Event,
) -> None:
    """One client's loop: `rate` requests/s at most, round-robin from `offset`, a new connection
    after every `per_connection` requests (as clients and proxies recycle theirs: connections,
    and so the load, keep spreading over the workers, the replacements too)."""
    conn: http.client.HTTPConnection | None = None
    client_port: int | None = None
    opened_at = 0.0
    sent_on_connection = 0
    due = time.monotonic()
    turn = offset
    while not stop.is_set():
        due += 1.0 / rate
        late = due - time.monotonic()
        if late > 0:
            time.sleep(late)
        elif late < -1.0:  # far behind (a stall): start afresh rather than burst
            due = time.monotonic()
        route = routes[turn % len(routes)]
        turn += 1
        asked_at = soak.now()
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_SECONDS)
                conn.connect()
                client_port, opened_at = conn.sock.getsockname()[1], soak.now()
                sent_on_connection = 0
            sent_on_connection += 1
            conn.request("GET", route.path, headers={"Host": route.host})
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            soak.connection_error(route, type(exc).__name__, client_port, opened_at)
            if conn is not None:
                conn.close()
            conn, client_port = None, None
            continue
        soak.answered(route, response.status, body, asked_at)
        if response.will_close or sent_on_connection >= per_connection:
            conn.close()
            conn, client_port = None, None
    if conn is not None:
        conn.close()


# ------------------------------------------------------------------------------------------ processes


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def server_ports_of(pid: int, port: int) -> set[int]:
    """The client ports of the connections to `port` that process `pid` holds (its socket
    descriptors matched against /proc/net/tcp)."""
    inodes: set[str] = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return set()
    ports: set[int] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
        if inode in inodes and state != TCP_LISTEN and int(local.split(":")[1], 16) == port:
            ports.add(int(remote.split(":")[1], 16))
    return ports


class ServerLog:
    """What Granian and the CLI write about the processes: worker slots and their pids, the admin
    API's pid."""

    SPAWNED = re.compile(r"Spawning (worker-\d+) with PID: (\d+)")
    STARTED = re.compile(r"Started (worker-\d+)")
    ADMIN = re.compile(r"portico-admin: .*\(pid (\d+)\)")

    def __init__(self, path: Path) -> None:
        self.path = path

    def text(self) -> str:
        return self.path.read_text(errors="replace")

    def workers(self) -> dict[str, int]:
        """Each slot's latest pid, in the order slots were (re)spawned, youngest last."""
        latest: dict[str, int] = {}
        for slot, pid in self.SPAWNED.findall(self.text()):
            latest.pop(slot, None)
            latest[slot] = int(pid)
        return latest

    def started(self) -> int:
        return len(self.STARTED.findall(self.text()))

    def admin(self) -> int | None:
        found = self.ADMIN.search(self.text())
        return int(found.group(1)) if found else None


def processes(master: int, log: ServerLog) -> dict[str, int]:
    """Name -> pid of every process of the server."""
    named = {"master": master}
    admin = log.admin()
    if admin is not None:
        named["admin"] = admin
    named.update(sorted(log.workers().items()))
    for pid in descendants(master):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"resource_tracker" in cmdline:
            named["resource-tracker"] = pid
    return named


def sample_rss(master: int, log: ServerLog) -> dict[str, tuple[int, int | None]]:
    return {name: (pid, rss_kb(pid)) for name, pid in processes(master, log).items()}


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.05) -> float | None:
    """Seconds until `check()` holds, or None after `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(interval)
    return None


# ------------------------------------------------------------------------------------------ admin API


class AdminApi:
    """The admin-created HTTP API under load, redeployed through boto3 like AWS's."""

    def __init__(self, admin_port: int, upstream_port: int) -> None:
        self.client = boto3.client(
            "apigatewayv2",
            endpoint_url=f"http://127.0.0.1:{admin_port}",
            region_name="us-east-1",
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
            config=BotoConfig(retries={"max_attempts": 3, "mode": "standard"}),
        )
        client = self.client
        self.api_id = client.create_api(Name="soak-admin", ProtocolType="HTTP")["ApiId"]
        version = client.create_integration(
            ApiId=self.api_id,
            IntegrationType="AWS_PROXY",
            IntegrationUri=VERSION_FUNCTION,
            PayloadFormatVersion="2.0",
        )["IntegrationId"]
        proxy = client.create_integration(
            ApiId=self.api_id,
            IntegrationType="HTTP_PROXY",
            IntegrationUri=f"http://127.0.0.1:{upstream_port}/",
            IntegrationMethod="GET",
            PayloadFormatVersion="1.0",
        )["IntegrationId"]
        for key, target in (("GET /version", version), ("GET /proxy", proxy)):
            client.create_route(ApiId=self.api_id, RouteKey=key, Target=f"integrations/{target}")
        client.create_stage(ApiId=self.api_id, StageName="$default", StageVariables={"version": "0"})
        client.create_deployment(ApiId=self.api_id, StageName="$default")

    def deploy(self, version: int) -> None:
        self.client.update_stage(
            ApiId=self.api_id, StageName="$default", StageVariables={"version": str(version)}
        )
        self.client.create_deployment(ApiId=self.api_id, StageName="$default", Description=f"v{version}")


# ------------------------------------------------------------------------------------------ run


def soak_config(upstream_port: int) -> dict:
    canned = {"type": "MOCK", "statusCode": 200, "headers": {"content-type": "text/plain"}, "body": "ok"}
    upstream = {"type": "HTTP_PROXY", "uri": f"http://127.0.0.1:{upstream_port}/", "method": "GET"}
    hello = {"type": "AWS_PROXY", "uri": "hello", "payloadFormatVersion": "2.0"}
    return {
        # No account limit: a benchmark measures the gateway, not AWS's default 10,000 requests/s.
        "settings": {"accountThrottle": {}},
        "functions": {"hello": "handlers:hello", "stage_version": "handlers:stage_version"},
        "apis": [
            {
                "name": "soak-file",
                "id": FILE_API_ID,
                "routes": [
                    {"route": "GET /mock", "integration": canned},
                    {"route": "GET /proxy", "integration": upstream},
                    {"route": "GET /lambda", "integration": hello},
                ],
            }
        ],
    }


def run(args: argparse.Namespace, tmp: Path, procs: Processes) -> dict:
    upstream_port, _ = start_nginx(tmp, procs, "upstream", UPSTREAM_HTTP)
    admin_port = free_port()
    admin_flags = ("--admin-port", str(admin_port), "--data-dir", str(tmp / "data"))
    admin_flags += ("--admin-key", f"{KEY_ID}:{SECRET}")
    file_host = f"{FILE_API_ID}.execute-api.localhost"
    port, server, _ = start_portico(
        tmp, procs, "portico", soak_config(upstream_port), "/mock", admin_flags, workers=WORKERS
    )
    log = ServerLog(tmp / "portico.log")
    wait_http(admin_port, "/v2/apis", server, log.path)
    if wait_until(lambda: len(log.workers()) == WORKERS and log.started() >= WORKERS, 30) is None:
        raise RuntimeError(f"{WORKERS} workers did not start; log {log.path}")
    admin = AdminApi(admin_port, upstream_port)
    admin_host = f"{admin.api_id}.execute-api.localhost"
    routes = [
        Route("file GET /mock (MOCK)", "/mock", file_host),
        Route("file GET /proxy (HTTP_PROXY)", "/proxy", file_host),
        Route("file GET /lambda (AWS_PROXY)", "/lambda", file_host),
        Route("admin GET /version (AWS_PROXY)", "/version", admin_host),
        Route("admin GET /proxy (HTTP_PROXY)", "/proxy", admin_host),
    ]
    served = wait_until(lambda: _status(port, "/version", admin_host) == 200, 10)
    if served is None:
        raise RuntimeError(f"the admin API's routes are not served; log {log.path}")

    soak = Soak(routes)
    stop = threading.Event()
    rate = args.rate / args.connections
    clients = [
        threading.Thread(
            target=load, args=(soak, port, routes, rate, args.keepalive_requests, i, stop), daemon=True
        )
        for i in range(args.connections)
    ]
    for client in clients:
        client.start()
    samples: list[dict] = []
    try:
        _sleep_until(soak, args.warmup)
        start_rss = sample_rss(server.pid, log)
        samples.append({"at": round(soak.now(), 1), "rss_kb": start_rss})
        tick = 1
        while tick * args.interval < args.duration:
            _sleep_until(soak, tick * args.interval)
            kill_one(soak, server.pid, log, port, args.victim)
            redeploy(soak, admin, tick)
            samples.append({"at": round(soak.now(), 1), "rss_kb": sample_rss(server.pid, log)})
            print(f"[{soak.now():6.1f} s] kill {tick} + redeploy v{tick} done", file=sys.stderr)
            tick += 1
        _sleep_until(soak, args.duration)
        end_rss = sample_rss(server.pid, log)
        samples.append({"at": round(soak.now(), 1), "rss_kb": end_rss})
    finally:
        stop.set()
        for client in clients:
            client.join(REQUEST_TIMEOUT_SECONDS + 5)
    healthy = _status(port, "/mock", file_host) == 200
    problems = [
        line
        for line in log.text().splitlines()
        if LOG_PROBLEMS.search(line) and not KILLED_WORKER_LINE.search(line)
    ]
    return report(args, soak, start_rss, end_rss, samples, healthy, problems)


def kill_one(soak: Soak, master: int, log: ServerLog, port: int, victim: str) -> None:
    """SIGKILL one worker; wait for its replacement to start."""
    workers = log.workers()  # youngest last
    slot, pid = list(workers.items())[-1 if victim == "youngest" else 0]
    started = log.started()
    with soak.lock:  # no connection error is judged between the snapshot and the kill
        held = server_ports_of(pid, port)
        kill = Kill(soak.now(), pid, slot, held)
        soak.kills.append(kill)
        os.kill(pid, signal.SIGKILL)
    kill.respawn_seconds = wait_until(
        lambda: log.workers().get(slot, pid) != pid and log.started() > started, 30
    )


def redeploy(soak: Soak, admin: AdminApi, version: int) -> None:
    began = soak.now()
    error = None
    try:
        admin.deploy(version)
    except Exception as exc:  # an admin API failure is a finding, reported with the rest
        error = f"{type(exc).__name__}: {exc}"
    with soak.lock:
        soak.redeploys.append(Redeploy(version, soak.now(), soak.now() - began, error))


def _sleep_until(soak: Soak, at: float) -> None:
    time.sleep(max(0.0, at - soak.now()))


def _status(port: int, path: str, host: str) -> int | None:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", path, headers={"Host": host})
        status = conn.getresponse().status
        conn.close()
        return status
    except (OSError, http.client.HTTPException):
        return None


# ------------------------------------------------------------------------------------------ report


def report(
    args: argparse.Namespace,
    soak: Soak,
    start_rss: dict[str, tuple[int, int | None]],
    end_rss: dict[str, tuple[int, int | None]],
    samples: list[dict],
    healthy: bool,
    problems: list[str],
) -> dict:
    print(
        f"\nsoak: {args.duration} s of load, {WORKERS} workers, admin API on; every {args.interval} s a "
        f"SIGKILL ({args.victim} worker) and a redeploy; <= {args.rate:g} req/s from {args.connections} "
        f"clients, a new keep-alive connection every {args.keepalive_requests} requests"
    )
    print(f"\n{'route':<32} {'requests':>9} {'200':>9} {'other':>6} {'conn err':>9} {'killed worker':>14}")
    totals = RouteCounts()
    for label, counts in [*soak.counts.items(), ("total", totals)]:
        if counts is not totals:
            totals.requests += counts.requests
            totals.statuses.update(counts.statuses)
            totals.connection_errors += counts.connection_errors
            totals.killed_workers += counts.killed_workers
            totals.failures += counts.failures
        other = sum(counts.statuses.values()) - counts.statuses[200]
        print(
            f"{label:<32} {counts.requests:>9,} {counts.statuses[200]:>9,} {other:>6,} "
            f"{counts.connection_errors:>9,} {counts.killed_workers:>14,}"
        )
    other_statuses = {s: n for s, n in sorted(totals.statuses.items()) if s != 200}
    if other_statuses:
        print(f"statuses other than 200: {other_statuses}")

    respawns = [k.respawn_seconds for k in soak.kills if k.respawn_seconds is not None]
    unrespawned = len(soak.kills) - len(respawns)
    failed_deploys = [r for r in soak.redeploys if r.error]
    deploy_seconds = [r.seconds for r in soak.redeploys] or [0.0]
    not_replaced = f", {unrespawned} NOT replaced" if unrespawned else ""
    print(
        f"\nkills: {len(soak.kills)}, replacement started in median "
        f"{statistics.median(respawns or [0.0]):.2f} s (max {max(respawns, default=0.0):.2f} s)"
        f"{not_replaced}\nper kill, connections the killed worker held: "
        f"{[len(k.client_ports) for k in soak.kills]}\n          their errors (excused): "
        f"{[k.excused_errors for k in soak.kills]}"
    )
    print(
        f"redeploys: {len(soak.redeploys) - len(failed_deploys)} ok, {len(failed_deploys)} failed; "
        f"UpdateStage + CreateDeployment took median {statistics.median(deploy_seconds):.2f} s"
    )
    for failed in failed_deploys[:5]:
        print(f"  redeploy v{failed.version} at {failed.done_at:.1f} s: {failed.error}")

    errors = len(soak.failures) + len(failed_deploys) + unrespawned
    kinds = collections.Counter(f"{f.route}: {f.kind}" for f in soak.failures)
    print(
        f"\nerrors outside the killed worker's connections: {errors} (target 0): "
        f"{'ok' if errors == 0 else 'MISSED'}"
    )
    for kind, count in kinds.most_common(10):
        print(f"  {count:>6} x {kind}")
    for failure in soak.failures[:10]:
        print(f"  e.g. {asdict(failure)}")

    print(f"\n{'process':<18} {'pid':>8} {'RSS start':>10} {'pid':>8} {'RSS end':>10} {'growth':>8}")
    growths: list[float] = []
    for name in sorted(set(start_rss) | set(end_rss), key=_process_order):
        first_pid, first = start_rss.get(name, (0, None))
        last_pid, last = end_rss.get(name, (0, None))
        growth = (last - first) / first if first and last else None
        if growth is not None:
            growths.append(growth)
        note = " (replaced)" if first_pid != last_pid else ""
        print(
            f"{name:<18} {first_pid:>8} {_mb(first):>10} {last_pid:>8} {_mb(last):>10} "
            f"{'-' if growth is None else f'{growth:+.1%}':>8}{note}"
        )
    worst = max(growths, default=0.0)
    rss_ok = worst < RSS_GROWTH_TARGET
    print(
        f"largest RSS growth: {worst:+.1%} (target < {RSS_GROWTH_TARGET:.0%}): {'ok' if rss_ok else 'MISSED'}"
    )
    print(
        f"health after the run: {'200' if healthy else 'FAILED'}; log lines with errors (besides "
        f"Granian's one per kill): {len(problems)}"
    )
    for line in problems[:10]:
        print(f"  {line[:200]}")
    return {
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "keep")},
        "routes": {
            label: {
                "requests": c.requests,
                "statuses": dict(c.statuses),
                "connection_errors": c.connection_errors,
                "killed_worker_connection_errors": c.killed_workers,
                "errors": c.failures,
            }
            for label, c in soak.counts.items()
        },
        "errors": [asdict(f) for f in soak.failures],
        "kills": [{**asdict(k), "client_ports": sorted(k.client_ports)} for k in soak.kills],
        "redeploys": [asdict(r) for r in soak.redeploys],
        "rss_samples": samples,
        "log_problems": problems,
        "healthy_after": healthy,
        "targets": {"errors": errors, "errors_ok": errors == 0, "max_rss_growth": worst, "rss_ok": rss_ok},
    }


def _process_order(name: str) -> tuple[int, str]:
    return ({"master": 0, "admin": 1, "resource-tracker": 3}.get(name, 2), name)


def _mb(kb: int | None) -> str:
    return "-" if kb is None else f"{kb / 1024:.1f} MB"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=600)
    parser.add_argument("--interval", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=20)
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--keepalive-requests", type=int, default=100)
    parser.add_argument("--victim", choices=("youngest", "oldest"), default="youngest")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if not 0 < args.warmup < args.interval <= args.duration:
        parser.error("expected 0 < --warmup < --interval <= --duration")
    if shutil.which("nginx") is None:
        print("nginx not found: apt-get install -y nginx-light", file=sys.stderr)
        return 2

    return in_scratch("portico-soak-", args.keep, lambda tmp, procs: _run_and_report(args, tmp, procs))


def _run_and_report(args: argparse.Namespace, tmp: Path, procs: Processes) -> int:
    result = run(args, tmp, procs)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    targets = result["targets"]
    return 0 if targets["errors_ok"] and targets["rss_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
