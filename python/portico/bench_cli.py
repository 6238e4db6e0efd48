"""`portico bench`: drive an API at an offered rate and report what its throttle admitted and how
fast it answered. The load generator is the core's (`portico._core.bench`, in Rust); this module
only works out what to drive: a URL, or a route of a config file, served here by a `portico serve`
child process or by a running one at `--target`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from portico.compile.files import CompiledConfig

#: How long a `portico serve` started by `portico bench` may take to answer.
SERVER_START_TIMEOUT_S = 30.0
#: How long it may take to stop after SIGINT before it is killed.
SERVER_STOP_TIMEOUT_S = 10.0


def register(commands: argparse._SubParsersAction) -> None:
    """Add `portico bench` to the `portico` parser."""
    bench = commands.add_parser(
        "bench",
        help="drive an API at an offered rate; report admitted vs throttled and latency percentiles",
        description=(
            "Send requests to URL, or to a route of a config file (--config, --route), at --rate "
            "requests/s for --duration seconds, open loop: each request is due at its scheduled "
            "time whatever the server does, and its latency counts from then (no coordinated "
            "omission). Prints offered vs achieved rate, answers by status (2xx admitted, 429 "
            "throttled), admitted against the route's configured throttle, latency percentiles "
            "and a histogram. The load generator is Portico's core (Rust)."
        ),
    )
    bench.add_argument("url", nargs="?", help="http:// URL to drive (or use --config and --route)")
    bench.add_argument("--config", metavar="FILE", help="a config file whose route to drive")
    bench.add_argument("--route", metavar='"METHOD /path"', help="the route key to drive (with --config)")
    bench.add_argument("--stage", help="the stage to drive (default: the API's only stage, or $default)")
    bench.add_argument("--api", metavar="ID_OR_NAME", help="the API that has the route, when several do")
    bench.add_argument(
        "--path", help="the concrete path to request for a route with {variables} or $default (e.g. /pets/1)"
    )
    bench.add_argument(
        "--target",
        metavar="URL",
        help=(
            "a running `portico serve` of the config (e.g. http://127.0.0.1:8080); without it, "
            "`portico bench` starts one on a free loopback port and stops it after"
        ),
    )
    bench.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes of the `portico serve` it starts (without --target; default 1)",
    )
    bench.add_argument(
        "--function",
        action="append",
        default=[],
        metavar="NAME=MODULE:ATTR",
        help="a Lambda handler for the config, as for `portico serve` (repeatable)",
    )
    bench.add_argument("--rate", type=float, required=True, help="offered rate, requests/s")
    bench.add_argument("--duration", type=float, default=10.0, help="measured seconds (default 10)")
    bench.add_argument(
        "--warmup",
        type=float,
        default=0.0,
        help=(
            "seconds of the same load before measuring, counted apart (default 0); at a rate above "
            "the throttle's it spends the burst, so that the measured window shows the sustained rate"
        ),
    )
    bench.add_argument(
        "--connections", type=int, default=16, help="keep-alive connections (concurrency; default 16)"
    )
    bench.add_argument("--threads", type=int, default=1, help="load generator threads (default 1)")
    bench.add_argument(
        "--requests-per-connection",
        type=int,
        default=None,
        metavar="N",
        help=(
            "close each connection after N responses and open another, so that a long run spreads "
            "over the server's worker processes (default: keep them)"
        ),
    )
    bench.add_argument(
        "--timeout", type=float, default=10.0, help="seconds one request may take, whole (default 10)"
    )
    bench.add_argument("-X", "--method", help="HTTP method (default: the route's, or GET)")
    bench.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar='"NAME: VALUE"',
        help="a request header (repeatable)",
    )
    bench.add_argument("-d", "--data", help="request body (@FILE reads it from a file)")
    bench.add_argument(
        "--limit",
        metavar="RATE:BURST",
        help="the target's throttle, to report admitted against it (read from the config with --config)",
    )
    bench.add_argument("--json", action="store_true", help="print one JSON object instead of the report")


@dataclass
class Drive:
    """What to send: a URL (or a path and API host, for a route of a config, until the server's
    address is known), the request, and the throttles that apply to it."""

    url_or_path: str
    method: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    limits: list[tuple[float, int]] = field(default_factory=list)
    route: dict[str, Any] | None = None
    api_host: str | None = None

    def at(self, base_url: str | None) -> tuple[str, list[tuple[str, str]]]:
        """The URL and headers to send, for a route's path against the server at `base_url`."""
        if self.route is None:
            return self.url_or_path, self.headers
        assert base_url is not None
        headers = list(self.headers)
        if self.api_host is not None and not any(name.lower() == "host" for name, _ in headers):
            port = base_url.rstrip("/").rsplit(":", 1)[-1]
            headers.insert(0, ("Host", f"{self.api_host}:{port}" if port.isdigit() else self.api_host))
        return base_url.rstrip("/") + self.url_or_path, headers


class BenchError(Exception):
    """A bench that cannot run as asked (the message says why)."""


def _split_route_key(key: str) -> tuple[str, str]:
    if key.strip() == "$default":
        return "$default", ""
    parts = key.split()
    if len(parts) != 2 or not parts[1].startswith("/"):
        raise BenchError(f'--route {key!r}: expected "METHOD /path" or $default')
    return parts[0].upper(), parts[1]


def _routes_of(api: dict[str, Any], stage: dict[str, Any]) -> list[str]:
    routes = stage.get("routes") or api["routes"]
    return [route["key"] for route in routes]


def _pick_stage(api: dict[str, Any], wanted: str | None) -> dict[str, Any]:
    stages = api["stages"]
    names = [stage["name"] for stage in stages]
    if wanted is not None:
        for stage in stages:
            if stage["name"] == wanted:
                return stage
        raise BenchError(f"API {api['name']} has no stage {wanted!r} (stages: {', '.join(names)})")
    if len(stages) == 1:
        return stages[0]
    for stage in stages:
        if stage["name"] == "$default":
            return stage
    raise BenchError(f"API {api['name']} has several stages ({', '.join(names)}): choose one with --stage")


def resolve_route(
    spec: dict[str, Any], route_key: str, stage_name: str | None, api_name: str | None, path: str | None
) -> tuple[str, str, str, dict[str, Any]]:
    """The request (method, path with its stage, Host) that reaches `route_key` of the spec, and
    where it is: {api, stage, route}."""
    method, route_path = _split_route_key(route_key)
    wanted = route_key.strip() if method == "$default" else f"{method} {route_path}"
    candidates = []
    for api in spec["apis"]:
        if api_name is not None and api_name not in (api["id"], api["name"]):
            continue
        if any(wanted in _routes_of(api, stage) for stage in api["stages"]):
            candidates.append(api)
    if not candidates:
        where = f" in API {api_name!r}" if api_name else ""
        raise BenchError(f"no route {wanted!r}{where} in the config")
    if len(candidates) > 1:
        names = ", ".join(f"{api['name']} ({api['id']})" for api in candidates)
        raise BenchError(f"several APIs have the route {wanted!r}: {names}; choose one with --api")
    api = candidates[0]
    stage = _pick_stage(api, stage_name)
    if wanted not in _routes_of(api, stage):
        raise BenchError(f"stage {stage['name']!r} of API {api['name']} has no route {wanted!r}")
    if path is None:
        if method == "$default" or "{" in route_path:
            raise BenchError(f"route {wanted!r} matches many paths: give the one to request with --path")
        path = route_path
    if not path.startswith("/"):
        raise BenchError(f"--path {path!r}: must start with /")
    stage_prefix = "" if stage["name"] == "$default" else "/" + stage["name"]
    host = f"{api['id']}.execute-api.localhost"
    if method in ("$default", "ANY"):
        method = "GET"
    where = {"api": api["id"], "stage": stage["name"], "route": wanted}
    return method, stage_prefix + path, host, where


def _parse_limit(text: str) -> tuple[float, int]:
    rate, _, burst = text.partition(":")
    try:
        limit = (float(rate), int(burst) if burst else 1)
    except ValueError:
        raise BenchError(f"--limit {text!r}: expected RATE:BURST, e.g. 500:100") from None
    if limit[0] < 0 or limit[1] < 0:
        raise BenchError(f"--limit {text!r}: expected numbers >= 0")
    return limit


def _parse_headers(given: list[str]) -> list[tuple[str, str]]:
    headers = []
    for text in given:
        name, sep, value = text.partition(":")
        if not sep or not name.strip():
            raise BenchError(f'--header {text!r}: expected "NAME: VALUE"')
        headers.append((name.strip(), value.strip()))
    return headers


def _compile(config: str, functions: list[str]) -> CompiledConfig:
    from portico.compile.files import CompileError
    from portico.config.loader import ConfigFileError
    from portico.dataplane.build import compile_file

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return compile_file(config, functions)
    except (ConfigFileError, CompileError, ValueError) as exc:
        raise BenchError(f"{config}: {exc}") from None


def plan_drive(args: argparse.Namespace) -> Drive:
    """What `args` ask to drive."""
    headers = _parse_headers(args.header)
    limits = [_parse_limit(args.limit)] if args.limit else []
    if args.config is None:
        if args.url is None:
            raise BenchError("give a URL, or --config and --route")
        if args.route or args.target or args.stage or args.api or args.path:
            raise BenchError("--route, --stage, --api, --path and --target go with --config, not a URL")
        return Drive(args.url, (args.method or "GET").upper(), headers, limits)
    if args.url is not None:
        raise BenchError("give a URL or --config, not both (a running server of the config: --target)")
    if args.route is None:
        raise BenchError("--config needs --route")
    from portico import _core
    from portico.compile import spec as S

    compiled = _compile(args.config, args.function)
    if compiled.config.settings.tls is not None and args.target is None:
        raise BenchError(f"{args.config} serves https (settings.tls); portico bench speaks http:// only")
    spec: dict[str, Any] = compiled.spec  # type: ignore[assignment]
    method, path, host, where = resolve_route(spec, args.route, args.stage, args.api, args.path)
    method = (args.method or method).upper()
    if not args.limit:
        # The throttles as the core enforces them, for exactly the request that is sent.
        gateway = _core.Gateway(S.dumps(spec))  # type: ignore[arg-type]
        api_key = next((value for name, value in headers if name.lower() == "x-api-key"), None)
        limits = gateway.route_limits(host, method, path, api_key) or []
    return Drive(path, method, headers, limits, where, host)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServedConfig:
    """`portico serve CONFIG` in a child process on a free loopback port, for one bench."""

    def __init__(self, config: str, workers: int, functions: list[str]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        args = [sys.executable, "-m", "portico", "serve", config, "--host", "127.0.0.1"]
        args += ["--port", str(self.port), "--workers", str(workers)]
        for spec in functions:
            args += ["--function", spec]
        self.process = subprocess.Popen(
            args, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"portico serve exited with {self.process.returncode}:\n{self.output()}")
            try:
                # Any answer will do: a path no API has spends no route's tokens.
                urllib.request.urlopen(self.url + "/__portico_bench_probe__", timeout=1).close()
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.1)
        raise BenchError(
            f"portico serve did not answer within {SERVER_START_TIMEOUT_S:.0f} s:\n{self.output()}"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=SERVER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self.log.close()


def _body(data: str | None) -> bytes | None:
    if data is None:
        return None
    if data.startswith("@"):
        return Path(data[1:]).read_bytes()
    return data.encode()


def run(args: argparse.Namespace) -> int:
    from portico import _core

    server: ServedConfig | None = None
    try:
        drive = plan_drive(args)
        if args.config is not None and args.target is None:
            if args.workers < 1:
                raise BenchError("--workers must be at least 1")
            server = ServedConfig(os.path.abspath(args.config), args.workers, args.function)
            server.wait_ready()
        url, headers = drive.at(server.url if server else args.target)
        report = _core.bench(
            url,
            rate=args.rate,
            duration=args.duration,
            connections=args.connections,
            method=drive.method,
            headers=headers,
            body=_body(args.data),
            warmup=args.warmup,
            timeout=args.timeout,
            threads=args.threads,
            requests_per_connection=args.requests_per_connection,
            limits=drive.limits,
        )
    except BenchError as exc:
        print(f"portico: bench: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"portico: bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("portico: bench: interrupted", file=sys.stderr)
        return 130
    finally:
        if server is not None:
            server.stop()
    if args.json:
        out = json.loads(report.json())
        if drive.route is not None:
            out["route"] = drive.route
        print(json.dumps(out))
    else:
        if drive.route is not None:
            route = drive.route
            served = f"{server.url}, portico serve --workers {args.workers}" if server else args.target
            print(f"route {route['route']} of API {route['api']}, stage {route['stage']} ({served})")
        print(report.text(), end="")
    return 0
