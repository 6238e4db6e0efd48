"""Event-loop CPU per proxied request, in process: Portico's pipeline against the bare proxy.

    python benches/pipeline.py [--requests N] [--rounds N] [--concurrency N]

The server benchmark (`benches/run.py`) is noisy on shared machines and mixes in the server's own
threads; this one isolates what Portico's Python costs. It starts nginx as the upstream, then calls
each ASGI app directly on one uvloop loop (no server: a fake `send`), N requests over C concurrent
tasks, and reports process CPU microseconds per request (the best of the rounds, contenders
alternating):

  bare      benches/bare_proxy.py, the least an ASGI proxy does
  portico   Portico's data plane serving GET /proxy (HTTP_PROXY) from the benchmark's config

On a loopback upstream the CPU includes the upstream's TCP receive path run inline by `send`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import uvloop
import yaml

BENCHES = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHES))

import run as bench  # noqa: E402  (benches/run.py: nginx config and process helpers)

SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/proxy",
    "raw_path": b"/proxy",
    "query_string": b"",
    "root_path": "",
    "headers": [(b"host", b"127.0.0.1:8080"), (b"user-agent", b"wrk"), (b"accept", b"*/*")],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8080),
}


async def _receive() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: dict) -> None:
    if message["type"] == "http.response.start" and message["status"] != 200:
        raise RuntimeError(f"unexpected status {message['status']}")


async def cpu_per_request(app, requests: int, concurrency: int) -> float:
    async def worker(count: int) -> None:
        for _ in range(count):
            await app(SCOPE, _receive, _send)

    started = time.process_time()
    await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
    return (time.process_time() - started) / (requests // concurrency * concurrency) * 1e6


async def measure(apps: dict, args: argparse.Namespace) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {name: [] for name in apps}
    for app in apps.values():  # warm-up: connections pooled, code paths hot
        await cpu_per_request(app, 2000, args.concurrency)
    for round_no in range(args.rounds):
        order = list(apps.items()) if round_no % 2 == 0 else list(reversed(apps.items()))
        for name, app in order:
            results[name].append(await cpu_per_request(app, args.requests, args.concurrency))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="portico-pipeline-"))
    procs = bench.Processes()
    try:
        port = bench.free_port()
        conf = bench.nginx_conf(tmp, "upstream", port, bench.UPSTREAM_HTTP)
        log = tmp / "upstream.log"
        cmd = ["nginx", "-p", str(tmp), "-e", str(tmp / "upstream.error.log"), "-c", str(conf)]
        bench.wait_http(port, "/", procs.start(cmd, log), log)

        os.environ["BARE_UPSTREAM"] = f"127.0.0.1:{port}"
        os.environ.setdefault("BARE_SPIN_US", "0")
        import bare_proxy
        from portico.dataplane.build import build_dataplane

        config = tmp / "portico.yaml"
        config.write_text(yaml.safe_dump(bench.portico_config(port), sort_keys=False))
        os.chdir(BENCHES)  # the config's function module (handlers.py) is found from here
        portico = build_dataplane(str(config), function_specs=[], plugins=[])
        apps = {"bare": bare_proxy.app, "portico": portico}
        results = uvloop.run(measure(apps, args))
    finally:
        procs.stop_all()
    best = {name: min(values) for name, values in results.items()}
    print(f"{args.requests} GET requests per round, {args.concurrency} concurrent, best of {args.rounds}:")
    for name, values in results.items():
        rounds = " ".join(f"{v:.1f}" for v in values)
        print(f"  {name:<8} {best[name]:6.1f} us CPU per request   (rounds: {rounds})")
    print(f"  portico - bare: {best['portico'] - best['bare']:.1f} us per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
