"""WebSocket benchmark: Portico's WebSocket APIs against a plain `websockets` server and Granian's
own WebSocket support, on loopback, in one command (issue 12).

    python benches/websocket.py [--connections N] [--messages N] [--broadcast N] [--keep]
                                [--clients K] [--client-processes P] [--no-granian] [--no-logged]

What it starts (every port a free one picked at run time; everything on 127.0.0.1):
  portico     `python -m portico serve CONFIG --port P --workers W`, a WEBSOCKET API (stage `bench`,
              `routeSelectionExpression: $request.body.action`), handlers in benches/ws_handlers.py.
              For idle connections and messages: `$default` only (AWS_PROXY -> ws_handlers.echo,
              two-way: the message back), no `$connect`, so the handshake runs no Python. For the
              broadcast, a second one adds `$connect` / `$disconnect` (keep / forget the connection
              id in a module-level list), `broadcast` (one-way: ws_handlers.broadcast posts to every
              kept id with boto3's `apigatewaymanagementapi`, one call after another, as AWS's
              tutorial writes it), `broadcast_pooled` (the same as a handler written for speed
              does it on AWS: one boto3 client kept between invocations, the posts from 32 threads
              over as many kept-alive connections) and `ids` (two-way: the kept ids, 4,000 a page).
  portico-asgi  the same, `--no-edge`: the embedded ASGI door behind Granian, which speaks
              WebSocket and hands the app `websocket` scopes; the core holds the connections.
  portico-logged  for the messages only (--no-logged skips it): portico's `$default` API as a
              production stage serves it, built with boto3 through the admin API (`--admin-port`):
              the stage's `accessLogSettings` write a JSON line of AWS's WebSocket `$context`
              variables to a file for every CONNECT, MESSAGE and DISCONNECT, and its
              `defaultRouteSettings` and the account throttle spend a token per message, at
              1,000,000/s (no message is refused: a refused one would be a wrong answer).
  websockets  benches/ws_peers.py: a plain `websockets` (asyncio) echo server; `broadcast` answered
              with `websockets.broadcast` to every connection (W processes on one port,
              SO_REUSEPORT, for the idle connections).
  granian     `granian --interface rsgi --workers W ws_peers:rsgi_app`: the same echo and broadcast
              under Granian's own WebSocket support (RSGI; the broadcast a loop of `send_str`).
              Skipped with --no-granian or when granian is not installed.
  clients     P processes of this file (`--client`), each holding its share of the connections on
              raw asyncio sockets (a handshake, then a minimal frame reader: a few KB of Python per
              connection, so the client is not what limits N), from its own source addresses
              (127.1.P.x, at most 20,000 connections each: the ephemeral port range bounds one),
              their ports chosen by connect() (IP_BIND_ADDRESS_NO_PORT), not by bind(): see `open s`.
None of the servers pings; the clients never answer pings.

Processes and descriptors: every connection is a descriptor in the client and in the server. The
limit is raised to what the connections need where the hard limit allows; where it does not (a
container without CAP_SYS_RESOURCE: 20,000 on the project's build machine, whatever its root
says), the connections are spread instead: W = ceil(N / (limit - 1,000)) server processes (Portico's
workers, the peers' processes) for the idle connections, as many client processes. The messages
and the broadcast run on one server process each (a broadcast reaches its own process's
connections; Portico's `$connect` keeps ids per process). Every connection has one deadline (30 s)
for its TCP connect and handshake and is counted failed past it: a server out of descriptors
leaves connections in its listen queue, and SYNs dropped by a full queue are retried for minutes.

What it measures:
  1. Idle connections: RSS of the server's process tree (VmRSS of the process and its children,
     /proc) once it answers, and again with --connections N connections open and idle (after a
     settling second). Bytes per idle connection = the growth / N; connections per GiB = 2^30 / that.
     The seconds to open the N connections are shown too (client processes and server share the
     CPUs). Kernel memory (socket buffers) is in no RSS and is not counted.
  2. Messages/s: --clients K `websockets` clients in this process, each sending a 64-byte text
     message and waiting for its answer before the next, --messages N in all (after N/10 untimed):
     messages/s and the p50/p99 round trip. Portico's messages go through the Python handler
     ws_handlers.echo; the peers echo in their own loop (no handler call). This process's asyncio
     client is part of every round trip and shares the 2 CPUs: it bounds all figures alike.
     portico-logged runs right after portico, the bare case, for the cost of the access log and
     the throttle side by side; the line under the table says how many lines its log holds.
  3. Broadcast: --broadcast M connections held by the client processes; one more connection sends
     the broadcast message; the figure is the time from sending it until the last of the M
     receives its frame (CLOCK_MONOTONIC, comparable across processes). For Portico three times:
     the `broadcast` handler (boto3, one signed HTTP call per connection after another, the way
     AWS users first write it), the `broadcast_pooled` handler (the same calls from 32 threads
     sharing one client, created by this first invocation and counted), and from the client side
     (a backend posting, as AWS's guide also shows): this process reads the ids (`ids` route) and
     posts them through `@connections` with boto3 from a pool of 32 threads (the time counts the
     posts only). The peers send from their event loop without an HTTP call per connection.
Ratios are against the `websockets` peer measured in the same run. No figure is asserted.

What bounds the figures:
  - Idle memory: Portico's connection is a tokio task with tungstenite's WebSocket state and its
    read buffer, allocated per connection (rust/pipeline/websocket.rs: 4 KiB; tungstenite's
    default of 128 KiB made an idle connection cost ~137 KB, now ~10 KB). Granian's RSGI
    connections cost ~160 KB each (its own buffers per connection). The `open s`
    column is indicative only: it includes SYN retries whenever a server's accept queue overflows
    under the clients' bursts (256 handshakes in flight per client process), and the clients'
    share of the CPUs. It once included the clients' bind(): a source address's ports held by
    the TIME_WAIT sockets of the previous servers' connections (a minute each) made bind() scan
    for a free one, 3-8 ms per connection with 10,000-16,000 held, most of it the client's kernel
    time: Portico's broadcast, the first server opened after the idle cases, took 31.6 s to open
    10,000 connections where the websockets peer, opened later, took 3.7 s (`--connections 20000
    --messages 5000 --broadcast 10000 --no-granian`; 2.7 s and 9.4 s since). The clients now let
    connect() choose the port (IP_BIND_ADDRESS_NO_PORT).
  - Messages: the 2 CPUs are shared by the server and this process's client (and whatever else
    runs); the asyncio client alone tops out near 20,000-50,000 round trips/s, so ratios near 1
    say "as fast as the client", not "as fast as each other". Figures vary by tens of percent from
    run to run on a loaded machine; run with more --messages for steadier ones.
  - Broadcast through Portico: one signed HTTP call per connection (boto3's SigV4 signing and
    request building, about 1 ms of Python each on an idle machine) bounds it. Under `perf` (a
    worker during `broadcast_pooled` to 2,000): 72% of its CPU in libpython (boto3), 19% in the
    kernel (loopback TCP, both ends), 2.4% in the core (the whole `@connections` path: parsing,
    SigV4 verification, the registry, the frame). Threads overlap the waits but not the Python
    (one GIL, 2 CPUs shared with the server): about 2x over the serial handler, not 32x. The peers
    write to their sockets directly, which is what a broadcast costs without an HTTP API in the
    way; on AWS each post is a network round trip, which the threads do overlap.
  - `$connect` routes run Python per handshake: about 0.1 ms more per handshake than none (a
    MOCK `$connect` costs as little as none), measured 1,000-8,000 handshakes, one at a time and
    256 at once; the broadcast's connections open as fast as the idle ones.
  - Granian is started with its defaults (its own event loop choice, uvloop when
    installed); the `websockets` server runs on asyncio's default loop, as its documentation
    starts it.

Every process started is stopped on exit, on errors and on Ctrl-C. The file-descriptor limit is
raised (setrlimit, inherited by every process started) to what the connections need.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import math
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (  # benches/ is not a package: run.py is found through sys.path
    BENCHES,
    NO_ACCOUNT_LIMIT,
    Processes,
    bench_env,
    descendants,
    free_port,
    in_scratch,
    machine,
    start_portico,
    wait_http,
)

STAGE = "bench"
ACCOUNT = "123456789012"
REGION = "us-east-1"
PRINCIPAL = {
    "accessKeyId": "AKIABENCHWEBSOCKET01",
    "secretAccessKey": "bench/Secret+Key0123456789abcdefGHIJKL",
    "arn": f"arn:aws:iam::{ACCOUNT}:user/bench",
}
PER_SOURCE_ADDRESS = 20_000  # connections per client source address (ephemeral ports 32768-60999)
OPEN_TIMEOUT = 30.0  # seconds for one connection's TCP connect and WebSocket handshake
FD_SPARE = 1_000  # descriptors a process keeps for itself beside its connections
MESSAGE = "m" * 64  # not JSON: Portico routes it to `$default`
GIB = 2**30
CLIENT_POSTING_THREADS = 32  # the client-side broadcast's threads
# portico-logged: the stage's access-log format, AWS's WebSocket `$context` variables as JSON
# ("Configure logging for WebSocket APIs in API Gateway"), and throttle limits (the stage's and the
# account's) no run reaches: every bucket is spent, no message refused.
ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "ip": "$context.identity.sourceIp",
        "requestTime": "$context.requestTime",
        "eventType": "$context.eventType",
        "routeKey": "$context.routeKey",
        "status": "$context.status",
        "connectionId": "$context.connectionId",
        "messageId": "$context.messageId",
        "integrationStatus": "$context.integrationStatus",
        "integrationLatency": "$context.integrationLatency",
        "responseLatency": "$context.responseLatency",
    }
)
UNREACHED_LIMIT = 1_000_000  # requests per second and burst, of the stage and of the account
ADMIN_KEY = ("AKIABENCHWSADMIN0001", "bench/Admin+Key0123456789abcdefGHIJKLMN")  # portico-logged's admin API
# Linux's IP_BIND_ADDRESS_NO_PORT (socket.h; Python 3.11's socket module lacks the name): a bound
# socket's port is chosen by connect(), for its whole 4-tuple, instead of by bind().
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

# ------------------------------------------------------------------------------------------ client mode

HANDSHAKE = (
    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class Held:
    """The connections of one client process, and which of them received a data frame since the
    last `reset`."""

    def __init__(self) -> None:
        self.open: list[HeldConnection] = []
        self.received = 0
        self.first = 0.0
        self.last = 0.0
        self.closed = 0
        self.all_received = asyncio.Event()

    def reset(self) -> None:
        for connection in self.open:
            connection.received = False
        self.received, self.first, self.last = 0, 0.0, 0.0
        self.all_received.clear()

    def receive(self, connection: HeldConnection) -> None:
        now = time.monotonic()
        if connection.received:
            return
        connection.received = True
        self.received += 1
        self.first = self.first or now
        self.last = now
        if self.received >= len(self.open):
            self.all_received.set()


class HeldConnection(asyncio.Protocol):
    """One client connection: the handshake, then frames read only for their opcode (servers do
    not mask their frames, RFC 6455 5.1)."""

    def __init__(self, request: bytes, held: Held, opened: asyncio.Future) -> None:
        self.request = request
        self.held = held
        self.opened = opened
        self.buffer = bytearray()
        self.upgraded = False
        self.received = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buffer[: self.buffer.find(b"\r\n")])
            del self.buffer[: end + 4]
            if not status.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(ConnectionError(status.decode(errors="replace")))
                self.transport.close()
                return
            self.upgraded = True
            self.opened.set_result(self)
        while len(self.buffer) >= 2:
            length, offset = self.buffer[1] & 0x7F, 2
            if length == 126:
                if len(self.buffer) < 4:
                    return
                length, offset = int.from_bytes(self.buffer[2:4], "big"), 4
            elif length == 127:
                if len(self.buffer) < 10:
                    return
                length, offset = int.from_bytes(self.buffer[2:10], "big"), 10
            if len(self.buffer) < offset + length:
                return
            if self.buffer[0] & 0x0F in (1, 2):  # text, binary (continuations are not sent here)
                self.held.receive(self)
            del self.buffer[: offset + length]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))
        elif self.upgraded:
            self.held.closed += 1


async def client_main(port: int, path: str, count: int, sources: list[str]) -> None:
    """Open COUNT connections (at most 256 handshakes in flight), say how many opened, then obey
    commands on stdin: `reset`, `wait SECONDS` (until every open connection received a frame since
    the reset), `quit`."""
    loop = asyncio.get_running_loop()
    held = Held()
    request = HANDSHAKE.format(path=path, port=port).encode()
    in_flight = asyncio.Semaphore(256)
    failures: list[str] = []

    async def connected(source: str) -> socket.socket:
        """A TCP connection from SOURCE to the server. bind() alone would pick the port, among
        those of SOURCE no socket holds, TIME_WAIT ones included (each server's connections leave
        one per connection closed, for a minute): with some 10,000 held, bind() took 3-8 ms
        each, in the kernel, which was most of an `open s` figure and was every server's but
        the first after an idle case. connect() picks a port its 4-tuple does not hold."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
            await loop.sock_connect(sock, ("127.0.0.1", port))
        except BaseException:
            sock.close()
            raise
        return sock

    async def open_one(index: int) -> None:
        async with in_flight:
            opened: asyncio.Future = loop.create_future()
            source = sources[index // PER_SOURCE_ADDRESS]
            try:
                # One deadline for the TCP connection and the handshake: a SYN dropped by a full
                # accept queue is retried by the kernel for minutes, a server out of descriptors
                # never accepts; either is a failure counted, not a wait.
                async with asyncio.timeout(OPEN_TIMEOUT):
                    transport, _ = await loop.create_connection(
                        lambda: HeldConnection(request, held, opened), sock=await connected(source)
                    )
                    try:
                        held.open.append(await opened)
                    except BaseException:
                        transport.abort()
                        raise
            except (OSError, TimeoutError) as exc:
                failures.append(repr(exc))

    started = time.monotonic()
    await asyncio.gather(*(open_one(i) for i in range(count)))
    reply = {"open": len(held.open), "failed": len(failures), "seconds": time.monotonic() - started}
    reply["errors"] = sorted(set(failures))[:3]
    print(json.dumps(reply), flush=True)
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        if not line or line[0] == "quit":
            break
        if line[0] == "reset":
            held.reset()
            print(json.dumps({}), flush=True)
        elif line[0] == "wait":
            if held.received < len(held.open):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(held.all_received.wait(), float(line[1]))
            reply = {"received": held.received, "first": held.first, "last": held.last}
            print(json.dumps(reply | {"closed": held.closed}), flush=True)
    for connection in held.open:
        connection.transport.abort()


# ------------------------------------------------------------------------------------------ driver


def raise_fd_limit(needed: int) -> None:
    """Raise this process's file-descriptor limit (inherited by every process started from here)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, needed)
    if want > hard:
        try:  # raising the hard limit needs CAP_SYS_RESOURCE (root); up to fs.nr_open
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
        except (ValueError, PermissionError):
            want = hard
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            print(f"note: the fd limit stays at {hard} (no CAP_SYS_RESOURCE)", file=sys.stderr)
    else:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def per_process() -> int:
    """Connections one process (a client, a server worker) may hold: its file-descriptor limit
    (raised as far as allowed by `raise_fd_limit`) less what it needs for itself. Where the hard
    limit is below the connections asked for (a container without CAP_SYS_RESOURCE), they are spread
    over more processes instead of failing in the one that runs out."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0] - FD_SPARE


def processes_for(connections: int) -> int:
    return max(1, math.ceil(connections / per_process()))


def rss(pid: int) -> int:
    """VmRSS in bytes of a process and its children."""
    total = 0
    for each in [pid, *descendants(pid)]:
        try:
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue  # ended meanwhile
    return total


class Clients:
    """P client processes holding `total` connections between them, driven over their stdin/stdout."""

    def __init__(self, procs: Processes, tmp: Path, port: int, path: str, total: int, processes: int) -> None:
        self.procs = procs
        self.children: list[subprocess.Popen] = []
        processes = max(processes, processes_for(total))
        shares = [total // processes + (1 if p < total % processes else 0) for p in range(processes)]
        for number, share in enumerate(s for s in shares if s):
            sources = [f"127.1.{number}.{k + 1}" for k in range(math.ceil(share / PER_SOURCE_ADDRESS))]
            args = [sys.executable, __file__, "--client", str(port), path, str(share), ",".join(sources)]
            stderr = open(tmp / f"client-{number}.log", "ab")  # noqa: SIM115  (closed with the process)
            child = subprocess.Popen(
                args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, start_new_session=True
            )
            stderr.close()
            procs.procs.append(child)
            self.children.append(child)

    def replies(self) -> list[dict[str, Any]]:
        out = []
        for child in self.children:
            line = child.stdout.readline()
            if not line:
                raise RuntimeError(f"a client process ended (exit {child.wait()}); see its log")
            out.append(json.loads(line))
        return out

    def opened(self) -> tuple[int, int, float, list[str]]:
        replies = self.replies()
        errors = sorted({e for r in replies for e in r["errors"]})
        return (
            sum(r["open"] for r in replies),
            sum(r["failed"] for r in replies),
            max(r["seconds"] for r in replies),
            errors,
        )

    def command(self, line: str) -> list[dict[str, Any]]:
        for child in self.children:
            child.stdin.write(line.encode() + b"\n")
            child.stdin.flush()
        return self.replies()

    def stop(self) -> None:
        for child in self.children:
            try:
                child.stdin.write(b"quit\n")
                child.stdin.close()
            except OSError:
                pass
        # One deadline for all: a client still opening (interrupted) reads no `quit`.
        deadline = time.monotonic() + 10
        for child in self.children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.procs.stop(child)


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen
    path: str  # the WebSocket URL's path
    broadcasts: list[tuple[str, str]]  # (label, the text that asks for a broadcast)
    access_log: Path | None = None  # portico-logged's stage access log


def _route(key: str, function: str, two_way: bool = False) -> dict[str, Any]:
    route: dict[str, Any] = {
        "routeKey": key,
        "integration": {"type": "AWS_PROXY", "integrationUri": function},
    }
    if two_way:
        route["routeResponseSelectionExpression"] = "$default"
    return route


def portico_config(with_connections: bool) -> dict[str, Any]:
    functions = ["echo"]
    routes = [_route("$default", "echo", two_way=True)]
    if with_connections:
        functions += ["connect", "disconnect", "broadcast", "broadcast_pooled", "connection_ids"]
        routes += [
            _route("$connect", "connect"),
            _route("$disconnect", "disconnect"),
            _route("broadcast", "broadcast"),
            _route("broadcast_pooled", "broadcast_pooled"),
            _route("ids", "connection_ids", two_way=True),
        ]
    return {
        # Lambda's default concurrency (1,000 per account) in place of Portico's 64 per function: the
        # clients have up to 256 handshakes each in flight, each a `$connect` call.
        "settings": {"accountId": ACCOUNT, "region": REGION, "functionConcurrency": 1000, **NO_ACCOUNT_LIMIT},
        "functions": {name: f"ws_handlers:{name}" for name in functions},
        "principals": [PRINCIPAL],
        "apis": [
            {
                "name": "wsbench",
                "id": "wsbench",
                "protocolType": "WEBSOCKET",
                "routeSelectionExpression": "$request.body.action",
                "routes": routes,
                "stages": [{"stageName": STAGE}],
            }
        ],
    }


def start_logged_portico(tmp: Path, procs: Processes) -> Server:
    """portico-logged: the messages' API (`$default` -> ws_handlers.echo, two-way) as a production
    stage runs it, built with boto3 through the admin API as on AWS: its stage has
    `accessLogSettings` (ACCESS_LOG_FORMAT, to a file) and `defaultRouteSettings` throttling, and
    the account throttle is on, all at UNREACHED_LIMIT."""
    import boto3
    from botocore.config import Config

    admin_port = free_port()
    access_log = tmp / f"portico-logged-access-{admin_port}.log"
    config = portico_config(False)
    config["settings"]["accountThrottle"] = {
        "throttlingRateLimit": UNREACHED_LIMIT,
        "throttlingBurstLimit": UNREACHED_LIMIT,
    }
    config["apis"] = []
    # A data directory of its own: one left by an earlier start would serve its API too.
    admin = ("--admin-port", str(admin_port), "--data-dir", str(tmp / f"portico-logged-data-{admin_port}"))
    admin += ("--admin-key", ":".join(ADMIN_KEY))
    port, proc, _ = start_portico(tmp, procs, "portico-logged", config, "/", admin)
    wait_http(admin_port, "/v2/apis", proc, tmp / "portico-logged.log")
    v2 = boto3.client(
        "apigatewayv2",
        endpoint_url=f"http://127.0.0.1:{admin_port}",
        region_name=REGION,
        aws_access_key_id=ADMIN_KEY[0],
        aws_secret_access_key=ADMIN_KEY[1],
        config=Config(retries={"max_attempts": 3, "mode": "standard"}),
    )
    api_id = v2.create_api(
        Name="wsbench-logged", ProtocolType="WEBSOCKET", RouteSelectionExpression="$request.body.action"
    )["ApiId"]
    function = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:echo"
    integration_id = v2.create_integration(
        ApiId=api_id,
        IntegrationType="AWS_PROXY",
        IntegrationUri=f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{function}/invocations",
    )["IntegrationId"]
    route_id = v2.create_route(
        ApiId=api_id,
        RouteKey="$default",
        Target=f"integrations/{integration_id}",
        RouteResponseSelectionExpression="$default",
    )["RouteId"]
    v2.create_route_response(ApiId=api_id, RouteId=route_id, RouteResponseKey="$default")
    v2.create_stage(
        ApiId=api_id,
        StageName=STAGE,
        DeploymentId=v2.create_deployment(ApiId=api_id)["DeploymentId"],
        AccessLogSettings={"DestinationArn": str(access_log), "Format": ACCESS_LOG_FORMAT},
        DefaultRouteSettings={
            "ThrottlingBurstLimit": UNREACHED_LIMIT,
            "ThrottlingRateLimit": float(UNREACHED_LIMIT),
        },
    )
    asyncio.run(_until_echoed(port, f"/{STAGE}"))
    return Server("portico-logged", port, proc, f"/{STAGE}", [], access_log)


async def _until_echoed(port: int, path: str, timeout: float = 30) -> None:
    """Wait until the admin API's stage is served: a message comes back from its `$default`."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    deadline = time.monotonic() + timeout
    while True:
        try:
            async with connect(f"ws://127.0.0.1:{port}{path}", compression=None) as connection:
                await connection.send(MESSAGE)
                if await connection.recv() == MESSAGE:
                    return
        except (InvalidStatus, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the admin API's stage {path} is not served within {timeout} s")
        await asyncio.sleep(0.1)


def start_server(
    kind: str, tmp: Path, procs: Processes, with_connections: bool = False, processes: int = 1
) -> Server:
    """One server; PROCESSES > 1 (for more connections than one process's descriptors allow):
    Portico's --workers, Granian's --workers, the websockets peer's processes on one port."""
    if kind == "portico-logged":
        return start_logged_portico(tmp, procs)
    if kind in ("portico", "portico-asgi"):
        # portico-asgi: the embedded ASGI door (`--no-edge`), Granian speaking WebSocket.
        name = f"{kind}-broadcast" if with_connections else kind
        flags = ("--no-edge",) if kind == "portico-asgi" else ()
        # The broadcast handler's boto3 client signs with the principal's keys, as a function's role would.
        env = bench_env(
            AWS_ACCESS_KEY_ID=PRINCIPAL["accessKeyId"],
            AWS_SECRET_ACCESS_KEY=PRINCIPAL["secretAccessKey"],
            AWS_DEFAULT_REGION=REGION,
        )
        port, proc, _ = start_portico(
            tmp, procs, name, portico_config(with_connections), "/", flags, env=env, workers=processes
        )
        import ws_handlers  # here, not at the top: client processes need no boto3

        broadcasts = [
            (f"{kind}: handler, serial boto3", json.dumps({"action": "broadcast"})),
            (
                f"{kind}: handler, {ws_handlers.POSTING_THREADS} threads",
                json.dumps({"action": "broadcast_pooled"}),
            ),
        ]
        return Server(name, port, proc, f"/{STAGE}", broadcasts)
    port = free_port()
    log = tmp / f"{kind}.log"
    if kind == "websockets":
        cmd = [sys.executable, str(BENCHES / "ws_peers.py"), "websockets", str(port), str(processes)]
    else:
        cmd = ["granian", "--interface", "rsgi", "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--workers", str(processes), "--backlog", "4096", "ws_peers:rsgi_app"]
    proc = procs.start(cmd, log, cwd=BENCHES, env=bench_env())
    wait_http(port, "/", proc, log)
    return Server(kind, port, proc, "/", [(kind, "broadcast")])


def settle(seconds: float = 1.0) -> None:
    time.sleep(seconds)


# ------------------------------------------------------------------------------------------ cases


@dataclass
class Idle:
    server: str
    processes: int  # server processes (workers) holding the connections
    open: int
    failed: int
    seconds: float
    rss_before: int
    rss_after: int

    @property
    def per_connection(self) -> float:
        return (self.rss_after - self.rss_before) / max(1, self.open)


def idle_case(server: Server, processes: int, args: argparse.Namespace, tmp: Path, procs: Processes) -> Idle:
    settle(0.5)
    before = rss(server.proc.pid)
    clients = Clients(procs, tmp, server.port, server.path, args.connections, args.client_processes)
    try:
        opened, failed, seconds, errors = clients.opened()
        if errors:
            print(f"{server.name}: {failed} connections failed, e.g. {errors}", file=sys.stderr)
        settle()
        after = rss(server.proc.pid)
    finally:
        clients.stop()
    return Idle(server.name, processes, opened, failed, seconds, before, after)


@dataclass
class Messages:
    server: str
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    log_lines: int | None = None  # portico-logged: the lines its stage's access log has


async def _message_load(port: int, path: str, clients: int, total: int) -> tuple[float, list[float], int]:
    from websockets.asyncio.client import connect

    latencies: list[float] = []
    errors = 0
    connections = [await connect(f"ws://127.0.0.1:{port}{path}", compression=None) for _ in range(clients)]

    async def one_client(connection: Any, count: int, record: bool) -> None:
        nonlocal errors
        for _ in range(count):
            sent = time.perf_counter()
            await connection.send(MESSAGE)
            answer = await connection.recv()
            if record:
                latencies.append(time.perf_counter() - sent)
            if answer != MESSAGE:
                errors += 1

    try:
        warmup = max(1, total // 10 // clients)
        await asyncio.gather(*(one_client(c, warmup, False) for c in connections))
        each = max(1, total // clients)
        started = time.perf_counter()
        await asyncio.gather(*(one_client(c, each, True) for c in connections))
        elapsed = time.perf_counter() - started
    finally:
        for connection in connections:
            await connection.close()
    return elapsed, latencies, errors


def messages_case(server: Server, args: argparse.Namespace) -> Messages:
    elapsed, latencies, errors = asyncio.run(
        _message_load(server.port, server.path, args.clients, args.messages)
    )
    latencies.sort()
    log_lines = None
    if server.access_log is not None:
        settle(0.5)  # lines are written off the messages' path
        with server.access_log.open("rb") as log:
            log_lines = sum(1 for _ in log)
    return Messages(
        server.name,
        len(latencies) / elapsed,
        statistics.median(latencies) * 1e3,
        latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e3,
        errors,
        log_lines,
    )


@dataclass
class Broadcast:
    label: str
    connections: int
    received: int
    seconds: float  # send -> the last connection's frame
    open_seconds: float


async def _send(port: int, path: str, text: str) -> None:
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{port}{path}", compression=None) as connection:
        await connection.send(text)
        await asyncio.sleep(0.2)  # let the server read it before the close


async def _portico_ids(port: int) -> list[str]:
    from websockets.asyncio.client import connect

    ids: list[str] = []
    async with connect(f"ws://127.0.0.1:{port}/{STAGE}", compression=None) as connection:
        while True:
            await connection.send(json.dumps({"action": "ids", "offset": len(ids)}))
            page = await connection.recv()
            if not page:
                return ids
            ids += page.split("\n")


def _post_all(port: int, ids: list[str]) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=f"http://127.0.0.1:{port}/{STAGE}",
        region_name=REGION,
        aws_access_key_id=PRINCIPAL["accessKeyId"],
        aws_secret_access_key=PRINCIPAL["secretAccessKey"],
        config=Config(max_pool_connections=CLIENT_POSTING_THREADS),  # one kept-alive connection a thread
    )

    def post(connection_id: str) -> None:
        with contextlib.suppress(client.exceptions.GoneException):
            client.post_to_connection(ConnectionId=connection_id, Data=b"broadcast")

    with concurrent.futures.ThreadPoolExecutor(CLIENT_POSTING_THREADS) as pool:
        list(pool.map(post, ids))


def broadcast_case(
    server: Server, args: argparse.Namespace, tmp: Path, procs: Processes, client_side: bool
) -> list[Broadcast]:
    clients = Clients(procs, tmp, server.port, server.path, args.broadcast, args.client_processes)
    results: list[Broadcast] = []
    try:
        opened, failed, open_seconds, errors = clients.opened()
        if errors:
            print(f"{server.name}: {failed} connections failed, e.g. {errors}", file=sys.stderr)
        settle()
        variants: list[tuple[str, str | None]] = list(server.broadcasts)
        if client_side:
            variants.append((f"{server.name}: client-side, {CLIENT_POSTING_THREADS} threads", None))
        for label, text in variants:
            ids = asyncio.run(_portico_ids(server.port)) if text is None else []
            clients.command("reset")
            sent = time.monotonic()
            if text is None:
                _post_all(server.port, ids)
            else:
                asyncio.run(_send(server.port, server.path, text))
            replies = clients.command(f"wait {args.broadcast_timeout}")
            received = sum(r["received"] for r in replies)
            last = max(r["last"] for r in replies)
            seconds = last - sent if received else float("nan")
            results.append(Broadcast(label, opened, received, seconds, open_seconds))
    finally:
        clients.stop()
    return results


# ------------------------------------------------------------------------------------------ report


def ratio(value: float, reference: float | None) -> str:
    return f"{value / reference:.2f}x" if reference else "-"


def print_idle(rows: list[Idle]) -> None:
    peer = next((r.per_connection for r in rows if r.server == "websockets"), None)
    print()
    print(
        f"1. idle connections    {'procs':>5} {'open':>7} {'failed':>6} {'open s':>7}"
        f" {'RSS before':>10} {'RSS after':>10} {'B/conn':>8} {'conns/GiB':>10} {'vs websockets':>13}"
    )
    for r in rows:
        per_gib = GIB / r.per_connection if r.per_connection > 0 else float("inf")
        print(
            f"   {r.server:<19} {r.processes:>5} {r.open:>7,} {r.failed:>6,} {r.seconds:>7.1f}"
            f" {r.rss_before / 2**20:>8.1f}MB {r.rss_after / 2**20:>8.1f}MB"
            f" {r.per_connection:>8,.0f} {per_gib:>10,.0f}"
            f" {ratio(r.per_connection, peer):>13}"
        )
    print(
        "   (B/conn: RSS growth / open connections; vs websockets: bytes per connection, lower is better;"
        " issue 12's target: >= 50,000 conns/GiB)"
    )


def print_messages(rows: list[Messages], clients: int) -> None:
    peer = next((r.rate for r in rows if r.server == "websockets"), None)
    print()
    print(f"2. messages ({clients} clients) {'msgs/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs websockets':>13}")
    for r in rows:
        warn = f"  [!{r.errors} wrong answers]" if r.errors else ""
        print(
            f"   {r.server:<22} {r.rate:>9,.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f}"
            f" {ratio(r.rate, peer):>13}{warn}"
        )
    for r in rows:
        if r.log_lines is not None:
            print(
                f"   ({r.server}: portico's API built with boto3, its stage's access log on"
                f" ({r.log_lines:,} lines) and stage and account throttling at {UNREACHED_LIMIT:,}/s)"
            )


def print_broadcast(rows: list[Broadcast]) -> None:
    peer = next((r.seconds for r in rows if r.label == "websockets"), None)
    print()
    print(
        f"3. broadcast{'':<30} {'conns':>7} {'received':>8} {'open s':>7}"
        f" {'to last ms':>10} {'vs websockets':>13}"
    )
    for r in rows:
        print(
            f"   {r.label:<38} {r.connections:>7,} {r.received:>8,} {r.open_seconds:>7.1f}"
            f" {r.seconds * 1e3:>10,.1f}"
            f" {ratio(r.seconds, peer):>13}"
        )
    print(
        "   (to last: the broadcast sent -> the last connection's frame;"
        " vs websockets: time, lower is better)"
    )


# ------------------------------------------------------------------------------------------ main


def run(args: argparse.Namespace, tmp: Path, procs: Processes) -> int:
    for line in machine()[:4]:
        print(line)
    print(f"command : python benches/websocket.py {' '.join(sys.argv[1:])}")
    kinds = ["portico", "portico-asgi", "websockets"]
    if not args.no_granian and shutil.which("granian"):
        kinds.append("granian")
    print(
        f"load    : {args.connections:,} idle connections, {args.messages:,} messages over {args.clients}"
        f" clients, a broadcast to {args.broadcast:,}; {processes_for(args.connections)} server process(es)"
        f" for the idle connections; descriptors per process {per_process() + FD_SPARE:,}"
    )
    idle: list[Idle] = []
    messages: list[Messages] = []
    # As many server processes as the descriptor limit needs for the idle connections; the messages
    # and the broadcast on one process each (the broadcast's ids are kept per process).
    processes = processes_for(args.connections)
    for kind in kinds:
        if args.connections:
            server = start_server(kind, tmp, procs, processes=processes)
            try:
                idle.append(idle_case(server, processes, args, tmp, procs))
                print(f"{kind}: idle done", file=sys.stderr)
            finally:
                procs.stop(server.proc)
        # portico-logged (production-shaped: access log and throttling on) right after the bare one.
        shapes = [kind, "portico-logged"] if kind == "portico" and not args.no_logged else [kind]
        for shape in shapes if args.messages else []:
            server = start_server(shape, tmp, procs)
            try:
                messages.append(messages_case(server, args))
                print(f"{shape}: messages done", file=sys.stderr)
            finally:
                procs.stop(server.proc)
    broadcasts: list[Broadcast] = []
    if args.broadcast:
        for kind in kinds:
            server = start_server(kind, tmp, procs, with_connections=True)
            try:
                broadcasts += broadcast_case(server, args, tmp, procs, client_side=kind.startswith("portico"))
                print(f"{kind}: broadcast done", file=sys.stderr)
            finally:
                procs.stop(server.proc)
    if idle:
        print_idle(idle)
    if messages:
        print_messages(messages, args.clients)
    if broadcasts:
        print_broadcast(broadcasts)
    return 0


def main() -> int:
    if sys.argv[1:2] == ["--client"]:  # a client process (see Clients)
        port, path, count, sources = sys.argv[2:6]
        raise_fd_limit(int(count) + 100)
        asyncio.run(client_main(int(port), path, int(count), sources.split(",")))
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=20_000, help="idle connections (0: skip)")
    parser.add_argument("--messages", type=int, default=50_000, help="messages in all (0: skip)")
    parser.add_argument("--clients", type=int, default=32, help="clients sending messages")
    parser.add_argument("--broadcast", type=int, default=10_000, help="connections broadcast to (0: skip)")
    parser.add_argument(
        "--broadcast-timeout", type=float, default=300, help="seconds to wait for a broadcast"
    )
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--no-granian", action="store_true")
    parser.add_argument(
        "--no-logged", action="store_true", help="skip portico-logged (access log and throttling on)"
    )
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    raise_fd_limit(max(args.connections, args.broadcast) + FD_SPARE)
    if args.broadcast > per_process():
        parser.error(
            f"--broadcast {args.broadcast} needs one process holding that many connections; the"
            f" file-descriptor limit allows {per_process()}"
        )
    return in_scratch("portico-wsbench-", args.keep, lambda tmp, procs: run(args, tmp, procs))


if __name__ == "__main__":
    sys.exit(main())
